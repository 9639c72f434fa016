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
} from '@armlib/core';

import { traceError } from './trace.js';
import type { TraceSink } from './trace.js';

/**
 * A QueueManager that forwards every call to the real one and reports claims, enqueue outcomes
 * and every fenced call (with its token and whether it landed) to a sink. It also counts claim
 * calls and heartbeat starts, which the tests use as a clock: "one heartbeat" is a count, not a
 * duration.
 */
export class TracingQueue implements QueueManager {
  /** claim() calls started so far (returning a lease or not). */
  claimCalls = 0;
  readonly #inner: QueueManager;
  readonly #sink: TraceSink;
  readonly #now: () => number;
  readonly #heartbeatStarts = new Map<string, number>();

  constructor(inner: QueueManager, sink: TraceSink, now: () => number = Date.now) {
    this.#inner = inner;
    this.#sink = sink;
    this.#now = now;
  }

  get capabilities(): QueueCapabilities {
    return this.#inner.capabilities;
  }

  /** Heartbeats started so far for a key (by this process). */
  heartbeatsStarted(key: string): number {
    return this.#heartbeatStarts.get(key) ?? 0;
  }

  async enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    try {
      const result = await this.#inner.enqueue(entry, options);
      this.#sink({ op: 'enqueue', key: entry.key, outcome: result.outcome });
      return result;
    } catch (error) {
      this.#sink({ op: 'enqueue', key: entry.key, error: traceError(error) });
      throw error;
    }
  }

  get(key: string): Promise<QueueRecord | undefined> {
    return this.#inner.get(key);
  }

  position(key: string): Promise<number | undefined> {
    return this.#inner.position(key);
  }

  async claim(options: ClaimOptions): Promise<Lease | undefined> {
    this.claimCalls++;
    const lease = await this.#inner.claim(options);
    if (lease !== undefined) {
      this.#sink({
        op: 'claim',
        key: lease.record.key,
        token: lease.token,
        attempt: lease.record.attempts,
        leaseExpiresAt: lease.record.leaseExpiresAt ?? 0,
        at: this.#now(),
      });
    }
    return lease;
  }

  async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    const seq = (this.#heartbeatStarts.get(key) ?? 0) + 1;
    this.#heartbeatStarts.set(key, seq);
    this.#sink({ op: 'heartbeat-start', key, token, seq });
    try {
      const result = await this.#inner.heartbeat(key, token, options);
      this.#sink({
        op: 'heartbeat',
        key,
        token,
        ok: true,
        cancelRequested: result.cancelRequested,
        leaseExpiresAt: result.leaseExpiresAt,
      });
      return result;
    } catch (error) {
      this.#sink({ op: 'heartbeat', key, token, ok: false, error: traceError(error) });
      throw error;
    }
  }

  complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return this.#finishing('complete', key, token, () => this.#inner.complete(key, token, options));
  }

  fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return this.#finishing('fail', key, token, () => this.#inner.fail(key, token, options));
  }

  release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return this.#finishing('release', key, token, () => this.#inner.release(key, token, options));
  }

  acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return this.#finishing('acknowledgeCancel', key, token, () => this.#inner.acknowledgeCancel(key, token, options));
  }

  cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    return this.#inner.cancel(key, options);
  }

  list(query: QueueListQuery): Promise<QueueListPage> {
    return this.#inner.list(query);
  }

  counts(): Promise<QueueCounts> {
    return this.#inner.counts();
  }

  sweep(options?: SweepOptions): Promise<SweepResult> {
    return this.#inner.sweep(options);
  }

  prune(finishedBefore: number): Promise<number> {
    return this.#inner.prune(finishedBefore);
  }

  setPaused(paused: boolean): Promise<void> {
    return this.#inner.setPaused(paused);
  }

  isPaused(): Promise<boolean> {
    return this.#inner.isPaused();
  }

  activity(minutes: number): Promise<ActivityBucket[]> {
    return this.#inner.activity(minutes);
  }

  uriStats(uri?: string): Promise<UriStats[]> {
    return this.#inner.uriStats(uri);
  }

  reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void> {
    return this.#inner.reportWorker(workerId, slots, ttlMs);
  }

  removeWorker(workerId: string): Promise<void> {
    return this.#inner.removeWorker(workerId);
  }

  capacity(): Promise<WorkerCapacity> {
    return this.#inner.capacity();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async #finishing(
    op: 'complete' | 'fail' | 'release' | 'acknowledgeCancel',
    key: string,
    token: string,
    call: () => Promise<QueueRecord>,
  ): Promise<QueueRecord> {
    try {
      const record = await call();
      this.#sink({ op, key, token, ok: true, state: record.state });
      return record;
    } catch (error) {
      this.#sink({ op, key, token, ok: false, error: traceError(error) });
      throw error;
    }
  }
}
