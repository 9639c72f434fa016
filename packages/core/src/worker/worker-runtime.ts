import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import type { Clock, TimerHandle } from '../clock.js';
import { BackendError, ClosedError, InvalidRequestError, LeaseLostError } from '../errors.js';
import type { AbortReason } from '../errors.js';
import { GROUP_PATTERN, showValue } from '../keys.js';
import type { Handler, ManagerEvents, Worker, WorkerOptions } from '../manager/types.js';
import { LEASE_MS_BOUNDS, POLL_MS_BOUNDS } from '../settings.js';
import type { ManagerSettings } from '../settings.js';
import type { CacheManager } from '../spi/cache.js';
import type { ClaimOptions, GroupPolicy, Lease, QueueManager } from '../spi/queue.js';
import type { TypedEmitter } from '../util/emitter.js';
import type { ManagerSyncOps } from '../manager/default-request-manager.js';
import { MAX_CLAIM_BATCH } from '../spi/claim-many.js';
import type { SyncCacheOps } from '../spi/sync.js';
import { retryDelay } from './backoff.js';
import { toErrorInfo } from './error-info.js';
import { optionsArgument, optionsArgumentError } from '../util/arguments.js';
import { completedStatus } from '../manager/status.js';
import { JobContext } from './job-context.js';
import type { JobHost } from './job-context.js';

/** What a worker needs from the manager that owns it. */
export interface WorkerHost {
  readonly queue: QueueManager;
  readonly cache: CacheManager;
  readonly clock: Clock;
  readonly settings: Readonly<ManagerSettings>;
  readonly events: TypedEmitter<ManagerEvents>;
  /** Synchronous twins of the adapters' lifecycle calls, when both offer them. */
  readonly sync: ManagerSyncOps | undefined;
  /** Current group policies (they may change at run time). */
  groupPolicies(): Readonly<Record<string, GroupPolicy>>;
  /** Retention deadline for a record finishing now. */
  retainUntil(): number | undefined;
  /** Called when the worker has stopped. */
  detach(worker: WorkerRuntime): void;
  /** Tells an event of one request, in the order of that request's transitions in this process. */
  emitKeyed<K extends KeyedEvent>(name: K, payload: ManagerEvents[K]): void;
  /** Tells the transitions the queue applied lazily at the call just made (a claim), before its own events. */
  reportTransitions(): void;
}

/** The events about one request (all but `error`). */
export type KeyedEvent = Exclude<keyof ManagerEvents, 'error'>;

/** One job of a worker: its context and the run that finishes it. */
interface JobEntry {
  readonly job: JobContext;
  done: Promise<void>;
}

/** Progress is sent to the queue at most this often; later values ride on the next send. */
const PROGRESS_SEND_INTERVAL_MS = 1000;
const MAX_CONCURRENCY = MAX_CLAIM_BATCH;
/**
 * Most claims asked of one `claimMany` call. A few at a time already share the file queue's
 * transactions; more would hold its write lock and the event loop longer (a batch is one
 * transaction), delay the first job of the batch, and take a whole burst from the other worker
 * processes sharing the queue.
 */
const CLAIM_BATCH = 16;
/** Ready times a worker keeps for timed wakes (retries it requeued, groups' next turns). */
const MAX_READY_TIMES = 64;
/** Placeholder for a job's `done` until its run has started. */
const STARTED: Promise<void> = Promise.resolve();
/** Tries of one call that finishes a job (complete, fail, cancel acknowledgement) on retryable errors. */
const FINISH_TRIES = 5;

/**
 * The worker loop of `RequestManager.process`: claims while slots are free, runs the handler,
 * renews every lease from one heartbeat timer, and finishes each job with a fenced commit.
 */
