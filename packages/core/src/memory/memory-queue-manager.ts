import { randomUUID } from 'node:crypto';

import { inject, injectable } from 'inversify';

import type { Clock } from '../clock.js';
import { SystemClock } from '../clock.js';
import {
  ClosedError,
  ConfigError,
  ConflictError,
  InvalidRequestError,
  LeaseLostError,
  QueueFullError,
  QuotaExceededError,
} from '../errors.js';
import { checkClaimMax } from '../spi/claim-many.js';
import { QUEUE_STATES } from '../model.js';
import type { ErrorInfo, QueueState } from '../model.js';
import type {
  ActivityBucket,
  CancelOptions,
  CancelResult,
  ClaimOptions,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  QueueCapabilities,
  QueueCounts,
  QueueListPage,
  QueueListQuery,
  QueueManager,
  QueueRecord,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
  UriStats,
  WorkerCapacity,
} from '../spi/queue.js';
import { SYNC_OPS } from '../spi/sync.js';
import type { SyncQueueOps } from '../spi/sync.js';
import { TOKENS } from '../tokens.js';
import { ActivityTracker } from '../util/activity.js';
import { readAdapterOptions } from '../util/arguments.js';
import { ByteLru } from '../util/byte-lru.js';
import { DurationStats } from '../util/duration-stats.js';
import { delayedHeap, Entry, GroupState, zeroCounts } from './queue-index/entry.js';
import type { StateCounts } from './queue-index/entry.js';
import { KeyTable } from './queue-index/key-table.js';
import { outranks, ReadyGroups } from './queue-index/ready-groups.js';
import { fairPosition } from './queue-index/fair-position.js';
import { estimateRecordBytes } from './queue-index/record-size.js';
import {
  cancelRequestedRecord,
  finishedRecord,
  heartbeatRecord,
  newPendingRecord,
  pendingAgainRecord,
  runningRecord,
  stickyRecord,
} from './queue-index/records.js';
import { LazyTimeQueue } from './queue-index/lazy-time-queue.js';
import { SeqIndex } from './queue-index/seq-index.js';
import { TimeQueue } from './queue-index/time-queue.js';

/** Options of {@link MemoryQueueManager} (`queue.options` when the adapter is `memory`). */
export interface MemoryQueueManagerOptions {
  /** Bytes of finished records kept (LRU, approximate size); default 64 MiB. 0 keeps none. */
  maxFinishedBytes?: number;
}

const DEFAULT_MAX_FINISHED_BYTES = 64 * 1024 * 1024;
/** Transitions buffered for the next sweep, per kind; beyond this they are applied but not reported. */
const MAX_BUFFERED = 100_000;
const LEASE_EXPIRED: ErrorInfo = Object.freeze({
  code: 'LEASE_EXPIRED',
  message: 'lease expired on the last attempt',
  retryable: false,
});
const STATE_SET: ReadonlySet<string> = new Set(QUEUE_STATES);

interface WorkerReport {
  slots: number;
  expiresAt: number;
}

function validateOptions(given: unknown): { maxFinishedBytes: number } {
  const options = readAdapterOptions(given, ['maxFinishedBytes'], 'invalid memory queue options');
  if (options === undefined || options === null) return { maxFinishedBytes: DEFAULT_MAX_FINISHED_BYTES };
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError('invalid memory queue options', [{ path: '', message: 'must be an object' }]);
  }
  const issues: { path: string; message: string }[] = [];
  for (const name of Object.keys(options)) {
    // Undefined keeps the default, whatever the name.
    if (name !== 'maxFinishedBytes' && (options as Record<string, unknown>)[name] !== undefined)
      issues.push({ path: `/${name}`, message: 'unknown option (expected one of maxFinishedBytes)' });
  }
  const max = (options as MemoryQueueManagerOptions).maxFinishedBytes ?? DEFAULT_MAX_FINISHED_BYTES;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) {
    issues.push({
      path: '/maxFinishedBytes',
      message: `must be an integer number of bytes >= 0, got ${showOption(max)}`,
    });
  }
  if (issues.length > 0) throw new ConfigError('invalid memory queue options', issues);
  return { maxFinishedBytes: max };
}

/** `value` for an error message; never throws (an object whose toString throws, a revoked proxy). */
function showOption(value: unknown): string {
  try {
    return String(value);
  } catch {
    return typeof value;
  }
}

function encodeCursor(seq: number): string {
  return Buffer.from(String(seq), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const seq = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(seq) || encodeCursor(seq) !== cursor) {
    throw new InvalidRequestError('cursor', 'is not a cursor returned by a previous list call');
  }
  return seq;
}

/**
 * The in-memory queue: fast, exact, single process. Pending and running records live in a map
 * with heaps for claiming (per group) and time-ordered queues for every timed transition
 * (readiness, pending expiry, lease expiry, retention), so a due transition costs O(log n) at
 * most and nothing scans the queue. Exact positions come from per-priority Fenwick trees.
 * Finished records live in a byte-sized LRU and may be evicted (then they are simply absent).
 *
 * Due transitions are applied lazily at the start of every call, so reads are exact without a
 * sweep; {@link MemoryQueueManager.sweep} reports them (and applies any still due), giving the
 * records they finished its `retainUntil` then.
 */
