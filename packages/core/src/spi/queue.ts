import type { ErrorInfo, QueueState } from '../model.js';
import type { NormalizedRequest } from '../request.js';

/**
 * One request as the queue stores it. Times are epoch milliseconds of the injected clock.
 * Adapters store it as they like but must give it back with these fields.
 */
export interface QueueRecord {
  readonly key: string;
  /**
   * The request as first enqueued, except that `sticky` only ever goes from absent/false to true:
   * a sticky enqueue that finds this record live upgrades it (see {@link QueueManager.enqueue}).
   */
  readonly request: NormalizedRequest;
  readonly state: QueueState;
  readonly group: string;
  readonly priority: number;
  readonly owner?: string;
  /** Ties within a priority are served in `seq` order (FIFO); assigned by the adapter. */
  readonly seq: number;
  readonly submittedAt: number;
  /** Not claimable before this (retry backoff). */
  readonly readyAt: number;
  /**
   * A pending record still pending at this time becomes `expired`, but only a request never
   * started: the deadline applies while no claim has ever happened (so `attempts === 0`). The
   * first claim clears it, so a record back in pending after a retry, a lease expiry or a release
   * (even one that gives the attempt back, making `attempts` 0 again) never expires by TTL.
   */
  readonly pendingExpiresAt?: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** Claims so far (a lease that ran out counts). */
  readonly attempts: number;
  /** After this many attempts a failure or lease loss is final. */
  readonly maxAttempts: number;
  readonly leaseToken?: string;
  readonly leaseExpiresAt?: number;
  readonly workerId?: string;
  readonly progress?: number;
  readonly message?: string;
  readonly cancelRequested?: boolean;
  readonly error?: ErrorInfo;
  /** A finished record is dropped (and reads ignore it) after this time. */
  readonly retainUntil?: number;
}

/**
 * What the manager asks an adapter to enqueue: a request as `normalizeRequest` returns it, under its
 * key. The manager validated it; adapters take it as it is (see docs/adapters.md).
 */
export interface NewQueueEntry {
  readonly key: string;
  readonly request: NormalizedRequest;
  readonly maxAttempts: number;
  /**
   * When the request expires if no worker has claimed it by then. It only ever expires a request
   * never started (see {@link QueueRecord.pendingExpiresAt}): the first claim clears it for good.
   */
  readonly pendingExpiresAt?: number;
}

/** Caps checked atomically with the insert. Absent means unlimited. */
export interface QueueLimits {
  /** Pending + running records, all groups. */
  readonly maxQueueLength?: number;
  /** Pending + running records of the entry's group. */
  readonly groupMaxQueueLength?: number;
  /** Pending records of the entry's owner. */
  readonly maxPendingPerOwner?: number;
}

/** Options of {@link QueueManager.enqueue}. */
export interface EnqueueOptions {
  readonly limits: QueueLimits;
  /**
   * Epoch ms. A finished record of the key whose `finishedAt` is at or after this time is not
   * replaced: enqueue returns it with outcome `existing`. The manager passes the time it looked
   * for the key's result in the cache, so that a submit racing with the completion of the same
   * key (result committed after the cache was read, record finished before the enqueue) does not
   * run the request again. Absent: a finished record is always replaced.
   */
  readonly keepFinishedSince?: number;
}

/**
 * `created`: a new pending record. `existing`: a pending or running record was already there
 * (possibly upgraded to sticky by this call), or a finished one kept by
 * {@link EnqueueOptions.keepFinishedSince}.
 */
export type EnqueueOutcome = 'created' | 'existing';

/** Result of {@link QueueManager.enqueue}. */
export interface EnqueueResult {
  readonly outcome: EnqueueOutcome;
  readonly record: QueueRecord;
  /**
   * The record's {@link QueueManager.position} as this enqueue left it, for an adapter that works
   * it out in the same step (a `created` record): the request manager then does not ask for it
   * again to answer the submit. Absent: the manager reads `position` itself.
   */
  readonly position?: number;
}

/** Scheduling policy of one group (SharQ interval plus a concurrency cap). */
export interface GroupPolicy {
  /** Minimum ms between two claims in this group. */
  readonly minIntervalMs?: number;
  /** At most this many running at once in this group. */
  readonly maxConcurrent?: number;
  /** Cap on pending + running in this group. */
  readonly maxQueueLength?: number;
}

/** Options of {@link QueueManager.claim}. */
export interface ClaimOptions {
  readonly workerId: string;
  readonly leaseMs: number;
  /** Only claim from these groups (all when absent). */
  readonly groups?: readonly string[];
  /** Policies by group name; groups not named here are unconstrained. */
  readonly policies: Readonly<Record<string, GroupPolicy>>;
}

