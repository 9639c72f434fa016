import { expect } from 'chai';

import { QueueFullError, QuotaExceededError } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import { EventLog, GatedHandler, rejectionOf, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 caps and quotas: QueueFullError / QuotaExceededError, existing entries untouched, dedupe allowed. */
export function capsAndQuotaTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('caps and quotas', function () {
    const open = useEnv(ctx);

    it('rejects beyond the global maxQueueLength, counting running requests', async function () {
      const env = await open();
      const manager = env.manager({ settings: { maxQueueLength: 3 } });
      const log = new EventLog(env, manager);
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      await manager.submit(req('q-1'));
      await gated.waitStarted(1, env.settings.pollMs);
      await manager.submit(req('q-2'));
      await manager.submit(req('q-3'));
      const error = await rejectionOf(manager.submit(req('q-4')));
      expect(QueueFullError.is(error), String(error)).to.equal(true);
      expect((error as QueueFullError).limit).to.equal(3);
      expect((error as QueueFullError).group).to.equal(undefined);
      expect((await manager.status('q-4')).state).to.equal('unknown');
      expect(log.of('submitted', 'q-4')).to.have.length(0);
      // Existing entries are untouched, and submitting one of them again is a dedupe, not a rejection.
      expect((await manager.status('q-1')).state).to.equal('running');
      expect((await manager.submit(req('q-1'))).state).to.equal('running');
      expect((await manager.submit(req('q-2'))).state).to.equal('pending');
      expect((await manager.metrics()).queueLength).to.equal(3);
      // Room again once one finishes.
      gated.open('q-1');
      await untilTerminal(env, manager, ['q-1'], env.settings.pollMs);
      expect((await manager.submit(req('q-4'))).state).to.be.oneOf(['pending', 'running']);
    });

    it('rejects beyond a group maxQueueLength without affecting other groups', async function () {
      const env = await open();
      const manager = env.manager({ groups: { small: { maxQueueLength: 2 } } });
      await manager.submit(req('s-1', { group: 'small' }));
      await manager.submit(req('s-2', { group: 'small' }));
      const error = await rejectionOf(manager.submit(req('s-3', { group: 'small' })));
      expect(QueueFullError.is(error), String(error)).to.equal(true);
      expect((error as QueueFullError).group).to.equal('small');
      expect((error as QueueFullError).limit).to.equal(2);
      expect((await manager.submit(req('s-2', { group: 'small' }))).state).to.equal('pending');
      expect((await manager.submit(req('big-1', { group: 'big' }))).state).to.equal('pending');
      expect((await manager.submit(req('big-2'))).state).to.equal('pending');
      expect((await manager.metrics()).byGroup['small']?.pending).to.equal(2);
      await manager.cancel('s-1');
      expect((await manager.submit(req('s-3', { group: 'small' }))).state).to.equal('pending');
    });

    it('rejects beyond maxPendingPerOwner, counting only pending requests of that owner', async function () {
      const env = await open();
      const manager = env.manager({ settings: { maxPendingPerOwner: 2 } });
      await manager.submit(req('a-1', { owner: 'alice' }));
      await manager.submit(req('a-2', { owner: 'alice' }));
      const error = await rejectionOf(manager.submit(req('a-3', { owner: 'alice' })));
      expect(QuotaExceededError.is(error), String(error)).to.equal(true);
      expect((error as QuotaExceededError).owner).to.equal('alice');
      expect((error as QuotaExceededError).limit).to.equal(2);
      expect((await manager.submit(req('a-1', { owner: 'alice' }))).state).to.equal('pending');
      expect((await manager.submit(req('b-1', { owner: 'bob' }))).state).to.equal('pending');
      expect((await manager.submit(req('anon'))).state).to.equal('pending');
      expect((await manager.status('a-3')).state).to.equal('unknown');
      // Once one of alice's runs, it no longer counts against her pending quota.
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      await gated.waitStarted(1, env.settings.pollMs);
      expect(gated.started[0]).to.equal('a-1');
      expect((await manager.submit(req('a-3', { owner: 'alice' }))).state).to.equal('pending');
    });
  });
}
