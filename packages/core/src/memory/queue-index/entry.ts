import type { QueueState } from '../../model.js';
import type { NormalizedRequest } from '../../request.js';
import type { QueueRecord } from '../../spi/queue.js';
import type { LiveView } from '../../spi/sync.js';
import { IndexedHeap } from './indexed-heap.js';
import { PendingRank } from './pending-rank.js';
import type { RankItem } from './pending-rank.js';
import { TimeQueue, timeHeap } from './time-queue.js';

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
export class Entry implements RankItem, LiveView {
  // Declaration order is the field order in memory: what a status read touches (the key compared
  // by the key table, the rank fields, the status mirrors) comes first, so it sits in a line or two.
  readonly key: string;
  #record: QueueRecord;
  rankSlot = -1;
  rankPending = false;
  readonly priority: number;
  /** Where the entry waits while pending: its group's ready queue or the global delayed heap. */
  sched: IndexedHeap<Entry> | TimeQueue<Entry> | undefined = undefined;
  // Mirrors of the record (set with it) for the status of a plain pending record: a status read of
  // a long queue then touches the entry only, not the record, its request or its boxed times.
  plainPending = false;
  request: NormalizedRequest;
  uri: string;
  estimatedMs: number | undefined;
  attempts = 0;
  submittedSecond = 0;
  submittedMilli = 0;
  readonly seq: number;
  readonly group: GroupState;
  /** Claimable from (pending). */
  readyAt: number;
  /** Becomes expired at, while pending; Infinity when never, and from the first claim on. */
  expireAt: number;
  /** Lease runs out at (running). */
  leaseAt = 0;
  schedPos = -1;
  expiryPos = -1;
  leasePos = -1;

  constructor(record: QueueRecord, group: GroupState) {
    this.key = record.key;
    this.#record = record;
    this.priority = record.priority;
    this.request = record.request;
    this.uri = record.request.uri;
    this.estimatedMs = record.request.estimatedMs;
    this.seq = record.seq;
    this.group = group;
    this.readyAt = record.readyAt;
    this.expireAt = record.pendingExpiresAt ?? Infinity;
    this.#mirror(record);
  }

  /** The current record (immutable; replaced on every transition). */
  get record(): QueueRecord {
    return this.#record;
  }

  set record(record: QueueRecord) {
    this.#record = record;
    this.#mirror(record);
  }

  #mirror(record: QueueRecord): void {
    const submittedAt = record.submittedAt;
    // Whole seconds of an epoch-ms time fit a small integer (until 2038), so no boxed double.
    const second = Math.floor(submittedAt / 1000);
    this.plainPending =
      record.state === 'pending' &&
      Number.isInteger(submittedAt) &&
      second <= 0x7fffffff &&
      second >= 0 &&
      record.startedAt === undefined &&
      record.finishedAt === undefined &&
      record.progress === undefined &&
      record.message === undefined &&
      record.cancelRequested !== true &&
      record.error === undefined;
    this.request = record.request;
    this.uri = record.request.uri;
    this.estimatedMs = record.request.estimatedMs;
    this.attempts = record.attempts;
    this.submittedSecond = second;
    this.submittedMilli = submittedAt - second * 1000;
  }
}

/** Claim order within a group as a time key: priority high first (then FIFO by seq, as TimeQueue breaks ties). */
function negativePriority(e: Entry): number {
  return -e.priority;
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
  /**
   * Pending records that are ready, in claim order: priority high first, then FIFO by seq. Keyed
   * by -priority, so records arriving in order (same priority, growing seq: nearly every submit)
   * queue in O(1) and a claim takes the head without sifting a heap through a dozen entries.
   */
  readonly ready = new TimeQueue<Entry>(negativePriority, getSched, setSched);
  readonly counts: StateCounts = zeroCounts();
  /** Positions of the group's pending records, by priority then arrival (see `fairPosition`). */
  readonly rank = new PendingRank<Entry>();
  lastClaimAt = -Infinity;
  /** Global claim counter at the last claim: orders groups whose ready times tie within a ms. */
  lastClaimSeq = 0;
  /** Largest `minIntervalMs` seen for this group: the group is kept at least that long after a claim. */
  maxIntervalMs = 0;
  /** Slot in the queue's turn order of ready groups; owned by `ReadyGroups` (`-1` when not ready). */
  turnPos = -1;

  constructor(name: string) {
    this.name = name;
  }

  /** Records of any state. */
  total(): number {
    const c = this.counts;
    return c.pending + c.running + c.completed + c.failed + c.cancelled + c.expired;
  }
}