@injectable()
export class MemoryQueueManager implements QueueManager {
  /** Exact positions, one process, 1 ms resolution, running leases counted. */
  readonly capabilities: QueueCapabilities = Object.freeze({
    exactPosition: true,
    sharedAcrossProcesses: false,
    clockGranularityMs: 1,
    reportsBusy: true,
  });

  readonly #clock: Clock;
  readonly #maxFinishedBytes: number;
  #closed = false;
  #paused = false;
  #seq = 0;
  #claimSeq = 0;
  /** First 24 characters of a random UUID ('xxxxxxxx-xxxx-4xxx-yxxx-'); tokens end with a counter. */
  readonly #tokenPrefix = randomUUID().slice(0, 24);
  #tokenSeq = 0;

  /** Pending and running records, by key. */
  readonly #live = new KeyTable<Entry>();
  /**
   * Finished records, bare (their entry is let go, so the hot lifecycle leaves one small object
   * behind). Removal for any reason un-indexes them through `dispose`.
   */
  readonly #finished: ByteLru<QueueRecord>;
  readonly #groups = new Map<string, GroupState>();
  /** Groups with at least one ready pending record. */
  readonly #readyGroups = new ReadyGroups();
  #groupGcAt = 64;
  /** The latest claim time of any group: a clock now before it has stepped back past a claim. */
  #latestClaimAt = -Infinity;
  readonly #ownerPending = new Map<string, number>();
  #ownerGcAt = 64;
  readonly #byState: StateCounts = zeroCounts();

