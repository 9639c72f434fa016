/** Smallest table, in slots. */
const MIN_CAPACITY = 16;
/**
 * A table shrinks only above this many slots: a queue that fills and drains by the thousand would
 * otherwise reallocate its table on every wave.
 */
const SHRINK_ABOVE = 1 << 15;

/**
 * Items by their string `key`: an open-addressing hash table with linear probing, kept at most half
 * full, removal by backward shift (no tombstones). Hashes live in an `Int32Array` beside the item
 * array: stored unboxed (a 32-bit hash is outside V8's small-integer range half of the time, and a
 * boxed number costs an extra object and an extra cache miss per probe), and a probe compares
 * hashes without touching any item. At a million keys a lookup then reads one hash word, one item
 * slot, the item and its key — the item and key a status read touches anyway — where a `Map`
 * touches its bucket, chain entries and the stored key of each.
 */
export class KeyTable<T extends { readonly key: string }> {
  /** Full hash per slot; 0 marks an empty slot (hashes are never 0). */
  #hashes = new Int32Array(MIN_CAPACITY);
  /** Item per slot. */
  #items: (T | undefined)[] = emptyItems(MIN_CAPACITY);
  #size = 0;

  /** Items held. */
  get size(): number {
    return this.#size;
  }

  /** The item stored under `key`. */
  get(key: string): T | undefined {
    const h = hashKey(key);
    const hashes = this.#hashes;
    const mask = hashes.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const stored = hashes[i] as number;
      if (stored === 0) return undefined;
      if (stored === h) {
        const item = this.#items[i] as T;
        if (item.key === key) return item;
      }
    }
  }

  /** Stores the item under its key, replacing any item with the same key. */
  set(item: T): void {
    const key = item.key;
    const h = hashKey(key);
    let hashes = this.#hashes;
    let mask = hashes.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const stored = hashes[i] as number;
      if (stored === 0) break;
      if (stored === h && (this.#items[i] as T).key === key) {
        this.#items[i] = item;
        return;
      }
    }
    if ((this.#size + 1) * 2 > mask + 1) {
      this.#resize((mask + 1) * 2);
      hashes = this.#hashes;
      mask = hashes.length - 1;
    }
    let i = h & mask;
    while (hashes[i] !== 0) i = (i + 1) & mask;
    hashes[i] = h;
    this.#items[i] = item;
    this.#size++;
  }

  /** Removes the item stored under `key`; returns whether there was one. */
  delete(key: string): boolean {
    const h = hashKey(key);
    const hashes = this.#hashes;
    const items = this.#items;
    const capacity = hashes.length;
    const mask = capacity - 1;
    let hole = h & mask;
    for (;;) {
      const stored = hashes[hole] as number;
      if (stored === 0) return false;
      if (stored === h && (items[hole] as T).key === key) break;
      hole = (hole + 1) & mask;
    }
    // Backward shift: later members of the run move into the hole unless their home slot lies
    // cyclically after the hole (then they must stay where a probe from home finds them).
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const stored = hashes[j] as number;
      if (stored === 0) break;
      const home = stored & mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      hashes[hole] = stored;
      items[hole] = items[j];
      hole = j;
    }
    hashes[hole] = 0;
    items[hole] = undefined;
    this.#size--;
    // A drained queue gives its memory back (the bound leaves room so that a size hovering
    // around a threshold does not resize back and forth).
    if (capacity > SHRINK_ABOVE && this.#size * 8 < capacity) this.#resize(capacity / 2);
    return true;
  }

  /** Empties the table. */
  clear(): void {
    this.#hashes = new Int32Array(MIN_CAPACITY);
    this.#items = emptyItems(MIN_CAPACITY);
    this.#size = 0;
  }

  #resize(capacity: number): void {
    const oldHashes = this.#hashes;
    const oldItems = this.#items;
    const hashes = new Int32Array(capacity);
    const items = emptyItems<T>(capacity);
    const mask = capacity - 1;
    for (let s = 0; s < oldHashes.length; s++) {
      const h = oldHashes[s] as number;
      if (h === 0) continue;
      let i = h & mask;
      while (hashes[i] !== 0) i = (i + 1) & mask;
      hashes[i] = h;
      items[i] = oldItems[s];
    }
    this.#hashes = hashes;
    this.#items = items;
  }
}

/** `capacity` empty item slots, built packed so that reads never check for holes. */
function emptyItems<T>(capacity: number): (T | undefined)[] {
  const items: (T | undefined)[] = [];
  for (let i = 0; i < capacity; i++) items.push(undefined);
  return items;
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
