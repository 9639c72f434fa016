import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 groups: `maxConcurrent` per group is never exceeded, other groups run beside it. */
export function concurrencyCapTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('concurrency caps', function () {
    const open = useEnv(ctx);

    it('never runs more than maxConcurrent of a group at once', async function () {
      const env = await open();
      const manager = env.manager({ groups: { capped: { maxConcurrent: 2 } } });
      const capped = ['c-1', 'c-2', 'c-3', 'c-4', 'c-5', 'c-6'];
      for (const key of capped) await manager.submit(req(key, { group: 'capped' }));
      await manager.submit(req('o-1', { group: 'other' }));
      await manager.submit(req('o-2', { group: 'other' }));
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 5 });
      await gated.waitStarted(4, env.settings.pollMs);
      // Let the worker try for a while: the two free slots must stay empty.
      await env.clock.advance(env.settings.pollMs * 5);
      expect(gated.started.filter((k) => k.startsWith('c-'))).to.have.length(2);
      expect(gated.started.filter((k) => k.startsWith('o-'))).to.have.length(2);
      expect((await manager.metrics()).byGroup['capped']?.running).to.equal(2);

      // Finish capped jobs one at a time; each frees exactly one slot of the group.
      let done = 0;
      while (done < capped.length) {
        const runningCapped = [...gated.running].filter((k) => k.startsWith('c-'));
        expect(runningCapped.length).to.be.at.most(2);
        const next = runningCapped[0];
        if (next === undefined) break;
        gated.open(next);
        done++;
        const expectStarted = Math.min(capped.length, done + 2);
        await env.until(() => gated.started.filter((k) => k.startsWith('c-')).length >= expectStarted, {
          stepMs: env.settings.pollMs,
          what: `${String(expectStarted)} capped jobs started`,
        });
        await env.until(() => !gated.running.has(next), { stepMs: env.settings.pollMs, what: `${next} finished` });
      }
      expect(done).to.equal(capped.length);
      expect(gated.maxRunningByGroup.get('capped')).to.equal(2);
      gated.open('o-1');
      gated.open('o-2');
      await untilTerminal(env, manager, [...capped, 'o-1', 'o-2'], env.settings.pollMs);
      expect(gated.maxRunning).to.be.at.most(5);
    });

    it('counts running jobs of every worker against the cap', async function () {
      const env = await open();
      const manager = env.manager({ groups: { capped: { maxConcurrent: 1 } } });
      for (const key of ['x-1', 'x-2', 'x-3']) await manager.submit(req(key, { group: 'capped' }));
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 3 });
      manager.process(gated.handler, { concurrency: 3 });
      await gated.waitStarted(1, env.settings.pollMs);
      await env.clock.advance(env.settings.pollMs * 5);
      expect(gated.started).to.have.length(1);
      for (let i = 0; i < 3; i++) {
        const key = gated.started[i];
        if (key !== undefined) gated.open(key);
        if (i < 2) await gated.waitStarted(i + 2, env.settings.pollMs);
      }
      await untilTerminal(env, manager, ['x-1', 'x-2', 'x-3'], env.settings.pollMs);
      expect(gated.maxRunning).to.equal(1);
    });
  });
}