export class WorkerRuntime implements Worker, JobHost {
  readonly id: string;
  readonly #host: WorkerHost;
  readonly #handler: Handler;
  readonly #concurrency: number;
  readonly #groups: readonly string[] | undefined;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  /**
   * Jobs by lease token, not by key: a handler that ignores its signal after a lost lease may
   * still run when this worker claims the same request again.
   */
  readonly #jobs = new Map<string, JobEntry>();
  /**
   * Tokens of jobs whose handler returned and whose completion was sent: their slot is handed on
   * at once (see {@link #handOnSlot}), though they stay in {@link #jobs} until the queue answers.
   */
  readonly #handedOn = new Set<string>();
  #pumping = false;
  /** The claim loop while it runs (a stop waits for a claim in flight). */
  #pumpRun: Promise<void> | undefined;
  #again = false;
  #pollTimer: TimerHandle | undefined;
  /** Times this worker knows work comes ready (a retry it wrote, a group's next turn), soonest first. */
  #readyTimes: number[] = [];
  /** The timer of the soonest of them. */
  #readyTimer: { readonly at: number; readonly handle: TimerHandle } | undefined;
  #heartbeatTimer: TimerHandle | undefined;
  /**
   * Set once stop() has drained the jobs, not when it begins: jobs finishing in the grace period
   * (or committing past it) still need their leases renewed.
   */
  #heartbeatsOver = false;
  /** The capacity report in flight: stop() waits for it, so that it cannot land after removeWorker. */
  #reporting: Promise<void> | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  /** Claim options, rebuilt only when the host hands out another policies object (one claim per job). */
  #claimOptions: ClaimOptions | undefined;

