import { expect } from 'chai';

import { LeaseLostError } from '@armlib/core';
import type { CacheManager, Job, QueueManager, StagedResult } from '@armlib/core';

import { defer, resolveContext, shield, useEnv } from './context.js';
import type { Deferred } from './context.js';
import { entry, EventLog, GatedHandler, readText, rejectionOf, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 lease: heartbeats, expiry counted as an attempt, fencing of a worker that lost its lease. */
export function leaseTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('leases, heartbeats and fencing', function () {
    const open = useEnv(ctx);

    it('keeps a long job alive past leaseMs with heartbeats', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      const gate = env.defer();
      manager.process(async (job) => {
        await gate.promise;
        await job.write('csv', 'long');
      });
      await manager.submit(req('long'));
      await env.until(async () => (await manager.status('long')).state === 'running', {
        stepMs: env.settings.pollMs,
      });
      const leaseMs = env.settings.leaseMs;
      for (let elapsed = 0; elapsed < 4 * leaseMs; elapsed += leaseMs / 6) {
        await env.clock.advance(leaseMs / 6);
        const status = await manager.status('long');
        expect(status.state, `after ${String(elapsed)} ms`).to.equal('running');
        expect(status.attempts).to.equal(1);
      }
      expect(log.of('requeued', 'long')).to.have.length(0);
      gate.resolve();
      await untilTerminal(env, manager, ['long'], env.settings.pollMs);
      const done = await manager.status('long');
      expect(done.state).to.equal('completed');
      expect(done.attempts).to.equal(1);
    });

    it('returns a request whose lease was not renewed to pending, counted as an attempt (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const leaseMs = env.t(1_000);
      await queue.enqueue(entry('lapse'), { limits: {} });
      const lease = await queue.claim({ workerId: 'w1', leaseMs, policies: {} });
      expect(lease?.record.key).to.equal('lapse');
      await env.clock.advance(leaseMs - env.t(10));
      expect((await queue.sweep()).requeued).to.have.length(0);
      await env.clock.advance(env.t(20));
      const swept = await queue.sweep();
      expect(swept.requeued.map((r) => r.key)).to.deep.equal(['lapse']);
      const record = await queue.get('lapse');
      expect(record?.state).to.equal('pending');
      expect(record?.attempts).to.equal(1);
      const again = await queue.claim({ workerId: 'w2', leaseMs, policies: {} });
      expect(again?.record.key).to.equal('lapse');
      expect(again?.record.attempts).to.equal(2);
    });

    it('tells a lease that ran out (requeued) before the next attempt is claimed', async function () {
      const env = await open();
      // No periodic sweep: a claim that finds the lease over must tell of it itself.
      const manager = env.manager({ settings: { sweepMs: env.settings.leaseMs * 100 } });
      const log = new EventLog(env, manager);
      await manager.submit(req('crashed'));
      const leaseMs = env.t(1_000);
      // A worker of another process claims it and dies: its lease is never renewed.
      const dead = await env.queue.claim({ workerId: 'dead', leaseMs, policies: {} });
      expect(dead?.record.key).to.equal('crashed');
      const gated = new GatedHandler(env);
      gated.open('crashed');
      manager.process(gated.handler);
      await env.clock.advance(leaseMs + env.t(10));
      for (let polls = 0; polls < 10 && gated.started.length === 0; polls++) {
        await env.clock.advance(env.settings.pollMs);
      }
      // An adapter that applies expired leases only in sweep (DynamoDB) needs one.
      if (gated.started.length === 0) await manager.sweep();
      await untilTerminal(env, manager, ['crashed'], env.settings.pollMs);
      expect(log.namesFor('crashed')).to.deep.equal(['submitted', 'requeued', 'claimed', 'completed']);
    });

    it('fails a request whose lease ran out on its last attempt (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const leaseMs = env.t(1_000);
      await queue.enqueue(entry('last', {}, { maxAttempts: 1 }), { limits: {} });
      await queue.claim({ workerId: 'w1', leaseMs, policies: {} });
      await env.clock.advance(leaseMs + env.t(1));
      const swept = await queue.sweep();
      expect(swept.failed.map((r) => r.key)).to.deep.equal(['last']);
      const record = await queue.get('last');
      expect(record?.state).to.equal('failed');
      expect(record?.error?.code).to.equal('LEASE_EXPIRED');
    });

    it('extends the lease on heartbeat and fences stale tokens (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const leaseMs = env.t(1_000);
      await queue.enqueue(entry('fence'), { limits: {} });
      const first = await queue.claim({ workerId: 'w1', leaseMs, policies: {} });
      const token1 = first?.token ?? '';
      await env.clock.advance(env.t(900));
      const hb = await queue.heartbeat('fence', token1, { leaseMs, progress: 40, message: 'halfway' });
      expect(hb.leaseExpiresAt).to.equal(env.clock.now() + leaseMs);
      await env.clock.advance(env.t(900));
      await queue.heartbeat('fence', token1, { leaseMs });
      expect((await queue.get('fence'))?.progress).to.equal(40);
      // An expired lease is lost even before any sweep notices it.
      await env.clock.advance(leaseMs);
      expect(LeaseLostError.is(await rejectionOf(queue.heartbeat('fence', token1, { leaseMs })))).to.equal(true);
      await queue.sweep();
      const second = await queue.claim({ workerId: 'w2', leaseMs, policies: {} });
      const token2 = second?.token ?? '';
      expect(second?.record.attempts).to.equal(2);
      // All at once; each rejection is taken as it comes (awaited one by one, the later ones would
      // be rejections nobody handled yet).
      const calls: [string, Promise<unknown>][] = [
        ['heartbeat', rejectionOf(queue.heartbeat('fence', token1, { leaseMs, progress: 99 }))],
        ['complete', rejectionOf(queue.complete('fence', token1, { durationMs: 1 }))],
        ['fail', rejectionOf(queue.fail('fence', token1, { error: { code: 'X', message: 'x', retryable: false } }))],
        ['release', rejectionOf(queue.release('fence', token1, { countAttempt: false }))],
        ['acknowledgeCancel', rejectionOf(queue.acknowledgeCancel('fence', token1, {}))],
        ['complete with a made-up token', rejectionOf(queue.complete('fence', 'not-a-token', { durationMs: 1 }))],
      ];
      for (const [name, call] of calls) {
        const error = await call;
        expect(LeaseLostError.is(error), `${name}: ${String(error)}`).to.equal(true);
      }
      const record = await queue.get('fence');
      expect(record?.state).to.equal('running');
      expect(record?.attempts).to.equal(2);
      expect(record?.progress).to.not.equal(99);
      const done = await queue.complete('fence', token2, { durationMs: 5 });
      expect(done.state).to.equal('completed');
      expect(LeaseLostError.is(await rejectionOf(queue.complete('fence', token2, { durationMs: 5 })))).to.equal(true);
      expect(LeaseLostError.is(await rejectionOf(queue.heartbeat('unknown-key', token2, { leaseMs })))).to.equal(true);
    });

    it('releases a job on graceful shutdown after the grace period, so another worker takes it at once', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      let first: Job | undefined;
      const stopping = manager.process(async (job) => {
        first = job;
        await new Promise<void>((resolve) => {
          job.signal.addEventListener('abort', () => {
            resolve();
          });
        });
      });
      await manager.submit(req('handover'));
      await env.until(() => first !== undefined, { stepMs: env.settings.pollMs, what: 'first worker started' });
      const grace = env.t(1_000);
      const stopped = stopping.stop({ graceMs: grace });
      await env.clock.advance(grace - env.t(10));
      expect(first?.signal.aborted).to.equal(false);
      expect((await manager.status('handover')).state).to.equal('running');
      const second = manager.process(async (job) => {
        await job.write('csv', `taken over (attempt ${String(job.attempt)})`);
      });
      await env.drive(stopped, { stepMs: env.t(10), maxMs: env.t(100), what: 'worker.stop()' });
      expect(first?.signal.aborted).to.equal(true);
      expect(log.of('requeued', 'handover')).to.deep.equal([{ key: 'handover', reason: 'released' }]);
      // Taken over well before the old lease would have run out.
      await untilTerminal(env, manager, ['handover'], env.settings.pollMs, env.settings.leaseMs / 2);
      const status = await manager.status('handover');
      expect(status.state).to.equal('completed');
      expect(status.attempts).to.be.within(1, 2);
      await env.drive(second.stop(), { stepMs: env.settings.pollMs });
    });

    it('aborts a worker that lost its lease and never shows its result', async function () {
      const env = await open();
      const stall = { on: false, held: [] as Deferred<void>[] };
      const second = env.manager();
      const first = await env.otherProcess(
        {},
        { queue: stallingHeartbeats(env.queue, stall), cache: shield(env.cache) },
      );
      const gate = env.defer();
      let firstJob: Job | undefined;
      first.process(
        async (job) => {
          if (job.attempt === 1) {
            firstJob = job;
            await job.write('csv', 'attempt 1');
            await gate.promise;
            // Whether a late write is refused or silently dropped, it must never become visible.
            await job.write('json', 'attempt 1 late').catch(() => undefined);
            await job.progress(77, 'still here').catch(() => undefined);
            return;
          }
          await job.write('csv', `attempt ${String(job.attempt)}`);
        },
        { concurrency: 1 },
      );
      await second.submit(req('fenced'));
      await env.until(() => firstJob !== undefined, { stepMs: env.settings.pollMs, what: 'first worker started' });
      stall.on = true;
      second.process(async (job) => {
        await job.write('csv', `attempt ${String(job.attempt)}`);
      });
      await env.until(async () => (await second.status('fenced')).state === 'completed', {
        stepMs: env.settings.pollMs,
        maxMs: env.settings.leaseMs * 4,
        what: 'the second attempt to complete',
      });
      // The first worker's heartbeats now reach the queue and are refused.
      stall.on = false;
      for (const held of stall.held) held.resolve();
      await env.until(() => firstJob?.signal.aborted === true, {
        stepMs: env.settings.pollMs,
        maxMs: env.settings.leaseMs * 2,
        what: "the first job's signal to abort",
      });
      gate.resolve();
      await env.clock.advance(env.settings.leaseMs);
      const status = await second.status('fenced');
      expect(status.state).to.equal('completed');
      expect(status.attempts).to.equal(2);
      expect(status.progress).to.not.equal(77);
      expect(Object.keys(status.result?.formats ?? {})).to.deep.equal(['csv']);
      expect(await readText(await second.read('fenced', 'csv'))).to.equal('attempt 2');
      expect(await second.read('fenced', 'json')).to.equal(undefined);
    });

    it('never shows the result of a worker whose lease ran out before its commit landed, even once the next attempt is cancelled', async function () {
      const env = await open();
      // The first process stalls between its worker's commit call and the commit point (a blocked
      // event loop, a stopped VM), its heartbeats held too; its lease runs out meanwhile and the
      // second process claims the request. No result exists yet for the fence to meet.
      const stall = { on: true, held: [] as Deferred<void>[] };
      const commits = { gate: env.defer(), entered: false, outcome: undefined as string | undefined };
      const first = await env.otherProcess(
        {},
        { queue: stallingHeartbeats(env.queue, stall), cache: stallingCommits(env.cache, commits) },
      );
      const second = env.manager();
      first.process(async (job) => {
        await job.write('csv', `attempt ${String(job.attempt)}`);
      });
      await second.submit(req('stalled-commit'));
      await env.until(() => commits.entered, { stepMs: env.settings.pollMs, what: "the first worker's commit call" });
      let secondRunning = false;
      second.process(async (job) => {
        secondRunning = true;
        await new Promise<void>((resolve) => {
          job.signal.addEventListener('abort', () => {
            resolve();
          });
        });
        job.signal.throwIfAborted();
      });
      await env.until(() => secondRunning, {
        stepMs: env.settings.pollMs,
        maxMs: env.settings.leaseMs * 4,
        what: 'the second attempt to start',
      });
      commits.gate.resolve();
      await env.until(() => commits.outcome !== undefined, { stepMs: env.settings.pollMs, what: 'the stalled commit' });
      expect(commits.outcome).to.equal('LeaseLostError');
      expect((await second.status('stalled-commit')).state).to.equal('running');
      expect(await second.read('stalled-commit', 'csv')).to.equal(undefined);
      await second.cancel('stalled-commit');
      await untilTerminal(env, second, ['stalled-commit'], env.settings.pollMs, env.settings.leaseMs * 4);
      const status = await second.status('stalled-commit');
      expect(status.state).to.equal('cancelled');
      expect(status.result).to.equal(undefined);
      expect(await second.read('stalled-commit', 'csv')).to.equal(undefined);
      stall.on = false;
      for (const held of stall.held) held.resolve();
    });
  });
}

