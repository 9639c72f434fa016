import { PassThrough } from 'node:stream';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ManualClock, SystemClock } from '../src/clock.js';
import {
  AbortedError,
  BackendError,
  ClosedError,
  ConflictError,
  InvalidRequestError,
  LeaseLostError,
  PermanentError,
} from '../src/errors.js';
import { buildRequestManager } from '../src/manager/build.js';
import { REQUEST_EVENT_NAMES } from '../src/manager/types.js';
import type { Job, RequestManager } from '../src/manager/types.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { StagedResult } from '../src/spi/cache.js';
import { ForwardingCacheManager, ForwardingQueueManager } from '../src/spi/forwarding.js';
import type {
  ClaimOptions,
  CompleteOptions,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  QueueRecord,
  UriStats,
} from '../src/spi/queue.js';

use(chaiAsPromised);

// The worker runtime's own duties, on the promise path (a ForwardingQueueManager hides the memory
// adapters' synchronous twins, as any other backend would) and, where it differs, the sync path.

interface Gate<T> {
  promise: Promise<T>;
  open: (value: T) => void;
}

function gate<T = void>(): Gate<T> {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** What a promise rejected with (undefined when it resolved). */
function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** Every event of the manager, as `<name> <key>` lines, in order. */
function eventLog(rm: RequestManager): string[] {
  const seen: string[] = [];
  for (const name of REQUEST_EVENT_NAMES) {
    rm.events.on(name, (p) => {
      const { key } = p;
      const reason = (p as { reason?: string }).reason;
      seen.push(reason === undefined ? `${name} ${key}` : `${name} ${key} ${reason}`);
    });
  }
  return seen;
}

/** A queue whose calls can be held or made to fail, for the runtime's race windows. */
class ScriptedQueue extends ForwardingQueueManager {
  heldClaim: Gate<void> | undefined;
  heldUriStats: Gate<void> | undefined;
  heartbeatFails: (() => Error) | undefined;
  /** Heartbeats reach the queue, but their answers are lost on the way back. */
  heartbeatRepliesLost = false;
  readonly failures: { complete: number; fail: number } = { complete: 0, fail: 0 };
  readonly calls: string[] = [];

  override async claim(options: ClaimOptions): Promise<Lease | undefined> {
    this.calls.push('claim');
    const held = this.heldClaim;
    if (held === undefined) return this.inner.claim(options);
    this.heldClaim = undefined;
    await held.promise;
    return this.inner.claim(options);
  }

  heldBatch: Gate<void> | undefined;
  /** The `max` of every claimMany call, in order. */
  readonly batches: number[] = [];

  /** The memory adapter's batch step, watched (ForwardingQueueManager itself has no claimMany). */
  async claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    this.batches.push(max);
    this.calls.push('claimMany');
    const held = this.heldBatch;
    if (held !== undefined) {
      this.heldBatch = undefined;
      await held.promise;
    }
    const batch = await this.inner.claimMany?.(options, max);
    if (batch === undefined) throw new Error('the inner queue has no claimMany');
    return batch;
  }

  override async uriStats(uri?: string): Promise<UriStats[]> {
    const held = this.heldUriStats;
    if (held !== undefined) {
      this.heldUriStats = undefined;
      await held.promise;
    }
    return this.inner.uriStats(uri);
  }

  /** While set, every heartbeat hangs: sent, never answered (a half-open socket). */
  heartbeatHangs = false;
  /** Status reads (`get`) still to fail, and with what. */
  getFailures: Error[] = [];

  /** When set, the `nth` status read from now waits for `gate`, then fails with `error`. */
  heldGet: { nth: number; gate: Gate<void>; error: Error; reached: boolean } | undefined;

  override get(key: string): Promise<QueueRecord | undefined> {
    const held = this.heldGet;
    if (held !== undefined && --held.nth === 0) {
      this.heldGet = undefined;
      held.reached = true;
      return held.gate.promise.then(() => Promise.reject(held.error));
    }
    const failure = this.getFailures.shift();
    return failure === undefined ? this.inner.get(key) : Promise.reject(failure);
  }

  override async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    if (this.heartbeatHangs) return new Promise<never>(() => undefined);
    const fails = this.heartbeatFails;
    if (fails !== undefined) throw fails();
    const result = await this.inner.heartbeat(key, token, options);
    if (this.heartbeatRepliesLost) throw new BackendError('socket hang up', { retryable: true });
    return result;
  }

  /** While set, every complete waits for it (the call is made, the answer is held). */
  heldCompletes: Gate<void> | undefined;

  override async complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    this.calls.push('complete');
    const held = this.heldCompletes;
    if (held !== undefined) await held.promise;
    if (this.failures.complete > 0) {
      this.failures.complete--;
      throw new BackendError('throttled', { retryable: true });
    }
    return this.inner.complete(key, token, options);
  }

  override fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    this.calls.push('fail');
    if (this.failures.fail > 0) {
      this.failures.fail--;
      return Promise.reject(new BackendError('connection reset', { retryable: true }));
    }
    return this.inner.fail(key, token, options);
  }
}

/** A cache whose commits wait for a gate, so a stop can land while a finished job commits. */
class SlowCommitCache extends ForwardingCacheManager {
  readonly commits: Gate<void>[] = [];

  override async stage(key: string): Promise<StagedResult> {
    const staged = await this.inner.stage(key);
    const commits = this.commits;
    return {
      key: staged.key,
      write: (format, data, options) => staged.write(format, data, options),
      formats: () => staged.formats(),
      abort: () => staged.abort(),
      async commit(area, options) {
        const held = gate();
        commits.push(held);
        await held.promise;
        return staged.commit(area, options);
      },
    };
  }
}

interface Rig {
  clock: ManualClock;
  rm: RequestManager;
  memory: MemoryQueueManager;
  queue: ScriptedQueue;
  cache: SlowCommitCache;
}

function rig(settings: Parameters<typeof buildRequestManager>[0]['settings'] = {}): Rig {
  const clock = new ManualClock();
  const memory = new MemoryQueueManager({}, clock);
  const queue = new ScriptedQueue(memory);
  const cache = new SlowCommitCache(new MemoryCacheManager({}, clock));
  const rm = buildRequestManager({
    queue,
    cache,
    clock,
    settings: { leaseMs: 3000, pollMs: 50, sweepMs: 100, retryBaseMs: 10, ...settings },
  });
  return { clock, rm, memory, queue, cache };
}

