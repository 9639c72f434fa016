import { ForwardingQueueManager } from '@armlib/core';
import type {
  CancelOptions,
  ClaimOptions,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  QueueManager,
  QueueRecord,
  ReleaseOptions,
} from '@armlib/core';

import { traceError } from './trace.js';
import type { TraceSink } from './trace.js';

/**
 * A QueueManager that forwards every call to the real one and reports claims, enqueue outcomes
 * and every fenced call (with its token and whether it landed) to a sink. It also counts claim
 * calls and heartbeat starts, which the tests use as a clock: "one heartbeat" is a count, not a
 * duration.
 */
export class TracingQueue extends ForwardingQueueManager {
  /** claim() calls started so far (returning a lease or not). */
  claimCalls = 0;
  readonly #sink: TraceSink;
  readonly #now: () => number;
  readonly #heartbeatStarts = new Map<string, number>();

  constructor(inner: QueueManager, sink: TraceSink, now: () => number = Date.now) {
    super(inner);
    this.#sink = sink;
    this.#now = now;
  }

  /** Heartbeats started so far for a key (by this process). */
  heartbeatsStarted(key: string): number {
    return this.#heartbeatStarts.get(key) ?? 0;
  }

  override async enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    try {
      const result = await this.inner.enqueue(entry, options);
      this.#sink({ op: 'enqueue', key: entry.key, outcome: result.outcome });
      return result;
    } catch (error) {
      this.#sink({ op: 'enqueue', key: entry.key, error: traceError(error) });
      throw error;
    }
  }

  override async claim(options: ClaimOptions): Promise<Lease | undefined> {
    this.claimCalls++;
    const lease = await this.inner.claim(options);
    if (lease !== undefined) this.#traceClaim(lease);
    return lease;
  }

  /** The adapter's batch step, traced lease by lease (so the tests cover the workers' batches). */
  async claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    this.claimCalls++;
    const leases = await (this.inner.claimMany?.(options, max) ??
      this.inner.claim(options).then((lease) => (lease === undefined ? [] : [lease])));
    for (const lease of leases) this.#traceClaim(lease);
    return leases;
  }

  #traceClaim(lease: Lease): void {
    this.#sink({
      op: 'claim',
      key: lease.record.key,
      token: lease.token,
      attempt: lease.record.attempts,
      leaseExpiresAt: lease.record.leaseExpiresAt ?? 0,
      at: this.#now(),
    });
  }

  override async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    const seq = (this.#heartbeatStarts.get(key) ?? 0) + 1;
    this.#heartbeatStarts.set(key, seq);
    this.#sink({ op: 'heartbeat-start', key, token, seq });
    try {
      const result = await this.inner.heartbeat(key, token, options);
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

  override complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return this.#finishing('complete', key, token, () => this.inner.complete(key, token, options));
  }

  override fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return this.#finishing('fail', key, token, () => this.inner.fail(key, token, options));
  }

  override release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return this.#finishing('release', key, token, () => this.inner.release(key, token, options));
  }

  override acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return this.#finishing('acknowledgeCancel', key, token, () => this.inner.acknowledgeCancel(key, token, options));
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
