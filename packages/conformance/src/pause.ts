import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { GatedHandler, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 pause/resume: no claims while paused, running jobs finish, state visible in metrics. */
export function pauseTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('pause and resume', function () {
    const open = useEnv(ctx);

    it('claims nothing while paused and resumes claiming on resume', async function () {
      const env = await open();
      const manager = env.manager();
      expect((await manager.metrics()).pause).to.equal('running');
      await manager.pause();
      expect((await manager.metrics()).pause).to.equal('paused');
      await manager.submit(req('p-1'));
      await manager.submit(req('p-2'));
      const gated = new GatedHandler(env);
      gated.open('p-1');
      gated.open('p-2');
      manager.process(gated.handler, { concurrency: 2 });
      await env.clock.advance(env.settings.pollMs * 10);
      expect(gated.started).to.have.length(0);
      expect((await manager.metrics()).byState.pending).to.equal(2);
      await manager.resume();
      expect((await manager.metrics()).pause).to.equal('running');
      await untilTerminal(env, manager, ['p-1', 'p-2'], env.settings.pollMs);
      expect(gated.started).to.have.members(['p-1', 'p-2']);
    });

    it('gives pending requests a position but no ETA while paused, from this process or another', async function () {
      const env = await open();
      const manager = env.manager();
      const other = await env.otherProcess();
      await manager.submit(req('eta-1', { estimatedMs: 1_000 }));
      expect((await manager.status('eta-1')).etaMs).to.be.a('number');
      await manager.pause();
      const paused = await manager.status('eta-1');
      expect(paused.position).to.equal(1);
      expect(paused.etaMs).to.equal(undefined);
      await manager.resume();
      expect((await manager.status('eta-1')).etaMs).to.be.a('number');
      // A pause by another process shows within a second (the flag is read again at most once a second).
      await other.pause();
      await env.clock.advance(1_000);
      const seen = await manager.status('eta-1');
      expect(seen.position).to.equal(1);
      expect(seen.etaMs).to.equal(undefined);
      await other.resume();
    });

    it('lets running jobs finish while pausing, and is seen by another process', async function () {
      const env = await open();
      const manager = env.manager();
      const other = await env.otherProcess();
      await manager.submit(req('r-1'));
      const gated = new GatedHandler(env, async (job) => {
        await job.write('csv', `done ${job.key}`);
      });
      manager.process(gated.handler, { concurrency: 2 });
      await gated.waitStarted(1, env.settings.pollMs);
      await other.pause();
      expect((await manager.metrics()).pause).to.equal('pausing');
      await manager.submit(req('r-2'));
      gated.open('r-2');
      await env.clock.advance(env.settings.pollMs * 10);
      expect(gated.started).to.deep.equal(['r-1']);
      expect((await manager.status('r-1')).state).to.equal('running');
      gated.open('r-1');
      await untilTerminal(env, manager, ['r-1'], env.settings.pollMs);
      expect((await manager.status('r-1')).state).to.equal('completed');
      expect((await manager.metrics()).pause).to.equal('paused');
      expect((await other.metrics()).pause).to.equal('paused');
      await env.clock.advance(env.settings.pollMs * 10);
      expect((await manager.status('r-2')).state).to.equal('pending');
      await other.resume();
      await untilTerminal(env, manager, ['r-2'], env.settings.pollMs);
      expect(gated.started).to.deep.equal(['r-1', 'r-2']);
    });
  });
}
