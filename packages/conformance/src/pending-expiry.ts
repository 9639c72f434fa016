import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { entry, EventLog, GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/**
 * §3.1 expiry: a request pending longer than pendingTtlMs becomes expired; it can be submitted
 * again. Only a request never started expires: one back in pending after a run never does.
 */
export function pendingExpiryTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('pending expiry', function () {
    const open = useEnv(ctx);

    it('expires a request pending longer than pendingTtlMs and accepts it again afterwards', async function () {
      const env = await open();
      const ttl = 10_000;
      const manager = env.manager({ settings: { pendingTtlMs: ttl } });
      const log = new EventLog(env, manager);
      await manager.submit(req('stale'));
      await env.clock.advance(env.t(ttl / 2));
      await manager.submit(req('fresh'));
      await env.clock.advance(env.t(ttl / 2) - env.t(10));
      await manager.sweep();
      expect((await manager.status('stale')).state).to.equal('pending');
      // The periodic sweep alone must notice it.
      await env.until(async () => (await manager.status('stale')).state === 'expired', {
        stepMs: env.settings.sweepMs / 2,
        maxMs: env.settings.sweepMs * 4,
        what: 'stale to expire',
      });
      expect((await manager.status('fresh')).state).to.equal('pending');
      expect(log.of('expired', 'stale')).to.deep.equal([{ key: 'stale' }]);
      expect(log.of('expired', 'fresh')).to.have.length(0);
      const again = await manager.submit(req('stale'));
      expect(again.state).to.equal('pending');
      expect(log.of('submitted', 'stale')).to.have.length(2);
      const gated = new GatedHandler(env);
      gated.open('stale');
      gated.open('fresh');
      manager.process(gated.handler, { concurrency: 2 });
      await untilTerminal(env, manager, ['stale', 'fresh'], env.settings.pollMs);
      expect((await manager.status('stale')).state).to.equal('completed');
    });

    it('reports a request expired from its deadline on, before any sweep, and a resubmit makes a fresh entry', async function () {
      const env = await open();
      const ttl = 10_000;
      // No periodic sweep before the end: what reads and submits see must not wait for one.
      const manager = env.manager({ settings: { pendingTtlMs: ttl, sweepMs: ttl * 100 } });
      const log = new EventLog(env, manager);
      await manager.submit(req('lapsed'));
      await env.clock.advance(env.t(ttl) - env.t(10));
      expect((await manager.status('lapsed')).state).to.equal('pending');
      // At its deadline a request is expired: status, the record and its position say so at once.
      await env.clock.advance(env.t(10));
      const lapsed = await manager.status('lapsed');
      expect(lapsed.state).to.equal('expired');
      expect(lapsed.attempts).to.equal(0);
      expect(lapsed.position).to.equal(undefined);
      expect(lapsed.etaMs).to.equal(undefined);
      expect(await env.queue.position('lapsed')).to.equal(undefined);
      // A resubmit is a new request, not a join onto the expired one.
      const again = await manager.submit(req('lapsed'));
      expect(again.state).to.equal('pending');
      expect(again.position).to.equal(1);
      expect(log.of('submitted', 'lapsed')).to.have.length(2);
      expect(log.of('deduplicated', 'lapsed')).to.have.length(0);
      const counts = (await env.queue.counts()).byState;
      expect([counts.pending, counts.expired]).to.deep.equal([1, 0]);
      // The old request's expiry is told before the new one's submit, and once only.
      expect(log.namesFor('lapsed')).to.deep.equal(['submitted', 'expired', 'submitted']);
      await manager.sweep();
      await manager.sweep();
      expect(log.of('expired', 'lapsed')).to.deep.equal([{ key: 'lapsed' }]);
      expect((await manager.status('lapsed')).state).to.equal('pending');
      const gated = new GatedHandler(env);
      gated.open('lapsed');
      manager.process(gated.handler);
      await untilTerminal(env, manager, ['lapsed'], env.settings.pollMs);
      expect((await manager.status('lapsed')).state).to.equal('completed');
      expect(gated.started).to.deep.equal(['lapsed']);
    });

    it('reads a record past its deadline as expired and replaces it on enqueue, the sweep reporting it once (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const deadline = env.clock.now() + env.t(1_000);
      const first = await queue.enqueue(entry('lapsed', {}, { pendingExpiresAt: deadline }), { limits: {} });
      await queue.enqueue(entry('other'), { limits: {} });
      await env.clock.advance(env.t(1_000));
      const read = await queue.get('lapsed');
      expect(read?.state).to.equal('expired');
      expect(read?.attempts).to.equal(0);
      expect(read?.finishedAt).to.be.a('number').and.at.least(deadline);
      expect(await queue.position('lapsed')).to.equal(undefined);
      // Not counted ahead of anyone, nor claimable.
      expect(await queue.position('other')).to.equal(1);
      const again = await queue.enqueue(entry('lapsed'), { limits: { maxQueueLength: 2 } });
      expect(again.outcome).to.equal('created');
      expect(again.record.state).to.equal('pending');
      expect(again.record.seq).to.be.greaterThan(first.record.seq);
      const swept = await queue.sweep();
      expect(swept.expired.map((r) => r.key)).to.deep.equal(['lapsed']);
      expect(swept.expired[0]?.state).to.equal('expired');
      expect(swept.expired[0]?.seq).to.equal(first.record.seq);
      expect((await queue.sweep()).expired).to.deep.equal([]);
      expect((await queue.get('lapsed'))?.state).to.equal('pending');
      const claimed = await queue.claim({ workerId: 'w', leaseMs: env.t(1_000), policies: {} });
      expect(claimed?.record.key).to.equal('other');
      expect((await queue.claim({ workerId: 'w', leaseMs: env.t(1_000), policies: {} }))?.record.key).to.equal(
        'lapsed',
      );
    });

    it('never expires a request once it runs', async function () {
      const env = await open();
      const ttl = 1_000;
      const manager = env.manager({ settings: { pendingTtlMs: ttl } });
      const gated = new GatedHandler(env);
      manager.process(gated.handler);
      await manager.submit(req('slow-job'));
      await gated.waitStarted(1, env.settings.pollMs);
      await env.clock.advance(env.t(ttl) * 3);
      await manager.sweep();
      expect((await manager.status('slow-job')).state).to.equal('running');
      gated.open('slow-job');
      await untilTerminal(env, manager, ['slow-job'], env.settings.pollMs);
      expect((await manager.status('slow-job')).state).to.equal('completed');
    });

    it('never expires a request back in pending after a retry, however long it waits', async function () {
      const env = await open();
      const ttl = 1_000;
      // The retry waits 5-10 s: far past the TTL.
      const manager = env.manager({ settings: { pendingTtlMs: ttl, retryBaseMs: 10_000, retryMaxMs: 10_000 } });
      const log = new EventLog(env, manager);
      let runs = 0;
      manager.process(async (job) => {
        await Promise.resolve();
        runs++;
        if (job.attempt === 1) throw new Error('busy, try later');
        await job.write('csv', 'second time lucky');
      });
      await manager.submit(req('retry-later'));
      await env.until(() => log.of('retried', 'retry-later').length === 1, {
        stepMs: env.settings.pollMs,
        what: 'the first attempt to fail',
      });
      const retryAt = Date.parse(log.of('retried', 'retry-later')[0]?.retryAt ?? '');
      expect(retryAt - env.clock.now()).to.be.greaterThan(env.t(ttl) * 3);
      await env.clock.advance(env.t(ttl) * 3);
      await manager.sweep();
      const waiting = await manager.status('retry-later');
      expect(waiting.state).to.equal('pending');
      expect(waiting.attempts).to.equal(1);
      expect(log.of('expired', 'retry-later')).to.have.length(0);
      await untilTerminal(env, manager, ['retry-later'], env.settings.pollMs);
      const final = await manager.status('retry-later');
      expect(final.state).to.equal('completed');
      expect(final.attempts).to.equal(2);
      expect(runs).to.equal(2);
      expect(log.of('expired', 'retry-later')).to.have.length(0);
    });

    it('never expires a record once claimed: not after a lease expiry, not after a release (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const lease = { workerId: 'w', leaseMs: env.t(1_000), policies: {} };
      await queue.enqueue(entry('lost', {}, { pendingExpiresAt: env.clock.now() + env.t(500) }), { limits: {} });
      await queue.enqueue(entry('handed-back', {}, { pendingExpiresAt: env.clock.now() + env.t(500) }), {
        limits: {},
      });
      const lost = await queue.claim(lease);
      const handedBack = await queue.claim(lease);
      expect([lost?.record.key, handedBack?.record.key]).to.deep.equal(['lost', 'handed-back']);
      if (handedBack === undefined) throw new Error('unreachable');
      await env.clock.advance(env.t(600));
      // Given back without counting the attempt: attempts is 0 again, yet the request has started.
      const released = await queue.release('handed-back', handedBack.token, { countAttempt: false });
      expect(released.state).to.equal('pending');
      expect(released.attempts).to.equal(0);
      await env.clock.advance(env.t(1_000));
      const swept = await queue.sweep();
      expect(swept.requeued.map((r) => r.key)).to.deep.equal(['lost']);
      expect(swept.expired).to.deep.equal([]);
      await env.clock.advance(env.t(10_000));
      expect((await queue.sweep()).expired).to.deep.equal([]);
      expect((await queue.get('lost'))?.state).to.equal('pending');
      expect((await queue.get('handed-back'))?.state).to.equal('pending');
    });
  });
}