/** A claimed request and the lease token that fences every later call about it. */
export interface Lease {
  readonly token: string;
  readonly record: QueueRecord;
}

/** Options of {@link QueueManager.heartbeat}. */
export interface HeartbeatOptions {
  readonly leaseMs: number;
  readonly progress?: number;
  readonly message?: string;
}

/** Result of {@link QueueManager.heartbeat}. */
export interface HeartbeatResult {
  readonly cancelRequested: boolean;
  readonly leaseExpiresAt: number;
}

/** Options of {@link QueueManager.complete}. */
export interface CompleteOptions {
  /** Run time, fed to the per-uri duration statistics. */
  readonly durationMs: number;
  readonly retainUntil?: number;
}

/** Options of {@link QueueManager.fail}. */
export interface FailOptions {
  readonly error: ErrorInfo;
  /**
   * When set, the record goes back to `pending`, claimable from this time; else it is `failed`.
   * Either way, when a cancel was requested, it is `cancelled` instead.
   */
  readonly retryAt?: number;
  /** Retention of the record when this call finishes it (`failed`, or `cancelled`). */
  readonly retainUntil?: number;
}

/** Options of {@link QueueManager.release}. */
export interface ReleaseOptions {
  /** Whether the abandoned run counts as an attempt. */
  readonly countAttempt: boolean;
  /** Retention of the record when a requested cancel makes this call finish it as `cancelled`. */
  readonly retainUntil?: number;
}

/** Options of {@link QueueManager.cancel} and {@link QueueManager.acknowledgeCancel}. */
export interface CancelOptions {
  readonly retainUntil?: number;
}

/**
 * `cancelled`: was pending, now cancelled. `requested`: running, the holder is asked to stop.
 * `unchanged`: already terminal (or cancel already requested). `missing`: no record.
 */
export type CancelOutcome = 'cancelled' | 'requested' | 'unchanged' | 'missing';

/** Result of {@link QueueManager.cancel}. */
export interface CancelResult {
  readonly outcome: CancelOutcome;
  readonly record?: QueueRecord;
}

/** Query of {@link QueueManager.list}. Results come in submission order (seq ascending). */
export interface QueueListQuery {
  readonly states?: readonly QueueState[];
  readonly group?: string;
  readonly owner?: string;
  readonly limit: number;
  readonly cursor?: string;
}

/** A page of records. */
export interface QueueListPage {
  readonly items: QueueRecord[];
  readonly cursor?: string;
}

/** Record counts by state, overall and per group. */
export interface QueueCounts {
  readonly byState: Readonly<Record<QueueState, number>>;
  readonly byGroup: Readonly<Record<string, Readonly<Record<QueueState, number>>>>;
}

/** Options of {@link QueueManager.sweep}. */
export interface SweepOptions {
  /**
   * Retention of every record the sweep finishes (expired, failed on lease loss, cancelled on
   * lease loss). Absent: they are kept until pruned (or evicted, where the adapter bounds storage).
   */
  readonly retainUntil?: number;
}

/** Transitions made by {@link QueueManager.sweep}, so the manager can emit events for them. */
export interface SweepResult {
  /** Leases that ran out: back to pending. */
  readonly requeued: QueueRecord[];
  /** Leases that ran out on the last attempt. */
  readonly failed: QueueRecord[];
  /** Pending past `pendingExpiresAt` (never started). */
  readonly expired: QueueRecord[];
  /** Running with cancel requested whose lease ran out: now cancelled. */
  readonly cancelled: QueueRecord[];
  /** Finished records dropped past `retainUntil`. */
  readonly dropped: number;
  /**
   * True when the adapter reported only a part of what it applied (a long list after a long
   * stop): the request manager calls `sweep` again, at once, for the next part.
   */
  readonly more?: boolean;
}

/** Per-minute transition counts. */
export interface ActivityCounts {
  submitted: number;
  claimed: number;
  completed: number;
  failed: number;
}

/** One minute of activity, overall and per group. */
export interface ActivityBucket {
  /** Start of the minute (epoch ms). */
  readonly minute: number;
  readonly total: ActivityCounts;
  readonly byGroup: Readonly<Record<string, ActivityCounts>>;
}

/** Learned durations of one uri. */
export interface UriStats {
  readonly uri: string;
  readonly count: number;
  /** Exponential moving average, ms. */
  readonly avgMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
}

