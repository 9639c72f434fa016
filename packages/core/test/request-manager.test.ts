import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ManualClock } from '../src/clock.js';
import { ClosedError, ConflictError, InvalidRequestError, LeaseLostError, TimeoutError } from '../src/errors.js';
import { buildRequestManager } from '../src/manager/build.js';
import type { Job, ManagerEvents, RequestManager } from '../src/manager/types.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import { retryDelay } from '../src/worker/backoff.js';
import { toErrorInfo } from '../src/worker/error-info.js';
import { ForwardingCacheManager, ForwardingQueueManager } from '../src/spi/forwarding.js';
import type { ResultManifest } from '../src/spi/cache.js';
import type { CacheArea } from '../src/model.js';
import { BackendError, ConfigError, PermanentError } from '../src/errors.js';

use(chaiAsPromised);

interface Rig {
  clock: ManualClock;
  rm: RequestManager;
  queue: MemoryQueueManager;
}

function rig(settings: Parameters<typeof buildRequestManager>[0]['settings'] = {}): Rig {
  const clock = new ManualClock();
  const queue = new MemoryQueueManager({}, clock);
  const cache = new MemoryCacheManager({}, clock);
  const rm = buildRequestManager({ queue, cache, clock, settings: { leaseMs: 3000, ...settings } });
  return { clock, rm, queue };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function record<K extends keyof ManagerEvents>(rm: RequestManager, name: K): ManagerEvents[K][] {
  const seen: ManagerEvents[K][] = [];
  rm.events.on(name, (p) => seen.push(p));
  return seen;
}

describe('DefaultRequestManager', () => {
  let r: Rig;
  afterEach(async () => {
    await r.rm.close();
  });

  describe('.submit / .status', () => {
    it('runs a request end to end and serves its result', async () => {
      r = rig();
      const submitted = record(r.rm, 'submitted');
      const completed = record(r.rm, 'completed');
      const s = await r.rm.submit({ uri: '/reports/sales', params: { year: '2025' } });
      expect(s.state).to.equal('pending');
      expect(s.position).to.equal(1);
      expect(s.etaMs).to.be.a('number');
      r.rm.process(async (job) => {
        await job.progress(50, 'half');
        await job.write('csv', 'a,b\n1,2\n');
      });
      const done = await r.rm.waitFor(s.key);
      expect(done.state).to.equal('completed');
      expect(done.attempts).to.equal(1);
      expect(done.result?.formats['csv']?.size).to.equal(8);
      expect(done.result?.formats['csv']?.contentType).to.match(/^text\/csv/);
      expect(submitted).to.have.length(1);
      expect(completed).to.have.length(1);
      const body = await r.rm.read(s.key);
      const chunks: Buffer[] = [];
      for await (const c of body!.body) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).to.equal('a,b\n1,2\n');
    });

    it('rejects a malformed request with a typed error and queues nothing', async () => {
      r = rig();
      await expect(r.rm.submit({ uri: '/x', key: '../etc' })).to.be.rejectedWith(InvalidRequestError, /key/);
      const m = await r.rm.metrics();
      expect(m.queueLength).to.equal(0);
    });

    it('rejects submit options that are not what they should be, naming the field, and queues nothing', async () => {
      r = rig();
      for (const options of [{ force: 'yes' }, { force: 1 }, 'force', null]) {
        const error: unknown = await r.rm.submit({ uri: '/x' }, options as never).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(InvalidRequestError.is(error), `${JSON.stringify(options)}: ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field).to.match(/^options/);
      }
      expect((await r.rm.metrics()).queueLength).to.equal(0);
      expect((await r.rm.submit({ uri: '/x' }, { force: false })).state).to.equal('pending');
    });

    it('reports a completed key whose result was cleared as unknown, and re-queues it on submit', async () => {
      r = rig();
      r.rm.process(async (job) => job.write('csv', 'x'));
      const s = await r.rm.submit({ uri: '/a' });
      await r.rm.waitFor(s.key);
      await r.rm.clearTemporary();
      expect((await r.rm.status(s.key)).state).to.equal('unknown');
      expect((await r.rm.submit({ uri: '/a' })).state).to.be.oneOf(['pending', 'running']);
    });
  });

  describe('pause and ETA', () => {
    it('keeps a pause of this process over a read of the flag that began before it', async () => {
      const clock = new ManualClock();
      const queue = new MemoryQueueManager({}, clock);
      const gate = deferred();
      let holding = false;
      const readStarted = deferred();
      class SlowPauseRead extends ForwardingQueueManager {
        override async isPaused(): Promise<boolean> {
          const read = await super.isPaused();
          if (holding) {
            readStarted.resolve();
            await gate.promise;
          }
          return read;
        }
      }
      const rm = buildRequestManager({
        queue: new SlowPauseRead(queue),
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: { leaseMs: 3000 },
      });
      r = { clock, rm, queue };
      const { key } = await rm.submit({ uri: '/eta', estimatedMs: 1000 });
      await clock.advance(2000);
      holding = true;
      // A status read finds the flag stale and reads it (not paused yet); the pause lands meanwhile.
      const reading = rm.status(key);
      await readStarted.promise;
      await rm.pause();
      gate.resolve();
      await reading;
      expect(await rm.status(key)).not.to.have.property('etaMs');
    });
  });

  describe('list', () => {
    it('describes a settled key by its record when the cache cannot answer for it, instead of failing the page', async () => {
      const clock = new ManualClock();
      const queue = new MemoryQueueManager({}, clock);
      let damaged = false;
      class BrokenHead extends ForwardingCacheManager {
        override head(key: string, area?: CacheArea): Promise<ResultManifest | undefined> {
          if (damaged && key === 'damaged') {
            return Promise.reject(new BackendError('manifest damaged', { retryable: false }));
          }
          return super.head(key, area);
        }
      }
      const rm = buildRequestManager({
        queue,
        cache: new BrokenHead(new MemoryCacheManager({}, clock)),
        clock,
        settings: { leaseMs: 3000 },
      });
      r = { clock, rm, queue };
      rm.process(async (job) => job.write('csv', job.key));
      for (const key of ['damaged', 'fine']) await rm.waitFor((await rm.submit({ uri: '/l', key })).key);
      damaged = true;
      const items = (await rm.list()).items.map((item) => [item.key, item.state]);
      expect(items).to.deep.equal([
        ['damaged', 'completed'],
        ['fine', 'completed'],
      ]);
      await expect(rm.status('damaged')).to.be.rejectedWith(BackendError);
    });
  });

  describe('ETA', () => {
    /** Slots reported by a worker that claims nothing itself; `claim()` takes a lease as a busy slot. */
    function etaRig(wrap: boolean): Rig & { claim(): Promise<void> } {
      const clock = new ManualClock();
      const queue = new MemoryQueueManager({}, clock);
      // Through a wrapper, the manager takes the promise-based path (#liveStatus) instead of the twins.
      const rm = buildRequestManager({
        queue: wrap ? new ForwardingQueueManager(queue) : queue,
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: { leaseMs: 3000 },
      });
      const claim = async (): Promise<void> => {
        expect(await queue.claim({ workerId: 'elsewhere', leaseMs: 60_000, policies: {} })).not.to.equal(undefined);
      };
      return { clock, rm, queue, claim };
    }

    for (const wrap of [false, true]) {
      const path = wrap ? 'through a wrapper (async path)' : 'over the memory twins (sync path)';

      it(`waits for a busy slot to free: half a run for the first release, ${path}`, async () => {
        const t = etaRig(wrap);
        r = t;
        await t.queue.reportWorker('w', 1, 60_000);
        await r.rm.submit({ uri: '/busy', key: 'running', estimatedMs: 1000 });
        await t.claim();
        // The only slot is busy: position 1 waits for it (on average half a run), then runs.
        const first = await r.rm.submit({ uri: '/busy', key: 'first', estimatedMs: 1000 });
        expect(first).to.deep.include({ position: 1, etaMs: 1500 });
        expect(await r.rm.status('first')).to.deep.include({ position: 1, etaMs: 1500 });
        const second = await r.rm.submit({ uri: '/busy', key: 'second', estimatedMs: 1000 });
        expect(second).to.deep.include({ position: 2, etaMs: 2500 });
        expect(await r.rm.status('second')).to.deep.include({ position: 2, etaMs: 2500 });
      });

      it(`starts at once on a free slot and spreads the releases of busy ones, ${path}`, async () => {
        const t = etaRig(wrap);
        r = t;
        await t.queue.reportWorker('w', 2, 60_000);
        await r.rm.submit({ uri: '/busy', key: 'running-1', estimatedMs: 1000 });
        await t.claim();
        // One slot of two free: position 1 starts now; position 2 waits for the busy one (half a
        // run), position 3 for the one position 1 took (a whole run).
        const keys = ['p1', 'p2', 'p3'];
        for (const key of keys) await r.rm.submit({ uri: '/busy', key, estimatedMs: 1000 });
        const etas = async (): Promise<(number | undefined)[]> =>
          Promise.all(keys.map(async (key) => (await r.rm.status(key)).etaMs));
        expect(await etas()).to.deep.equal([1000, 1500, 2000]);
        // Both busy (p1 taken): the releases of two jobs at random points of their runs come at
        // 1/3 and 2/3 of a run on average.
        await t.claim();
        expect((await r.rm.status('p1')).state).to.equal('running');
        expect(await Promise.all(['p2', 'p3'].map(async (key) => (await r.rm.status(key)).etaMs))).to.deep.equal([
          1333, 1667,
        ]);
      });
    }

    it('keeps the whole-waves ETA for an adapter that does not report busy slots', async () => {
      const clock = new ManualClock();
      const queue = new MemoryQueueManager({}, clock);
      class NoBusy extends ForwardingQueueManager {
        override async capacity(): Promise<{ workers: number; slots: number }> {
          const { workers, slots } = await super.capacity();
          return { workers, slots };
        }
      }
      const rm = buildRequestManager({
        queue: new NoBusy(queue),
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: { leaseMs: 3000 },
      });
      r = { clock, rm, queue };
      await queue.reportWorker('w', 1, 60_000);
      await rm.submit({ uri: '/busy', key: 'running', estimatedMs: 1000 });
      await queue.claim({ workerId: 'elsewhere', leaseMs: 60_000, policies: {} });
      expect(await rm.submit({ uri: '/busy', key: 'first', estimatedMs: 1000 })).to.deep.include({
        position: 1,
        etaMs: 1000,
      });
    });

    it("counts a worker's running job: with its only slot busy, the next request waits half a run", async () => {
      r = rig();
      const started = deferred();
      const release = deferred();
      r.rm.process(
        async () => {
          started.resolve();
          await release.promise;
        },
        { concurrency: 1 },
      );
      await r.rm.submit({ uri: '/busy', key: 'running', estimatedMs: 1000 });
      await started.promise;
      expect((await r.queue.capacity()).busy).to.equal(1);
      const next = await r.rm.submit({ uri: '/busy', key: 'next', estimatedMs: 1000 });
      expect(next).to.deep.include({ state: 'pending', position: 1, etaMs: 1500 });
      release.resolve();
      await r.rm.waitFor('next');
    });

    it('leaves it out for a running job past its expected time without progress, rather than 0', async () => {
      r = rig();
      const started = deferred();
      const release = deferred();
      r.rm.process(async () => {
        started.resolve();
        await release.promise;
      });
      const s = await r.rm.submit({ uri: '/overdue', estimatedMs: 1000 });
      await started.promise;
      await r.clock.advance(400);
      expect((await r.rm.status(s.key)).etaMs).to.equal(600);
      await r.clock.advance(5000);
      const overdue = await r.rm.status(s.key);
      expect(overdue).to.deep.include({ state: 'running', position: 0 });
      expect(overdue).not.to.have.property('etaMs');
      release.resolve();
      await r.rm.waitFor(s.key);
    });
  });

  describe('a failed forced rebuild of a cached key', () => {
    it("is completed in status and list alike, with the cached result's times only; list filters by the record's state", async () => {
      r = rig();
      let runs = 0;
      r.rm.process(async (job) => {
        if (++runs === 2) throw new PermanentError('rebuild failed');
        await job.write('csv', 'x');
      });
      const a = await r.rm.submit({ uri: '/a' });
      await r.rm.waitFor(a.key);
      const builtAt = (await r.rm.status(a.key)).finishedAt;
      await r.clock.advance(3000);
      await r.rm.submit({ uri: '/a' }, { force: true });
      await r.rm.waitFor(a.key);
      expect(runs).to.equal(2);
      const status = await r.rm.status(a.key);
      expect(status).to.deep.include({ state: 'completed', finishedAt: builtAt, attempts: 0 });
      expect(status).not.to.have.property('startedAt');
      expect(status).not.to.have.property('submittedAt');
      // list describes the key as status does; a filter selects by the record's state (failed).
      expect((await r.rm.list()).items.find((item) => item.key === a.key)).to.deep.equal(status);
      expect((await r.rm.list({ state: 'failed' })).items).to.deep.equal([status]);

      // A completed key whose result was cleared is unknown, in status and in list, and no completed item.
      const b = await r.rm.submit({ uri: '/b' });
      await r.rm.waitFor(b.key);
      await r.rm.clearTemporary();
      expect((await r.rm.status(b.key)).state).to.equal('unknown');
      expect((await r.rm.list({ state: 'completed' })).items.map((item) => [item.key, item.state])).to.deep.equal([
        [b.key, 'unknown'],
      ]);
    });
  });

  describe('a status read failing after the write', () => {
    /** The memory queue, with its capacity() and get() failing (retryably) while `failing` is set. */
    class FlakyReads extends ForwardingQueueManager {
      failing = false;
      #fail(): Promise<never> {
        return Promise.reject(new BackendError('throttled', { retryable: true }));
      }
      override capacity(): ReturnType<MemoryQueueManager['capacity']> {
        return this.failing ? this.#fail() : this.inner.capacity();
      }
      override get(key: string): ReturnType<MemoryQueueManager['get']> {
        return this.failing ? this.#fail() : this.inner.get(key);
      }
    }

    /** A request manager over {@link FlakyReads}, kept in `r` for the suite's clean-up. */
    function flakyRig(): { clock: ManualClock; rm: RequestManager; queue: FlakyReads } {
      const clock = new ManualClock();
      const memory = new MemoryQueueManager({}, clock);
      const queue = new FlakyReads(memory);
      const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings: {} });
      r = { clock, rm, queue: memory };
      return { clock, rm, queue };
    }

    it('does not fail a submit whose request is queued: the status lacks the ETA, the event and the wake happen', async () => {
      const { clock, rm, queue } = flakyRig();
      const told: string[] = [];
      rm.events.on('submitted', (e) => told.push(`submitted ${e.key}`));
      rm.events.on('error', (e) => told.push(`error ${e.context}`));
      queue.failing = true;
      const status = await rm.submit({ uri: '/flaky' });
      queue.failing = false;
      // The memory queue states no position in its enqueue, so none is known without the reads.
      expect(status.state).to.equal('pending');
      expect(status).not.to.have.property('etaMs');
      expect(told).to.deep.equal([`error submit '${status.key}': status after the write`, `submitted ${status.key}`]);
      expect((await rm.status(status.key)).state).to.equal('pending');
      // The worker was woken by the submit, not by its next poll.
      const ran = deferred();
      rm.process(async (job) => {
        await job.write('csv', 'x');
        ran.resolve();
      });
      await clock.tick();
      await ran.promise;
    });

    it('does not fail the cancel of a pending request when the status read after it fails', async () => {
      const { rm, queue } = flakyRig();
      const told: string[] = [];
      rm.events.on('cancelled', (e) => told.push(`cancelled ${e.key}`));
      rm.events.on('error', (e) => told.push(`error ${e.context}`));
      const { key } = await rm.submit({ uri: '/to-cancel' });
      queue.failing = true;
      const status = await rm.cancel(key);
      queue.failing = false;
      expect(status.state).to.equal('cancelled');
      expect(told).to.deep.equal([`cancelled ${key}`, `error cancel '${key}': status after the write`]);
      expect((await rm.status(key)).state).to.equal('cancelled');
    });

    it('tells a running job of a cancel whose status read failed, and returns the record the cancel left', async () => {
      const { clock, rm, queue } = flakyRig();
      const started = deferred();
      const aborted = deferred();
      rm.process(async (job) => {
        started.resolve();
        await new Promise<void>((resolve) => {
          job.signal.addEventListener('abort', () => {
            aborted.resolve();
            resolve();
          });
        });
      });
      const { key } = await rm.submit({ uri: '/held' });
      await clock.tick();
      await started.promise;
      queue.failing = true;
      const status = await rm.cancel(key);
      queue.failing = false;
      expect(status).to.deep.include({ state: 'running', cancelRequested: true });
      await aborted.promise;
      await rm.waitFor(key);
      expect((await rm.status(key)).state).to.equal('cancelled');
    });
  });

  describe('running ETA', () => {
    it('scales the expected run time by the progress left, without ballooning between updates', async () => {
      r = rig();
      const started = deferred();
      const release = deferred();
      let job: Job | undefined;
      r.rm.process(async (j) => {
        job = j;
        started.resolve();
        await release.promise;
      });
      const s = await r.rm.submit({ uri: '/eta', estimatedMs: 1000 });
      await started.promise;
      await job!.progress(5);
      await r.clock.advance(500);
      expect((await r.rm.status(s.key)).etaMs).to.equal(950);
      // Long past the estimate with no new progress: the time spent becomes the expected total.
      await r.clock.advance(4500);
      expect((await r.rm.status(s.key)).etaMs).to.equal(4750);
      await job!.progress(50);
      // A heartbeat just went out, so the new progress rides on the next one, a second later.
      await r.clock.advance(1000);
      expect((await r.rm.status(s.key)).etaMs).to.equal(3000);
      release.resolve();
      await r.rm.waitFor(s.key);
    });
  });

  describe('job misuse', () => {
    it('refuses write() and progress() after the handler returned', async () => {
      r = rig();
      let kept: Job | undefined;
      r.rm.process(async (job) => {
        kept = job;
        await job.write('csv', 'ok');
      });
      const s = await r.rm.submit({ uri: '/late' });
      await r.rm.waitFor(s.key);
      await expect(kept!.write('csv', 'again')).to.be.rejectedWith(ConflictError);
      await expect(kept!.progress(10)).to.be.rejectedWith(ConflictError);
      const body = await r.rm.read(s.key);
      expect(body?.size).to.equal(2);
    });

    it('refuses a content type that is not a media type (header injection, over-long), naming contentType', async () => {
      r = rig();
      const refused: unknown[] = [];
      r.rm.process(async (job) => {
        for (const contentType of ['text/html\r\nSet-Cookie: session=x', 'csv', `text/${'x'.repeat(300)}`]) {
          refused.push(
            await job.write('csv', 'x', { contentType }).then(
              () => undefined,
              (e: unknown) => e,
            ),
          );
        }
        await job.write('csv', 'ok', { contentType: 'text/csv; charset=utf-8' });
      });
      const s = await r.rm.submit({ uri: '/typed' });
      expect((await r.rm.waitFor(s.key)).state).to.equal('completed');
      expect(refused).to.have.length(3);
      for (const error of refused) {
        expect(InvalidRequestError.is(error), String(error)).to.equal(true);
        expect((error as InvalidRequestError).field).to.equal('contentType');
      }
      expect((await r.rm.read(s.key))?.contentType).to.equal('text/csv; charset=utf-8');
    });

    it('fails a job whose write stream yields something other than bytes, naming data, without retry', async () => {
      r = rig({ maxAttempts: 3 });
      r.rm.process(async (job) => {
        async function* numbers(): AsyncGenerator {
          yield Buffer.from('a');
          yield 42;
        }
        await job.write('csv', numbers() as AsyncIterable<Uint8Array>);
      });
      const s = await r.rm.submit({ uri: '/not-bytes' });
      const done = await r.rm.waitFor(s.key);
      expect(done.state).to.equal('failed');
      expect(done.attempts).to.equal(1);
      expect(done.error).to.deep.include({ code: 'INVALID_REQUEST', retryable: false });
      expect(done.error?.message).to.match(/^data: the stream yielded number/);
    });

    it('fails a job that reports progress out of range, without retry', async () => {
      r = rig();
      r.rm.process(async (job) => job.progress(150));
      const s = await r.rm.submit({ uri: '/bad-progress' });
      const done = await r.rm.waitFor(s.key);
      expect(done.state).to.equal('failed');
      expect(done.attempts).to.equal(1);
      expect(done.error?.code).to.equal('INVALID_REQUEST');
    });

    it('rejects bad worker options by field', () => {
      r = rig();
      expect(() => r.rm.process(async () => undefined, { concurrency: 0 })).to.throw(
        InvalidRequestError,
        /concurrency/,
      );
      expect(() => r.rm.process(async () => undefined, { groups: ['no spaces'] })).to.throw(
        InvalidRequestError,
        /groups\[0\]/,
      );
    });
  });

  describe('.waitFor', () => {
    it('times out on the injected clock', async () => {
      r = rig();
      const s = await r.rm.submit({ uri: '/never' });
      const waiting = r.rm.waitFor(s.key, { timeoutMs: 1000 });
      const check = expect(waiting).to.be.rejectedWith(TimeoutError);
      await r.clock.advance(1000);
      await check;
    });

    it('stops when its signal aborts', async () => {
      r = rig();
      const s = await r.rm.submit({ uri: '/never' });
      const ac = new AbortController();
      const waiting = r.rm.waitFor(s.key, { signal: ac.signal });
      ac.abort(new Error('enough'));
      await expect(waiting).to.be.rejectedWith('enough');
    });
  });

  describe('.cancel of a running request', () => {
    it('returns the status its cancel left (running, cancel requested) even when the local worker lets go first', async () => {
      const clock = new ManualClock();
      const queue = new MemoryQueueManager({}, clock);
      // A backend whose reads are slower than its writes: the worker's acknowledgement, started
      // by the abort, would land before a status read started after it.
      let slowReads = false;
      const slowQueue = new Proxy(queue, {
        get(obj, prop) {
          const value: unknown = Reflect.get(obj, prop, obj);
          if (typeof value !== 'function') return value;
          const fn = (value as (...a: unknown[]) => unknown).bind(obj);
          if (prop !== 'get') return fn;
          return async (...args: unknown[]) => {
            if (slowReads) for (let i = 0; i < 20; i++) await Promise.resolve();
            return fn(...args);
          };
        },
      });
      const rm = buildRequestManager({ queue: slowQueue, cache: new MemoryCacheManager({}, clock), clock });
      r = { clock, rm, queue };
      const started = deferred();
      rm.process(async (job) => {
        started.resolve();
        await new Promise<void>((resolve) => {
          job.signal.addEventListener('abort', () => {
            resolve();
          });
        });
      });
      const { key } = await rm.submit({ uri: '/held' });
      await clock.tick();
      await started.promise;
      slowReads = true;
      const status = await rm.cancel(key);
      expect(status.state).to.equal('running');
      expect(status.cancelRequested).to.equal(true);
      slowReads = false;
    });
  });

  describe('worker.stop', () => {
    it('releases a job still running after the grace period without counting an attempt', async () => {
      r = rig();
      const started = deferred();
      const reasons: unknown[] = [];
      const worker = r.rm.process(async (job) => {
        started.resolve();
        await new Promise<void>((resolve) => {
          job.signal.addEventListener('abort', () => {
            resolve();
          });
        });
        reasons.push(job.signal.reason);
      });
      const s = await r.rm.submit({ uri: '/slow' });
      await started.promise;
      const stopping = worker.stop({ graceMs: 500 });
      await r.clock.advance(500);
      await stopping;
      const after = await r.rm.status(s.key);
      expect(after.state).to.equal('pending');
      expect(after.attempts).to.equal(0);
      expect((reasons[0] as { reason: string }).reason).to.equal('shutdown');
    });
  });

  describe('.close', () => {
    it('refuses calls after close with ClosedError', async () => {
      r = rig();
      await r.rm.close();
      await expect(r.rm.submit({ uri: '/x' })).to.be.rejectedWith(ClosedError);
      await expect(r.rm.status('abc')).to.be.rejectedWith(ClosedError);
    });
  });
});

describe('settings and group policies given in code', () => {
  it('refuses bad settings in buildRequestManager with a ConfigError naming each', () => {
    const clock = new ManualClock();
    const build = (settings: unknown) => () =>
      buildRequestManager({
        queue: new MemoryQueueManager({}, clock),
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: settings as Record<string, never>,
      });
    const error = catchSync(build({ leaseMs: 'x', retryBaseMs: Number.NaN, maxAttempts: 0, leaseMS: 5 }));
    expect(ConfigError.is(error), String(error)).to.equal(true);
    expect((error as ConfigError).issues.map((issue) => issue.path).sort()).to.deep.equal([
      '/manager/leaseMS',
      '/manager/leaseMs',
      '/manager/maxAttempts',
      '/manager/retryBaseMs',
    ]);
    // Undefined keeps the default.
    expect(catchSync(build({ leaseMs: undefined }))).to.equal(undefined);
  });

  it('refuses a group policy with an unknown field, a bad value or of the wrong type, and keeps the caps it had', async () => {
    const r = rig();
    try {
      r.rm.configureGroup('reports', { maxConcurrent: 1, maxQueueLength: 2 });
      for (const [policy, field] of [
        [{ maxConcurent: 3 }, 'groups.reports.maxConcurent'],
        [{ minIntervalMs: 1e300 }, 'groups.reports.minIntervalMs'],
        [{ maxConcurrent: 0 }, 'groups.reports.maxConcurrent'],
        ['fast', 'groups.reports'],
        [null, 'groups.reports'],
        [[1], 'groups.reports'],
      ] as const) {
        const error = catchSync(() => {
          r.rm.configureGroup('reports', policy as never);
        });
        expect(InvalidRequestError.is(error), `${JSON.stringify(policy)}: ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field).to.equal(field);
      }
      // The caps still hold: a third pending request of the group is refused.
      await r.rm.submit({ uri: '/a', group: 'reports' });
      await r.rm.submit({ uri: '/b', group: 'reports' });
      await expect(r.rm.submit({ uri: '/c', group: 'reports' })).to.be.rejected;
    } finally {
      await r.rm.close();
    }
  });
});

describe('options arguments', () => {
  it('refuses null and non-object options, and list filters of the wrong type, with InvalidRequestError naming them', async () => {
    const r = rig();
    try {
      const key = (await r.rm.submit({ uri: '/x' })).key;
      const calls: [string, () => Promise<unknown>][] = [
        ['query', () => r.rm.list(null as never)],
        ['options', () => r.rm.waitFor(key, null as never)],
        ['signal', () => r.rm.waitFor(key, { signal: {} as never })],
        ['options', () => r.rm.resultUrl(key, 'csv', 'soon' as never)],
        ['options', () => r.rm.clearTemporary(null as never)],
        ['options', () => r.rm.prune(null as never)],
        ['owner', () => r.rm.list({ owner: ['alice'] as never })],
        ['owner', () => r.rm.list({ owner: {} as never })],
        ['group', () => r.rm.list({ group: ['g1'] as never })],
        [
          'options',
          async () => {
            r.rm.process(() => Promise.resolve(), null as never);
            return Promise.resolve();
          },
        ],
      ];
      for (const [field, call] of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(InvalidRequestError.is(error), `${field}: ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field).to.equal(field);
      }
      const worker = r.rm.process(() => Promise.resolve());
      const stopError = await worker.stop(null as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(InvalidRequestError.is(stopError), String(stopError)).to.equal(true);
      await worker.stop();
      // Nothing was lost by the bad calls.
      expect((await r.rm.status(key)).state).to.equal('completed');
    } finally {
      await r.rm.close();
    }
  });
});

function catchSync(run: () => unknown): unknown {
  try {
    run();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe('retryDelay', () => {
  it('stays within [d/2, d] and doubles up to the cap', () => {
    expect(retryDelay(1, 1000, 60000, () => 0)).to.equal(500);
    expect(retryDelay(1, 1000, 60000, () => 1)).to.equal(1000);
    expect(retryDelay(3, 1000, 60000, () => 1)).to.equal(4000);
    expect(retryDelay(20, 1000, 60000, () => 1)).to.equal(60000);
  });
});

describe('toErrorInfo', () => {
  it('marks PermanentError and conflicts final, backend errors by their flag, others retryable', () => {
    expect(toErrorInfo(new PermanentError('no'))).to.deep.equal({ code: 'PERMANENT', message: 'no', retryable: false });
    expect(toErrorInfo(new BackendError('slow', { retryable: true })).retryable).to.equal(true);
    expect(toErrorInfo(new LeaseLostError('k')).retryable).to.equal(true);
    expect(toErrorInfo(Object.assign(new Error('gone'), { code: 'ENOENT' }))).to.deep.equal({
      code: 'ENOENT',
      message: 'gone',
      retryable: true,
    });
    expect(toErrorInfo('weird').code).to.equal('HANDLER_ERROR');
  });

  it('describes any thrown value, keeping the message a string and the code short and plain', () => {
    const unprintable = Object.create(null) as object;
    expect(toErrorInfo(unprintable)).to.deep.equal({
      code: 'HANDLER_ERROR',
      message: '[object Object]',
      retryable: true,
    });
    const throwingToString = {
      toString: () => {
        throw new Error('no');
      },
    };
    expect(toErrorInfo(throwingToString).message).to.equal('[object Object]');
    const numericMessage = Object.assign(new Error(), { message: 42 as unknown as string });
    expect(toErrorInfo(numericMessage).message).to.equal('42');
    const throwingMessage = new Error('x');
    Object.defineProperty(throwingMessage, 'message', {
      get: () => {
        throw new Error('getter');
      },
    });
    expect(toErrorInfo(throwingMessage)).to.include({ code: 'HANDLER_ERROR', retryable: true });
    expect(toErrorInfo(Object.assign(new Error('big'), { code: 'X'.repeat(1_000_000) })).code).to.equal(
      'HANDLER_ERROR',
    );
    expect(toErrorInfo(Object.assign(new Error('odd'), { code: 'A\r\nB' })).code).to.equal('HANDLER_ERROR');
  });
});
