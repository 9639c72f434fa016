import type { Readable } from 'node:stream';

import type { BatchRequest, ErrorInfo, QueueState, RequestStatus, ResultBody } from '../model.js';
import type { GroupPolicy } from '../spi/queue.js';
import type { TypedEmitter } from '../util/emitter.js';

/** Options of {@link RequestManager.submit}. */
export interface SubmitOptions {
  /** Re-queue even a completed key (data rebuild). */
  force?: boolean;
}

/** Query of {@link RequestManager.list}. */
export interface ListQuery {
  /** Only requests in this state or these states (default: every state). */
  state?: QueueState | QueueState[];
  /** Only requests of this group. */
  group?: string;
  /** Only requests of this owner. */
  owner?: string;
  /** Page size, 1..1000 (default 100). */
  limit?: number;
  /** The `cursor` of the previous page, to read the next one. */
  cursor?: string;
}

/** Options of {@link RequestManager.waitFor}. */
export interface WaitOptions {
  /**
   * Rejects with `TimeoutError` when the key is still not terminal after this many ms (0 or more)
   * of the manager's clock. Default: no limit. Refused with `InvalidRequestError` when not a
   * number >= 0.
   */
  timeoutMs?: number;
  /** Rejects with the signal's reason when it aborts (at once when it is already aborted). */
  signal?: AbortSignal;
}

/** What a handler may write as one result format. */
export type WriteData = string | Uint8Array | Readable | AsyncIterable<Uint8Array>;

/** A claimed request, as a handler sees it. */
export interface Job {
  readonly key: string;
  readonly request: BatchRequest;
  /** 1 for the first run, 2 for the first retry, … */
  readonly attempt: number;
  /** Aborts on cancel, lease loss or shutdown; `signal.reason` says which. */
  readonly signal: AbortSignal;
  /** Reports progress (0..100) and an optional message; sent with the next heartbeat. */
  progress(percent: number, message?: string): Promise<void>;
  /** Streams one result format into staging; it becomes visible, with all others, when the handler returns. */
  write(format: string, data: WriteData, options?: { contentType?: string }): Promise<void>;
}

/** The function a worker runs for each claimed request. Throw to fail; throw `PermanentError` to fail without retries. */
export type Handler = (job: Job) => Promise<void>;

/** Options of {@link RequestManager.process}. */
export interface WorkerOptions {
  /** Jobs run at once by this worker (default 1). */
  concurrency?: number;
  /** Only claim from these groups. */
  groups?: string[];
  /** Lease length (default `manager.leaseMs`). */
  leaseMs?: number;
  /** Idle poll interval (default `manager.pollMs`). */
  pollMs?: number;
}

