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
  state?: QueueState | QueueState[];
  group?: string;
  owner?: string;
  /** Page size, 1..1000 (default 100). */
  limit?: number;
  cursor?: string;
}

/** Options of {@link RequestManager.waitFor}. */
export interface WaitOptions {
  timeoutMs?: number;
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
  /** Jobs running now. */
  readonly active: number;
  /** Stops claiming, lets running jobs finish within `graceMs` (default leaseMs), then aborts them and releases their leases. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** Per-minute counts in {@link Metrics}. */
export interface MinuteCounts {
  minute: string;
  submitted: number;
  claimed: number;
  completed: number;
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
  byState: Record<QueueState, number>;
  byGroup: Record<string, Record<QueueState, number>>;
  /** Last 10 minutes, oldest first. */
  perMinute: MinuteCounts[];
  perMinuteByGroup: Record<string, MinuteCounts[]>;
  durations: Record<string, { count: number; avgMs: number; p50Ms: number; p95Ms: number }>;
  workers: { workers: number; slots: number };
  scaling: {
    /** Expected wait for a request submitted now, ms. */
    expectedWaitMs: number;
    targetWaitMs: number;
    /** Worker slots needed to bring the expected wait under the target. */
    slotsNeeded: number;
  };
}

/** Payloads of the manager's events, by event name. */
export interface ManagerEvents {
  submitted: { key: string; status: RequestStatus };
  deduplicated: { key: string; status: RequestStatus };
  claimed: { key: string; attempt: number; workerId: string };
  progress: { key: string; progress: number; message?: string };
  completed: { key: string; status: RequestStatus };
  failed: { key: string; error: ErrorInfo; attempts: number };
  retried: { key: string; error: ErrorInfo; attempt: number; retryAt: string };
  requeued: { key: string; reason: 'lease-expired' | 'released' };
  cancelled: { key: string; running: boolean };
  expired: { key: string };
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
  list(query?: ListQuery): Promise<{ items: RequestStatus[]; cursor?: string }>;
  /** Resolves on a terminal state. */
  waitFor(key: string, options?: WaitOptions): Promise<RequestStatus>;
  /** Streams a stored format (default `manager.defaultFormat`). */
  read(key: string, format?: string): Promise<ResultBody | undefined>;
  /** A signed or routed URL to a stored format. */
  resultUrl(key: string, format?: string, options?: { expiresInSec?: number }): Promise<string | undefined>;
  /** Starts a worker in this process. */
  process(handler: Handler, options?: WorkerOptions): Worker;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Deletes temporary results (older than a date, or all). Returns how many. */
  clearTemporary(options?: { olderThan?: Date }): Promise<number>;
  /** Deletes every result in both areas. */
  clearAll(): Promise<void>;
  /** Drops finished queue records (finished before a date, or all). Returns how many. */
  prune(options?: { finishedBefore?: Date }): Promise<number>;
  metrics(): Promise<Metrics>;
  /** Sets or replaces one group's policy at run time. */
  configureGroup(group: string, policy: GroupPolicy): void;
  /** Runs one queue sweep now (lease expiry, pending expiry, retention); normally periodic. */
  sweep(): Promise<void>;
  readonly events: TypedEmitter<ManagerEvents>;
  /** Stops workers and timers and closes the adapters. */
  close(): Promise<void>;
}
