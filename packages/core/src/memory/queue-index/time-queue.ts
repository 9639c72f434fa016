import { IndexedHeap } from './indexed-heap.js';

const COMPACT_MIN = 1024;

/** A min-heap by a time key, ties in seq order (so sweeps report in a stable order). */
export function timeHeap<T extends { readonly seq: number }>(
  time: (item: T) => number,
  getPos: (item: T) => number,
  setPos: (item: T, pos: number) => void,
): IndexedHeap<T> {
  return new IndexedHeap<T>(
    (a, b) => {
      const ta = time(a);
      const tb = time(b);
      return ta < tb || (ta === tb && a.seq < b.seq);
    },
    getPos,
    setPos,
  );
}

/**
 * A priority queue by time, tuned for times that mostly arrive in order (`now + constant`, as
 * retention times do). In-order items go to a FIFO deque: O(1) to add, O(1) to remove (a hole,
 * compacted later); only out-of-order items pay for the fallback heap. Ties come out by `seq`.
 *
 * Position encoding on the item: `-1` absent, `>= 0` heap slot, `<= -2` deque slot `-2 - pos`.
 */
export class TimeQueue<T extends { readonly seq: number }> {
  readonly #time: (item: T) => number;
  readonly #getPos: (item: T) => number;
  readonly #setPos: (item: T, pos: number) => void;
  readonly #heap: IndexedHeap<T>;
  #deque: (T | undefined)[] = [];
  #head = 0;
  #holes = 0;
  #tailTime = -Infinity;
  #tailSeq = -Infinity;

  /**
   * @param time - the item's time key (must not change while queued).
   * @param getPos - reads the position stored on the item.
   * @param setPos - stores the item's position.
   */
  constructor(time: (item: T) => number, getPos: (item: T) => number, setPos: (item: T, pos: number) => void) {
    this.#time = time;
    this.#getPos = getPos;
    this.#setPos = setPos;
    this.#heap = timeHeap(time, getPos, setPos);
  }

  /** Items queued. */
  get size(): number {
    return this.#deque.length - this.#head - this.#holes + this.#heap.size;
  }

  /** Whether the item is queued here. */
  has(item: T): boolean {
    const pos = this.#getPos(item);
    if (pos >= 0) return this.#heap.has(item);
    return pos <= -2 && this.#deque[-2 - pos] === item;
  }

  /** Adds an item that is not queued yet. */
  push(item: T): void {
    const t = this.#time(item);
    // In order only when after the tail in (time, seq) order: ties must still come out by seq.
    if (t > this.#tailTime || (t === this.#tailTime && item.seq > this.#tailSeq)) {
      this.#tailTime = t;
      this.#tailSeq = item.seq;
      this.#setPos(item, -2 - this.#deque.length);
      this.#deque.push(item);
    } else {
      this.#heap.push(item);
    }
  }

  /** The earliest item, without removing it. */
  peek(): T | undefined {
    const first = this.#dequeHead();
    const top = this.#heap.peek();
    if (first === undefined) return top;
    if (top === undefined) return first;
    const tf = this.#time(first);
    const tt = this.#time(top);
    return tt < tf || (tt === tf && top.seq < first.seq) ? top : first;
  }

  /** Removes and returns the earliest item. */
  pop(): T | undefined {
    const item = this.peek();
    if (item !== undefined) this.remove(item);
    return item;
  }

  /** Removes an item if queued; returns whether it was. */
  remove(item: T): boolean {
    const pos = this.#getPos(item);
    if (pos >= 0) return this.#heap.remove(item);
    if (pos > -2) return false;
    const index = -2 - pos;
    if (this.#deque[index] !== item) return false;
    this.#setPos(item, -1);
    if (index === this.#head) {
      this.#deque[index] = undefined;
      this.#head++;
      this.#dequeHead();
    } else {
      this.#deque[index] = undefined;
      this.#holes++;
    }
    if (this.#holes + this.#head >= COMPACT_MIN && (this.#holes + this.#head) * 2 > this.#deque.length) this.#compact();
    return true;
  }

  /** Empties the queue. */
  clear(): void {
    for (let i = this.#head; i < this.#deque.length; i++) {
      const item = this.#deque[i];
      if (item !== undefined) this.#setPos(item, -1);
    }
    this.#deque = [];
    this.#head = 0;
    this.#holes = 0;
    this.#tailTime = -Infinity;
    this.#tailSeq = -Infinity;
    this.#heap.clear();
  }

  /** First live deque item, skipping (and reclaiming) holes at the front. */
  #dequeHead(): T | undefined {
    const deque = this.#deque;
    while (this.#head < deque.length) {
      const item = deque[this.#head];
      if (item !== undefined) return item;
      this.#head++;
      this.#holes--;
    }
    if (deque.length > 0) {
      // Empty: start over so that the array does not keep growing.
      this.#deque = [];
      this.#head = 0;
      this.#holes = 0;
      this.#tailTime = -Infinity;
      this.#tailSeq = -Infinity;
    }
    return undefined;
  }

  #compact(): void {
    const items: T[] = [];
    for (let i = this.#head; i < this.#deque.length; i++) {
      const item = this.#deque[i];
      if (item === undefined) continue;
      this.#setPos(item, -2 - items.length);
      items.push(item);
    }
    this.#deque = items;
    this.#head = 0;
    this.#holes = 0;
  }
}
