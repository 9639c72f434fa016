import { FenwickFlags } from './fenwick.js';

/** What {@link PendingRank} needs from an item: its priority and fields it may write. */
export interface RankItem {
  readonly priority: number;
  /** Slot in the item's priority lane; owned by the index (`-1` when not indexed). */
  rankSlot: number;
  /** Whether the index has a position for the item (it is pending); owned by the index. */
  rankPending: boolean;
}

const INITIAL_CAPACITY = 16;
/** A lane that empties with more capacity than this gives the memory back. */
const SHRINK_ABOVE = 4096;
/** Empty lanes are forgotten once there are more than this many of them. */
const MAX_EMPTY_LANES = 16;

/**
 * One priority: its items in arrival order in append-only slots (arrival order is `seq` order),
 * with a Fenwick tree of which of them are pending and ready (counted ahead of the items behind
 * them). Dead slots are reclaimed by compaction when the slots run out, so each append costs
 * amortised O(1) plus the O(log n) tree update.
 */
class Lane<T extends RankItem> {
  readonly priority: number;
  /** Items per slot; `undefined` once an item left. */
  items: (T | undefined)[] = [];
  /** Slots used so far (live or dead). */
  length = 0;
  /** Items indexed (pending or not). */
  live = 0;
  /** Items indexed, pending and ready: the set flags. */
  counted = 0;
  readonly flags = new FenwickFlags(INITIAL_CAPACITY);

  constructor(priority: number) {
    this.priority = priority;
  }

  append(item: T, pending: boolean, ready: boolean): void {
    if (this.length === this.flags.capacity) this.#makeRoom();
    const slot = this.length++;
    this.items[slot] = item;
    item.rankSlot = slot;
    this.live++;
    item.rankPending = pending;
    if (pending && ready) {
      this.flags.set(slot, true);
      this.counted++;
    }
  }

  setPending(item: T, pending: boolean, ready: boolean): void {
    item.rankPending = pending;
    const on = pending && ready;
    if (this.flags.set(item.rankSlot, on)) this.counted += on ? 1 : -1;
  }

  remove(item: T): void {
    const slot = item.rankSlot;
    this.setPending(item, false, false);
    this.items[slot] = undefined;
    item.rankSlot = -1;
    this.live--;
    if (this.live === 0) {
      // Every flag is clear, so the tree is all zeros already: only the slots need resetting.
      this.length = 0;
      if (this.flags.capacity > SHRINK_ABOVE) {
        this.items = [];
        this.flags.reset(INITIAL_CAPACITY);
      } else {
        this.items.length = 0;
      }
    }
  }

  /** Pending, ready items in this lane before the item. */
  before(item: T): number {
    return this.flags.before(item.rankSlot);
  }

  /** Compacts live items to the front, doubling the capacity when more than half is live. */
  #makeRoom(): void {
    const capacity = this.flags.capacity;
    const newCapacity = this.live * 2 > capacity ? capacity * 2 : capacity;
    const items: (T | undefined)[] = [];
    const flags = new Uint8Array(newCapacity);
    let n = 0;
    for (let i = 0; i < this.length; i++) {
      const item = this.items[i];
      if (item === undefined) continue;
      flags[n] = this.flags.get(i) ? 1 : 0;
      item.rankSlot = n;
      items[n++] = item;
    }
    this.items = items;
    this.length = n;
    this.flags.reset(newCapacity, flags);
  }
}

/**
 * Exact queue position in O(log n + distinct priorities): the 1-based rank of a pending item
 * among all pending items ordered by priority (high first), then arrival order. Items that are
 * indexed but not pending (running) keep their slot, so a retried item goes back to its old place.
 *
 * A pending item that is not ready (waiting out a retry backoff) keeps its slot but is not counted
 * ahead of anyone: the items behind it will be served before it. Its own rank is the ready items
 * ahead of it plus one, the place it would take were it ready now.
 */
