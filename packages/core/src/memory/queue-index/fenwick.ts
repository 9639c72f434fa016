/**
 * A Fenwick (binary indexed) tree of 0/1 flags over slots `0..capacity-1`: flip a flag and count
 * the set flags up to a slot, both in O(log n).
 */
export class FenwickFlags {
  #tree: Int32Array;
  #flags: Uint8Array;

  /** @param capacity - number of slots. */
  constructor(capacity: number) {
    this.#tree = new Int32Array(capacity + 1);
    this.#flags = new Uint8Array(capacity);
  }

  /** Number of slots. */
  get capacity(): number {
    return this.#flags.length;
  }

  /** Whether the slot's flag is set. */
  get(slot: number): boolean {
    return this.#flags[slot] === 1;
  }

  /** Sets or clears the slot's flag (no-op when it already has that value). */
  set(slot: number, on: boolean): void {
    const flags = this.#flags;
    const value = on ? 1 : 0;
    if (flags[slot] === value) return;
    flags[slot] = value;
    const delta = on ? 1 : -1;
    const tree = this.#tree;
    const n = tree.length;
    for (let i = slot + 1; i < n; i += i & -i) tree[i] = (tree[i] ?? 0) + delta;
  }

  /** Set flags in slots `0..slot` (inclusive). */
  prefix(slot: number): number {
    const tree = this.#tree;
    let sum = 0;
    for (let i = slot + 1; i > 0; i -= i & -i) sum += tree[i] ?? 0;
    return sum;
  }

  /**
   * Replaces the contents: new capacity, flags taken from `flags` (missing slots clear).
   * Builds the tree in O(capacity).
   */
  reset(capacity: number, flags?: ArrayLike<number>): void {
    const f = new Uint8Array(capacity);
    const tree = new Int32Array(capacity + 1);
    if (flags !== undefined) {
      const n = Math.min(capacity, flags.length);
      for (let i = 0; i < n; i++) {
        const v = flags[i] === 0 ? 0 : 1;
        f[i] = v;
        tree[i + 1] = v;
      }
      for (let i = 1; i <= capacity; i++) {
        const parent = i + (i & -i);
        if (parent <= capacity) tree[parent] = (tree[parent] ?? 0) + (tree[i] ?? 0);
      }
    }
    this.#flags = f;
    this.#tree = tree;
  }
}
