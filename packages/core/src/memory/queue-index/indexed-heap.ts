/**
 * A binary min-heap that knows where each item sits, so an item can be removed or re-keyed in
 * O(log n) instead of being left behind as garbage. The item stores its own position (through
 * `getPos`/`setPos`), which lets one item sit in several heaps at once, each with its own slot.
 * `-1` means "not in this heap".
 */
export class IndexedHeap<T> {
  readonly #items: T[] = [];
  readonly #less: (a: T, b: T) => boolean;
  readonly #getPos: (item: T) => number;
  readonly #setPos: (item: T, pos: number) => void;

  /**
   * @param less - strict order: true when `a` must come out before `b`.
   * @param getPos - reads the position the heap last stored on the item.
   * @param setPos - stores the item's position (`-1` when it leaves).
   */
  constructor(less: (a: T, b: T) => boolean, getPos: (item: T) => number, setPos: (item: T, pos: number) => void) {
    this.#less = less;
    this.#getPos = getPos;
    this.#setPos = setPos;
  }

  /** Items in the heap. */
  get size(): number {
    return this.#items.length;
  }

  /** The first item, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Whether the item is in this heap (by its stored position). */
  has(item: T): boolean {
    const pos = this.#getPos(item);
    return pos >= 0 && pos < this.#items.length && this.#items[pos] === item;
  }

  /** Adds an item that is not in the heap yet. */
  push(item: T): void {
    const items = this.#items;
    items.push(item);
    this.#up(items.length - 1, item);
  }

  /** Removes and returns the first item. */
  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    if (top === undefined) return undefined;
    const last = items.pop() as T;
    this.#setPos(top, -1);
    if (items.length > 0) this.#down(0, last);
    return top;
  }

  /** Removes the item if it is in the heap; returns whether it was. */
  remove(item: T): boolean {
    if (!this.has(item)) return false;
    const items = this.#items;
    const pos = this.#getPos(item);
    const last = items.pop() as T;
    this.#setPos(item, -1);
    if (pos < items.length) {
      // The last item fills the hole and moves whichever way its key requires.
      this.#place(pos, last);
    }
    return true;
  }

  /** Restores order after the key of an item in the heap changed. */
  update(item: T): void {
    if (!this.has(item)) return;
    this.#place(this.#getPos(item), item);
  }

  /** Empties the heap (positions of the items left are reset). */
  clear(): void {
    for (const item of this.#items) this.#setPos(item, -1);
    this.#items.length = 0;
  }

  #place(pos: number, item: T): void {
    if (pos > 0) {
      const parent = this.#items[(pos - 1) >> 1] as T;
      if (this.#less(item, parent)) {
        this.#up(pos, item);
        return;
      }
    }
    this.#down(pos, item);
  }

  #up(start: number, item: T): void {
    const items = this.#items;
    let pos = start;
    while (pos > 0) {
      const parentPos = (pos - 1) >> 1;
      const parent = items[parentPos] as T;
      if (!this.#less(item, parent)) break;
      items[pos] = parent;
      this.#setPos(parent, pos);
      pos = parentPos;
    }
    items[pos] = item;
    this.#setPos(item, pos);
  }

  #down(start: number, item: T): void {
    const items = this.#items;
    const n = items.length;
    let pos = start;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      let best = items[child] as T;
      const right = child + 1;
      if (right < n) {
        const r = items[right] as T;
        if (this.#less(r, best)) {
          child = right;
          best = r;
        }
      }
      if (!this.#less(best, item)) break;
      items[pos] = best;
      this.#setPos(best, pos);
      pos = child;
    }
    items[pos] = item;
    this.#setPos(item, pos);
  }
}