/**
 * The cache with each staged result's commit held at `state.gate` before it reaches the adapter,
 * its outcome noted (the error's name, or 'published'); no synchronous twins, so that every commit
 * takes this path.
 */
function stallingCommits(
  cache: CacheManager,
  state: { gate: Deferred<void>; entered: boolean; outcome: string | undefined },
): CacheManager {
  const shielded = shield(cache);
  return new Proxy(shielded, {
    get(obj, prop) {
      if (typeof prop === 'symbol') return undefined;
      if (prop === 'stage') {
        return async (...args: Parameters<CacheManager['stage']>): Promise<StagedResult> => {
          const staged = await cache.stage(...args);
          return new Proxy(staged, {
            get(inner, name) {
              if (name === 'commit') {
                return async (...commitArgs: Parameters<StagedResult['commit']>) => {
                  state.entered = true;
                  await state.gate.promise;
                  try {
                    const manifest = await staged.commit(...commitArgs);
                    state.outcome = 'published';
                    return manifest;
                  } catch (error) {
                    state.outcome = LeaseLostError.is(error) ? 'LeaseLostError' : String(error);
                    throw error;
                  }
                };
              }
              const value: unknown = Reflect.get(inner, name, inner);
              return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(inner) : value;
            },
          });
        };
      }
      return Reflect.get(obj, prop, obj) as unknown;
    },
  });
}

/** The queue with heartbeats held back while `state.on`, as a stalled process would leave them. */
function stallingHeartbeats(queue: QueueManager, state: { on: boolean; held: Deferred<void>[] }): QueueManager {
  const shielded = shield(queue);
  return new Proxy(shielded, {
    get(obj, prop) {
      if (prop === 'heartbeat') {
        return async (...args: Parameters<QueueManager['heartbeat']>) => {
          if (state.on) {
            const held = defer();
            state.held.push(held);
            await held.promise;
          }
          return queue.heartbeat(...args);
        };
      }
      return Reflect.get(obj, prop, obj) as unknown;
    },
  });
}