  constructor(host: WorkerHost, handler: Handler, given?: WorkerOptions) {
    if (typeof handler !== 'function') throw new InvalidRequestError('handler', 'process() needs a handler function');
    const options = optionsArgument(given, 'options');
    this.#host = host;
    this.#handler = handler;
    this.#concurrency = intOption(options.concurrency, 'concurrency', 1, 1, MAX_CONCURRENCY);
    this.#leaseMs = intOption(
      options.leaseMs,
      'leaseMs',
      host.settings.leaseMs,
      LEASE_MS_BOUNDS.min,
      LEASE_MS_BOUNDS.max,
    );
    this.#pollMs = intOption(options.pollMs, 'pollMs', host.settings.pollMs, POLL_MS_BOUNDS.min, POLL_MS_BOUNDS.max);
    if (options.groups !== undefined) {
      if (!Array.isArray(options.groups) || options.groups.length === 0) {
        throw new InvalidRequestError('groups', 'must be a non-empty array of group names');
      }
      options.groups.forEach((g, i) => {
        if (typeof g !== 'string' || !GROUP_PATTERN.test(g)) {
          throw new InvalidRequestError(`groups[${String(i)}]`, `${showValue(g)} is not a valid group name`);
        }
      });
      this.#groups = [...options.groups];
    }
    this.id = `${hostname()}-${String(process.pid)}-${randomUUID().slice(0, 8)}`;
  }

  get cache(): CacheManager {
    return this.#host.cache;
  }

  get clock(): Clock {
    return this.#host.clock;
  }

  get syncCache(): SyncCacheOps | undefined {
    return this.#host.sync?.cache;
  }

  get active(): number {
    return this.#jobs.size;
  }

  /** Begins claiming. */
  start(): void {
    this.#scheduleHeartbeat();
    this.#report();
    this.wake();
  }

  /** Claims at once if a slot is free (new work was submitted in this process). */
  wake(): void {
    if (this.#stopping) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    if (this.#busy() >= this.#concurrency) return;
    this.#pumping = true;
    this.#pumpRun = this.#pump();
  }

  /** A cancel was requested in this process: abort the job at once if it runs here. */
  notifyCancel(key: string): void {
    // A scan, not a second map kept on every claim: cancels are rare, claims are not.
    for (const { job } of this.#jobs.values()) if (job.key === key) job.abort('cancelled');
  }

  stop(given?: { graceMs?: number }): Promise<void> {
    if (this.#stopped === undefined) {
      const invalid = optionsArgumentError(given, 'options');
      if (invalid !== undefined) return Promise.reject(invalid);
      const graceMs = (given as { graceMs?: unknown } | undefined)?.graceMs ?? this.#leaseMs;
      if (typeof graceMs !== 'number' || Number.isNaN(graceMs) || graceMs < 0) {
        return Promise.reject(
          new InvalidRequestError('graceMs', `must be a number of milliseconds, 0 or more; got ${showValue(graceMs)}`),
        );
      }
      this.#stopped = this.#stop(graceMs);
    }
    return this.#stopped;
  }

  async reportProgress(job: JobContext, percent: number, message: string | undefined): Promise<void> {
    // A job whose lease ran out (its process stalled past it) may no longer hold the request: it
    // may be pending again or run by another attempt, whose progress an event from this one would
    // contradict. Nothing is told, and the job learns it lost the lease, as a heartbeat would.
    if (this.#leaseLapsed(job)) {
      job.abort('lease-lost');
      throw new LeaseLostError(job.key);
    }
    job.unsentProgress = { percent, message };
    this.#host.emitKeyed('progress', {
      key: job.key,
      progress: percent,
      ...(message === undefined ? {} : { message }),
    });
    if (this.clock.now() - job.lastProgressSentAt >= PROGRESS_SEND_INTERVAL_MS) {
      await job.untilHalted(this.#beat(job));
      // Progress presents the lease token: a worker that learns here that it lost the lease is told so.
      if (job.abortReason === 'lease-lost') throw new LeaseLostError(job.key);
    }
  }

  /** The job lost its lease, or its lease ran out while it was not finishing (its process stalled). */
  #leaseLapsed(job: JobContext): boolean {
    return job.abortReason === 'lease-lost' || this.#leaseOver(job, this.clock.now());
  }

  /**
   * The job's lease is over by this process's own clock, and the job is not finishing: a job whose
   * handler has returned learns from its fenced calls whether it still holds the lease, and its
   * signal is not aborted on a guess (the run may well complete).
   */
  #leaseOver(job: JobContext, now: number): boolean {
    return now >= job.leaseExpiresAt && !job.finishing;
  }

  async #pump(): Promise<void> {
    const sync = this.#host.sync;
    try {
      // Claims start on a later tick even when they are synchronous: whoever woke the worker (a
      // submit, say) finishes first, as with any adapter.
      if (sync !== undefined) await STARTED;
      do {
        this.#again = false;
        while (!this.#stopping && this.#busy() < this.#concurrency) {
          if (this.#groups?.length === 0) break;
          const started = sync !== undefined ? this.#claimSync(sync) : await this.#claimAsync();
          if (!started) break;
        }
      } while (this.#wakeRequested() && !this.#stopping && this.#busy() < this.#concurrency);
    } catch (error) {
      if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: claim` });
    } finally {
      this.#pumping = false;
    }
    if (!this.#stopping && this.#busy() < this.#concurrency) this.#schedulePoll();
  }

  /** One claim on the synchronous twins; true when it started a job (and another may follow). */
  #claimSync(sync: ManagerSyncOps): boolean {
    const lease = sync.queue.claim(this.#claimOptionsNow());
    if (lease === undefined) return false;
    this.#startJob(lease);
    return true;
  }

  /**
   * One claim, or a batch of up to {@link CLAIM_BATCH} where the queue has a batch step (the file
   * queue claims it in one transaction, and the jobs started together then commit their results
   * and completions together too). True when every lease asked for was taken and started: more
   * may be claimable.
   */
  async #claimAsync(): Promise<boolean> {
    const queue = this.#host.queue;
    const batch = queue.claimMany === undefined ? 1 : Math.min(this.#concurrency - this.#busy(), CLAIM_BATCH);
    let leases: Lease[];
    if (queue.claimMany === undefined || batch === 1) {
      const lease = await queue.claim(this.#claimOptionsNow());
      leases = lease === undefined ? [] : [lease];
    } else {
      leases = await queue.claimMany(this.#claimOptionsNow(), batch);
    }
    for (let i = 0; i < leases.length; i++) {
      if (this.#stopRequested()) {
        // Stopped while the claim was in flight, or by a job of this batch: the rest go back at
        // once, unrun.
        await Promise.all(leases.slice(i).map((lease) => this.#release(lease.record.key, lease.token, false)));
        return false;
      }
      this.#startJob(leases[i] as Lease);
    }
    return leases.length === batch;
  }

  #claimOptionsNow(): ClaimOptions {
    const policies = this.#host.groupPolicies();
    let options = this.#claimOptions;
    if (options?.policies !== policies) {
      options =
        this.#groups === undefined
          ? { workerId: this.id, leaseMs: this.#leaseMs, policies }
          : { workerId: this.id, leaseMs: this.#leaseMs, policies, groups: this.#groups };
      this.#claimOptions = options;
    }
    return options;
  }

  /** Read through a method: the flag changes while the claim loop awaits. */
  #wakeRequested(): boolean {
    return this.#again;
  }

  /**
   * Wakes the worker at `at`, when work it knows of comes ready: a retry it requeued, the next
   * turn of a group with `minIntervalMs` it claimed from. Without it, such work would wait for the
   * next poll, and a backoff of 100 ms or a rate of one claim per 200 ms would run on the poll's
   * grid (1 s by default). The times are kept in order (at most {@link MAX_READY_TIMES}; a later
   * one beyond is left to the poll), and one timer waits for the soonest.
   */
  #wakeAt(at: number): void {
    if (this.#stopping) return;
    const times = this.#readyTimes;
    if (times.includes(at)) return;
    if (times.length >= MAX_READY_TIMES) {
      if (at >= (times[times.length - 1] ?? at)) return;
      times.pop();
    }
    let i = times.length;
    while (i > 0 && (times[i - 1] ?? 0) > at) i--;
    times.splice(i, 0, at);
    this.#armReadyTimer();
  }

  #armReadyTimer(): void {
    const next = this.#readyTimes[0];
    const current = this.#readyTimer;
    if (current !== undefined) {
      if (current.at === next) return;
      this.clock.clearTimeout(current.handle);
      this.#readyTimer = undefined;
    }
    if (next === undefined || this.#stopping) return;
    const handle = this.clock.setTimeout(
      () => {
        this.#readyTimer = undefined;
        const now = this.clock.now();
        const times = this.#readyTimes;
        while (times.length > 0 && (times[0] ?? 0) <= now) times.shift();
        this.#armReadyTimer();
        this.wake();
      },
      Math.max(0, next - this.clock.now()),
    );
    this.#readyTimer = { at: next, handle };
  }

  #schedulePoll(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = this.clock.setTimeout(() => {
      this.#pollTimer = undefined;
      this.wake();
    }, this.#pollMs);
  }

  #startJob(lease: Lease): void {
    const { record, token } = lease;
    const interval = this.#claimOptions?.policies[record.group]?.minIntervalMs;
    if (interval !== undefined && interval > 0) this.#wakeAt(this.clock.now() + interval);
    const job = new JobContext(
      this,
      record.key,
      record.request,
      record.attempts,
      token,
      record.leaseExpiresAt ?? this.clock.now() + this.#leaseMs,
    );
    // Registered before the handler starts: it runs synchronously up to its first await.
    const entry: JobEntry = { job, done: STARTED };
    this.#jobs.set(token, entry);
    // The claim may have ended an earlier lease of this very key (requeued): that is told first.
    // Told, not thrown: the job is registered (its lease renewed) and must run, or it would hold
    // its slot and its lease for ever. The adapter keeps what it could not hand over for next time.
    try {
      this.#host.reportTransitions();
    } catch (error) {
      if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: transitions` });
    }
    if (this.#host.events.listenerCount('claimed') > 0) {
      this.#host.emitKeyed('claimed', { key: record.key, attempt: record.attempts, workerId: this.id });
    }
    entry.done = this.#run(job, record.maxAttempts);
  }

  /**
   * Runs and finishes one job, then frees its slot. Never rejects: it reports its own errors. Not
   * async: the usual job (handler returns, synchronous adapters) finishes in one callback on the
   * handler's promise, without an async frame of its own.
   */
  #run(job: JobContext, maxAttempts: number): Promise<void> {
    let result: unknown;
    try {
      result = this.#handler(job);
    } catch (error) {
      job.markReturned();
      return this.#end(job, { error }, maxAttempts);
    }
    return Promise.resolve(result).then(
      () => {
        job.markReturned();
        return this.#handlerReturned(job, maxAttempts);
      },
      (error: unknown) => {
        job.markReturned();
        return this.#end(job, { error }, maxAttempts);
      },
    );
  }

  /** The handler returned: complete at once when nothing is left in flight, else the general path. */
  #handlerReturned(job: JobContext, maxAttempts: number): Promise<void> | undefined {
    const sync = this.#host.sync;
    if (sync === undefined || job.writing || job.writeFailure !== undefined || job.abortReason !== undefined)
      return this.#end(job, undefined, maxAttempts);
    job.close();
    let done: boolean | { error: unknown };
    try {
      done = this.#completeNow(job, sync);
    } catch (error) {
      return this.#finishFailed(job, error);
    }
    if (done !== true) return this.#end(job, done === false ? undefined : done, maxAttempts);
    this.#free(job);
    return undefined;
  }

  /** Finishes a job whatever happened (the general path); then frees its slot. */
  async #end(job: JobContext, handlerFailure: { error: unknown } | undefined, maxAttempts: number): Promise<void> {
    try {
      let failure = handlerFailure;
      if (failure === undefined && job.writing) {
        try {
          await job.settleWrites();
        } catch (error) {
          failure = { error };
        }
      }
      // A write that failed while nobody awaited it fails the run as a thrown error would.
      failure ??= job.writeFailure;
      job.close();
      try {
        // The success path has its own small method: an async frame holds every local of its function.
        if (failure === undefined && job.abortReason === undefined) {
          const sync = this.#host.sync;
          const done = sync === undefined ? false : this.#completeNow(job, sync);
          if (done === false) await this.#complete(job, maxAttempts);
          else if (done !== true) await this.#finish(job, done, maxAttempts);
        } else await this.#finish(job, failure, maxAttempts);
      } catch (error) {
        await this.#reportFinishError(job, error);
      }
    } finally {
      this.#free(job);
    }
  }

  /** Finishing a job threw: its staged output goes, and the error is told. Then frees its slot. */
  async #finishFailed(job: JobContext, error: unknown): Promise<void> {
    try {
      await this.#reportFinishError(job, error);
    } finally {
      this.#free(job);
    }
  }

  async #reportFinishError(job: JobContext, error: unknown): Promise<void> {
    await job.discard();
    if (LeaseLostError.is(error)) job.abort('lease-lost');
    else if (!ClosedError.is(error))
      this.#host.events.emit('error', { error, context: `worker ${this.id}: finishing '${job.key}'` });
  }

  /** The job is over: its slot goes to the next one. */
  #free(job: JobContext): void {
    this.#jobs.delete(job.token);
    this.#handedOn.delete(job.token);
    // Even for a slot handed on: the claim it woke may have found nothing because the queue had
    // not yet applied this completion (a group at its maxConcurrent, on a queue that frees the
    // group's slot after the record). With the slot taken meanwhile, this claims nothing.
    this.#refill();
  }

  /** Slots taken: jobs running, and jobs finishing whose slot was not handed on. */
  #busy(): number {
    return this.#jobs.size - this.#handedOn.size;
  }

  /**
   * The handler of `job` returned and its completion is on its way: its slot goes to the next
   * claim now rather than when the queue answers, so that the claim joins the completion's
   * round trip (the file queue's group commit takes both in one transaction; a remote queue
   * overlaps the two requests). The next handler then starts one round trip earlier. At most
   * `concurrency` slots are handed on at once, so a queue slow to answer completions holds at most
   * twice the leases, never an unbounded number.
   */
  #handOnSlot(job: JobContext): void {
    if (this.#stopping || this.#handedOn.size >= this.#concurrency) return;
    this.#handedOn.add(job.token);
    this.wake();
  }

  /**
   * A slot was freed: claims the next jobs at once when the queue claims synchronously (this runs
   * on the tick that finished a job, never inside a caller's submit), else wakes the claim loop.
   */
  #refill(): void {
    const sync = this.#host.sync;
    if (sync === undefined || this.#pumping || this.#stopping) {
      this.wake();
      return;
    }
    try {
      while (this.#busy() < this.#concurrency && this.#groups?.length !== 0 && !this.#stopRequested()) {
        const lease = sync.queue.claim(this.#claimOptionsNow());
        if (lease === undefined) break;
        this.#startJob(lease);
      }
    } catch (error) {
      if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: claim` });
    }
    if (!this.#stopRequested() && this.#busy() < this.#concurrency) this.#schedulePoll();
  }

  /** Read through a method: a handler started by the claim loop may stop the worker. */
  #stopRequested(): boolean {
    return this.#stopping;
  }

  /**
   * {@link #complete} in one synchronous step over the adapters' twins, when the lease needs no
   * renewal first: true when done; false (nothing done) when the lease needs renewal; the error
   * when the result could not be stored (nothing done: the run failed, as on the promise path).
   * Throws what the other calls throw.
   */
  #completeNow(job: JobContext, sync: ManagerSyncOps): boolean | { error: unknown } {
    const now = this.clock.now();
    if (job.leaseExpiresAt - now < this.#leaseMs / 2 || job.unsentProgress !== undefined) return false;
    let manifest;
    try {
      manifest = job.commitNow(sync.cache, job.request.sticky === true ? 'persistent' : 'temporary');
    } catch (error) {
      if (LeaseLostError.is(error) || ClosedError.is(error)) throw error;
      // Handed back, not thrown: a result that cannot be stored fails this attempt (and is
      // retried if the error allows), as #complete does; thrown, it would only be told, and the
      // request would sit running until its lease ran out, then run again with its cause lost.
      return { error };
    }
    const durationMs = now - job.startedAt;
    const retainUntil = this.#host.retainUntil();
    const record = sync.queue.complete(
      job.key,
      job.token,
      retainUntil === undefined ? { durationMs } : { durationMs, retainUntil },
    );
    // A sticky submit joined the request while it ran: its result is kept.
    if (record.request.sticky === true && manifest.area === 'temporary' && sync.cache.promote(job.key)) {
      manifest = { ...manifest, area: 'persistent' as const };
    }
    if (this.#host.events.listenerCount('completed') > 0) {
      this.#host.emitKeyed('completed', { key: job.key, status: completedStatus(record, manifest) });
    }
    return true;
  }

  /** A handler that returned, not aborted: fenced commit, then complete. */
  async #complete(job: JobContext, maxAttempts: number): Promise<void> {
    const queue = this.#host.queue;
    // Fence the commit: make sure the lease is ours and fresh before the result becomes visible.
    if (job.leaseExpiresAt - this.clock.now() < this.#leaseMs / 2 || job.unsentProgress !== undefined) {
      const beat = await this.#persist(job, () => queue.heartbeat(job.key, job.token, { leaseMs: this.#leaseMs }));
      job.leaseExpiresAt = beat.leaseExpiresAt;
      if (beat.cancelRequested) {
        await this.#acknowledgeCancel(job);
        return;
      }
    }
    // A heartbeat of the timer may have found the lease lost meanwhile: then nothing may show.
    if (job.abortReason === 'lease-lost' || job.leaseLostAfterReturn) {
      await job.discard();
      return;
    }
    let manifest;
    try {
      manifest = await job.commit(job.request.sticky === true ? 'persistent' : 'temporary');
    } catch (error) {
      if (LeaseLostError.is(error) || ClosedError.is(error)) throw error;
      // The result could not be stored: this attempt failed (and is retried if the error allows).
      await this.#finish(job, { error }, maxAttempts);
      return;
    }
    const durationMs = this.clock.now() - job.startedAt;
    const retainUntil = this.#host.retainUntil();
    const completing = this.#persist(job, () =>
      queue.complete(job.key, job.token, retainUntil === undefined ? { durationMs } : { durationMs, retainUntil }),
    );
    // After the completion was sent: a claim woken here is queued behind it.
    this.#handOnSlot(job);
    const record = await completing;
    // A sticky submit joined the request while it ran (the record says so now): its result is
    // kept. The request is complete either way; a failed promotion is reported, not retried.
    if (record.request.sticky === true && manifest.area === 'temporary') {
      try {
        if (await this.#host.cache.promote(job.key)) manifest = { ...manifest, area: 'persistent' as const };
      } catch (error) {
        if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: promote` });
      }
    }
    // The status is built only for someone to see it.
    if (this.#host.events.listenerCount('completed') > 0) {
      this.#host.emitKeyed('completed', { key: job.key, status: completedStatus(record, manifest) });
    }
  }

  /**
   * Runs a call that finishes a job, again after a short backoff when it fails with a retryable
   * backend error, while the job's lease holds (the heartbeat timer keeps renewing it): one
   * hiccup must not leave the request running until its lease runs out, and run it again.
   */
  async #persist<T>(job: JobContext, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        const retryable = BackendError.is(error) && error.retryable;
        const delay = retryDelay(
          attempt,
          Math.min(this.#host.settings.retryBaseMs, this.#leaseMs / 10),
          this.#leaseMs / 4,
        );
        if (
          !retryable ||
          attempt >= FINISH_TRIES ||
          job.abortReason === 'lease-lost' ||
          this.clock.now() + delay >= job.leaseExpiresAt
        ) {
          throw error;
        }
        this.#host.events.emit('error', {
          error,
          context: `worker ${this.id}: finishing '${job.key}' (try ${String(attempt)} of ${String(FINISH_TRIES)}, trying again)`,
        });
        await new Promise<void>((resolve) => {
          this.clock.setTimeout(resolve, delay);
        });
      }
    }
  }

  /** A job aborted, or whose handler failed. */
  async #finish(job: JobContext, failure: { error: unknown } | undefined, maxAttempts: number): Promise<void> {
    const { queue } = this.#host;
    const reason: AbortReason | undefined = job.abortReason;
    if (reason === 'lease-lost' || reason === 'shutdown') {
      // Someone else may hold the request now (or will, once stop() released it): touch nothing.
      await job.discard();
      return;
    }
    if (reason === 'cancelled') {
      await this.#acknowledgeCancel(job);
      return;
    }
    if (failure === undefined) {
      await this.#complete(job, maxAttempts);
      return;
    }
    await job.discard();
    const error = toErrorInfo(failure.error);
    const { retryBaseMs, retryMaxMs } = this.#host.settings;
    if (error.retryable && job.attempt < maxAttempts) {
      const retryAt = this.clock.now() + retryDelay(job.attempt, retryBaseMs, retryMaxMs);
      // The retainUntil applies if a cancel requested elsewhere wins over the retry.
      const retainUntil = this.#host.retainUntil();
      const record = await this.#persist(job, () =>
        queue.fail(job.key, job.token, {
          error,
          retryAt,
          ...(retainUntil === undefined ? {} : { retainUntil }),
        }),
      );
      if (record.state === 'cancelled') {
        this.#host.emitKeyed('cancelled', { key: job.key, running: true });
        return;
      }
      this.#host.emitKeyed('retried', {
        key: job.key,
        error,
        attempt: job.attempt,
        retryAt: new Date(retryAt).toISOString(),
      });
      this.#wakeAt(retryAt);
      return;
    }
    const retainUntil = this.#host.retainUntil();
    const record = await this.#persist(job, () =>
      queue.fail(job.key, job.token, { error, ...(retainUntil === undefined ? {} : { retainUntil }) }),
    );
    if (record.state === 'cancelled') this.#host.emitKeyed('cancelled', { key: job.key, running: true });
    else this.#host.emitKeyed('failed', { key: job.key, error, attempts: job.attempt });
  }

  async #acknowledgeCancel(job: JobContext): Promise<void> {
    await job.discard();
    const retainUntil = this.#host.retainUntil();
    await this.#persist(job, () =>
      this.#host.queue.acknowledgeCancel(job.key, job.token, retainUntil === undefined ? {} : { retainUntil }),
    );
    this.#host.emitKeyed('cancelled', { key: job.key, running: true });
  }

  /** One fenced heartbeat for one job: renews the lease, sends progress, learns of cancel. */
  async #beat(job: JobContext): Promise<void> {
    if (job.aborted) return;
    const progress = job.unsentProgress;
    job.unsentProgress = undefined;
    job.lastProgressSentAt = this.clock.now();
    job.beatsInFlight++;
    try {
      const result = await this.#host.queue.heartbeat(job.key, job.token, {
        leaseMs: this.#leaseMs,
        ...(progress === undefined ? {} : { progress: progress.percent }),
        ...(progress?.message === undefined ? {} : { message: progress.message }),
      });
      job.leaseExpiresAt = result.leaseExpiresAt;
      // A job whose handler returned is committing: its result stands (the signal has no reader).
      if (result.cancelRequested && !job.finishing) job.abort('cancelled');
    } catch (error) {
      if (LeaseLostError.is(error)) {
        // After the handler returned, the job's own completion may just have ended the lease:
        // noted for the commit, not told to the signal (a run that completed never saw a loss).
        if (job.finishing) job.leaseLostAfterReturn = true;
        else job.abort('lease-lost');
        return;
      }
      if (progress !== undefined) job.unsentProgress ??= progress;
      // A backend hiccup: keep going while the lease is still ours by our own clock.
      if (this.#leaseOver(job, this.clock.now())) job.abort('lease-lost');
      if (!ClosedError.is(error))
        this.#host.events.emit('error', { error, context: `worker ${this.id}: heartbeat '${job.key}'` });
    } finally {
      job.beatsInFlight--;
    }
  }

  #scheduleHeartbeat(): void {
    if (this.#heartbeatsOver) return;
    this.#heartbeatTimer = this.clock.setTimeout(
      () => {
        this.#heartbeatTimer = undefined;
        // Rescheduled whatever this round meets: one bad round must not end the heartbeats for good.
        try {
          this.#heartbeatAll();
        } finally {
          this.#scheduleHeartbeat();
        }
      },
      Math.max(1, Math.floor(this.#leaseMs / 3)),
    );
    this.#heartbeatTimer.unref?.();
  }

  /**
   * One round: a beat for each job on its own, never waiting for another's. A job whose last beat
   * has not answered is not sent another (calls would pile up on a backend that hangs); the next
   * round comes on time all the same, so one slow call cannot let every other lease run out.
   */
  #heartbeatAll(): void {
    const now = this.clock.now();
    for (const { job } of this.#jobs.values()) {
      if (job.beatsInFlight === 0) {
        void this.#beat(job);
        continue;
      }
      // No answer, and the lease is over by our own clock: as when a beat fails (see #beat).
      if (this.#leaseOver(job, now)) job.abort('lease-lost');
    }
    // A stopping worker claims no more: its capacity is not announced again.
    if (!this.#stopping) this.#report();
  }

  #report(): void {
    // One report at a time: a report that hangs is not joined by more.
    if (this.#reporting !== undefined) return;
    // Called from a promise job, so that an adapter that throws rather than rejects is caught too.
    const reporting = Promise.resolve()
      .then(() => this.#host.queue.reportWorker(this.id, this.#concurrency, this.#leaseMs))
      .catch((error: unknown) => {
        if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: report` });
      })
      .finally(() => {
        if (this.#reporting === reporting) this.#reporting = undefined;
      });
    this.#reporting = reporting;
  }

  async #stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#pollTimer !== undefined) this.clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    if (this.#readyTimer !== undefined) this.clock.clearTimeout(this.#readyTimer.handle);
    this.#readyTimer = undefined;
    this.#readyTimes = [];
    // A claim in flight ends first: a lease it brings back is handed back by the claim loop itself.
    if (this.#pumpRun !== undefined) await this.#pumpRun;
    const running = () => [...this.#jobs.values()].map((e) => e.done);
    if (this.#jobs.size > 0 && graceMs > 0) {
      let timer: TimerHandle | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, graceMs);
      });
      await Promise.race([Promise.all(running()), grace]);
      if (timer !== undefined) this.clock.clearTimeout(timer);
    }
    // Handlers still running past the grace period: abort them and hand their leases back at once.
    // A job whose handler has returned is committing its result: it finishes, and is waited for
    // (releasing its lease under it would let its result show on a request queued again).
    // Neither wait outlives the job's lease by more than one lease: a backend call that hangs (a
    // half-open socket) would otherwise hold stop() and close() for ever, and past the lease the
    // queue fences the job anyway.
    const finishing: Promise<void>[] = [];
    await Promise.all(
      [...this.#jobs.values()].map(async ({ job, done }) => {
        if (job.finishing) {
          finishing.push(this.#whileLeaseHolds(job, done));
          return;
        }
        if (job.aborted) return;
        job.abort('shutdown');
        await this.#whileLeaseHolds(job, this.#release(job.key, job.token));
      }),
    );
    await Promise.all(finishing);
    this.#heartbeatsOver = true;
    if (this.#heartbeatTimer !== undefined) this.clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
    // A report sent before the stop began would otherwise land after removeWorker and count this
    // worker's slots again until its ttl ran out.
    if (this.#reporting !== undefined) await this.#reporting;
    try {
      await this.#host.queue.removeWorker(this.id);
    } catch (error) {
      // Its report runs out by itself (the ttl): the stop goes on, and whatever the failure, the
      // worker is detached, so that close() still closes the adapters.
      if (!ClosedError.is(error)) this.#host.events.emit('error', { error, context: `worker ${this.id}: remove` });
    } finally {
      this.#host.detach(this);
    }
  }

  /**
   * Waits for `work` until the job's lease, as it stands when the wait begins, has run out, and one
   * lease more: a deadline fixed once, since heartbeats that go on renewing the lease (on another
   * socket) would otherwise keep a wait on a call that hangs going for ever. Past it the worker
   * stops renewing, and the queue fences the job.
   */
  async #whileLeaseHolds(job: JobContext, work: Promise<void>): Promise<void> {
    const now = this.clock.now();
    const left = Math.max(job.leaseExpiresAt, now) + this.#leaseMs - now;
    let timer: TimerHandle | undefined;
    await Promise.race([
      work.catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, left);
      }),
    ]);
    if (timer !== undefined) this.clock.clearTimeout(timer);
  }

  /**
   * Hands a lease back (not counted as an attempt), so another worker takes the request at once.
   * `started` is false for a lease handed back unrun: no `claimed` was told for it, so no
   * `requeued` is either (a cancel that wins is told all the same: the request ended).
   */
  async #release(key: string, token: string, started = true): Promise<void> {
    try {
      const retainUntil = this.#host.retainUntil();
      const record = await this.#host.queue.release(key, token, {
        countAttempt: false,
        ...(retainUntil === undefined ? {} : { retainUntil }),
      });
      if (record.state === 'cancelled') this.#host.emitKeyed('cancelled', { key, running: started });
      else if (started) this.#host.emitKeyed('requeued', { key, reason: 'released' });
    } catch (error) {
      if (!LeaseLostError.is(error) && !ClosedError.is(error)) {
        this.#host.events.emit('error', { error, context: `worker ${this.id}: release '${key}'` });
      }
    }
  }
}

function intOption(value: unknown, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(
      field,
      `must be an integer from ${String(min)} to ${String(max)}, got ${typeof value === 'number' ? String(value) : typeof value}`,
    );
  }
  return value;
}
