import { expect } from 'chai';

import { PermanentError } from '@armlib/core';
import type { Job, RequestManager } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import type { TestEnv } from './context.js';
import { completeWithWorker, EventLog, readText, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/**
 * §3.1 cancel: pending at once, running through the worker's signal, terminal unchanged. A cancel
 * request is never lost: a run that fails or is handed back before it notices ends `cancelled`.
 */
export function cancelTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('cancel', function () {
    const open = useEnv(ctx);

    it('cancels a pending request at once and never runs it', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      await manager.submit(req('not-needed'));
      const status = await manager.cancel('not-needed');
      expect(status.state).to.equal('cancelled');
      expect((await manager.status('not-needed')).state).to.equal('cancelled');
      expect(log.of('cancelled', 'not-needed')).to.deep.equal([{ key: 'not-needed', running: false }]);
      let ran = false;
      manager.process(async () => {
        await Promise.resolve();
        ran = true;
      });
      await env.clock.advance(env.settings.pollMs * 5);
      expect(ran).to.equal(false);
      expect((await manager.metrics()).byState.pending).to.equal(0);
    });

    for (const where of ['the same process', 'another process'] as const) {
      it(`stops a running request cancelled from ${where} within one heartbeat and discards its output`, async function () {
        const env = await open();
        const manager = env.manager();
        const canceller = where === 'the same process' ? manager : await env.otherProcess();
        const log = new EventLog(env, manager, ...(canceller === manager ? [] : [canceller]));
        const job = await startHeldJob(env, manager, 'stop-me');
        const status = await canceller.cancel('stop-me');
        expect(status.state).to.equal('running');
        expect(status.cancelRequested).to.equal(true);
        expect((await manager.status('stop-me')).cancelRequested).to.equal(true);
        await env.clock.advance(env.settings.leaseMs / 3);
        expect(job.signal.aborted, 'signal aborted within leaseMs/3').to.equal(true);
        await untilTerminal(env, manager, ['stop-me'], env.settings.pollMs);
        const final = await manager.status('stop-me');
        expect(final.state).to.equal('cancelled');
        expect(final.result).to.equal(undefined);
        expect(await manager.read('stop-me', 'csv')).to.equal(undefined);
        expect(await env.cache.head('stop-me')).to.equal(undefined);
        const events = log.of('cancelled', 'stop-me');
        expect(events.length).to.be.at.least(1);
        expect(log.of('completed', 'stop-me')).to.have.length(0);
      });
    }

    /**
     * A job cancelled from another process that then throws `error` before any heartbeat told it
     * of the cancel (the clock stands still); returns once the request is terminal.
     */
    async function cancelThenThrow(
      key: string,
      error: Error,
    ): Promise<{ env: TestEnv; manager: RequestManager; log: EventLog; runs: () => number }> {
      const env = await open();
      const manager = env.manager({ settings: { maxAttempts: 3 } });
      const canceller = await env.otherProcess();
      const log = new EventLog(env, manager, canceller);
      const gate = env.defer();
      let runs = 0;
      manager.process(async () => {
        runs++;
        await gate.promise;
        throw error;
      });
      await manager.submit(req(key));
      await env.until(() => runs === 1, { stepMs: env.settings.pollMs, what: `${key} to start` });
      expect((await canceller.cancel(key)).cancelRequested).to.equal(true);
      gate.resolve();
      await untilTerminal(env, manager, [key]);
      return { env, manager, log, runs: () => runs };
    }

    it('ends cancelled, not retried, a job cancelled from another process that then throws', async function () {
      // A retryable failure: without the cancel it would run again.
      const { env, manager, log, runs } = await cancelThenThrow('cancel-then-throw', new Error('upstream timed out'));
      const final = await manager.status('cancel-then-throw');
      expect(final.state).to.equal('cancelled');
      expect(final.attempts).to.equal(1);
      expect(log.of('retried', 'cancel-then-throw')).to.have.length(0);
      expect(log.of('cancelled', 'cancel-then-throw')).to.deep.equal([{ key: 'cancel-then-throw', running: true }]);
      await env.clock.advance(env.t(30_000));
      expect(runs()).to.equal(1);
      expect((await manager.status('cancel-then-throw')).state).to.equal('cancelled');
    });

    it('ends cancelled, not failed, a job cancelled from another process that then fails for good', async function () {
      const { manager, log } = await cancelThenThrow(
        'cancel-then-fail',
        new PermanentError('the report cannot be made'),
      );
      const final = await manager.status('cancel-then-fail');
      expect(final.state).to.equal('cancelled');
      expect(final.error?.code).to.equal('PERMANENT');
      expect(log.of('failed', 'cancel-then-fail')).to.have.length(0);
      expect(log.of('cancelled', 'cancel-then-fail')).to.deep.equal([{ key: 'cancel-then-fail', running: true }]);
    });

    it('ends cancelled, not requeued, a job cancelled from another process that a stopping worker hands back', async function () {
      const env = await open();
      const manager = env.manager();
      const canceller = await env.otherProcess();
      const log = new EventLog(env, manager, canceller);
      const gate = env.defer();
      let runs = 0;
      const worker = manager.process(async () => {
        runs++;
        await gate.promise;
      });
      await manager.submit(req('cancel-then-stop'));
      await env.until(() => runs === 1, { stepMs: env.settings.pollMs, what: 'cancel-then-stop to start' });
      expect((await canceller.cancel('cancel-then-stop')).cancelRequested).to.equal(true);
      // No grace: the worker hands the lease back before any heartbeat tells it of the cancel.
      await worker.stop({ graceMs: 0 });
      const final = await manager.status('cancel-then-stop');
      expect(final.state).to.equal('cancelled');
      expect(log.of('requeued', 'cancel-then-stop')).to.have.length(0);
      expect(log.of('cancelled', 'cancel-then-stop')).to.deep.equal([{ key: 'cancel-then-stop', running: true }]);
      manager.process(async () => {
        await Promise.resolve();
        runs++;
      });
      await env.clock.advance(env.settings.pollMs * 5);
      expect(runs).to.equal(1);
    });

    it('leaves a terminal request unchanged and says so', async function () {
      const env = await open();
      const manager = env.manager();
      await completeWithWorker(env, manager, [req('finished')]);
      const log = new EventLog(env, manager);
      const completed = await manager.cancel('finished');
      expect(completed.state).to.equal('completed');
      expect(completed.cancelRequested ?? false).to.equal(false);
      expect(await readText(await manager.read('finished', 'csv'))).to.equal('result of finished');

      const worker = manager.process(async () => {
        await Promise.resolve();
        throw new PermanentError('nope');
      });
      await manager.submit(req('broken'));
      await untilTerminal(env, manager, ['broken'], env.settings.pollMs);
      await env.drive(worker.stop(), { stepMs: env.settings.pollMs });
      const failed = await manager.cancel('broken');
      expect(failed.state).to.equal('failed');
      expect(failed.error?.message).to.equal('nope');

      await manager.submit(req('twice'));
      await manager.cancel('twice');
      expect((await manager.cancel('twice')).state).to.equal('cancelled');
      expect(log.of('cancelled', 'finished')).to.have.length(0);
      expect(log.of('cancelled', 'broken')).to.have.length(0);
      expect(log.of('cancelled', 'twice')).to.have.length(1);
    });

    it('reports an unknown key as unknown when cancelling it, and changes nothing', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      const status = await manager.cancel('no-such-key');
      expect(status.state).to.equal('unknown');
      expect(status.key).to.equal('no-such-key');
      expect((await manager.status('no-such-key')).state).to.equal('unknown');
      expect((await manager.metrics()).queueLength).to.equal(0);
      expect(log.entries).to.have.length(0);
    });
  });
}

/** Starts a worker whose job writes partial output and then waits for its signal to abort. */
async function startHeldJob(env: TestEnv, manager: RequestManager, key: string): Promise<Job> {
  let held: Job | undefined;
  manager.process(async (job) => {
    held = job;
    await job.write('csv', 'partial output');
    await new Promise<void>((resolve) => {
      if (job.signal.aborted) resolve();
      job.signal.addEventListener('abort', () => {
        resolve();
      });
    });
    // A handler that ignores the abort and returns must still not complete the request.
  });
  await manager.submit(req(key));
  await env.until(() => held !== undefined, { stepMs: env.settings.pollMs, what: `${key} to start` });
  const job = held;
  if (job === undefined) throw new Error('unreachable');
  // Let the partial write land in staging before the cancel.
  await env.clock.tick();
  return job;
}