export class PendingRank<T extends RankItem> {
  readonly #lanes = new Map<number, Lane<T>>();
  /** Lanes by priority, highest first. */
  #ordered: Lane<T>[] = [];
  #emptyLanes = 0;

  /** Pending, ready items over all priorities. */
  get pending(): number {
    let n = 0;
    for (const lane of this.#ordered) n += lane.counted;
    return n;
  }

  /** Indexes an item at the end of its priority (it must arrive in `seq` order); `ready` as in {@link setPending}. */
  add(item: T, pending: boolean, ready = true): void {
    let lane = this.#lanes.get(item.priority);
    if (lane === undefined) {
      lane = new Lane<T>(item.priority);
      this.#lanes.set(item.priority, lane);
      this.#insertOrdered(lane);
    } else if (lane.live === 0) {
      this.#emptyLanes--;
    }
    lane.append(item, pending, ready);
  }

  /**
   * Marks an indexed item pending or not (running); a pending item is counted ahead of the items
   * behind it only while `ready` (not waiting out a backoff).
   */
  setPending(item: T, pending: boolean, ready = true): void {
    this.#laneOf(item).setPending(item, pending, ready);
  }

  /** Forgets an item. */
  remove(item: T): void {
    if (item.rankSlot < 0) return;
    const lane = this.#laneOf(item);
    lane.remove(item);
    if (lane.live === 0 && ++this.#emptyLanes > MAX_EMPTY_LANES) this.#dropEmptyLanes();
  }

  /** Whether the item is indexed here and pending (ready or waiting out a backoff). */
  isPending(item: T): boolean {
    return item.rankSlot >= 0 && item.rankPending;
  }

  /** Pending, ready items of the item's priority that arrived before it (the item must be indexed here). */
  before(item: T): number {
    // Not #laneOf: its check reads the lane's item slot, one more cache miss per status read at a
    // million pending; only the item and the lane's tree are read.
    const lane = this.#lanes.get(item.priority);
    return lane === undefined ? 0 : lane.before(item);
  }

  /** Pending, ready items of a higher priority than `priority`. */
  countedAbove(priority: number): number {
    let n = 0;
    for (const lane of this.#ordered) {
      if (lane.priority <= priority) break;
      n += lane.counted;
    }
    return n;
  }

  /** Pending, ready items of exactly `priority`. */
  countedAt(priority: number): number {
    for (const lane of this.#ordered) {
      if (lane.priority === priority) return lane.counted;
      if (lane.priority < priority) break;
    }
    return 0;
  }

  /** 1-based position of a pending item, or undefined when the item is not pending here. */
  rank(item: T): number | undefined {
    // Reads only the item and its lane's tree: at a million items every other memory access is
    // a likely cache miss, and this runs on every status read.
    if (item.rankSlot < 0 || !item.rankPending) return undefined;
    const lane = this.#lanes.get(item.priority);
    if (lane === undefined) return undefined;
    let ahead = 0;
    for (const other of this.#ordered) {
      if (other === lane) break;
      ahead += other.counted;
    }
    // The ready items before it, then the item itself (ready or not).
    return ahead + lane.before(item) + 1;
  }

  /** Empties the index. */
  clear(): void {
    this.#lanes.clear();
    this.#ordered = [];
    this.#emptyLanes = 0;
  }

  #laneOf(item: T): Lane<T> {
    const lane = this.#lanes.get(item.priority);
    if (lane === undefined || lane.items[item.rankSlot] !== item) {
      throw new Error(`internal: item is not in the rank index (priority ${item.priority})`);
    }
    return lane;
  }

  #insertOrdered(lane: Lane<T>): void {
    const ordered = this.#ordered;
    let i = ordered.length;
    while (i > 0 && (ordered[i - 1] as Lane<T>).priority < lane.priority) i--;
    ordered.splice(i, 0, lane);
  }

  #dropEmptyLanes(): void {
    this.#ordered = this.#ordered.filter((lane) => {
      if (lane.live > 0) return true;
      this.#lanes.delete(lane.priority);
      return false;
    });
    this.#emptyLanes = 0;
  }
}
