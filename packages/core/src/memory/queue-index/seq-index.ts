const COMPACT_MIN_HOLES = 1024;

/**
 * Items in ascending `seq` order for paging: append-only slots with the seq of each slot, found
 * again by binary search (so items carry no bookkeeping and may be immutable values). Removal
 * leaves a hole; holes are compacted away once they outnumber the live items, so removal costs
 * O(log n) amortised and a page costs O(log n + slots scanned).
 */
export class SeqIndex<T> {
  #seqs: number[] = [];
  #items: (T | undefined)[] = [];
  #holes = 0;

  /** Live items. */
  get size(): number {
    return this.#items.length - this.#holes;
  }

  /** Slots, live or holes; iterate `0..length-1` with {@link SeqIndex.at}. */
  get length(): number {
    return this.#items.length;
  }

  /** Appends an item; `seq` must be greater than every seq appended before. */
  append(item: T, seq: number): void {
    const last = this.#seqs[this.#seqs.length - 1];
    if (last !== undefined && seq <= last) throw new Error(`internal: seq ${seq} appended after ${last}`);
    this.#items.push(item);
    this.#seqs.push(seq);
  }

  /** Replaces the item stored for `seq` (e.g. by its next version); returns whether it was there. */
  replace(seq: number, item: T): boolean {
    const slot = this.#find(seq);
    if (slot < 0) return false;
    this.#items[slot] = item;
    return true;
  }

  /** Removes the item stored for `seq`; returns whether it was there. */
  remove(seq: number): boolean {
    const slot = this.#find(seq);
    if (slot < 0) return false;
    this.#items[slot] = undefined;
    this.#holes++;
    if (this.#holes >= COMPACT_MIN_HOLES && this.#holes * 2 > this.#items.length) this.#compact();
    return true;
  }

  /** The item in a slot, or undefined for a hole. */
  at(slot: number): T | undefined {
    return this.#items[slot];
  }

  /** The first slot whose seq is greater than `seq`. */
  slotAfter(seq: number): number {
    const seqs = this.#seqs;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((seqs[mid] as number) <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Empties the index. */
  clear(): void {
    this.#seqs = [];
    this.#items = [];
    this.#holes = 0;
  }

  /** The live slot holding `seq`, or -1. */
  #find(seq: number): number {
    const slot = this.slotAfter(seq) - 1;
    return slot >= 0 && this.#seqs[slot] === seq && this.#items[slot] !== undefined ? slot : -1;
  }

  #compact(): void {
    const seqs: number[] = [];
    const items: T[] = [];
    for (let i = 0; i < this.#items.length; i++) {
      const item = this.#items[i];
      if (item === undefined) continue;
      items.push(item);
      seqs.push(this.#seqs[i] as number);
    }
    this.#seqs = seqs;
    this.#items = items;
    this.#holes = 0;
  }
}
