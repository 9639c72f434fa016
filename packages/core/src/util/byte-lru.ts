/** Slots of a fresh {@link ByteLru}. */
const INITIAL_SLOTS = 16;
/** `prev`/`next` of an unlinked slot, and the end of the list. */
const NIL = -1;

/**
 * A least-recently-used map bounded by the total size of its values, for the memory adapters'
 * finished records and temporary results. It does what they need of lru-cache and nothing more
 * (no TTLs, no fetch, no status objects), so that a lifecycle's two sets and three gets cost a
 * map lookup and a few array writes each: entries live in parallel arrays (key, value, size,
 * links) indexed by a slot number held in one `Map`, so an entry allocates no object of its own.
 *
 * `set` evicts the least recently used entries until the new one fits; a value bigger than the
 * whole bound is not stored (and its key's old value goes). `get` counts as a use, `peek` does
 * not. `onRemove` hears of every value that leaves by eviction or `delete`, but not of a value
 * replaced by `set` under its key (the caller knows) nor of `clear`.
 */
export class ByteLru<V> {
  readonly #maxBytes: number;
  readonly #onRemove: ((value: V, key: string) => void) | undefined;
  readonly #slots = new Map<string, number>();
  #keys: (string | undefined)[] = [];
  #values: (V | undefined)[] = [];
  #sizes = new Float64Array(INITIAL_SLOTS);
  #prev = new Int32Array(INITIAL_SLOTS).fill(NIL);
  #next = new Int32Array(INITIAL_SLOTS).fill(NIL);
  /** Most and least recently used slots. */
  #head = NIL;
  #tail = NIL;
  /** Unused slots below `#used`, chained through `#next`. */
  #free = NIL;
  /** Slots handed out so far (the arrays are valid below it). */
  #used = 0;
  #bytes = 0;

  /**
   * @param maxBytes - bound on the sum of the sizes given to `set`.
   * @param onRemove - told of each value evicted or deleted.
   */
  constructor(maxBytes: number, onRemove?: (value: V, key: string) => void) {
    this.#maxBytes = maxBytes;
    this.#onRemove = onRemove;
  }

  /** Entries held. */
  get size(): number {
    return this.#slots.size;
  }

  /** Sum of the sizes of the entries held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The value of `key`, made the most recently used. */
  get(key: string): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    if (slot !== this.#head) {
      this.#unlink(slot);
      this.#linkFirst(slot);
    }
    return this.#values[slot];
  }

  /** The value of `key`, without counting as a use. */
  peek(key: string): V | undefined {
    const slot = this.#slots.get(key);
    return slot === undefined ? undefined : this.#values[slot];
  }

  has(key: string): boolean {
    return this.#slots.has(key);
  }

  /** Stores `value` under `key` as the most recently used, evicting others until it fits; false when it cannot fit at all. */
  set(key: string, value: V, size: number): boolean {
    let slot = this.#slots.get(key);
    if (!(size <= this.#maxBytes)) {
      if (slot !== undefined) this.delete(key);
      return false;
    }
    if (slot !== undefined) {
      this.#bytes -= this.#sizes[slot] ?? 0;
      this.#unlink(slot);
    }
    // Make room before linking, so that the new entry itself is never the one evicted.
    while (this.#bytes + size > this.#maxBytes && this.#tail !== NIL) this.#evictTail();
    if (slot === undefined) {
      slot = this.#allocate();
      this.#slots.set(key, slot);
      this.#keys[slot] = key;
    }
    this.#values[slot] = value;
    this.#sizes[slot] = size;
    this.#bytes += size;
    this.#linkFirst(slot);
    return true;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const slot = this.#slots.get(key);
    if (slot === undefined) return false;
    const value = this.#values[slot] as V;
    this.#release(slot, key);
    this.#onRemove?.(value, key);
    return true;
  }

  /** Removes everything, telling `onRemove` nothing. */
  clear(): void {
    this.#slots.clear();
    this.#keys = [];
    this.#values = [];
    this.#sizes = new Float64Array(INITIAL_SLOTS);
    this.#prev = new Int32Array(INITIAL_SLOTS).fill(NIL);
    this.#next = new Int32Array(INITIAL_SLOTS).fill(NIL);
    this.#head = this.#tail = this.#free = NIL;
    this.#used = 0;
    this.#bytes = 0;
  }

  /** Keys and values from the most to the least recently used (not counting as uses). */
  *entries(): IterableIterator<[string, V]> {
    for (let slot = this.#head; slot !== NIL; slot = this.#next[slot] ?? NIL) {
      yield [this.#keys[slot] as string, this.#values[slot] as V];
    }
  }

  /** Keys from the most to the least recently used. */
  *keys(): IterableIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  /** Values from the most to the least recently used. */
  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  #evictTail(): void {
    const slot = this.#tail;
    const key = this.#keys[slot] as string;
    const value = this.#values[slot] as V;
    this.#release(slot, key);
    this.#onRemove?.(value, key);
  }

  /** Unlinks and frees a slot, dropping its references. */
  #release(slot: number, key: string): void {
    this.#unlink(slot);
    this.#slots.delete(key);
    this.#bytes -= this.#sizes[slot] ?? 0;
    this.#sizes[slot] = 0;
    this.#keys[slot] = undefined;
    this.#values[slot] = undefined;
    this.#next[slot] = this.#free;
    this.#free = slot;
  }

  #allocate(): number {
    const free = this.#free;
    if (free !== NIL) {
      this.#free = this.#next[free] ?? NIL;
      return free;
    }
    const slot = this.#used++;
    if (slot === this.#sizes.length) this.#grow(slot * 2);
    // Growing the plain arrays one element at a time keeps them packed.
    this.#keys.push(undefined);
    this.#values.push(undefined);
    return slot;
  }

  #grow(capacity: number): void {
    const sizes = new Float64Array(capacity);
    sizes.set(this.#sizes);
    this.#sizes = sizes;
    const prev = new Int32Array(capacity).fill(NIL);
    prev.set(this.#prev);
    this.#prev = prev;
    const next = new Int32Array(capacity).fill(NIL);
    next.set(this.#next);
    this.#next = next;
  }

  #unlink(slot: number): void {
    const prev = this.#prev[slot] ?? NIL;
    const next = this.#next[slot] ?? NIL;
    if (prev === NIL) this.#head = next;
    else this.#next[prev] = next;
    if (next === NIL) this.#tail = prev;
    else this.#prev[next] = prev;
    this.#prev[slot] = NIL;
    this.#next[slot] = NIL;
  }

  #linkFirst(slot: number): void {
    const head = this.#head;
    this.#prev[slot] = NIL;
    this.#next[slot] = head;
    if (head === NIL) this.#tail = slot;
    else this.#prev[head] = slot;
    this.#head = slot;
  }
}