/** Live worker capacity, as reported by workers' heartbeats. */
export interface WorkerCapacity {
  readonly workers: number;
  readonly slots: number;
  /**
   * Leases running now (records in state `running`), across every process sharing the queue:
   * the slots among `slots` that are taken. May exceed `slots` (a worker whose report lapsed while
   * its jobs run on). Absent when the adapter cannot read it cheaply (see
   * {@link QueueCapabilities.reportsBusy}); the manager's ETA then assumes no slot is busy. It may
   * lag like the rest of the capacity (an adapter that reuses its reads for a while).
   */
  readonly busy?: number;
}

/** What an adapter can and cannot do exactly; the conformance suite adapts to it. */
export interface QueueCapabilities {
  /** `position` is exact (memory, file) rather than an estimate (DynamoDB). */
  readonly exactPosition: boolean;
  /** Several processes can share this queue. */
  readonly sharedAcrossProcesses: boolean;
  /** Smallest time step the adapter distinguishes, ms. */
  readonly clockGranularityMs: number;
  /**
   * `capacity()` reports {@link WorkerCapacity.busy} (memory, file). Absent or false: it leaves it
   * out (DynamoDB: counting leases would cost read units on every capacity read).
   */
  readonly reportsBusy?: boolean;
}

/**
 * The queue SPI: the storage primitives a backend implements. Every transition is atomic with
 * its condition; every call about a claimed request presents the lease token and throws
 * `LeaseLostError` when it is not the current one. No SDK types cross this interface.
 */
