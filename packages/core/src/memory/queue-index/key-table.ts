/** Smallest table, in slots. */
const MIN_CAPACITY = 16;
/**
 * A table shrinks only above this many slots (half a megabyte of slots): a queue that fills and
 * drains by the thousand would otherwise reallocate its table on every wave.
 */
const SHRINK_ABOVE = 1 << 15;

/**
 * Items by their string `key`: an open-addressing hash table with linear probing. Each slot is a
 * pair of array elements, the item's full 32-bit hash then the item, so a probe reads one cache
 * line. At a million keys a lookup in a `Map` touches its bucket, one or two chain entries and
 * the stored key of each (all likely cache and TLB misses); here it reads one slot, then the item
 * and its key, which a status read touches anyway. Kept at most half full, so probes are short;
 * removal shifts the run back instead of leaving tombstones.
 */
export class KeyTable<T extends { readonly key: string }> {
  /** `[hash, item]` per slot; hash 0 marks an empty slot (hashes are never 0). */
  #slots: (number | T | undefined)[] = emptySlots(MIN_CAPACITY);
  #size = 0;

  /** Items held. */
  get size(): number {
    return this.#size;
  }

  /** The item stored under `key`. */
  get(key: string): T | undefined {
    const h = hashKey(key);
    const slots = this.#slots;
    const mask = (slots.length >>> 1) - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const stored = slots[2 * i] as number;
      if (stored === 0) return undefined;
      if (stored === h) {
        const item = slots[2 * i + 1] as T;
        if (item.key === key) return item;
      }
    }
  }

  /** Stores the item under its key, replacing any item with the same key. */
  set(item: T): void {
    const key = item.key;
    const h = hashKey(key);
    let slots = this.#slots;
    let mask = (slots.length >>> 1) - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const stored = slots[2 * i] as number;
      if (stored === 0) break;
      if (stored === h && (slots[2 * i + 1] as T).key === key) {
        slots[2 * i + 1] = item;
        return;
      }
    }
    if ((this.#size + 1) * 2 > mask + 1) {
      this.#resize((mask + 1) * 2);
      slots = this.#slots;
      mask = (slots.length >>> 1) - 1;
    }
    let i = h & mask;
    while (slots[2 * i] !== 0) i = (i + 1) & mask;
    slots[2 * i] = h;
    slots[2 * i + 1] = item;
    this.#size++;
  }

  /** Removes the item stored under `key`; returns whether there was one. */
  delete(key: string): boolean {
    const h = hashKey(key);
    const slots = this.#slots;
    const capacity = slots.length >>> 1;
    const mask = capacity - 1;
    let hole = h & mask;
    for (;;) {
      const stored = slots[2 * hole] as number;
      if (stored === 0) return false;
      if (stored === h && (slots[2 * hole + 1] as T).key === key) break;
      hole = (hole + 1) & mask;
    }
    // Backward shift: later members of the run move into the hole unless their home slot lies
    // cyclically after the hole (then they must stay where a probe from home finds them).
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const stored = slots[2 * j] as number;
      if (stored === 0) break;
      const home = stored & mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      slots[2 * hole] = stored;
      slots[2 * hole + 1] = slots[2 * j + 1];
      hole = j;
    }
    slots[2 * hole] = 0;
    slots[2 * hole + 1] = undefined;
    this.#size--;
    // A drained queue gives its memory back (the bound leaves room so that a size hovering
    // around a threshold does not resize back and forth).
    if (capacity > SHRINK_ABOVE && this.#size * 8 < capacity) this.#resize(capacity / 2);
    return true;
  }

  /** Empties the table. */
  clear(): void {
    this.#slots = emptySlots(MIN_CAPACITY);
    this.#size = 0;
  }

  #resize(capacity: number): void {
    const old = this.#slots;
    const slots = emptySlots<T>(capacity);
    const mask = capacity - 1;
    for (let s = 0; s < old.length; s += 2) {
      const h = old[s] as number;
      if (h === 0) continue;
      let i = h & mask;
      while (slots[2 * i] !== 0) i = (i + 1) & mask;
      slots[2 * i] = h;
      slots[2 * i + 1] = old[s + 1];
    }
    this.#slots = slots;
  }
}

/**
 * `capacity` empty slots: hash 0, no item. Built packed and of its final element kind (numbers
 * and objects), so that reads never check for holes and the first item stored changes nothing.
 */
function emptySlots<T>(capacity: number): (number | T | undefined)[] {
  const slots: (number | T | undefined)[] = [];
  for (let i = 0; i < capacity; i++) slots.push(0, undefined);
  return slots;
}

/** FNV-1a over the UTF-16 code units with a final mix; never 0 (0 marks an empty slot). */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  // FNV's low bits (the slot) depend weakly on the last characters: fold the high bits in.
  h ^= h >>> 16;
  h = Math.imul(h, 0x45d9f3b);
  h ^= h >>> 16;
  return h === 0 ? 1 : h;
}