  /** Every record by seq: entries while live, bare records once finished. */
  readonly #bySeq = new SeqIndex<Entry | QueueRecord>();
  readonly #delayed = delayedHeap();
  readonly #pendingExpiry = new TimeQueue<Entry>(
    (e) => e.expireAt,
    (e) => e.expiryPos,
    (e, p) => (e.expiryPos = p),
  );
  readonly #leases = new TimeQueue<Entry>(
    (e) => e.leaseAt,
    (e) => e.leasePos,
    (e, p) => (e.leasePos = p),
  );
  /** Finished records with a `retainUntil`; a record evicted from the LRU is dead here. */
  readonly #retention = new LazyTimeQueue<QueueRecord>({
    time: (r) => r.retainUntil ?? Infinity,
    seq: (r) => r.seq,
    isLive: (r) => this.#finished.peek(r.key) === r,
  });

  readonly #activity = new ActivityTracker();
  readonly #durations = new DurationStats();
  readonly #workers = new Map<string, WorkerReport>();
  /** Live reports summed, valid until `until` (see {@link #reportsAt}). */
  #capacityCache: { readonly workers: number; readonly slots: number; readonly until: number } | undefined;
  /** The last `capacity()` answer, given again while nothing in it changed. */
  #capacityValue: WorkerCapacity | undefined;

  /** Time of the last call (its `#begin`). */
  #lastNow = 0;
  /** The entry the last `#get` found (or undefined): a status read asks for its position next. */
  #lookedUp: Entry | undefined;

  /** Synchronous twins of the lifecycle calls, for the request manager (internal, see SyncQueueOps). */
  readonly [SYNC_OPS]: SyncQueueOps;

  #requeued: QueueRecord[] = [];
  #failed: QueueRecord[] = [];
  #expired: QueueRecord[] = [];
  #cancelled: QueueRecord[] = [];
  #dropped = 0;

  /**
   * @param options - see {@link MemoryQueueManagerOptions}; invalid values throw `ConfigError`.
   * @param clock - time source of every timestamp and expiry.
   */
  constructor(
    @inject(TOKENS.QueueOptions) options: MemoryQueueManagerOptions = {},
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    this.#maxFinishedBytes = validateOptions(options).maxFinishedBytes;
    this.#clock = clock;
    // Records that do not fit are never inserted (see #finish).
    this.#finished = new ByteLru<QueueRecord>(this.#maxFinishedBytes, (record) => {
      this.#forgetFinished(record);
    });
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the getter below reads a private field
    const self = this;
    this[SYNC_OPS] = {
      owner: this,
      enqueue: (entry, options) => this.#enqueue(entry, options),
      lookup: (key) => this.#get(key),
      live: (key) => {
        this.#begin();
        const e = this.#live.get(key);
        this.#lookedUp = e;
        return e;
      },
      finished: (key) => this.#finished.get(key),
      waitMs: (key) => {
        const e = this.#entryOf(key);
        // Only a delayed entry waits: its heap tells, without reading the (boxed) time.
        return e?.sched === this.#delayed ? Math.max(0, e.readyAt - this.#lastNow) : 0;
      },
      get now() {
        return self.#lastNow;
      },
      rank: (key) => this.#rankOf(key),
      slots: () => this.#reportsAt(this.#lastNow).slots,
      busy: () => this.#byState.running,
      avgMs: (uri) => this.#durations.get(uri)?.avgMs,
      paused: () => this.#paused,
      claim: (options) => this.#claim(options),
      complete: (key, token, options) => this.#complete(key, token, options),
    };
  }

  // The calls of every lifecycle (enqueue, get, position, claim, complete, uriStats, capacity) are
  // synchronous inside: each is a plain method returning a settled promise around a private one,
  // because an async method costs a frame and a promise more on every call.
  enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    try {
      return Promise.resolve(this.#enqueue(entry, options));
    } catch (error) {
      return rejected(error);
    }
  }

  #enqueue(entry: NewQueueEntry, options: EnqueueOptions): EnqueueResult {
    const now = this.#begin();
    const existing = this.#live.get(entry.key);
    this.#lookedUp = existing;
    if (existing !== undefined) {
      if (entry.request.sticky === true && existing.record.request.sticky !== true) {
        existing.record = stickyRecord(existing.record);
      }
      return { outcome: 'existing', record: existing.record };
    }
    if (options.keepFinishedSince !== undefined) {
      const finished = this.#finished.peek(entry.key);
      if (finished !== undefined && (finished.finishedAt ?? -Infinity) >= options.keepFinishedSince) {
        return { outcome: 'existing', record: finished };
      }
    }

    if (!Number.isSafeInteger(entry.maxAttempts) || entry.maxAttempts < 1) {
      throw new InvalidRequestError('maxAttempts', `must be an integer >= 1, got ${String(entry.maxAttempts)}`);
    }
    const request = entry.request;
    const limits = options.limits;
    let group = this.#groups.get(request.group);
    if (limits.maxQueueLength !== undefined && this.#byState.pending + this.#byState.running >= limits.maxQueueLength) {
      throw new QueueFullError(limits.maxQueueLength);
    }
    if (
      limits.groupMaxQueueLength !== undefined &&
      (group === undefined ? 0 : group.counts.pending + group.counts.running) >= limits.groupMaxQueueLength
    ) {
      throw new QueueFullError(limits.groupMaxQueueLength, request.group);
    }
    const owner = request.owner;
    if (
      owner !== undefined &&
      limits.maxPendingPerOwner !== undefined &&
      (this.#ownerPending.get(owner) ?? 0) >= limits.maxPendingPerOwner
    ) {
      throw new QuotaExceededError(owner, limits.maxPendingPerOwner);
    }

    this.#finished.delete(entry.key);
    if (group === undefined) {
      group = new GroupState(request.group);
      this.#groups.set(group.name, group);
    }
    const record = newPendingRecord(entry, ++this.#seq, now);
    const e = new Entry(record, group);
    this.#live.set(e);
    this.#lookedUp = e;
    this.#bySeq.append(e, e.seq);
    e.group.rank.add(e, true);
    this.#byState.pending++;
    group.counts.pending++;
    if (owner !== undefined) this.#ownerPending.set(owner, (this.#ownerPending.get(owner) ?? 0) + 1);
    this.#schedule(e, now);
    if (e.expireAt !== Infinity) this.#pendingExpiry.push(e);
    this.#activity.record('submitted', group.name, now);
    return { outcome: 'created', record };
  }

  get(key: string): Promise<QueueRecord | undefined> {
    try {
      return Promise.resolve(this.#get(key));
    } catch (error) {
      return rejected(error);
    }
  }

  #get(key: string): QueueRecord | undefined {
    this.#begin();
    const e = this.#live.get(key);
    this.#lookedUp = e;
    return e !== undefined ? e.record : this.#finished.get(key);
  }

  /** Position of a key without applying transitions. */
  #rankOf(key: string): number | undefined {
    const e = this.#entryOf(key);
    return e === undefined ? undefined : fairPosition(e, this.#readyGroups.all);
  }

  /** The live entry of a key without applying transitions; reuses the entry of the last lookup. */
  #entryOf(key: string): Entry | undefined {
    const last = this.#lookedUp;
    return last !== undefined && last.key === key ? last : this.#live.get(key);
  }

  position(key: string): Promise<number | undefined> {
    try {
      return Promise.resolve(this.#position(key));
    } catch (error) {
      return rejected(error);
    }
  }

  #position(key: string): number | undefined {
    this.#begin();
    const e = this.#live.get(key);
    // The rank index knows whether the entry is pending: no need to touch the record.
    return e === undefined ? undefined : fairPosition(e, this.#readyGroups.all);
  }

  claim(options: ClaimOptions): Promise<Lease | undefined> {
    try {
      return Promise.resolve(this.#claim(options));
    } catch (error) {
      return rejected(error);
    }
  }

  claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    try {
      checkClaimMax(max);
      // Only bad options make a claim throw, and the first claim meets them: no lease is taken yet.
      const leases: Lease[] = [];
      while (leases.length < max) {
        const lease = this.#claim(options);
        if (lease === undefined) break;
        leases.push(lease);
      }
      return Promise.resolve(leases);
    } catch (error) {
      return rejected(error);
    }
  }

  #claim(options: ClaimOptions): Lease | undefined {
    const now = this.#begin();
    if (!(options.leaseMs > 0) || !Number.isFinite(options.leaseMs)) {
      throw new InvalidRequestError('leaseMs', `must be a positive number of ms, got ${String(options.leaseMs)}`);
    }
    if (this.#paused) return undefined;
    const group = this.#pickGroup(options, now);
    if (group === undefined) return undefined;
    const e = group.ready.pop() as Entry;
    if (group.ready.size === 0) this.#readyGroups.delete(group);
    e.sched = undefined;

    const prev = e.record;
    const token = this.#newToken();
    e.leaseAt = now + options.leaseMs;
    const record = runningRecord(prev, now, token, e.leaseAt, options.workerId);
    e.record = record;
    if (e.expireAt !== Infinity) {
      // Only a request never started expires: the deadline goes with the first claim.
      this.#pendingExpiry.remove(e);
      e.expireAt = Infinity;
    }
    e.group.rank.setPending(e, false);
    this.#byState.pending--;
    this.#byState.running++;
    group.counts.pending--;
    group.counts.running++;
    this.#ownerLeftPending(record.owner);
    this.#leases.push(e);
    group.lastClaimAt = now;
    // Not below the latest: #pickGroup brought every claim time after `now` back to it.
    this.#latestClaimAt = now;
    group.lastClaimSeq = ++this.#claimSeq;
    this.#readyGroups.reorder(group);
    this.#activity.record('claimed', group.name, now);
    return { token, record };
  }

  async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    const now = this.#begin();
    if (!(options.leaseMs > 0) || !Number.isFinite(options.leaseMs)) {
      throw new InvalidRequestError('leaseMs', `must be a positive number of ms, got ${String(options.leaseMs)}`);
    }
    const e = this.#leased(key, token, now);
    this.#leases.remove(e);
    e.leaseAt = now + options.leaseMs;
    const record = heartbeatRecord(e.record, e.leaseAt, options.progress, options.message);
    e.record = record;
    this.#leases.push(e);
    return { cancelRequested: record.cancelRequested === true, leaseExpiresAt: e.leaseAt };
  }

  complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    try {
      return Promise.resolve(this.#complete(key, token, options));
    } catch (error) {
      return rejected(error);
    }
  }

  #complete(key: string, token: string, options: CompleteOptions): QueueRecord {
    const now = this.#begin();
    const e = this.#leased(key, token, now);
    const record = finishedRecord(e.record, 'completed', now, options.retainUntil, undefined);
    this.#finish(e, record, now);
    this.#durations.record(record.request.uri, options.durationMs);
    this.#activity.record('completed', e.group.name, now);
    return record;
  }

  async fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    const now = this.#begin();
    const e = this.#leased(key, token, now);
    const prev = e.record;
    if (options.retryAt !== undefined && Number.isNaN(options.retryAt)) {
      throw new InvalidRequestError('retryAt', 'must be a time in epoch ms');
    }
    // A retry or a failure would drop the cancel request: the cancel wins.
    if (prev.cancelRequested === true) return this.#cancelRunning(e, now, options.retainUntil, options.error);
    if (options.retryAt !== undefined) {
      const record = pendingAgainRecord(prev, options.retryAt, prev.attempts, options.error);
      this.#requeue(e, record, now);
      return record;
    }
    const record = finishedRecord(prev, 'failed', now, options.retainUntil, options.error);
    this.#finish(e, record, now);
    this.#activity.record('failed', e.group.name, now);
    return record;
  }

  async release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    const now = this.#begin();
    const e = this.#leased(key, token, now);
    const prev = e.record;
    if (prev.cancelRequested === true) return this.#cancelRunning(e, now, options.retainUntil, undefined);
    const attempts = options.countAttempt ? prev.attempts : Math.max(0, prev.attempts - 1);
    const record = pendingAgainRecord(prev, now, attempts, undefined);
    this.#requeue(e, record, now);
    return record;
  }

  async acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    const now = this.#begin();
    const e = this.#leased(key, token, now);
    if (e.record.cancelRequested !== true) {
      throw new ConflictError(`cannot acknowledge a cancel of '${key}': no cancel was requested`);
    }
    const record = finishedRecord(e.record, 'cancelled', now, options.retainUntil, undefined);
    this.#finish(e, record, now);
    return record;
  }

  async cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    const now = this.#begin();
    const live = this.#live.get(key);
    if (live === undefined) {
      const finished = this.#finished.get(key);
      return finished === undefined ? { outcome: 'missing' } : { outcome: 'unchanged', record: finished };
    }
    const prev = live.record;
    if (prev.state === 'pending') {
      const record = finishedRecord(prev, 'cancelled', now, options.retainUntil, undefined);
      this.#finish(live, record, now);
      return { outcome: 'cancelled', record };
    }
    if (prev.cancelRequested === true) return { outcome: 'unchanged', record: prev };
    const record = cancelRequestedRecord(prev);
    live.record = record;
    return { outcome: 'requested', record };
  }

  async list(query: QueueListQuery): Promise<QueueListPage> {
    this.#begin();
    const limit = query.limit;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new InvalidRequestError('limit', `must be an integer >= 1, got ${String(limit)}`);
    }
    let states: ReadonlySet<string> | undefined;
    if (query.states !== undefined && query.states.length > 0) {
      for (const s of query.states) {
        if (!STATE_SET.has(s)) throw new InvalidRequestError('states', `unknown state '${s}'`);
      }
      states = new Set(query.states);
    }
    const { group, owner } = query;
    const index = this.#bySeq;
    let slot = query.cursor === undefined ? 0 : index.slotAfter(decodeCursor(query.cursor));
    const items: QueueRecord[] = [];
    let more = false;
    for (const end = index.length; slot < end; slot++) {
      const item = index.at(slot);
      if (item === undefined) continue;
      const r = item instanceof Entry ? item.record : item;
      if (states !== undefined && !states.has(r.state)) continue;
      if (group !== undefined && r.group !== group) continue;
      if (owner !== undefined && r.owner !== owner) continue;
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(r);
    }
    const last = items[items.length - 1];
    return more && last !== undefined ? { items, cursor: encodeCursor(last.seq) } : { items };
  }

  async counts(): Promise<QueueCounts> {
    this.#begin();
    const byGroup: Record<string, Record<QueueState, number>> = {};
    for (const g of this.#groups.values()) if (g.total() > 0) byGroup[g.name] = { ...g.counts };
    return { byState: { ...this.#byState }, byGroup };
  }

  async sweep(options: SweepOptions = {}): Promise<SweepResult> {
    const retainUntil = options.retainUntil;
    if (retainUntil !== undefined && Number.isNaN(retainUntil)) {
      throw new InvalidRequestError('retainUntil', 'must be a time in epoch ms');
    }
    const now = this.#begin(retainUntil);
    this.#collectGroups(now);
    const result: SweepResult = { ...this.#handOver(retainUntil, now), dropped: this.#dropped };
    this.#dropped = 0;
    return result;
  }

  takeTransitions(options: SweepOptions = {}): SweepResult | undefined {
    if (
      this.#requeued.length === 0 &&
      this.#failed.length === 0 &&
      this.#expired.length === 0 &&
      this.#cancelled.length === 0
    ) {
      return undefined;
    }
    // Dropped records stay counted for the next sweep.
    return { ...this.#handOver(options.retainUntil, this.#clock.now()), dropped: 0 };
  }

  /** The transitions buffered since the last hand-over, emptied. */
  #handOver(retainUntil: number | undefined, now: number): Omit<SweepResult, 'dropped'> {
    // Transitions applied lazily by earlier calls did not know this retention; they get it now.
    const retained = (list: QueueRecord[]): QueueRecord[] =>
      retainUntil === undefined ? list : list.map((r) => this.#retain(r, retainUntil, now));
    const result = {
      requeued: this.#requeued,
      failed: retained(this.#failed),
      expired: retained(this.#expired),
      cancelled: retained(this.#cancelled),
    };
    this.#requeued = [];
    this.#failed = [];
    this.#expired = [];
    this.#cancelled = [];
    return result;
  }

  async prune(finishedBefore: number): Promise<number> {
    this.#begin();
    if (Number.isNaN(finishedBefore)) throw new InvalidRequestError('finishedBefore', 'must be a time in epoch ms');
    const doomed: string[] = [];
    for (const r of this.#finished.values()) {
      if ((r.finishedAt ?? -Infinity) < finishedBefore) doomed.push(r.key);
    }
    for (const key of doomed) this.#finished.delete(key);
    return doomed.length;
  }

  async setPaused(paused: boolean): Promise<void> {
    this.#begin();
    this.#paused = paused;
  }

  async isPaused(): Promise<boolean> {
    this.#begin();
    return this.#paused;
  }

  async activity(minutes: number): Promise<ActivityBucket[]> {
    const now = this.#begin();
    return this.#activity.buckets(minutes, now);
  }

  uriStats(uri?: string): Promise<UriStats[]> {
    try {
      return Promise.resolve(this.#uriStats(uri));
    } catch (error) {
      return rejected(error);
    }
  }

  #uriStats(uri?: string): UriStats[] {
    this.#begin();
    if (uri === undefined) return this.#durations.all();
    const stats = this.#durations.get(uri);
    return stats === undefined ? [] : [stats];
  }

  async reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void> {
    const now = this.#begin();
    if (!Number.isSafeInteger(slots) || slots < 0) {
      throw new InvalidRequestError('slots', `must be an integer >= 0, got ${String(slots)}`);
    }
    if (!(ttlMs > 0)) throw new InvalidRequestError('ttlMs', `must be a positive number of ms, got ${String(ttlMs)}`);
    this.#workers.set(workerId, { slots, expiresAt: now + ttlMs });
    this.#capacityCache = undefined;
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#begin();
    this.#workers.delete(workerId);
    this.#capacityCache = undefined;
  }

  capacity(): Promise<WorkerCapacity> {
    try {
      return Promise.resolve(this.#capacity());
    } catch (error) {
      return rejected(error);
    }
  }

  #capacity(): WorkerCapacity {
    const { workers, slots } = this.#reportsAt(this.#begin());
    // Every running record holds a lease (expired ones were just requeued or failed by #begin).
    const busy = this.#byState.running;
    const last = this.#capacityValue;
    if (last !== undefined && last.workers === workers && last.slots === slots && last.busy === busy) return last;
    const value: WorkerCapacity = Object.freeze({ workers, slots, busy });
    this.#capacityValue = value;
    return value;
  }

  #reportsAt(now: number): { readonly workers: number; readonly slots: number } {
    // Read on every submit and status read, changed only by reports and their expiry: the last
    // sum stands until a report comes or goes, or the first of the counted ones expires.
    const cached = this.#capacityCache;
    if (cached !== undefined && now < cached.until) return cached;
    let workers = 0;
    let slots = 0;
    let until = Infinity;
    for (const [id, report] of this.#workers) {
      if (report.expiresAt <= now) {
        this.#workers.delete(id);
        continue;
      }
      workers++;
      slots += report.slots;
      if (report.expiresAt < until) until = report.expiresAt;
    }
    const value = { workers, slots, until };
    this.#capacityCache = value;
    return value;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Set first: the LRU's dispose hook sees it and skips the per-record bookkeeping.
    this.#closed = true;
    this.#finished.clear();
    this.#live.clear();
    this.#lookedUp = undefined;
    this.#groups.clear();
    this.#readyGroups.clear();
    this.#ownerPending.clear();
    this.#bySeq.clear();
    this.#delayed.clear();
    this.#pendingExpiry.clear();
    this.#leases.clear();
    this.#retention.clear();
    this.#workers.clear();
    this.#activity.clear();
    this.#durations.clear();
    this.#requeued = [];
    this.#failed = [];
    this.#expired = [];
    this.#cancelled = [];
  }

  /**
   * Throws once closed; applies due transitions (records they finish get `retainUntil`, which
   * only a sweep passes); returns the time of the call.
   */
  #begin(retainUntil?: number): number {
    if (this.#closed) throw new ClosedError('memory queue is closed');
    const now = this.#clock.now();
    this.#lastNow = now;
    this.#advance(now, retainUntil);
    return now;
  }

  /** Applies every timed transition due at `now`, buffering them for the next sweep. */
  #advance(now: number, retainUntil: number | undefined): void {
    if (this.#retention.nextTime() <= now) {
      let r: QueueRecord | undefined;
      while ((r = this.#retention.peek()) !== undefined && (r.retainUntil ?? Infinity) <= now) {
        this.#retention.pop();
        this.#finished.delete(r.key);
        this.#dropped++;
      }
    }
    let e: Entry | undefined;
    while ((e = this.#leases.peek()) !== undefined && e.leaseAt <= now) {
      this.#leases.pop();
      this.#leaseExpired(e, now, retainUntil);
    }
    while ((e = this.#pendingExpiry.peek()) !== undefined && e.expireAt <= now) {
      this.#pendingExpiry.pop();
      // Only never-claimed pending entries are here: a claim takes its entry out for good.
      const record = finishedRecord(e.record, 'expired', now, retainUntil, undefined);
      this.#finish(e, record, now);
      buffer(this.#expired, record);
    }
    while ((e = this.#delayed.peek()) !== undefined && e.readyAt <= now) {
      this.#delayed.pop();
      // Its backoff is over: from now on it counts ahead of the records behind it.
      e.group.rank.setPending(e, true);
      this.#makeReady(e);
    }
  }

  #leaseExpired(e: Entry, now: number, retainUntil: number | undefined): void {
    const prev = e.record;
    if (prev.cancelRequested === true) {
      // The holder was asked to stop and then vanished: the cancel wins.
      const record = finishedRecord(prev, 'cancelled', now, retainUntil, undefined);
      this.#finish(e, record, now);
      buffer(this.#cancelled, record);
    } else if (prev.attempts >= prev.maxAttempts) {
      const record = finishedRecord(prev, 'failed', now, retainUntil, LEASE_EXPIRED);
      this.#finish(e, record, now);
      this.#activity.record('failed', e.group.name, now);
      buffer(this.#failed, record);
    } else {
      // The claim already counted the attempt.
      const record = pendingAgainRecord(prev, now, prev.attempts, undefined);
      this.#requeue(e, record, now);
      buffer(this.#requeued, record);
    }
  }

  /** running with a cancel request → cancelled, where a retry or a release would have lost the request. */
  #cancelRunning(e: Entry, now: number, retainUntil: number | undefined, error: ErrorInfo | undefined): QueueRecord {
    const record = finishedRecord(e.record, 'cancelled', now, retainUntil, error);
    this.#finish(e, record, now);
    return record;
  }

  /**
   * A record finished lazily before this sweep, with the sweep's retention: swapped in place of
   * the kept one (same seq, same key in the LRU). Returned as is when it has a retention already or is
   * no longer kept (evicted, pruned, replaced by a new enqueue).
   */
  #retain(record: QueueRecord, retainUntil: number, now: number): QueueRecord {
    if (record.retainUntil !== undefined || this.#finished.peek(record.key) !== record) return record;
    const retained: QueueRecord = { ...record, retainUntil };
    const size = estimateRecordBytes(retained);
    if (retainUntil <= now || size > this.#maxFinishedBytes) {
      // The LRU's dispose un-indexes it.
      this.#finished.delete(record.key);
      if (retainUntil <= now) this.#dropped++;
      return retained;
    }
    this.#bySeq.replace(record.seq, retained);
    // The replaced record must not be un-indexed: the new one takes its place everywhere.
    this.#finished.set(record.key, retained, size);
    this.#retention.push(retained);
    this.#retention.compactIfSparse(this.#finished.size);
    return retained;
  }

  /**
   * A fresh lease token, shaped like a UUID: a random prefix drawn once per queue and a claim
   * counter. It fences stale holders, which is all a token does in one process (where any code can
   * read the queue anyway); a random UUID per claim cost more than the rest of the claim allocates.
   */
  #newToken(): string {
    // 12 hex digits: 2^48 claims, about nine years at a million claims a second.
    return this.#tokenPrefix + (++this.#tokenSeq).toString(16).padStart(12, '0');
  }

  /** The entry when `token` is its current, unexpired lease; else LeaseLostError. */
  #leased(key: string, token: string, now: number): Entry {
    const e = this.#live.get(key);
    const r = e?.record;
    if (e === undefined || r === undefined || r.state !== 'running' || r.leaseToken !== token || !(e.leaseAt > now)) {
      throw new LeaseLostError(key);
    }
    return e;
  }

  /** The best group to claim from now, or undefined when none may be claimed from. */
  #pickGroup(options: ClaimOptions, now: number): GroupState | undefined {
    if (now < this.#latestClaimAt) this.#rebaseClaims(now);
    const policies = options.policies;
    if (options.groups !== undefined) return this.#bestOf(options.groups, policies, now);
    // A group without a policy may be claimed from whenever it has ready work (no claim time lies
    // after `now`), and the turn order keeps the first of those; only groups with a policy are
    // judged one by one.
    const free = this.#readyGroups.firstWithout(policies);
    // Every own name, enumerable or not: claimableAt reads a policy by Object.hasOwn.
    return this.#bestOf(Object.getOwnPropertyNames(policies), policies, now, free);
  }

  /**
   * The clock stepped back (NTP, a resumed VM) past claims: their times come back to `now`. Left
   * after `now`, a group would count as claimed in the future and claim nothing until the clock
   * caught up (for a group without any interval too); brought back, it waits out at most its
   * interval from now. Claim numbers are kept, so groups keep their turns among themselves.
   * O(groups), once per step back.
   */
  #rebaseClaims(now: number): void {
    for (const g of this.#groups.values()) {
      if (g.lastClaimAt <= now) continue;
      g.lastClaimAt = now;
      if (this.#readyGroups.all.has(g)) this.#readyGroups.reorder(g);
    }
    this.#latestClaimAt = now;
  }

  /**
   * The best group to claim from now among `candidates` (group objects or names), each judged by
   * its policy, and `start` (a group claimable now whose ready time is its last claim), if given.
   */
  #bestOf(
    candidates: Iterable<GroupState | string>,
    policies: ClaimOptions['policies'],
    now: number,
    start?: GroupState,
  ): GroupState | undefined {
    let best = start;
    let bestReadyAt = start?.lastClaimAt ?? 0;
    for (const candidate of candidates) {
      // A name that is not a string (a direct caller's `groups`) names no group, as before.
      const g = candidate instanceof GroupState ? candidate : this.#groups.get(candidate);
      if (g === undefined) continue;
      const readyAt = claimableAt(g, policies, now);
      if (readyAt !== undefined && (best === undefined || outranks(g, readyAt, best, bestReadyAt))) {
        best = g;
        bestReadyAt = readyAt;
      }
    }
    return best;
  }

  /** Puts a pending entry where claims find it: its group's ready heap, or the delayed heap. */
  #schedule(e: Entry, now: number): void {
    if (e.readyAt <= now) this.#makeReady(e);
    else {
      e.sched = this.#delayed;
      this.#delayed.push(e);
    }
  }

  #makeReady(e: Entry): void {
    const ready = e.group.ready;
    e.sched = ready;
    ready.push(e);
    if (ready.size === 1) this.#readyGroups.add(e.group);
    else if (ready.peek() === e) this.#readyGroups.reorder(e.group);
  }

  #unschedule(e: Entry): void {
    const heap = e.sched;
    if (heap === undefined) return;
    heap.remove(e);
    e.sched = undefined;
    if (heap !== e.group.ready) return;
    if (heap.size === 0) this.#readyGroups.delete(e.group);
    else this.#readyGroups.reorder(e.group);
  }

  /** running → pending (retry, release, lease expiry) at its old place in the order. */
  #requeue(e: Entry, record: QueueRecord, now: number): void {
    this.#leases.remove(e);
    e.record = record;
    e.readyAt = record.readyAt;
    // Back at its old place; while it waits out a backoff, the ready records behind it go first.
    e.group.rank.setPending(e, true, record.readyAt <= now);
    this.#byState.running--;
    this.#byState.pending++;
    e.group.counts.running--;
    e.group.counts.pending++;
    const owner = record.owner;
    if (owner !== undefined) this.#ownerPending.set(owner, (this.#ownerPending.get(owner) ?? 0) + 1);
    this.#schedule(e, now);
  }

  /** pending/running → a terminal state: leaves every live index, then is kept in the LRU. */
  #finish(e: Entry, record: QueueRecord, now: number): void {
    const prevState = e.record.state;
    this.#live.delete(e.key);
    if (this.#lookedUp === e) this.#lookedUp = undefined;
    e.group.rank.remove(e);
    this.#unschedule(e);
    this.#pendingExpiry.remove(e);
    this.#leases.remove(e);
    this.#byState[prevState]--;
    e.group.counts[prevState]--;
    if (prevState === 'pending') this.#ownerLeftPending(record.owner);
    e.record = record;

    const retainUntil = record.retainUntil;
    const size = estimateRecordBytes(record);
    if ((retainUntil !== undefined && retainUntil <= now) || size > this.#maxFinishedBytes) {
      // Already past retention, or too big to keep: absent from the start.
      if (retainUntil !== undefined && retainUntil <= now) this.#dropped++;
      this.#bySeq.remove(e.seq);
      return;
    }
    this.#byState[record.state]++;
    e.group.counts[record.state]++;
    this.#bySeq.replace(e.seq, record);
    this.#finished.set(e.key, record, size);
    if (retainUntil !== undefined) {
      this.#retention.push(record);
      this.#retention.compactIfSparse(this.#finished.size);
    }
  }

  /** Un-indexes a finished record leaving the LRU (eviction, retention, prune, re-enqueue). */
  #forgetFinished(record: QueueRecord): void {
    if (this.#closed) return;
    const state = record.state;
    this.#byState[state]--;
    const group = this.#groups.get(record.group);
    if (group !== undefined) group.counts[state]--;
    this.#bySeq.remove(record.seq);
    // Usually the oldest record goes first, which is the front of the retention queue; any
    // other is found dead there later (isLive) and compacted away.
    if (record.retainUntil !== undefined) this.#retention.removeIfFirst(record);
  }

  #ownerLeftPending(owner: string | undefined): void {
    // Zeros stay (a busy owner would otherwise be deleted and re-added on every claim); sweeps collect them.
    if (owner !== undefined) this.#ownerPending.set(owner, (this.#ownerPending.get(owner) ?? 1) - 1);
  }

  /**
   * Forgets owners with nothing pending, and groups with no records once their claim interval
   * has passed (the interval must outlive the records). Each pass runs only when the map doubled
   * since the last one: amortised O(1).
   */
  #collectGroups(now: number): void {
    if (this.#ownerPending.size >= this.#ownerGcAt) {
      for (const [owner, n] of this.#ownerPending) if (n === 0) this.#ownerPending.delete(owner);
      this.#ownerGcAt = Math.max(64, this.#ownerPending.size * 2);
    }
    if (this.#groups.size < this.#groupGcAt) return;
    for (const [name, g] of this.#groups) {
      if (g.total() === 0 && g.lastClaimAt + g.maxIntervalMs <= now) this.#groups.delete(name);
    }
    this.#groupGcAt = Math.max(64, this.#groups.size * 2);
  }
}

/**
 * When the group may next be claimed from (SharQ's ready time: last claim + interval), or
 * undefined when it cannot be claimed from now (nothing ready, at its concurrency cap, or
 * still in its interval).
 */
function claimableAt(g: GroupState, policies: ClaimOptions['policies'], now: number): number | undefined {
  if (g.ready.size === 0) return undefined;
  let interval = 0;
  if (Object.hasOwn(policies, g.name)) {
    const policy = policies[g.name];
    if (policy?.maxConcurrent !== undefined && g.counts.running >= policy.maxConcurrent) return undefined;
    interval = policy?.minIntervalMs ?? 0;
    if (interval > g.maxIntervalMs) g.maxIntervalMs = interval;
  }
  const readyAt = g.lastClaimAt + interval;
  return readyAt > now ? undefined : readyAt;
}

/** A rejection with what a synchronous operation threw (the adapter throws typed errors only). */
function rejected<T>(error: unknown): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what was thrown, as an async method would
  return Promise.reject(error);
}

function buffer(list: QueueRecord[], record: QueueRecord): void {
  if (list.length < MAX_BUFFERED) list.push(record);
}