/** Runs a worker of `concurrency` whose jobs write one csv; the keys of the jobs started, in order. */
function recordRuns(r: Rig, concurrency: number): string[] {
  const started: string[] = [];
  r.rm.process(
    async (job) => {
      started.push(job.key);
      await job.write('csv', 'x');
    },
    { concurrency },
  );
  return started;
}

/** Lets the held commits through as they come, until `done` settles. */
async function commitAll(r: Rig, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) {
    for (const held of r.cache.commits.splice(0)) held.open();
    await r.clock.advance(10);
  }
}

describe('worker runtime', () => {
  let r: Rig;
  afterEach(async () => {
    for (const held of r.cache.commits.splice(0)) held.open();
    r.queue.heldCompletes?.open();
    await r.rm.close();
  });

  it('keeps track of both runs when it claims again a request whose old handler ignores the lost lease', async () => {
    r = rig({ leaseMs: 300 });
    const log = eventLog(r.rm);
    const releases: (() => void)[] = [];
    let running = 0;
    let mostRunning = 0;
    const worker = r.rm.process(
      async (job) => {
        running++;
        mostRunning = Math.max(mostRunning, running);
        // Ignores job.signal on purpose.
        await new Promise<void>((resolve) => releases.push(resolve));
        await job.write('csv', `attempt ${String(job.attempt)}`).catch(() => undefined);
        running--;
      },
      { concurrency: 2 },
    );
    const { key } = await r.rm.submit({ uri: '/reclaim' });
    await r.clock.advance(10);
    r.queue.heartbeatFails = () => new BackendError('network down', { retryable: true });
    // The lease runs out; the sweep puts the request back and this same worker claims it again.
    await r.clock.advance(400);
    r.queue.heartbeatFails = undefined;
    expect(log.filter((e) => e.startsWith('claimed'))).to.have.length(2);
    expect(worker.active).to.equal(2);
    releases[0]?.();
    await r.clock.advance(1);
    expect(worker.active).to.equal(1);
    // The second run keeps its lease alive with heartbeats, far past leaseMs.
    await r.clock.advance(1000);
    expect((await r.rm.status(key)).state).to.equal('running');
    releases[1]?.();
    await commitAll(r, () => worker.active === 0);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('completed');
    expect(status.attempts).to.equal(2);
    expect(log.filter((e) => e.startsWith('requeued'))).to.deep.equal([`requeued ${key} lease-expired`]);
    expect(mostRunning).to.equal(2);
  });

  it('fills its free slots with one claimMany call, and a single free slot with a plain claim', async () => {
    r = rig();
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) keys.push((await r.rm.submit({ uri: '/batch', params: { i: String(i) } })).key);
    const running = new Map<string, Gate<void>>();
    const worker = r.rm.process(
      async (job) => {
        const held = gate();
        running.set(job.key, held);
        await held.promise;
      },
      { concurrency: 3 },
    );
    await r.clock.tick();
    expect(r.queue.batches, 'one call for the three free slots').to.deep.equal([3]);
    expect(worker.active).to.equal(3);
    expect([...running.keys()]).to.deep.equal(keys.slice(0, 3));
    running.get(keys[0] ?? '')?.open();
    await commitAll(r, () => running.size > 3);
    expect(r.queue.batches, 'no batch for the one slot set free').to.deep.equal([3]);
    expect([...running.keys()]).to.deep.equal(keys.slice(0, 4));
    for (const held of running.values()) held.open();
    const stopped = worker.stop({ graceMs: 1000 });
    await commitAll(r, () => worker.active === 0);
    await stopped;
  });

  it('asks for at most 16 claims per claimMany call, and goes on while the batches come back full', async () => {
    r = rig();
    for (let i = 0; i < 60; i++) await r.rm.submit({ uri: '/wide', params: { i: String(i) } });
    const release = gate();
    const worker = r.rm.process(() => release.promise, { concurrency: 50 });
    await r.clock.tick();
    expect(r.queue.batches).to.deep.equal([16, 16, 16, 2]);
    expect(worker.active).to.equal(50);
    release.open();
    const stopped = worker.stop({ graceMs: 1000 });
    await commitAll(r, () => worker.active === 0);
    await stopped;
  });

  it('claims one at a time through a queue with no claimMany, starting each job as soon as its claim returns', async () => {
    const clock = new ManualClock();
    const secondClaim = gate();
    let claims = 0;
    class OneByOne extends ForwardingQueueManager {
      override async claim(options: ClaimOptions): Promise<Lease | undefined> {
        if (++claims === 2) await secondClaim.promise;
        return this.inner.claim(options);
      }
    }
    const cache = new SlowCommitCache(new MemoryCacheManager({}, clock));
    const memory = new MemoryQueueManager({}, clock);
    const rm = buildRequestManager({ queue: new OneByOne(memory), cache, clock, settings: { pollMs: 50 } });
    r = { clock, rm, memory, queue: new ScriptedQueue(memory), cache };
    for (let i = 0; i < 3; i++) await rm.submit({ uri: '/one-by-one', params: { i: String(i) } });
    const started: string[] = [];
    const release = gate();
    const worker = rm.process(
      async (job) => {
        started.push(job.key);
        await release.promise;
      },
      { concurrency: 3 },
    );
    await clock.tick();
    expect(started, 'the first job runs while the second claim is in flight').to.have.length(1);
    secondClaim.open();
    await clock.advance(10);
    expect(started).to.have.length(3);
    release.open();
    const stopped = worker.stop({ graceMs: 1000 });
    await commitAll(r, () => worker.active === 0);
    await stopped;
  });

  it('hands back, unrun, the rest of a batch when a job of it stops the worker', async () => {
    r = rig();
    const log = eventLog(r.rm);
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) keys.push((await r.rm.submit({ uri: '/stop-in-batch', params: { i: String(i) } })).key);
    const started: string[] = [];
    let stopping: Promise<void> | undefined;
    const worker = r.rm.process(
      async (job) => {
        started.push(job.key);
        stopping ??= worker.stop({ graceMs: 1000 });
        await Promise.resolve();
      },
      { concurrency: 3 },
    );
    await r.clock.tick();
    expect(r.queue.batches).to.deep.equal([3]);
    await commitAll(r, () => worker.active === 0);
    await stopping;
    expect(started).to.deep.equal([keys[0]]);
    for (const key of keys.slice(1)) {
      const status = await r.rm.status(key);
      expect(status.state, key).to.equal('pending');
      expect(status.attempts, key).to.equal(0);
      // Never told as claimed, so not as requeued either: to the outside it stayed pending.
      expect(log.filter((e) => e.includes(key) && !e.startsWith('submitted'))).to.deep.equal([]);
    }
  });

  it('hands back, unrun, every request of a batch its claimMany in flight brings back after stop() began', async () => {
    r = rig();
    const log = eventLog(r.rm);
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) keys.push((await r.rm.submit({ uri: '/late-batch', params: { i: String(i) } })).key);
    const held = gate();
    r.queue.heldBatch = held;
    let started = 0;
    const worker = r.rm.process(
      async () => {
        started++;
        await Promise.resolve();
      },
      { concurrency: 3 },
    );
    await r.clock.tick();
    const stopping = worker.stop({ graceMs: 1000 });
    held.open();
    await r.clock.advance(10);
    await stopping;
    expect(r.queue.batches).to.deep.equal([3]);
    expect(started).to.equal(0);
    for (const key of keys) {
      const status = await r.rm.status(key);
      expect(status.state, key).to.equal('pending');
      expect(status.attempts, key).to.equal(0);
      // Never told as claimed, so not as requeued either: to the outside it stayed pending.
      expect(log.filter((e) => e.includes(key) && !e.startsWith('submitted'))).to.deep.equal([]);
    }
    expect(log.filter((e) => e.startsWith('claimed'))).to.have.length(0);
  });

  it('hands back, unrun, a request its claim in flight brings back after stop() began', async () => {
    r = rig();
    const log = eventLog(r.rm);
    const { key } = await r.rm.submit({ uri: '/late-claim' });
    const held = gate();
    r.queue.heldClaim = held;
    let started = 0;
    const worker = r.rm.process(async () => {
      started++;
      await Promise.resolve();
    });
    await r.clock.tick();
    let stopped = false;
    const stopping = worker.stop({ graceMs: 1000 }).then(() => (stopped = true));
    await r.clock.advance(10);
    expect(stopped, 'stop() waits for the claim in flight').to.equal(false);
    held.open();
    await r.clock.advance(10);
    await stopping;
    expect(started).to.equal(0);
    expect(worker.active).to.equal(0);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('pending');
    expect(status.attempts).to.equal(0);
    // Never told as claimed, so not as requeued either: to the outside it stayed pending.
    expect(log.filter((e) => e.includes(key) && !e.startsWith('submitted'))).to.deep.equal([]);
    expect(log.filter((e) => e.startsWith('claimed'))).to.have.length(0);
  });

  it('lets a job that is committing finish when stop() ends the grace period, never releasing it under the commit', async () => {
    r = rig();
    const log = eventLog(r.rm);
    const worker = r.rm.process(async (job) => {
      await job.write('csv', 'result');
    });
    const { key } = await r.rm.submit({ uri: '/stop-while-committing' });
    await r.clock.advance(10);
    expect(r.cache.commits).to.have.length(1);
    let stopped = false;
    const stopping = worker.stop({ graceMs: 0 }).then(() => (stopped = true));
    await r.clock.advance(10);
    expect(stopped, 'stop() waits for the commit').to.equal(false);
    r.cache.commits.splice(0).forEach((held) => {
      held.open();
    });
    await r.clock.advance(10);
    await stopping;
    const status = await r.rm.status(key);
    expect(status.state).to.equal('completed');
    expect(status.attempts).to.equal(1);
    expect(log.filter((e) => e.startsWith('requeued'))).to.have.length(0);
    expect(log).to.include(`completed ${key}`);
  });

  it('stops, and closes, once the lease of a finishing job whose fence heartbeat hangs has run out', async () => {
    r = rig({ leaseMs: 3000 });
    const go = gate();
    const worker = r.rm.process(async (job) => {
      await go.promise;
      await job.write('csv', 'result');
    });
    await r.rm.submit({ uri: '/hung-fence' });
    await r.clock.advance(1);
    r.queue.heartbeatHangs = true;
    // Less than half the lease is left when the handler returns: the commit is fenced by a heartbeat, which hangs.
    await r.clock.advance(2000);
    go.open();
    await r.clock.advance(10);
    let stopped = false;
    void worker.stop({ graceMs: 0 }).then(() => (stopped = true));
    // The lease ran out at about 3,001; the wait gives it one lease more.
    await r.clock.advance(3500);
    expect(stopped, 'waits while the lease (and one more) holds').to.equal(false);
    await r.clock.advance(1000);
    expect(stopped, 'gives up once it has run out').to.equal(true);
    expect(r.cache.commits, 'nothing was committed').to.have.length(0);
  });

  it('stops within two leases when a completion hangs while heartbeats go on renewing the lease', async () => {
    r = rig({ leaseMs: 3000 });
    const worker = r.rm.process(async (job) => {
      await job.write('csv', 'result');
    });
    r.queue.heldCompletes = gate();
    await r.rm.submit({ uri: '/hung-complete' });
    await commitAll(r, () => r.queue.calls.includes('complete'));
    let stopped = false;
    void worker.stop({ graceMs: 0 }).then(() => (stopped = true));
    for (let t = 0; t < 5500; t += 500) await r.clock.advance(500);
    expect(stopped, 'waits while the lease (renewed) holds').to.equal(false);
    for (let t = 0; t < 1500; t += 500) await r.clock.advance(500);
    expect(stopped, 'gives up at the deadline set when the stop began').to.equal(true);
  });

  it('rejects job.progress() with LeaseLostError when the lease runs out while its heartbeat hangs', async () => {
    r = rig({ leaseMs: 3000 });
    const go = gate();
    // What each run's progress() ended with (undefined: it returned).
    const outcomes: unknown[] = [];
    r.rm.process(async (job) => {
      await go.promise;
      outcomes.push(await rejectionOf(job.progress(10)));
    });
    await r.rm.submit({ uri: '/hung-progress' });
    await r.clock.advance(1);
    r.queue.heartbeatHangs = true;
    go.open();
    await r.clock.advance(1);
    expect(outcomes, 'progress waits for its heartbeat').to.have.length(0);
    await r.clock.advance(4000);
    // The handler was told, went on and ended (the request, queued again once its lease ran out, runs again).
    expect(outcomes.length, 'progress() ended').to.be.at.least(1);
    expect(LeaseLostError.is(outcomes[0]), String(outcomes[0])).to.equal(true);
  });

  it('polls a waitFor through a transient status failure, and rejects on any other', async () => {
    r = rig();
    const errors: string[] = [];
    r.rm.events.on('error', (e) => errors.push(e.context));
    const { key } = await r.rm.submit({ uri: '/wait-through' });
    r.queue.getFailures.push(new BackendError('throttled', { retryable: true }));
    let outcome = 'waiting';
    const waiting = r.rm.waitFor(key, { timeoutMs: 60_000 }).then(
      (status) => (outcome = status.state),
      (error: unknown) => (outcome = String(error)),
    );
    await r.clock.advance(300);
    expect(outcome).to.equal('waiting');
    expect(
      errors.some((c) => c.startsWith(`waitFor '${key}'`)),
      errors.join('; '),
    ).to.equal(true);
    const started = recordRuns(r, 1);
    await commitAll(r, () => outcome !== 'waiting');
    await waiting;
    expect(started).to.deep.equal([key]);
    expect(outcome).to.equal('completed');

    const other = await r.rm.submit({ uri: '/wait-fails' });
    r.queue.getFailures.push(new BackendError('access denied', { retryable: false }));
    await expect(r.rm.waitFor(other.key, { timeoutMs: 60_000 })).to.be.rejectedWith(BackendError, /access denied/);
  });

  it('acts at once on a completion told while a failing status read of its waitFor was in flight', async () => {
    r = rig();
    const { key } = await r.rm.submit({ uri: '/wait-recheck' });
    // The waitFor's second read (its check right after it subscribed) hangs, then fails retryably.
    const held = { nth: 2, gate: gate(), error: new BackendError('throttled', { retryable: true }), reached: false };
    r.queue.heldGet = held;
    let outcome = 'waiting';
    void r.rm.waitFor(key, { timeoutMs: 60_000 }).then(
      (status) => (outcome = status.state),
      (error: unknown) => (outcome = String(error)),
    );
    await r.clock.tick();
    expect(held.reached, 'the second read is in flight').to.equal(true);
    let completed = false;
    r.rm.events.on('completed', (e) => {
      if (e.key === key) completed = true;
    });
    recordRuns(r, 1);
    await commitAll(r, () => completed);
    expect(completed).to.equal(true);
    expect(outcome, 'the completion waits for the read in flight').to.equal('waiting');
    // The read fails; the completion told meanwhile is acted on now, not at the next poll (the
    // clock stands still from here, so no poll comes).
    held.gate.open();
    await r.clock.tick();
    expect(outcome).to.equal('completed');
  });

  /** A job whose handler has returned and whose commit is held (leaseMs 300). */
  async function committingJob(uri: string): Promise<{ key: string; job: () => Job | undefined }> {
    r = rig({ leaseMs: 300 });
    let job: Job | undefined;
    r.rm.process(async (j) => {
      job = j;
      await j.write('csv', 'result');
    });
    const { key } = await r.rm.submit({ uri });
    await r.clock.advance(10);
    expect(r.cache.commits).to.have.length(1);
    return { key, job: () => job };
  }

  it('aborts no signal on its own clock alone, but refuses the commit once that clock says the lease ran out', async () => {
    const { key, job } = await committingJob('/commit-through-hiccups');
    // The queue keeps renewing the lease; the worker never hears so, and its own clock runs out.
    r.queue.heartbeatRepliesLost = true;
    await r.clock.advance(400);
    expect(job()?.signal.aborted).to.equal(false);
    r.queue.heartbeatRepliesLost = false;
    // The commit point comes after the lease as this worker last heard of it: it cannot tell lost
    // replies from a lease another worker may hold by now, so it publishes nothing (fencing comes
    // first), and the request runs again once the lease it stopped renewing runs out.
    await commitAll(r, () => false);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('completed');
    expect(status.attempts).to.equal(2);
  });

  it('aborts no signal when a heartbeat meets the end of the lease its own completion made', async () => {
    const { key, job } = await committingJob('/heartbeat-after-return');
    // As when the completion lands first: the heartbeat sent meanwhile finds the lease over.
    r.queue.heartbeatFails = () => new LeaseLostError(key);
    await r.clock.advance(150);
    r.queue.heartbeatFails = undefined;
    expect(job()?.signal.aborted).to.equal(false);
    await commitAll(r, () => false);
    expect((await r.rm.status(key)).state).to.equal('completed');
    expect(job()?.signal.aborted).to.equal(false);
  });

  it('rejects job.progress() with LeaseLostError when the heartbeat it sends finds the lease lost', async () => {
    r = rig();
    r.queue.heartbeatFails = () => new LeaseLostError('x');
    let outcome: unknown;
    let aborted: boolean | undefined;
    r.rm.process(async (job) => {
      outcome = await job.progress(10).then(
        () => 'resolved',
        (error: unknown) => error,
      );
      aborted = job.signal.aborted;
    });
    await r.rm.submit({ uri: '/progress-after-loss' });
    await r.clock.advance(10);
    expect(LeaseLostError.is(outcome), String(outcome)).to.equal(true);
    expect(aborted).to.equal(true);
  });

  it('hands a slot on once the completion is sent: the next claim goes out before the queue answers it', async () => {
    r = rig();
    const held = gate();
    r.queue.heldCompletes = held;
    const started = recordRuns(r, 1);
    const first = await r.rm.submit({ uri: '/hand-on', params: { i: '1' } });
    await commitAll(r, () => r.queue.calls.includes('complete'));
    const second = await r.rm.submit({ uri: '/hand-on', params: { i: '2' } });
    await commitAll(r, () => started.length === 2);
    // The second job ran while the first one's completion was still unanswered.
    expect(started).to.deep.equal([first.key, second.key]);
    expect((await r.memory.get(first.key))?.state).to.equal('running');
    expect(r.queue.calls.indexOf('complete')).to.be.lessThan(r.queue.calls.lastIndexOf('claim'));
    held.open();
    await commitAll(r, () => false);
    expect((await r.rm.status(first.key)).state).to.equal('completed');
    expect((await r.rm.status(second.key)).state).to.equal('completed');
  });

  it('claims again as soon as a completion is answered when the handed-on claim found the group full', async () => {
    r = rig({ pollMs: 1_000 });
    r.rm.configureGroup('serial', { maxConcurrent: 1 });
    const held = gate();
    r.queue.heldCompletes = held;
    const started = recordRuns(r, 1);
    for (let i = 0; i < 2; i++) await r.rm.submit({ uri: '/serial', params: { i: String(i) }, group: 'serial' });
    await commitAll(r, () => r.queue.calls.includes('complete'));
    // The claim the completion woke found the group full: the first record is still running.
    expect(started).to.have.length(1);
    held.open();
    r.queue.heldCompletes = undefined;
    for (let i = 0; i < 5 && started.length < 2; i++) await r.clock.advance(1);
    expect(started, 'the second job starts within a few ms, not a poll of 1 s later').to.have.length(2);
  });

  it('counts in active the jobs whose completion the queue has not answered yet', async () => {
    r = rig();
    const held = gate();
    r.queue.heldCompletes = held;
    const worker = r.rm.process(async (job) => job.write('csv', 'x'), { concurrency: 1 });
    for (let i = 0; i < 3; i++) await r.rm.submit({ uri: '/active', params: { i: String(i) } });
    await commitAll(r, () => false);
    // One finishing (its slot handed on) and one running, its own completion held as well.
    expect(worker.active).to.equal(2);
    held.open();
    await commitAll(r, () => worker.active === 0);
    expect(worker.active).to.equal(0);
  });

  it('holds at most twice its concurrency in leases while completions go unanswered', async () => {
    r = rig();
    const held = gate();
    r.queue.heldCompletes = held;
    const started = recordRuns(r, 2);
    for (let i = 0; i < 8; i++) await r.rm.submit({ uri: '/held', params: { i: String(i) } });
    await commitAll(r, () => false);
    // Two running, two finishing with their slots handed on; the other four wait.
    expect(started).to.have.length(4);
    expect((await r.memory.counts()).byState).to.include({ running: 4, pending: 4 });
    held.open();
    await commitAll(r, () => started.length === 8);
    expect(started).to.have.length(8);
  });

  it('tries a complete that hit a retryable backend error again, so the request completes on its first attempt', async () => {
    r = rig();
    const errors: string[] = [];
    r.rm.events.on('error', (e) => errors.push(e.context));
    r.queue.failures.complete = 2;
    let runs = 0;
    r.rm.process(async (job) => {
      runs++;
      await job.write('csv', 'done');
    });
    const { key } = await r.rm.submit({ uri: '/flaky-complete' });
    await commitAll(r, () => r.queue.calls.filter((c) => c === 'complete').length >= 3);
    await r.clock.advance(100);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('completed');
    expect(status.attempts).to.equal(1);
    expect(runs).to.equal(1);
    expect(errors).to.have.length(2);
    expect(errors[0]).to.match(/trying again/);
  });

  it('records a PermanentError at once even when the fail call first hits a retryable backend error', async () => {
    r = rig();
    r.queue.failures.fail = 1;
    let runs = 0;
    r.rm.process(() => {
      runs++;
      return Promise.reject(new PermanentError('bad input'));
    });
    const { key } = await r.rm.submit({ uri: '/flaky-fail' });
    await r.clock.advance(500);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('failed');
    expect(status.error?.code).to.equal('PERMANENT');
    expect(status.attempts).to.equal(1);
    expect(runs).to.equal(1);
  });

  it('tells submitted before claimed and completed when a polling worker runs the request during the submit', async () => {
    r = rig();
    const log = eventLog(r.rm);
    r.rm.process(async (job) => {
      await job.write('csv', 'x');
    });
    await r.clock.tick();
    const held = gate();
    r.queue.heldUriStats = held;
    const submitting = r.rm.submit({ uri: '/order' });
    // The worker's poll claims and runs the request while the submit reads the figures of its status.
    await r.clock.advance(60);
    expect(r.cache.commits).to.have.length(1);
    r.cache.commits.splice(0).forEach((c) => {
      c.open();
    });
    await r.clock.advance(10);
    expect(r.queue.calls).to.include('complete');
    expect(log, 'held until the submit tells of it').to.deep.equal([]);
    held.open();
    const { key } = await submitting;
    await r.clock.tick();
    expect(log).to.deep.equal([`submitted ${key}`, `claimed ${key}`, `completed ${key}`]);
  });

  it('fails the run, without an unhandled rejection, when a write the handler did not await fails', async () => {
    r = rig();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const retried: string[] = [];
      r.rm.events.on('retried', (e) => retried.push(e.error.message));
      let attempt = 0;
      r.rm.process(async (job: Job) => {
        attempt = job.attempt;
        if (job.attempt > 1) return job.write('csv', 'second try');
        void job.write(
          'csv',
          (async function* () {
            yield Buffer.from('a');
            await Promise.resolve();
            throw new Error('source broke');
          })(),
        );
        // The write fails before the handler returns (the memory cache does no I/O: one turn of
        // the event loop runs the write's whole promise chain).
        await new Promise<void>((resolve) => setImmediate(resolve));
      });
      const { key } = await r.rm.submit({ uri: '/unawaited' });
      await commitAll(r, () => attempt > 1 && r.cache.commits.length === 0);
      await r.clock.advance(500);
      for (const c of r.cache.commits.splice(0)) c.open();
      await r.clock.advance(10);
      // Let a pending unhandled-rejection report reach its listener.
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(unhandled).to.deep.equal([]);
      expect(retried).to.deep.equal(['source broke']);
      expect((await r.rm.status(key)).state).to.equal('completed');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('completes a run whose handler caught a failed write and wrote the format again', async () => {
    r = rig();
    r.rm.process(async (job) => {
      const broken = (async function* () {
        yield Buffer.from('a');
        await Promise.resolve();
        throw new Error('first source broke');
      })();
      await job.write('csv', broken).catch(() => job.write('csv', 'from the second source'));
    });
    const { key } = await r.rm.submit({ uri: '/rewrite' });
    await commitAll(r, () => false);
    const status = await r.rm.status(key);
    expect(status.state).to.equal('completed');
    expect(status.attempts).to.equal(1);
  });

  it('refuses a bad waitFor timeout or stop grace period with InvalidRequestError naming the field', async () => {
    r = rig();
    const { key } = await r.rm.submit({ uri: '/bad-timeouts' });
    for (const timeoutMs of [Number.NaN, -1, '5' as unknown as number]) {
      const error = await rejectionOf(r.rm.waitFor(key, { timeoutMs }));
      expect(InvalidRequestError.is(error), String(error)).to.equal(true);
      expect((error as InvalidRequestError).field).to.equal('timeoutMs');
    }
    const worker = r.rm.process(async () => {
      await Promise.resolve();
    });
    const error = await rejectionOf(worker.stop({ graceMs: -5 }));
    expect(InvalidRequestError.is(error), String(error)).to.equal(true);
    expect((error as InvalidRequestError).field).to.equal('graceMs');
  });
});

