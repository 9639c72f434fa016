import type { QueueState } from '../../model.js';
import type { QueueRecord } from '../../spi/queue.js';
import { IndexedHeap } from './indexed-heap.js';
import type { RankItem } from './pending-rank.js';
import { timeHeap } from './time-queue.js';

/** Record counts by state. */
export type StateCounts = Record<QueueState, number>;

/** A fresh all-zero {@link StateCounts}. */
export function zeroCounts(): StateCounts {
  return { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0, expired: 0 };
}

/**
 * The memory queue's mutable bookkeeping around one live record: the current (immutable) record
 * plus its positions in every index and the time keys those indexes sort by. One entry lives from
 * enqueue until the record finishes; finished records are kept bare, without an entry.
 */
export class Entry implements RankItem {
  // Declaration order is the field order in memory: what a status read touches (the key compared
  // by the key table, the record, the rank fields) comes first, so it usually sits in one cache line.
  readonly key: string;
  record: QueueRecord;
  rankSlot = -1;
  rankPending = false;
  readonly priority: number;
  readonly seq: number;
  readonly group: GroupState;
  /** Claimable from (pending). */
  readyAt: number;
  /** Becomes expired at, while pending; Infinity when never, and from the first claim on. */
  expireAt: number;
  /** Lease runs out at (running). */
  leaseAt = 0;
  /** The heap (group ready or global delayed) the entry waits in while pending. */
  sched: IndexedHeap<Entry> | undefined = undefined;
  schedPos = -1;
  expiryPos = -1;
  leasePos = -1;

  constructor(record: QueueRecord, group: GroupState) {
    this.key = record.key;
    this.record = record;
    this.priority = record.priority;
    this.seq = record.seq;
    this.group = group;
    this.readyAt = record.readyAt;
    this.expireAt = record.pendingExpiresAt ?? Infinity;
  }
}

/** Claim order within a group: priority high first, then FIFO by seq. */
function servedBefore(a: Entry, b: Entry): boolean {
  return a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);
}

function getSched(e: Entry): number {
  return e.schedPos;
}

function setSched(e: Entry, pos: number): void {
  e.schedPos = pos;
}

/** The delayed heap shares the entry's `sched` position with the group ready heaps. */
export function delayedHeap(): IndexedHeap<Entry> {
  return timeHeap<Entry>((e) => e.readyAt, getSched, setSched);
}

/** One scheduling group: its claimable records, its counts and its claim history. */
export class GroupState {
  readonly name: string;
  /** Pending records that are ready, in claim order. */
  readonly ready = new IndexedHeap<Entry>(servedBefore, getSched, setSched);
  readonly counts: StateCounts = zeroCounts();
  lastClaimAt = -Infinity;
  /** Global claim counter at the last claim: orders groups whose ready times tie within a ms. */
  lastClaimSeq = 0;
  /** Largest `minIntervalMs` seen for this group: the group is kept at least that long after a claim. */
  maxIntervalMs = 0;

  constructor(name: string) {
    this.name = name;
  }

  /** Records of any state. */
  total(): number {
    const c = this.counts;
    return c.pending + c.running + c.completed + c.failed + c.cancelled + c.expired;
  }
}