export interface QueueManager {
  readonly capabilities: QueueCapabilities;
  /**
   * Conditional create: returns the live record when one is pending or running, else creates a
   * pending one (replacing a finished one). Checks `limits` atomically; throws QueueFullError /
   * QuotaExceededError (never for an `existing` outcome).
   *
   * Sticky upgrade: when the live record's `request.sticky` is not true and `entry.request.sticky`
   * is, the same atomic step makes the record's request sticky (nothing else of the entry is
   * taken) and the returned record shows it, so a sticky caller deduplicated onto a non-sticky
   * entry still gets a persistent result. A worker reads stickiness from the record it claims:
   * an upgrade of a running record is honoured only by a later claim (a retry), not by the run
   * in progress, which commits to the area chosen at its claim.
   */
  enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult>;
  /** The record, or undefined (also when past `retainUntil`). */
  get(key: string): Promise<QueueRecord | undefined>;
  /**
   * 1-based position among pending in serving order; undefined unless pending. Serving order is
   * the order claims take records with no group policy in force: the highest priority first; at
   * one priority the groups take turns (the least recently claimed group first: last claim time,
   * then claim number, then name; a group that still has work of a higher priority takes its
   * turns there first, so it comes after the groups that have none), each group in arrival order.
   * So where the record is the k-th of its group at its priority, each other group has
   * min(its records at that priority, k) ahead of it when its turn comes first, k − 1 otherwise.
   * Records waiting out a retry backoff (`readyAt` after now) are not counted ahead of others;
   * such a record itself gets the place it would take if it were ready now.
   */
  position(key: string): Promise<number | undefined>;
  /**
   * Atomically claims the best ready request respecting pause, groups, intervals and caps; issues
   * a fresh token. Clears `pendingExpiresAt`: a request once started never expires by TTL.
   */
  claim(options: ClaimOptions): Promise<Lease | undefined>;
  /**
   * Optional: an adapter with a batch step implements it. Claims up to `max` requests (an integer
   * from 1 to `MAX_CLAIM_BATCH`; else `InvalidRequestError` with field `max`, checked by
   * `checkClaimMax`) as that many `claim` calls in a row would, each choice seeing the ones before
   * it, in one step: the file queue claims them in one transaction, the DynamoDB queue from one read
   * of its index. Resolves with the leases in claim order: fewer than `max`, or none, when no more
   * are claimable. If a claim fails after others were taken, it resolves with those (not the
   * error), which would otherwise be held by no one until their leases ran out.
   *
   * The worker runtime fills its free slots with it, a few at a time; without it, it claims one by
   * one, starting each job as soon as its claim returns.
   */
  claimMany?(options: ClaimOptions, max: number): Promise<Lease[]>;
  /** Extends the lease and records progress; tells whether cancel was requested. */
  heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult>;
  /** running → completed. */
  complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord>;
  /**
   * running → pending at `retryAt`, or → failed. A cancel request is never lost: on a record whose
   * `cancelRequested` is true, the record becomes `cancelled` instead, with or without `retryAt`
   * (`finishedAt` now, `retainUntil` from the options, the error kept).
   */
  fail(key: string, token: string, options: FailOptions): Promise<QueueRecord>;
  /**
   * running → pending, claimable at once (graceful shutdown). When a cancel was requested, the
   * record becomes `cancelled` instead (`finishedAt` now, `retainUntil` from the options).
   */
  release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord>;
  /** running with cancel requested → cancelled. */
  acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord>;
  /** pending → cancelled; running → cancel requested. */
  cancel(key: string, options: CancelOptions): Promise<CancelResult>;
  /**
   * One page of the records `get` would return that match `query`: every state when `states` is
   * absent or empty, else those states; only `group` / `owner` when given. In submission order
   * (seq ascending), at most `limit` records (an integer >= 1). `cursor` is the opaque cursor of
   * the previous page; a page carries one only when more records may follow. An admin read: it
   * may cost time linear in the number of records (DynamoDB: one Query per record partition),
   * never a Scan. Throws `InvalidRequestError` for a bad limit, state or cursor.
   */
  list(query: QueueListQuery): Promise<QueueListPage>;
  /**
   * Record counts by state, overall and per group, over the records `get` would return: live ones,
   * and finished ones until they are dropped (retention, `prune`, or eviction where the adapter
   * bounds storage). A state or group missing from the answer counts 0. Feeds `metrics()`; like
   * {@link QueueManager.list}, it may cost time linear in the number of records.
   */
  counts(): Promise<QueueCounts>;
  /**
   * Applies what time alone causes: an expired lease → `cancelled` when a cancel was requested,
   * else `failed` (`LEASE_EXPIRED`) on the last attempt, else back to pending; a never-started
   * pending record past `pendingExpiresAt` → `expired`; finished records past `retainUntil` are
   * dropped. Records it finishes get `options.retainUntil`. An adapter that applies due
   * transitions lazily at other calls gives them that retention when this call reports them.
   * An adapter may report a long list in parts (the file queue: 1,000 records), setting
   * {@link SweepResult.more} until the last: the request manager sweeps again while it is set.
   */
  sweep(options?: SweepOptions): Promise<SweepResult>;
  /**
   * Optional. The transitions this instance applied lazily (by time, at other calls) since the
   * last `sweep` or take, handed over once, with `options.retainUntil` given to the records they
   * finished as `sweep` gives it; undefined when there are none. Synchronous: the request manager
   * calls it right after a call that may have applied some (a claim, an enqueue), so that their
   * events come before that call's own (`requeued` before the next attempt's `claimed`). An
   * adapter that applies timed transitions only in `sweep` may leave it out (DynamoDB hands over
   * only the expiries of records its enqueue replaced); `sweep` reports what was not taken. It
   * may hand them over in parts, one per call: the request manager calls it until it returns
   * undefined.
   */
  takeTransitions?(options?: SweepOptions): SweepResult | undefined;
  /** Drops finished records that finished before the time. Returns how many. */
  prune(finishedBefore: number): Promise<number>;
  /**
   * Pauses (`true`) or resumes (`false`) claiming, for every process sharing this queue: while
   * paused, `claim` returns undefined whatever the groups. Nothing else changes: running requests
   * keep their leases and may heartbeat, complete, fail or be released; enqueue, cancel, sweep and
   * the reads work as usual. The flag is stored with the queue's data (it survives a restart of
   * the process on a durable backend). Idempotent.
   */
  setPaused(paused: boolean): Promise<void>;
  /** Whether claiming is paused, by a `setPaused(true)` of any process sharing this queue. */
  isPaused(): Promise<boolean>;
  /** Per-minute counts for the last `minutes` minutes, oldest first. */
  activity(minutes: number): Promise<ActivityBucket[]>;
  /** Duration statistics for one uri, or for all uris when none is given. */
  uriStats(uri?: string): Promise<UriStats[]>;
  /** A worker announces its capacity; it counts until `ttlMs` passes without another report. */
  reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void>;
  /** A worker leaves. */
  removeWorker(workerId: string): Promise<void>;
  /** Live capacity from reports, with the running leases when `capabilities.reportsBusy`. */
  capacity(): Promise<WorkerCapacity>;
  /**
   * Releases what this instance holds (connections, file handles, timers; a client it built) after
   * writing what it buffered (e.g. activity counts). Stored records stay for other processes and
   * later instances, except in the memory adapter, whose records go with it. Leases are not
   * released: the caller stops its workers first. Safe to call twice; any other call afterwards
   * throws `ClosedError`.
   */
  close(): Promise<void>;
}