type Path = 'sync' | 'promise';

interface Bench {
  clock: ManualClock;
  rm: RequestManager;
  /** The queue adapter itself: tests replace its calls on the instance, which both paths reach. */
  memory: MemoryQueueManager;
  /** Every `error` event's context and message. */
  errors: string[];
}

/**
 * A manager over the memory adapters, held directly (the synchronous fast path) or behind the
 * forwarding decorators (the promise path, as any other backend).
 */
function bench(
  path: Path,
  settings: Parameters<typeof buildRequestManager>[0]['settings'] = {},
  cacheOptions: ConstructorParameters<typeof MemoryCacheManager>[0] = {},
): Bench {
  const clock = new ManualClock();
  const memory = new MemoryQueueManager({}, clock);
  const memoryCache = new MemoryCacheManager(cacheOptions, clock);
  const rm = buildRequestManager({
    queue: path === 'sync' ? memory : new ForwardingQueueManager(memory),
    cache: path === 'sync' ? memoryCache : new ForwardingCacheManager(memoryCache),
    clock,
    settings: { leaseMs: 3000, pendingTtlMs: 0, ...settings },
  });
  const errors: string[] = [];
  rm.events.on('error', (e) => errors.push(`${e.context}: ${String(e.error)}`));
  return { clock, rm, memory, errors };
}

