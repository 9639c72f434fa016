import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { EventLog, GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 expiry: a request pending longer than pendingTtlMs becomes expired; it can be submitted again. */
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
  });
}
