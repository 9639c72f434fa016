const COMPACT_MIN = 1024;

/** How {@link LazyTimeQueue} reads its items. */
export interface LazyTimeQueueOptions<T> {
  /** The item's time key. */
  readonly time: (item: T) => number;
  /** Tie-break among equal times (smaller first). */
  readonly seq: (item: T) => number;
  /** False once the item was removed elsewhere: it is skipped and eventually compacted away. */
  readonly isLive: (item: T) => boolean;
}

/**
 * A queue by time whose items are plain values that cannot store a position (e.g. immutable
 * records): removal is lazy, through `isLive`. Items whose times arrive in order (the usual
 * `now + constant`) go to a FIFO deque in O(1); others to a binary heap. Dead items are skipped at
 * the front and swept out by a compaction whenever the caller reports that most are dead
 * ({@link LazyTimeQueue.compactIfSparse}), which keeps memory within a constant factor of the
 * live items at amortised O(1) per item.
 */
export class LazyTimeQueue<T> {
  readonly #o: LazyTimeQueueOptions<T>;
  #deque: T[] = [];
  #head = 0;
  #tailTime = -Infinity;
  #heap: T[] = [];

  constructor(options: LazyTimeQueueOptions<T>) {
    this.#o = options;
  }

  /** Items held, dead ones included. */
  get size(): number {
    return this.#deque.length - this.#head + this.#heap.length;
  }

  /** Adds an item. */
  push(item: T): void {
    const t = this.#o.time(item);
    if (t >= this.#tailTime) {
      this.#tailTime = t;
      this.#deque.push(item);
    } else {
      this.#heapPush(item);
    }
  }

  /**
   * A lower bound of the earliest live item's time (Infinity when empty), found without checking
   * liveness: when it is in the future, nothing is due and `isLive` need not be asked.
   */
  nextTime(): number {
    const first = this.#deque[this.#head];
    const top = this.#heap[0];
    const tf = first === undefined ? Infinity : this.#o.time(first);
    const tt = top === undefined ? Infinity : this.#o.time(top);
    return tf < tt ? tf : tt;
  }

  /** The earliest live item, without removing it (dead items in front are discarded). */
  peek(): T | undefined {
    const first = this.#liveHead();
    const top = this.#liveTop();
    if (first === undefined) return top;
    if (top === undefined) return first;
    return this.#before(top, first) ? top : first;
  }

  /** Removes and returns the earliest live item. */
  pop(): T | undefined {
    const first = this.#liveHead();
    const top = this.#liveTop();
    if (top !== undefined && (first === undefined || this.#before(top, first))) {
      this.#heapPop();
      return top;
    }
    if (first !== undefined) this.#shift();
    return first;
  }

  /**
   * Takes the item out when it is at the front (of the deque or the heap); returns whether it
   * was. A caller that removes items in roughly time order (an LRU evicting old records) keeps
   * the queue free of dead items this way, without asking `isLive`.
   */
  removeIfFirst(item: T): boolean {
    if (this.#head < this.#deque.length && this.#deque[this.#head] === item) {
      this.#shift();
      return true;
    }
    if (this.#heap[0] === item) {
      this.#heapPop();
      return true;
    }
    return false;
  }

  /** Drops dead items when they are more than half of at least `COMPACT_MIN`, given a bound on the live count. */
  compactIfSparse(liveAtMost: number): void {
    const size = this.size;
    if (size < COMPACT_MIN || size <= 2 * liveAtMost) return;
    const isLive = this.#o.isLive;
    this.#deque = this.#deque.slice(this.#head).filter(isLive);
    this.#head = 0;
    this.#tailTime = this.#deque.length === 0 ? -Infinity : this.#o.time(this.#deque[this.#deque.length - 1] as T);
    const heap = this.#heap.filter(isLive);
    this.#heap = [];
    for (const item of heap) this.#heapPush(item);
  }

  /** Empties the queue. */
  clear(): void {
    this.#deque = [];
    this.#head = 0;
    this.#tailTime = -Infinity;
    this.#heap = [];
  }

  #before(a: T, b: T): boolean {
    const ta = this.#o.time(a);
    const tb = this.#o.time(b);
    return ta < tb || (ta === tb && this.#o.seq(a) < this.#o.seq(b));
  }

  #liveHead(): T | undefined {
    while (this.#head < this.#deque.length) {
      const item = this.#deque[this.#head] as T;
      if (this.#o.isLive(item)) return item;
      this.#shift();
    }
    return undefined;
  }

  #shift(): void {
    this.#head++;
    if (this.#head === this.#deque.length) {
      this.#deque = [];
      this.#head = 0;
      this.#tailTime = -Infinity;
    } else if (this.#head >= COMPACT_MIN && this.#head * 2 > this.#deque.length) {
      this.#deque = this.#deque.slice(this.#head);
      this.#head = 0;
    }
  }

  #liveTop(): T | undefined {
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined || this.#o.isLive(top)) return top;
      this.#heapPop();
    }
  }

  #heapPush(item: T): void {
    const heap = this.#heap;
    let pos = heap.length;
    heap.push(item);
    while (pos > 0) {
      const parentPos = (pos - 1) >> 1;
      const parent = heap[parentPos] as T;
      if (!this.#before(item, parent)) break;
      heap[pos] = parent;
      pos = parentPos;
    }
    heap[pos] = item;
  }

  #heapPop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    const n = heap.length;
    if (last === undefined || n === 0) return;
    let pos = 0;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && this.#before(heap[right] as T, heap[child] as T)) child = right;
      const c = heap[child] as T;
      if (!this.#before(c, last)) break;
      heap[pos] = c;
      pos = child;
    }
    heap[pos] = last;
  }
}