/** Resolves after `ms` of the manual clock. */
function later(clock: ManualClock, ms: number): Promise<void> {
  return new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
}

/** A clock whose time can jump without firing the timers due meanwhile: a process that stalled. */
class StallClock extends ManualClock {
  offset = 0;
  override now(): number {
    return super.now() + this.offset;
  }
}

describe('worker runtime, a job whose lease ran out while its process stalled', () => {
  for (const path of ['sync', 'promise'] as const) {
    it(`tells no progress of it once another attempt runs the request (${path} path)`, async () => {
      const clock = new StallClock();
      const memory = new MemoryQueueManager({}, clock);
      const rm = buildRequestManager({
        queue: path === 'sync' ? memory : new ForwardingQueueManager(memory),
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: { leaseMs: 3000, sweepMs: 60_000 },
      });
      try {
        const progress: number[] = [];
        rm.events.on('progress', (e) => progress.push(e.progress));
        const computed = gate();
        let lateProgress: Promise<unknown> | undefined;
        rm.process(
          async (job) => {
            if (job.attempt === 1) {
              await computed.promise;
              lateProgress = rejectionOf(job.progress(90, 'almost done'));
              await lateProgress;
              throw job.signal.reason;
            }
            await job.progress(10, 'attempt 2 started');
            await new Promise<never>(() => undefined);
          },
          { concurrency: 2 },
        );
        const { key } = await rm.submit({ uri: '/stalls', key: 'k' });
        await clock.tick();
        clock.offset += 4000; // past the 3 s lease, with no heartbeat timer fired
        await rm.sweep(); // requeued; the second slot claims attempt 2
        await clock.tick();
        computed.open();
        await clock.tick();
        expect(LeaseLostError.is(await lateProgress)).to.equal(true);
        expect(progress).to.deep.equal([10]);
        const status = await rm.status(key);
        expect(status).to.include({ state: 'running', attempts: 2, progress: 10 });
      } finally {
        await rm.close();
      }
    });
  }
});

