import { expect } from 'chai';

import { PermanentError } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import { EventLog, readText, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/**
 * §3.1 fail: retries with exponential backoff and jitter (checked within [0, d]; core uses equal
 * jitter, [d/2, d]), PermanentError, maxAttempts.
 */
export function retryTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('retries and backoff', function () {
    const open = useEnv(ctx);

    it('completes after two failures with attempts 3', async function () {
      const env = await open();
      const manager = env.manager({ settings: { maxAttempts: 3 } });
      const log = new EventLog(env, manager);
      manager.process(async (job) => {
        if (job.attempt < 3) throw new Error(`flaky ${String(job.attempt)}`);
        await job.write('csv', `third time (${String(job.attempt)})`);
      });
      await manager.submit(req('flaky'));
      await untilTerminal(env, manager, ['flaky'], env.settings.pollMs);
      const status = await manager.status('flaky');
      expect(status.state).to.equal('completed');
      expect(status.attempts).to.equal(3);
      expect(await readText(await manager.read('flaky', 'csv'))).to.equal('third time (3)');
      const retried = log.of('retried', 'flaky');
      expect(retried.map((r) => r.attempt)).to.deep.equal([1, 2]);
      expect(retried.map((r) => r.error.message)).to.deep.equal(['flaky 1', 'flaky 2']);
      expect(log.of('failed', 'flaky')).to.have.length(0);
      expect(log.of('completed', 'flaky')).to.have.length(1);
    });

    it('waits a jittered, exponentially growing delay within [0, min(retryMaxMs, retryBaseMs * 2^(n-1))]', async function () {
      const env = await open();
      const base = 1_000;
      const max = 3_000;
      const manager = env.manager({ settings: { maxAttempts: 6, retryBaseMs: base, retryMaxMs: max } });
      const log = new EventLog(env, manager);
      const failedAt: number[] = [];
      const startedAt: number[] = [];
      manager.process(async (job) => {
        await Promise.resolve();
        startedAt.push(env.clock.now());
        failedAt.push(env.clock.now());
        throw new Error(`attempt ${String(job.attempt)} failed`);
      });
      await manager.submit(req('backoff'));
      const step = env.settings.pollMs / 2;
      await untilTerminal(env, manager, ['backoff'], step);
      const retried = log.of('retried', 'backoff');
      expect(retried).to.have.length(5);
      for (let n = 1; n <= 5; n++) {
        const r = retried[n - 1];
        const failure = failedAt[n - 1] ?? Number.NaN;
        const retryAt = Date.parse(r?.retryAt ?? '');
        const bound = Math.min(env.t(max), env.t(base) * 2 ** (n - 1));
        expect(r?.attempt).to.equal(n);
        expect(retryAt - failure, `delay after attempt ${String(n)}`).to.be.within(0, bound);
        const next = startedAt[n] ?? Number.NaN;
        expect(next, `claim of attempt ${String(n + 1)} not before retryAt`).to.be.at.least(retryAt);
        expect(next - retryAt, `claim of attempt ${String(n + 1)} soon after retryAt`).to.be.at.most(
          2 * env.settings.pollMs,
        );
      }
      const final = await manager.status('backoff');
      expect(final.state).to.equal('failed');
      expect(final.attempts).to.equal(6);
    });

    it('fails at once on PermanentError', async function () {
      const env = await open();
      const manager = env.manager({ settings: { maxAttempts: 5 } });
      const log = new EventLog(env, manager);
      manager.process(async () => {
        await Promise.resolve();
        throw new PermanentError('report does not exist');
      });
      await manager.submit(req('doomed'));
      await untilTerminal(env, manager, ['doomed'], env.settings.pollMs);
      const status = await manager.status('doomed');
      expect(status.state).to.equal('failed');
      expect(status.attempts).to.equal(1);
      expect(status.error?.code).to.equal('PERMANENT');
      expect(status.error?.message).to.equal('report does not exist');
      expect(status.error?.retryable).to.equal(false);
      expect(log.of('retried', 'doomed')).to.have.length(0);
      const failed = log.of('failed', 'doomed');
      expect(failed).to.have.length(1);
      expect(failed[0]?.attempts).to.equal(1);
      expect(failed[0]?.error.code).to.equal('PERMANENT');
    });

    it('fails after maxAttempts with the error recorded', async function () {
      const env = await open();
      const manager = env.manager({ settings: { maxAttempts: 3 } });
      const log = new EventLog(env, manager);
      manager.process(async () => {
        await Promise.resolve();
        throw new Error('upstream said no');
      });
      await manager.submit(req('hopeless'));
      await untilTerminal(env, manager, ['hopeless'], env.settings.pollMs);
      const status = await manager.status('hopeless');
      expect(status.state).to.equal('failed');
      expect(status.attempts).to.equal(3);
      expect(status.error?.message).to.equal('upstream said no');
      expect(status.error?.code).to.be.a('string').and.not.equal('');
      expect(log.of('retried', 'hopeless')).to.have.length(2);
      const failed = log.of('failed', 'hopeless');
      expect(failed).to.have.length(1);
      expect(failed[0]?.attempts).to.equal(3);
      expect(failed[0]?.error.message).to.equal('upstream said no');
      expect(await manager.read('hopeless')).to.equal(undefined);
    });
  });
}
