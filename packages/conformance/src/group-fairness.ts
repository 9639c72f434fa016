import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { GatedHandler, req } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 groups: fair service across groups (earliest ready time), SharQ intervals, run-time changes. */
export function groupFairnessTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('group fairness and rate limits', function () {
    const open = useEnv(ctx);

    it('serves two groups with a backlog alternately', async function () {
      const env = await open();
      const manager = env.manager();
      for (const key of ['a-1', 'a-2', 'a-3', 'a-4']) await manager.submit(req(key, { group: 'alpha' }));
      for (const key of ['b-1', 'b-2', 'b-3', 'b-4']) await manager.submit(req(key, { group: 'beta' }));
      await env.clock.advance(env.t(1));
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      for (let i = 0; i < 8; i++) {
        await gated.waitStarted(i + 1, env.settings.pollMs);
        // Time moves between claims, so "earliest ready time" decides rather than a tie-break.
        await env.clock.advance(env.t(1));
        const key = gated.started[i];
        if (key !== undefined) gated.open(key);
      }
      const groups = gated.started.map((k) => k.slice(0, 1));
      for (let i = 1; i < groups.length; i++) {
        expect(groups[i], `claim order ${gated.started.join(', ')}`).to.not.equal(groups[i - 1]);
      }
      expect(gated.started.filter((k) => k.startsWith('a'))).to.deep.equal(['a-1', 'a-2', 'a-3', 'a-4']);
      expect(gated.started.filter((k) => k.startsWith('b'))).to.deep.equal(['b-1', 'b-2', 'b-3', 'b-4']);
    });

    it('spaces the claims of a group by minIntervalMs', async function () {
      const env = await open();
      const interval = 1_000;
      const manager = env.manager({ groups: { slow: { minIntervalMs: interval } } });
      for (const key of ['s-1', 's-2', 's-3']) await manager.submit(req(key, { group: 'slow' }));
      await manager.submit(req('free-1', { group: 'fast' }));
      await manager.submit(req('free-2', { group: 'fast' }));
      const gated = new GatedHandler(env, () => Promise.resolve());
      for (const key of ['s-1', 's-2', 's-3', 'free-1', 'free-2']) gated.open(key);
      manager.process(gated.handler, { concurrency: 4 });
      await gated.waitStarted(5, env.settings.pollMs, env.t(interval * 4));
      const times = ['s-1', 's-2', 's-3'].map((k) => gated.startTimes.get(k)?.[0] ?? Number.NaN);
      for (let i = 1; i < times.length; i++) {
        const gap = (times[i] ?? 0) - (times[i - 1] ?? 0);
        expect(gap, `gap between claims ${String(i)} and ${String(i + 1)}`).to.be.at.least(env.t(interval));
        // Liveness: the next claim comes within a poll of the interval.
        expect(gap).to.be.at.most(env.t(interval) + 2 * env.settings.pollMs);
      }
      // The other group is not held back by the slow one.
      const fast = ['free-1', 'free-2'].map((k) => gated.startTimes.get(k)?.[0] ?? Number.NaN);
      for (const t of fast) expect(t - (times[0] ?? 0)).to.be.lessThan(env.t(interval));
    });

    it('applies a group policy changed at run time', async function () {
      const env = await open();
      const manager = env.manager({ groups: { g: { minIntervalMs: 3_600_000 } } });
      for (const key of ['g-1', 'g-2', 'g-3']) await manager.submit(req(key, { group: 'g' }));
      const gated = new GatedHandler(env);
      for (const key of ['g-1', 'g-2', 'g-3']) gated.open(key);
      manager.process(gated.handler, { concurrency: 2 });
      await gated.waitStarted(1, env.settings.pollMs);
      await env.clock.advance(env.t(5_000));
      expect(gated.started).to.deep.equal(['g-1']);
      manager.configureGroup('g', { minIntervalMs: 0 });
      await gated.waitStarted(3, env.settings.pollMs, env.t(2_000));
      expect(gated.started).to.deep.equal(['g-1', 'g-2', 'g-3']);
      // And back to a long interval: nothing more is claimed from g for a while.
      manager.configureGroup('g', { minIntervalMs: env.t(3_600_000) });
      await manager.submit(req('g-4', { group: 'g' }));
      gated.open('g-4');
      await env.clock.advance(env.t(10_000));
      expect(gated.started).to.not.include('g-4');
    });
  });
}
