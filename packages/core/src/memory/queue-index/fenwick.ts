/**
 * 0/1 flags over slots `0..capacity-1` with O(log n) flip and prefix count: a bitmap of 32-slot
 * words plus a Fenwick (binary indexed) tree of the words' counts. The tree is 32 times smaller
 * than one over single slots, so at a million slots it stays in cache and a prefix count costs
 * about one cache miss (the bitmap word) instead of one per tree level.
 */
export class FenwickFlags {
  #capacity: number;
  #bits: Uint32Array;
  /** 1-based Fenwick tree over word counts. */
  #tree: Int32Array;

  /** @param capacity - number of slots. */
  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#bits = new Uint32Array(words(capacity));
    this.#tree = new Int32Array(words(capacity) + 1);
  }

  /** Number of slots. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Whether the slot's flag is set. */
  get(slot: number): boolean {
    return (((this.#bits[slot >>> 5] ?? 0) >>> (slot & 31)) & 1) === 1;
  }

  /** Sets or clears the slot's flag; false (and nothing written) when it already had that value. */
  set(slot: number, on: boolean): boolean {
    const word = slot >>> 5;
    const bit = 1 << (slot & 31);
    const bits = this.#bits;
    const old = bits[word] ?? 0;
    const isOn = (old & bit) !== 0;
    if (isOn === on) return false;
    bits[word] = on ? old | bit : old & ~bit;
    const delta = on ? 1 : -1;
    const tree = this.#tree;
    const n = tree.length;
    for (let i = word + 1; i < n; i += i & -i) tree[i] = (tree[i] ?? 0) + delta;
    return true;
  }

  /** Set flags in slots `0..slot` (inclusive). */
  prefix(slot: number): number {
    const word = slot >>> 5;
    const tree = this.#tree;
    let sum = 0;
    for (let i = word; i > 0; i -= i & -i) sum += tree[i] ?? 0;
    // Bits 0..(slot & 31) of the slot's own word; `>>> 0` keeps the top bit unsigned.
    const shift = 31 - (slot & 31);
    return sum + popcount((((this.#bits[word] ?? 0) << shift) >>> 0) >>> shift);
  }

  /** Set flags in slots `0..slot-1` (the slot's own flag left out). */
  before(slot: number): number {
    const word = slot >>> 5;
    const tree = this.#tree;
    let sum = 0;
    for (let i = word; i > 0; i -= i & -i) sum += tree[i] ?? 0;
    // Bits 0..(slot & 31)-1 of the slot's own word (none when slot & 31 is 0).
    return sum + popcount((this.#bits[word] ?? 0) & ((1 << (slot & 31)) - 1));
  }

  /**
   * Replaces the contents: new capacity, flags taken from `flags` (missing slots clear).
   * Builds the tree in O(capacity).
   */
  reset(capacity: number, flags?: ArrayLike<number>): void {
    const n = words(capacity);
    const bits = new Uint32Array(n);
    const tree = new Int32Array(n + 1);
    if (flags !== undefined) {
      const m = Math.min(capacity, flags.length);
      for (let i = 0; i < m; i++) if (flags[i] !== 0) bits[i >>> 5] = (bits[i >>> 5] ?? 0) | (1 << (i & 31));
      for (let w = 0; w < n; w++) tree[w + 1] = popcount(bits[w] ?? 0);
      for (let i = 1; i <= n; i++) {
        const parent = i + (i & -i);
        if (parent <= n) tree[parent] = (tree[parent] ?? 0) + (tree[i] ?? 0);
      }
    }
    this.#capacity = capacity;
    this.#bits = bits;
    this.#tree = tree;
  }
}

function words(capacity: number): number {
  return (capacity + 31) >>> 5;
}

/** Set bits of a 32-bit word. */
function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
