import { ForwardingQueueManager } from '@armlib/core';
import type {
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
  QueueManager,
  QueueRecord,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
} from '@armlib/core';

import type { EventLog } from './event-log.js';
import type { KillPhase } from './kill-switch.js';

/** Told as each killable step starts, with the key when the step has one (kill switch, stalls). */
export type PhaseListener = (phase: KillPhase, key?: string) => void;

/** The stable code of an armlib error, else the error's name. */
export function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const name = (error as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return typeof error;
}

/**
 * A queue SPI that forwards every call to a real adapter and logs the lease-related ones (claim,
 * heartbeat, complete, fail, release, cancel, enqueue, pause, sweep) with their tokens and the
 * lease expiry the adapter granted. The tests read these logs to check fencing across processes:
 * a `*-start` line before each call shows where a SIGKILL landed.
 */
export class LoggingQueue extends ForwardingQueueManager {
  readonly #log: EventLog;
  readonly #onPhase: PhaseListener | undefined;

  constructor(inner: QueueManager, log: EventLog, onPhase?: PhaseListener) {
    super(inner);
    this.#log = log;
    this.#onPhase = onPhase;
  }

  override async enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    const t0 = Date.now();
    const result = await this.inner.enqueue(entry, options);
    this.#log.write({ ev: 'enqueue', t0, key: entry.key, outcome: result.outcome, state: result.record.state });
    return result;
  }

  override async claim(options: ClaimOptions): Promise<Lease | undefined> {
    const leases = await this.#logClaims(options, () => this.inner.claim(options).then((l) => (l ? [l] : [])));
    return leases[0];
  }

  /** The file queue's batch step, logged as one claim start and a line per lease (so the tests cover batches). */
  async claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    const inner = this.inner;
    if (inner.claimMany === undefined)
      return this.#logClaims(options, () => inner.claim(options).then((l) => (l ? [l] : [])));
    return this.#logClaims(options, () => inner.claimMany?.(options, max) ?? Promise.resolve([]));
  }

  async #logClaims(options: ClaimOptions, run: () => Promise<Lease[]>): Promise<Lease[]> {
    const t0 = Date.now();
    this.#log.write({ ev: 'claim-start' });
    this.#onPhase?.('claim');
    let leases: Lease[];
    try {
      leases = await run();
    } catch (error) {
      this.#log.write({ ev: 'claim-err', t0, code: errorCode(error) });
      throw error;
    }
    if (leases.length === 0) this.#log.write({ ev: 'claim', t0, outcome: 'none' });
    for (const { record, token } of leases) {
      this.#log.write({
        ev: 'claim',
        t0,
        outcome: 'ok',
        key: record.key,
        token,
        attempt: record.attempts,
        ...(record.leaseExpiresAt === undefined ? {} : { exp: record.leaseExpiresAt }),
        leaseMs: options.leaseMs,
      });
    }
    return leases;
  }

  override async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    const t0 = Date.now();
    this.#log.write({ ev: 'hb-start', key, token });
    this.#onPhase?.('heartbeat', key);
    try {
      const result = await this.inner.heartbeat(key, token, options);
      this.#log.write({ ev: 'hb', t0, key, token, exp: result.leaseExpiresAt, cancel: result.cancelRequested });
      return result;
    } catch (error) {
      this.#log.write({ ev: 'hb-err', t0, key, token, code: errorCode(error) });
      throw error;
    }
  }

  override complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return this.#fenced('complete', key, token, () => this.inner.complete(key, token, options));
  }

  override fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return this.#fenced('fail', key, token, () => this.inner.fail(key, token, options));
  }

  override release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return this.#fenced('release', key, token, () => this.inner.release(key, token, options));
  }

  override acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return this.#fenced('ack-cancel', key, token, () => this.inner.acknowledgeCancel(key, token, options));
  }

  override async cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    const t0 = Date.now();
    const result = await this.inner.cancel(key, options);
    this.#log.write({ ev: 'cancel', t0, key, outcome: result.outcome });
    return result;
  }

  override async sweep(options?: SweepOptions): Promise<SweepResult> {
    const t0 = Date.now();
    const result = await this.inner.sweep(options);
    for (const [outcome, records] of [
      ['requeued', result.requeued],
      ['failed', result.failed],
      ['expired', result.expired],
      ['cancelled', result.cancelled],
    ] as const) {
      for (const record of records) this.#log.write({ ev: 'sweep', t0, key: record.key, outcome });
    }
    return result;
  }

  override async setPaused(paused: boolean): Promise<void> {
    const t0 = Date.now();
    await this.inner.setPaused(paused);
    this.#log.write({ ev: 'set-paused', t0, outcome: String(paused) });
  }

  /** A token-fenced call: logs its start, then its success (with the resulting state) or error code. */
  async #fenced(ev: string, key: string, token: string, call: () => Promise<QueueRecord>): Promise<QueueRecord> {
    const t0 = Date.now();
    this.#log.write({ ev: `${ev}-start`, key, token });
    if (ev === 'complete') this.#onPhase?.('complete', key);
    try {
      const record = await call();
      this.#log.write({ ev, t0, key, token, state: record.state });
      return record;
    } catch (error) {
      this.#log.write({ ev: `${ev}-err`, t0, key, token, code: errorCode(error) });
      throw error;
    }
  }
}
