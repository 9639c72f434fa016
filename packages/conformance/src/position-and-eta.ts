import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §2.3 position and ETA: 1-based serving order among pending, 0 while running, none when terminal. */
export function positionAndEtaTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('position and ETA', function () {
    const open = useEnv(ctx);

    it('reports positions in serving order, 0 while running and none when terminal', async function () {
      const env = await open();
      const manager = env.manager();
      await manager.submit(req('runner', { estimatedMs: 5_000 }));
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      await gated.waitStarted(1, env.settings.pollMs);
      const order = ['urgent', 'first', 'second', 'third'];
      await manager.submit(req('first', { estimatedMs: 5_000 }));
      await manager.submit(req('second', { estimatedMs: 5_000 }));
      await manager.submit(req('urgent', { estimatedMs: 5_000, priority: 10 }));
      await manager.submit(req('third', { estimatedMs: 5_000, group: 'elsewhere' }));

      const running = await manager.status('runner');
      expect(running.position).to.equal(0);
      expect(running.etaMs).to.be.a('number').and.at.least(0);

      const statuses = await Promise.all(order.map((k) => manager.status(k)));
      const positions = statuses.map((s) => s.position);
      if (env.exactPosition) {
        expect(positions).to.deep.equal([1, 2, 3, 4]);
      } else {
        for (const p of positions) expect(p).to.be.a('number').and.at.least(1);
      }
      const etas = statuses.map((s) => s.etaMs ?? Number.NaN);
      for (const eta of etas) expect(eta).to.be.a('number').and.at.least(0);
      for (let i = 1; i < etas.length; i++) {
        expect(etas[i], `eta of ${order[i] ?? ''} vs ${order[i - 1] ?? ''}`).to.be.at.least(etas[i - 1] ?? 0);
      }
      expect(etas[etas.length - 1]).to.be.greaterThan(etas[0] ?? 0);

      // The queue moves: positions drop as requests ahead are served.
      gated.open('runner');
      await env.until(() => gated.started.length >= 2, { stepMs: env.settings.pollMs, what: 'next claim' });
      expect(gated.started[1]).to.equal('urgent');
      expect((await manager.status('urgent')).position).to.equal(0);
      if (env.exactPosition) expect((await manager.status('first')).position).to.equal(1);
      for (const key of [...order, 'runner']) gated.open(key);
      await untilTerminal(env, manager, ['runner', ...order], env.settings.pollMs);
      const done = await manager.status('third');
      expect(done.position).to.equal(undefined);
      expect(done.etaMs).to.equal(undefined);
    });

    it('reports an ETA that grows with the number of requests ahead', async function () {
      const env = await open();
      const manager = env.manager();
      const keys = Array.from({ length: 6 }, (_, i) => `eta-${String(i)}`);
      for (const key of keys) await manager.submit(req(key, { estimatedMs: env.t(10_000) }));
      const etas = await Promise.all(keys.map(async (k) => (await manager.status(k)).etaMs ?? Number.NaN));
      for (let i = 1; i < etas.length; i++) expect(etas[i]).to.be.at.least(etas[i - 1] ?? 0);
      expect(etas[5]).to.be.greaterThan(etas[0] ?? 0);
      // The estimate covers at least the request's own run.
      expect(etas[0]).to.be.at.least(env.t(10_000) / 2);
    });
  });
}
