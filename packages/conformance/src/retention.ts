import { expect } from 'chai';

import { PermanentError } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import { EventLog, GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/**
 * §3.1 retention: finished records go after finishedRetentionMs, whoever finished them (a worker,
 * a cancel, or the sweep); prune drops older finished ones only.
 */
export function retentionTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('retention and prune', function () {
    const open = useEnv(ctx);

    it('drops finished records after finishedRetentionMs', async function () {
      const env = await open();
      const retention = 60_000;
      const manager = env.manager({ settings: { finishedRetentionMs: retention } });
      const gated = new GatedHandler(env, async (job) => {
        if (job.key === 'keep-failed') throw new PermanentError('bad');
        await job.write('csv', 'ok');
      });
      for (const key of ['keep-failed', 'keep-done']) gated.open(key);
      await manager.submit(req('keep-cancelled'));
      await manager.cancel('keep-cancelled');
      manager.process(gated.handler, { concurrency: 2 });
      await manager.submit(req('keep-failed'));
      await manager.submit(req('keep-done'));
      await untilTerminal(env, manager, ['keep-failed', 'keep-done'], env.settings.pollMs);
      await env.clock.advance(env.t(retention) - env.t(1_000));
      await manager.sweep();
      expect((await manager.status('keep-failed')).state).to.equal('failed');
      expect((await manager.status('keep-cancelled')).state).to.equal('cancelled');
      await env.clock.advance(env.t(1_000) + env.settings.sweepMs * 2);
      expect((await manager.status('keep-failed')).state).to.equal('unknown');
      expect((await manager.status('keep-cancelled')).state).to.equal('unknown');
      expect(await env.queue.get('keep-done')).to.equal(undefined);
      // The cache is the source of truth for completion.
      expect((await manager.status('keep-done')).state).to.equal('completed');
      const listed = await manager.list({ state: ['failed', 'cancelled'] });
      expect(listed.items).to.have.length(0);
    });

    it('drops records the sweep finished (expired, lease lost, cancelled on lease loss) after finishedRetentionMs', async function () {
      const env = await open();
      const retention = 60_000;
      const manager = env.manager({
        settings: { finishedRetentionMs: retention, pendingTtlMs: 1_000, maxAttempts: 1 },
      });
      const log = new EventLog(env, manager);
      // Two runs whose worker vanishes (claimed through the SPI, never renewed), one never claimed.
      const claim = async (key: string): Promise<void> => {
        await manager.submit(req(key));
        const lease = await env.queue.claim({ workerId: 'vanished', leaseMs: env.t(1_000), policies: {} });
        expect(lease?.record.key).to.equal(key);
      };
      await claim('lease-lost');
      await claim('cancel-lost');
      await manager.cancel('cancel-lost');
      await manager.submit(req('never-run'));
      await untilTerminal(env, manager, ['lease-lost', 'cancel-lost', 'never-run'], env.settings.sweepMs / 2);
      expect((await manager.status('lease-lost')).state).to.equal('failed');
      expect((await manager.status('cancel-lost')).state).to.equal('cancelled');
      expect((await manager.status('never-run')).state).to.equal('expired');
      expect(log.of('expired', 'never-run')).to.have.length(1);
      await env.clock.advance(env.t(retention) - env.t(1_000));
      await manager.sweep();
      expect((await manager.status('lease-lost')).state).to.equal('failed');
      expect((await manager.status('cancel-lost')).state).to.equal('cancelled');
      expect((await manager.status('never-run')).state).to.equal('expired');
      await env.clock.advance(env.t(1_000) + env.settings.sweepMs * 2);
      for (const key of ['lease-lost', 'cancel-lost', 'never-run']) {
        expect((await manager.status(key)).state, key).to.equal('unknown');
        expect(await env.queue.get(key), key).to.equal(undefined);
      }
      expect((await manager.list({ state: ['failed', 'cancelled', 'expired'] })).items).to.have.length(0);
    });

    it('never drops pending or running records, however old', async function () {
      const env = await open();
      const retention = 1_000;
      const manager = env.manager({ settings: { finishedRetentionMs: retention, pendingTtlMs: 0 } });
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      await manager.submit(req('old-running'));
      await gated.waitStarted(1, env.settings.pollMs);
      await manager.submit(req('old-pending'));
      await env.clock.advance(env.t(retention) * 20);
      await manager.sweep();
      expect(await manager.prune({ finishedBefore: new Date(env.clock.now() + 1) })).to.equal(0);
      expect(await manager.prune()).to.equal(0);
      expect((await manager.status('old-running')).state).to.equal('running');
      expect((await manager.status('old-pending')).state).to.equal('pending');
    });

    it('prunes only finished records that finished before the given time and returns the count', async function () {
      const env = await open();
      const manager = env.manager({ settings: { finishedRetentionMs: 0 } });
      const gated = new GatedHandler(env, async () => {
        await Promise.resolve();
        throw new PermanentError('fails on purpose');
      });
      manager.process(gated.handler, { concurrency: 1 });
      gated.open('first');
      await manager.submit(req('first'));
      await untilTerminal(env, manager, ['first']);
      const firstDone = env.clock.now();
      await env.clock.advance(env.t(10_000));
      gated.open('second');
      await manager.submit(req('second'));
      await untilTerminal(env, manager, ['second']);
      await manager.submit(req('third'));
      await manager.cancel('third');
      await manager.pause();
      await manager.submit(req('waiting'));
      await env.clock.advance(env.t(10_000));

      expect(await manager.prune({ finishedBefore: new Date(firstDone + env.t(5_000)) })).to.equal(1);
      expect((await manager.status('first')).state).to.equal('unknown');
      expect((await manager.status('second')).state).to.equal('failed');
      expect((await manager.status('third')).state).to.equal('cancelled');
      expect(await manager.prune({ finishedBefore: new Date(firstDone + env.t(5_000)) })).to.equal(0);
      expect(await manager.prune()).to.equal(2);
      expect((await manager.status('second')).state).to.equal('unknown');
      expect((await manager.status('third')).state).to.equal('unknown');
      expect((await manager.status('waiting')).state).to.equal('pending');
    });
  });
}