/** A running worker loop. */
export interface Worker {
  /** Identifier used in leases and capacity reports. */
  readonly id: string;
  /**
   * Jobs running now, and jobs whose handler returned and whose completion the queue has not yet
   * answered (their slots already go to the next jobs: up to twice `concurrency` in all).
   */
  readonly active: number;
  /** Stops claiming, lets running jobs finish within `graceMs` (default leaseMs), then aborts them and releases their leases. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** Per-minute counts in {@link Metrics}. */
export interface MinuteCounts {
  /** ISO time of the start of the minute. */
  minute: string;
  /** Requests created by a submit (not deduplicated ones). */
  submitted: number;
  /** Claims by workers (retries included). */
  claimed: number;
  /** Runs completed. */
  completed: number;
  /** Requests that failed for good. */
  failed: number;
}

/** What {@link RequestManager.metrics} reports. */
export interface Metrics {
  /** ISO time of the snapshot. */
  at: string;
  /** `running`, `pausing` (paused but jobs still running) or `paused`. */
  pause: 'running' | 'pausing' | 'paused';
  /** Pending + running. */
  queueLength: number;
  /**
   * Queue records by state (every state present, 0 when none): live ones, and finished ones until
   * `finishedRetentionMs`, `prune` (or the memory queue's bound) drops them. A result served from
   * the cache with no record left is not counted.
   */
  byState: Record<QueueState, number>;
  /** {@link Metrics.byState} per group, for the groups that have records. */
  byGroup: Record<string, Record<QueueState, number>>;
  /**
   * Transitions per minute, across every process sharing the queue (other processes' counts may
   * lag by about a second): the last 10 minutes, oldest first.
   */
  perMinute: MinuteCounts[];
  /** {@link Metrics.perMinute} per group, for the groups with activity in those 10 minutes. */
  perMinuteByGroup: Record<string, MinuteCounts[]>;
  /**
   * Learned run times by uri: `count` runs recorded, `avgMs` their exponential moving average (what
   * ETAs use), `p50Ms` / `p95Ms` percentiles of recent runs; times in whole ms.
   */
  durations: Record<string, { count: number; avgMs: number; p50Ms: number; p95Ms: number }>;
  /** Live capacity: workers whose reports have not lapsed, in every process, and their slots in total. */
  workers: { workers: number; slots: number };
  /** The scaling hint. */
  scaling: {
    /**
     * Expected wait for a request submitted now, ms: pending requests × the average run time
     * (of every uri, weighted by runs; `manager.defaultEstimatedMs` before any run) / live slots
     * (at least 1).
     */
    expectedWaitMs: number;
    /** `manager.targetWaitMs`. */
    targetWaitMs: number;
    /** Worker slots needed to bring the expected wait under the target (0 with nothing pending). */
    slotsNeeded: number;
  };
}

/** Payloads of the manager's events, by event name. */
export interface ManagerEvents {
  /** A submit created a pending request: its `key` and the `status` the submit returned. */
  submitted: { key: string; status: RequestStatus };
  /**
   * A submit found its `key` pending, running or cached and created nothing; `status` is what the
   * submit returned.
   */
  deduplicated: { key: string; status: RequestStatus };
  /** A worker of this manager claimed `key`: `attempt` is 1 for the first run; `workerId` is {@link Worker.id}. */
  claimed: { key: string; attempt: number; workerId: string };
  /** A handler reported `progress` (0..100) and an optional `message` for `key`. */
  progress: { key: string; progress: number; message?: string };
  /** The result of `key` was committed and its record completed; `status` is `completed`, with the result. */
  completed: { key: string; status: RequestStatus };
  /**
   * `key` failed for good (a handler error not retried, or a lease that ran out on the last
   * attempt): `error` is what was recorded, `attempts` the claims made.
   */
  failed: { key: string; error: ErrorInfo; attempts: number };
  /** Attempt `attempt` of `key` failed with `error`; the request is pending again, claimable at `retryAt` (ISO). */
  retried: { key: string; error: ErrorInfo; attempt: number; retryAt: string };
  /**
   * `key` is pending again without having failed: its lease ran out (`lease-expired`, found by a
   * sweep of this manager; the attempt counts) or `worker.stop()` released it (`released`). A
   * lease that `stop()` hands back before its job started is not told: neither `claimed` nor
   * `requeued` was, and to the outside the request stayed pending.
   */
  requeued: { key: string; reason: 'lease-expired' | 'released' };
  /**
   * `key` ended `cancelled`: `running` is false for a pending request cancelled at once, true for a
   * running one that stopped after a cancel request.
   */
  cancelled: { key: string; running: boolean };
  /** `key` waited longer than `pendingTtlMs` for its first claim and is now `expired`. */
  expired: { key: string };
  /**
   * A failure no caller can receive (a sweep, a worker's claim, heartbeat, report, release or
   * finishing call, a throwing listener): the `error`, and a `context` in words naming where.
   */
  error: { error: unknown; context: string };
}

/**
 * The names of the events about one request, in lifecycle order (every event but `error`): to
 * subscribe to all of them, or to forward them elsewhere.
 */
export const REQUEST_EVENT_NAMES = [
  'submitted',
  'deduplicated',
  'claimed',
  'progress',
  'completed',
  'failed',
  'retried',
  'requeued',
  'cancelled',
  'expired',
] as const satisfies readonly (keyof ManagerEvents)[];

/** The name of an event about one request (see {@link REQUEST_EVENT_NAMES}). */
export type RequestEventName = (typeof REQUEST_EVENT_NAMES)[number];

/** The public face of armlib. */
export interface RequestManager {
  /** Queues a request (or finds it queued or cached). */
  submit(request: BatchRequest, options?: SubmitOptions): Promise<RequestStatus>;
  /** Status with position and ETA. */
  status(key: string): Promise<RequestStatus>;
  /**
   * Cancels a pending request at once (status `cancelled`), or asks the worker running it to stop:
   * then the status returned is `running` with `cancelRequested`, read before any worker in this
   * process was told, and the request ends `cancelled` once the worker lets go.
   */
  cancel(key: string): Promise<RequestStatus>;
  /**
   * One page of the requests the queue holds, as statuses, in submission order: pending and
   * running ones, and finished ones until `finishedRetentionMs` or `prune` drops their records (a
   * result still in the cache without a record is not listed). `state` selects by the record's
   * state; each item is described as `status()` describes its key: a completed record whose result
   * is gone is `unknown`, a failed rebuild of a key whose result is still cached is `completed`. A
   * key the cache cannot answer for (a damaged manifest) is described by its record alone.
   * `cursor` is set when more may follow: pass it back for the next page. An admin read, not a
   * poll: its cost grows with the number of records on some backends (one cache lookup per
   * finished record).
   */
  list(query?: ListQuery): Promise<{ items: RequestStatus[]; cursor?: string }>;
  /** Resolves on a terminal state; rejects with `ClosedError` when the manager is closed meanwhile. */
  waitFor(key: string, options?: WaitOptions): Promise<RequestStatus>;
  /** Streams a stored format (default `manager.defaultFormat`). */
  read(key: string, format?: string): Promise<ResultBody | undefined>;
  /** A signed or routed URL to a stored format. */
  resultUrl(key: string, format?: string, options?: { expiresInSec?: number }): Promise<string | undefined>;
  /** Starts a worker in this process. */
  process(handler: Handler, options?: WorkerOptions): Worker;
  /**
   * Stops claiming, for every process sharing the queue backend (the flag is stored in the queue).
   * Running jobs are not interrupted: they finish, and their results are committed as usual.
   * Submits, status, cancel and reads go on; `metrics().pause` says `pausing` until no request
   * runs, then `paused`. Pausing a paused queue changes nothing.
   */
  pause(): Promise<void>;
  /**
   * Lets claiming go on, for every process sharing the queue backend. Workers of this process are
   * woken at once; workers elsewhere claim at their next poll (`pollMs`).
   */
  resume(): Promise<void>;
  /** Deletes temporary results (older than a date, or all). Returns how many. */
  clearTemporary(options?: { olderThan?: Date }): Promise<number>;
  /** Deletes every result in both areas. */
  clearAll(): Promise<void>;
  /** Drops finished queue records (finished before a date, or all). Returns how many. */
  prune(options?: { finishedBefore?: Date }): Promise<number>;
  /**
   * A snapshot of the queue for monitoring and autoscaling: counts by state and group, the last
   * 10 minutes of activity, learned durations, live worker capacity and the scaling hint. Its
   * counts cost a read of every record on some backends (DynamoDB), so it is not for a tight poll.
   */
  metrics(): Promise<Metrics>;
  /** Sets or replaces one group's policy at run time. */
  configureGroup(group: string, policy: GroupPolicy): void;
  /** Runs one queue sweep now (lease expiry, pending expiry, retention); normally periodic. */
  sweep(): Promise<void>;
  /**
   * Typed events (see {@link ManagerEvents}) of the transitions made in this process: by this
   * manager's calls, its workers and its sweep, never those of other processes sharing the
   * backend. The events of one request come in the order of its transitions. A listener that
   * throws is reported on `error` and breaks nothing. `close()` removes every listener.
   */
  readonly events: TypedEmitter<ManagerEvents>;
  /**
   * Stops workers and timers, rejects every `waitFor` still waiting with `ClosedError` and closes
   * the adapters.
   */
  close(): Promise<void>;
}
