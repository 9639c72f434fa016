/** What {@link SeqIndex} needs from an item: a slot field it may write. */
export interface SeqItem {
  /** Slot in the index; owned by the index (`-1` when not indexed). */
  listSlot: number;
}

const COMPACT_MIN_DEAD = 1024;

/**
 * Items in ascending `seq` order for paging: append-only slots with a binary-searchable seq per
 * slot. Removal leaves a hole; holes are compacted away once they outnumber the live items, so
 * removal is amortised O(1) and a page costs O(log n + slots scanned).
 */
export class SeqIndex<T extends SeqItem> {
  #seqs: number[] = [];
  #items: (T | undefined)[] = [];
  #dead = 0;

  /** Live items. */
  get size(): number {
    return this.#items.length - this.#dead;
  }

  /** Slots, live or dead; iterate `0..length-1` with {@link SeqIndex.at}. */
  get length(): number {
    return this.#items.length;
  }

  /** Appends an item; `seq` must be greater than every seq appended before. */
  append(item: T, seq: number): void {
    const last = this.#seqs[this.#seqs.length - 1];
    if (last !== undefined && seq <= last) throw new Error(`internal: seq ${seq} appended after ${last}`);
    item.listSlot = this.#items.length;
    this.#items.push(item);
    this.#seqs.push(seq);
  }

  /** Removes an item (no-op when not indexed). */
  remove(item: T): void {
    const slot = item.listSlot;
    if (slot < 0 || this.#items[slot] !== item) return;
    this.#items[slot] = undefined;
    item.listSlot = -1;
    this.#dead++;
    if (this.#dead >= COMPACT_MIN_DEAD && this.#dead * 2 > this.#items.length) this.#compact();
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
    this.#dead = 0;
  }

  #compact(): void {
    const seqs: number[] = [];
    const items: T[] = [];
    for (let i = 0; i < this.#items.length; i++) {
      const item = this.#items[i];
      if (item === undefined) continue;
      item.listSlot = items.length;
      items.push(item);
      seqs.push(this.#seqs[i] as number);
    }
    this.#seqs = seqs;
    this.#items = items;
    this.#dead = 0;
  }
}