describe('worker runtime, on the sync and the promise path', () => {
  let b: Bench | undefined;
  afterEach(async () => {
    if (b === undefined) return;
    // A test that failed may leave a stop() waiting out its grace period: time moves until it ends.
    const state = { closed: false };
    const closing = b.rm.close().finally(() => (state.closed = true));
    for (let i = 0; i < 100 && !state.closed; i++) await b.clock.advance(1000);
    await closing;
    b = undefined;
  });

  for (const path of ['sync', 'promise'] as const) {
    describe(`${path} path`, () => {
      it('keeps renewing the lease of a job that finishes within the grace period of stop()', async () => {
        const t = (b = bench(path));
        const log = eventLog(t.rm);
        const finish = gate();
        const worker = t.rm.process(async (job) => {
          await finish.promise;
          await job.write('csv', 'a,b\n');
        });
        const { key } = await t.rm.submit({ uri: '/finishes-in-grace' });
        await t.clock.tick();
        const stopping = worker.stop({ graceMs: 10_000 });
        // Twice the lease, well within the grace period.
        await t.clock.advance(6000);
        const during = await t.rm.status(key);
        expect(during.state).to.equal('running');
        expect(during.attempts).to.equal(1);
        finish.open();
        await t.clock.advance(100);
        await stopping;
        const status = await t.rm.status(key);
        expect(status.state).to.equal('completed');
        expect(status.attempts).to.equal(1);
        expect(await t.rm.read(key, 'csv')).to.not.equal(undefined);
        expect(log.filter((e) => e.startsWith('requeued'))).to.deep.equal([]);
      });

      it('fails the request at once, with the cause, when its result cannot be stored', async () => {
        const t = (b = bench(path, { maxAttempts: 3 }, { maxTemporaryBytes: 1000 }));
        let runs = 0;
        t.rm.process(async (job) => {
          runs++;
          // Over the memory cache's maxTemporaryBytes: the commit throws BackendError (not retryable).
          await job.write('csv', 'x'.repeat(5000));
        });
        const { key } = await t.rm.submit({ uri: '/too-big' });
        await t.clock.advance(10);
        const status = await t.rm.status(key);
        expect(status.state).to.equal('failed');
        expect(status.error?.code).to.equal('BACKEND');
        expect(status.error?.retryable).to.equal(false);
        expect(status.error?.message).to.match(/maxTemporaryBytes/);
        expect(status.attempts).to.equal(1);
        await t.clock.advance(40_000);
        expect(runs).to.equal(1);
        expect((await t.rm.status(key)).state).to.equal('failed');
        expect(await t.rm.read(key, 'csv')).to.equal(undefined);
      });

      it('keeps renewing the other leases while one job’s heartbeat never answers', async () => {
        const t = (b = bench(path));
        let hung: string | undefined = undefined;
        const heartbeat = t.memory.heartbeat.bind(t.memory);
        t.memory.heartbeat = (key, token, options) =>
          key === hung ? new Promise<never>(() => undefined) : heartbeat(key, token, options);
        const jobs = new Map<string, Job>();
        const worker = t.rm.process(
          async (job) => {
            jobs.set(job.request.uri, job);
            await new Promise<void>((resolve) => {
              job.signal.addEventListener('abort', () => {
                resolve();
              });
            });
          },
          { concurrency: 2 },
        );
        const a = await t.rm.submit({ uri: '/a' });
        const other = await t.rm.submit({ uri: '/b' });
        await t.clock.tick();
        expect(worker.active).to.equal(2);
        hung = a.key;
        await t.clock.advance(10_000);
        const status = await t.rm.status(other.key);
        expect(status.state).to.equal('running');
        expect(status.attempts).to.equal(1);
        expect(jobs.get('/b')?.signal.aborted).to.equal(false);
        const record = await t.memory.get(other.key);
        expect(record?.leaseExpiresAt).to.be.greaterThan(t.clock.now());
        // The job whose beats hang learns, by its own clock, that its lease has run out.
        expect(jobs.get('/a')?.signal.aborted).to.equal(true);
      });

      it('frees the slot of a cancelled job whose handler returned with a write stream still open', async () => {
        const t = (b = bench(path));
        const streams: PassThrough[] = [];
        const worker = t.rm.process(async (job) => {
          if (job.request.uri === '/next') return job.write('csv', 'done');
          const stream = new PassThrough();
          streams.push(stream);
          stream.write('a,b\n');
          // Never ended: the handler forgot to.
          void job.write('csv', stream).catch(() => undefined);
          await Promise.resolve();
        });
        const open = await t.rm.submit({ uri: '/open' });
        const next = await t.rm.submit({ uri: '/next' });
        await t.clock.advance(10_000);
        expect(worker.active).to.equal(1);
        expect((await t.rm.status(next.key)).state).to.equal('pending');
        await t.rm.cancel(open.key);
        await t.clock.advance(10);
        expect((await t.rm.status(open.key)).state).to.equal('cancelled');
        expect(streams[0]?.destroyed, 'the source is no longer read').to.equal(true);
        await t.clock.advance(1000);
        expect((await t.rm.status(next.key)).state).to.equal('completed');
        expect(worker.active).to.equal(0);
        expect(await t.rm.read(open.key, 'csv')).to.equal(undefined);
      });

      it('ends the read of a never-answering async iterable, and asks it to return, when the job is cancelled', async () => {
        const t = (b = bench(path));
        let returned = 0;
        const source: AsyncIterable<Uint8Array> = {
          [Symbol.asyncIterator]: () => ({
            next: () => new Promise<IteratorResult<Uint8Array>>(() => undefined),
            return: () => {
              returned++;
              return Promise.resolve({ done: true as const, value: undefined });
            },
          }),
        };
        let outcome: unknown;
        const worker = t.rm.process(async (job) => {
          outcome = await job.write('csv', source).then(
            () => 'written',
            (error: unknown) => error,
          );
        });
        const { key } = await t.rm.submit({ uri: '/silent-source' });
        await t.clock.advance(10_000);
        expect(worker.active).to.equal(1);
        await t.rm.cancel(key);
        await t.clock.advance(10);
        expect(returned).to.equal(1);
        expect(AbortedError.is(outcome), String(outcome)).to.equal(true);
        expect((await t.rm.status(key)).state).to.equal('cancelled');
        expect(worker.active).to.equal(0);
      });

      it('runs a job whose claim could not tell the transitions the queue applied meanwhile', async () => {
        const t = (b = bench(path));
        const { key } = await t.rm.submit({ uri: '/take-throws' });
        const take = t.memory.takeTransitions.bind(t.memory);
        let fail = true;
        // The next call (the worker's first claim) throws, once.
        t.memory.takeTransitions = (options) => {
          if (!fail) return take(options);
          fail = false;
          throw new BackendError('journal read failed', { retryable: true });
        };
        let runs = 0;
        const worker = t.rm.process(async (job) => {
          runs++;
          await job.write('csv', 'x');
        });
        await t.clock.advance(100);
        expect(fail, 'the failure was met').to.equal(false);
        expect(runs).to.equal(1);
        expect(worker.active).to.equal(0);
        const status = await t.rm.status(key);
        expect(status.state).to.equal('completed');
        expect(status.attempts).to.equal(1);
        expect(t.errors.some((e) => e.includes('transitions') && e.includes('journal read failed'))).to.equal(true);
      });

      it('runs a retry when its backoff ends, not at the next poll', async () => {
        const t = (b = bench(path, { retryBaseMs: 100, retryMaxMs: 400, maxAttempts: 4 }));
        const runs: number[] = [];
        t.rm.process(async (job) => {
          runs.push(t.clock.now());
          if (runs.length < 4) throw new BackendError('try again', { retryable: true });
          await job.write('csv', 'x');
        });
        const { key } = await t.rm.submit({ uri: '/retry' });
        for (let i = 0; i < 150 && runs.length < 4; i++) await t.clock.advance(10);
        await t.rm.waitFor(key);
        expect(runs.length).to.equal(4);
        // Backoffs are drawn from [d/2, d] for d = 100, 200, 400 ms (the clock moves in steps of 10):
        // none waits for the poll, every 1000 ms.
        runs.slice(1).forEach((at, i) => {
          expect(at - (runs[i] ?? 0), `backoff ${String(i + 1)}`).to.be.within(50 * 2 ** i, 100 * 2 ** i + 10);
        });
      });

      it('claims from a group with minIntervalMs on its next turn, not at the next poll', async () => {
        const t = (b = bench(path));
        t.rm.configureGroup('slow', { minIntervalMs: 200 });
        const starts: number[] = [];
        t.rm.process(
          async (job) => {
            starts.push(t.clock.now());
            await job.write('csv', 'x');
          },
          { concurrency: 4 },
        );
        for (let i = 0; i < 5; i++) await t.rm.submit({ uri: '/slow', params: { i: String(i) }, group: 'slow' });
        for (let i = 0; i < 100 && starts.length < 5; i++) await t.clock.advance(10);
        expect(starts.length).to.equal(5);
        starts.slice(1).forEach((at, i) => {
          expect(at - (starts[i] ?? 0), `turn ${String(i + 1)}`).to.be.within(200, 210);
        });
      });

      it('refuses writes started after the handler returned, while it waits for the writes left running', async () => {
        const t = (b = bench(path));
        const late: string[] = [];
        async function* slow(ms: number): AsyncGenerator<Buffer> {
          yield Buffer.from('a');
          await later(t.clock, ms);
          yield Buffer.from('b');
        }
        t.rm.process(async (job) => {
          // Not awaited: the worker waits for it before it commits.
          void job.write('csv', slow(100));
          t.clock.setTimeout(() => {
            job.write('json', slow(500)).then(
              () => late.push('written'),
              (e: unknown) => late.push(ConflictError.is(e) ? 'refused' : String(e)),
            );
          }, 50);
          await Promise.resolve();
        });
        const { key } = await t.rm.submit({ uri: '/late-write' });
        for (let i = 0; i < 20; i++) await t.clock.advance(100);
        const status = await t.rm.status(key);
        expect(status.state, JSON.stringify(status.error)).to.equal('completed');
        expect(Object.keys(status.result?.formats ?? {})).to.deep.equal(['csv']);
        expect(late).to.deep.equal(['refused']);
      });

      it('takes progress reported by a write the handler left running', async () => {
        const t = (b = bench(path));
        const log = eventLog(t.rm);
        t.rm.process(async (job) => {
          async function* rows(): AsyncGenerator<Buffer> {
            yield Buffer.from('a\n');
            await job.progress(50, 'half');
            await later(t.clock, 100);
            yield Buffer.from('b\n');
          }
          void job.write('csv', rows());
          await Promise.resolve();
        });
        const { key } = await t.rm.submit({ uri: '/streamed-progress' });
        for (let i = 0; i < 5; i++) await t.clock.advance(100);
        const status = await t.rm.status(key);
        expect(status.state, JSON.stringify(status.error)).to.equal('completed');
        expect(log).to.include(`progress ${key}`);
      });

      it('keeps a group’s next turn when a retry comes due sooner', async () => {
        const t = (b = bench(path, { retryBaseMs: 100, retryMaxMs: 100, maxAttempts: 2 }));
        t.rm.configureGroup('slow', { minIntervalMs: 200 });
        const starts: number[] = [];
        let failed = false;
        t.rm.process(
          async (job) => {
            if (job.request.group === 'slow') starts.push(t.clock.now());
            else if (!failed) {
              failed = true;
              throw new BackendError('once more', { retryable: true });
            }
            await job.write('csv', 'x');
          },
          { concurrency: 4 },
        );
        await t.rm.submit({ uri: '/flaky' });
        for (let i = 0; i < 3; i++) await t.rm.submit({ uri: '/slow', params: { i: String(i) }, group: 'slow' });
        for (let i = 0; i < 60 && starts.length < 3; i++) await t.clock.advance(10);
        expect(starts.length).to.equal(3);
        starts.slice(1).forEach((at, i) => {
          expect(at - (starts[i] ?? 0), `turn ${String(i + 1)}`).to.be.within(200, 210);
        });
      });

      it('keeps its heartbeats going when the worker report throws instead of rejecting', async () => {
        const t = (b = bench(path));
        t.memory.reportWorker = () => {
          throw new Error('report exploded');
        };
        const finish = gate();
        t.rm.process(async (job) => {
          await finish.promise;
          await job.write('csv', 'x');
        });
        const { key } = await t.rm.submit({ uri: '/long' });
        // Ten leases of 3000 ms: only the heartbeats keep the job's lease.
        for (let i = 0; i < 30; i++) await t.clock.advance(1000);
        finish.open();
        await t.rm.waitFor(key);
        expect(await t.rm.status(key)).to.deep.include({ state: 'completed', attempts: 1 });
        expect(t.errors.filter((e) => e.includes('report exploded')).length).to.be.greaterThan(5);
      });

      it('stops, and lets the manager close its adapters, when removing the worker fails with a plain error', async () => {
        const t = bench(path);
        t.memory.removeWorker = () => Promise.reject(new Error('socket hang up'));
        const worker = t.rm.process(async (job) => {
          await job.write('csv', 'x');
        });
        await worker.stop();
        expect(t.errors).to.deep.equal([`worker ${worker.id}: remove: Error: socket hang up`]);
        await t.rm.close();
        expect(ClosedError.is(await rejectionOf(t.memory.capacity()))).to.equal(true);
      });

      it('does not count a stopped worker’s slots again when a report or heartbeat in flight lands later', async () => {
        const t = (b = bench(path));
        // Every heartbeat and report takes 500 ms to land.
        const heartbeat = t.memory.heartbeat.bind(t.memory);
        t.memory.heartbeat = (key, token, options) => later(t.clock, 500).then(() => heartbeat(key, token, options));
        const report = t.memory.reportWorker.bind(t.memory);
        t.memory.reportWorker = (id, slots, ttlMs) => later(t.clock, 500).then(() => report(id, slots, ttlMs));
        const worker = t.rm.process(
          async (job) => {
            await new Promise<void>((resolve) => {
              job.signal.addEventListener('abort', () => {
                resolve();
              });
            });
          },
          { concurrency: 4 },
        );
        await t.rm.submit({ uri: '/x' });
        // The heartbeat round of 1000 ms is in flight (it lands at 1500).
        await t.clock.advance(1100);
        expect((await t.memory.capacity()).slots).to.equal(4);
        const stopping = worker.stop({ graceMs: 0 });
        await t.clock.advance(600);
        await stopping;
        expect((await t.memory.capacity()).slots).to.equal(0);
        await t.clock.advance(2000);
        expect((await t.memory.capacity()).slots).to.equal(0);
      });
    });
  }
});

describe('SystemClock', () => {
  it('does not fire a timer longer than a Node timer takes (about 24.8 days) at once', async () => {
    const clock = new SystemClock();
    let fired = false;
    const long = clock.setTimeout(
      () => {
        fired = true;
      },
      2 ** 31 + 1000,
    );
    // Node fires an overflowed timer after 1 ms: this 5 ms timer comes after it, whatever the load.
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
    clock.clearTimeout(long);
    expect(fired).to.equal(false);
  });

  it('still fires an ordinary timer and cancels one', async () => {
    const clock = new SystemClock();
    let cancelledFired = false;
    const cancelled = clock.setTimeout(() => {
      cancelledFired = true;
    }, 1);
    clock.clearTimeout(cancelled);
    await new Promise<void>((resolve) => {
      clock.setTimeout(resolve, 2);
    });
    expect(cancelledFired).to.equal(false);
  });
});
