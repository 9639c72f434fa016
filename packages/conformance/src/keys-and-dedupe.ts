import { expect } from 'chai';

import { deriveKey, InvalidRequestError, KEY_PATTERN, PermanentError, QueueFullError } from '@armlib/core';
import type { BatchRequest, CacheArea, CacheManager } from '@armlib/core';

import { resolveContext, shield, useEnv } from './context.js';
import {
  completeWithWorker,
  entry,
  EventLog,
  GatedHandler,
  putResult,
  readText,
  rejectionOf,
  req,
  untilTerminal,
} from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §2.1 keys and §3.1 submit: derivation, validation, deduplication, cache hits, re-queueing. */
export function keysAndDedupeTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('keys and dedupe', function () {
    const open = useEnv(ctx);

    it('derives stable keys that ignore the order of params and of their values', async function () {
      const env = await open();
      const manager = env.manager();
      const a = await manager.submit({ uri: '/sales', params: { region: ['eu', 'us'], year: '2025' } });
      const b = await manager.submit({ uri: '/sales', params: { year: '2025', region: ['us', 'eu'] } });
      expect(b.key).to.equal(a.key);
      expect(a.key).to.match(KEY_PATTERN);
      expect(a.key).to.equal(deriveKey({ uri: '/sales', params: { region: ['eu', 'us'], year: '2025' } }));
      const other = await env.otherProcess();
      expect((await other.status(a.key)).state).to.equal('pending');
    });

    it('gives different keys to different uris, params and bodies', async function () {
      const env = await open();
      const manager = env.manager();
      const base: BatchRequest = { uri: '/sales', params: { year: '2025' }, body: { x: 1 } };
      const keys = await Promise.all(
        [
          base,
          { ...base, uri: '/sales2' },
          { ...base, params: { year: '2026' } },
          { ...base, params: { year: ['2025', '2026'] } },
          { ...base, body: { x: 2 } },
          { uri: '/sales', params: { year: '2025' } },
        ].map(async (r) => (await manager.submit(r)).key),
      );
      expect(new Set(keys).size).to.equal(keys.length);
    });

    it('keeps sticky, group, priority, estimatedMs and owner out of the key', async function () {
      const env = await open();
      const manager = env.manager();
      const base = { uri: '/sales', params: { year: '2025' } };
      const first = await manager.submit(base);
      for (const extra of [
        { sticky: true },
        { group: 'reports' },
        { priority: 7 },
        { estimatedMs: 5 },
        { owner: 'alice' },
      ] satisfies Partial<BatchRequest>[]) {
        const again = await manager.submit({ ...base, ...extra });
        expect(again.key, JSON.stringify(extra)).to.equal(first.key);
        expect(again.state).to.equal('pending');
      }
      expect((await manager.metrics()).queueLength).to.equal(1);
    });

    it('uses a caller-chosen key as given', async function () {
      const env = await open();
      const manager = env.manager();
      const status = await manager.submit({ uri: '/sales', key: 'sales-2025_eu.v1' });
      expect(status.key).to.equal('sales-2025_eu.v1');
      expect((await manager.status('sales-2025_eu.v1')).state).to.equal('pending');
    });

    it('rejects invalid keys, params, uris and bodies naming the field, and queues nothing', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      const cases: [unknown, string][] = [
        [{ uri: '/x', key: 'has space' }, 'key'],
        [{ uri: '/x', key: '../etc' }, 'key'],
        [{ uri: '/x', key: '' }, 'key'],
        [{ uri: '/x', key: 'x'.repeat(201) }, 'key'],
        [{ uri: '/x', key: 'trailing.' }, 'key'],
        [{ uri: '' }, 'uri'],
        [{ uri: 42 }, 'uri'],
        [{ uri: '/x\u0000' }, 'uri'],
        [{ uri: '/x', params: { a: 1 } }, 'params.a'],
        [{ uri: '/x', params: { a: ['ok', 2] } }, 'params.a[1]'],
        [{ uri: '/x', params: 'a=1' }, 'params'],
        [{ uri: '/x', body: { when: new Date(0) } }, 'body.when'],
        [{ uri: '/x', body: Number.NaN }, 'body'],
        [{ uri: '/x', priority: 1.5 }, 'priority'],
        [{ uri: '/x', group: 'no spaces' }, 'group'],
        [{ uri: '/x', sticky: 'yes' }, 'sticky'],
        [{ uri: '/x', colour: 'red' }, 'colour'],
      ];
      for (const [input, field] of cases) {
        const error = await rejectionOf(manager.submit(input as BatchRequest));
        expect(InvalidRequestError.is(error), `${JSON.stringify(input)} -> ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field, JSON.stringify(input)).to.equal(field);
      }
      const metrics = await manager.metrics();
      expect(metrics.queueLength).to.equal(0);
      expect(Object.values(metrics.byState).reduce((a, b) => a + b, 0)).to.equal(0);
      expect(log.entries).to.have.length(0);
    });

    it('returns the same pending entry for a duplicate submit and emits deduplicated', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      const first = await manager.submit(req('dup', { priority: 1 }));
      await env.clock.advance(env.t(10));
      const second = await manager.submit(req('dup', { priority: 9, owner: 'other' }));
      expect(second.key).to.equal('dup');
      expect(second.state).to.equal('pending');
      expect(second.submittedAt).to.equal(first.submittedAt);
      expect(log.of('submitted', 'dup')).to.have.length(1);
      expect(log.of('deduplicated', 'dup')).to.have.length(1);
      expect((await manager.metrics()).byState.pending).to.equal(1);
    });

    it('deduplicates against a running entry', async function () {
      const env = await open();
      const manager = env.manager();
      const gate = env.defer();
      let runs = 0;
      manager.process(async () => {
        runs++;
        await gate.promise;
      });
      await manager.submit(req('busy'));
      await env.until(async () => (await manager.status('busy')).state === 'running', {
        stepMs: env.settings.pollMs,
        what: 'busy running',
      });
      const again = await manager.submit(req('busy'));
      expect(again.state).to.equal('running');
      gate.resolve();
      await untilTerminal(env, manager, ['busy'], env.settings.pollMs);
      expect(runs).to.equal(1);
    });

    it('completes at once a submit whose result is already cached', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      await completeWithWorker(env, manager, [req('done')]);
      const again = await manager.submit(req('done'));
      expect(again.state).to.equal('completed');
      expect(again.result?.formats).to.have.property('csv');
      await putResult(env, 'precached', 'temporary');
      const hit = await manager.submit(req('precached'));
      expect(hit.state).to.equal('completed');
      expect(hit.result?.area).to.equal('temporary');
      expect(await readText(await manager.read('precached', 'csv'))).to.equal('cached precached');
      expect(log.of('submitted', 'precached')).to.have.length(0);
      expect((await manager.metrics()).byState.pending).to.equal(0);
    });

    it('promotes a temporary result when a sticky submit finds it', async function () {
      const env = await open();
      const manager = env.manager();
      await putResult(env, 'promote-me', 'temporary');
      const status = await manager.submit(req('promote-me', { sticky: true }));
      expect(status.state).to.equal('completed');
      expect(status.result?.area).to.equal('persistent');
      expect((await env.cache.head('promote-me', 'persistent'))?.area).to.equal('persistent');
      expect(await env.cache.head('promote-me', 'temporary')).to.equal(undefined);
      expect(await readText(await manager.read('promote-me', 'csv'))).to.equal('cached promote-me');
    });

    it('makes a pending entry sticky when a sticky submit joins it, so its result is persistent', async function () {
      const env = await open();
      const manager = env.manager();
      const log = new EventLog(env, manager);
      const first = await manager.submit(req('shared-report'));
      expect(first.request?.sticky ?? false).to.equal(false);
      const sticky = await manager.submit(req('shared-report', { sticky: true }));
      expect(sticky.state).to.equal('pending');
      expect(sticky.request?.sticky).to.equal(true);
      expect(log.of('deduplicated', 'shared-report')).to.have.length(1);
      // A later non-sticky submit does not take it back.
      expect((await manager.submit(req('shared-report'))).request?.sticky).to.equal(true);
      expect((await manager.metrics()).byState.pending).to.equal(1);
      const worker = manager.process(async (job) => {
        expect(job.request.sticky).to.equal(true);
        await job.write('csv', 'shared');
      });
      await untilTerminal(env, manager, ['shared-report'], env.settings.pollMs);
      await env.drive(worker.stop(), { stepMs: env.settings.pollMs, what: 'worker.stop()' });
      const done = await manager.status('shared-report');
      expect(done.state).to.equal('completed');
      expect(done.result?.area).to.equal('persistent');
      expect((await env.cache.head('shared-report', 'persistent'))?.area).to.equal('persistent');
      expect(await env.cache.head('shared-report', 'temporary')).to.equal(undefined);
    });

    it('keeps the result of a running request persistent when a sticky submit joins it', async function () {
      const env = await open();
      const manager = env.manager();
      await manager.submit(req('joined-late'));
      const gated = new GatedHandler(env);
      manager.process(gated.handler);
      await gated.waitStarted(1, env.settings.pollMs);
      // The job runs with the request as claimed (not sticky); the sticky submit joins it now.
      const joined = await manager.submit(req('joined-late', { sticky: true }));
      expect(joined.state).to.equal('running');
      gated.open('joined-late');
      await untilTerminal(env, manager, ['joined-late'], env.settings.pollMs);
      // The worker promotes the result right after completing the request (only then does it see
      // the record sticky): on a remote cache that takes a round trip or two.
      await env.until(async () => (await manager.status('joined-late')).result?.area === 'persistent', {
        stepMs: env.settings.pollMs,
        what: 'the result promoted',
      });
      expect((await manager.status('joined-late')).state).to.equal('completed');
      expect(await env.cache.head('joined-late', 'temporary')).to.equal(undefined);
    });

    it('re-queues failed, cancelled and expired keys as new pending entries', async function () {
      const env = await open();
      const manager = env.manager({ settings: { pendingTtlMs: 1_000 } });
      const log = new EventLog(env, manager);
      // failed
      const worker = manager.process(async (job) => {
        await Promise.resolve();
        if (job.key === 'will-fail') throw new PermanentError('no such report');
      });
      await manager.submit(req('will-fail'));
      await untilTerminal(env, manager, ['will-fail'], env.settings.pollMs);
      expect((await manager.status('will-fail')).state).to.equal('failed');
      await env.drive(worker.stop(), { stepMs: env.settings.pollMs });
      // cancelled
      await manager.submit(req('will-cancel'));
      expect((await manager.cancel('will-cancel')).state).to.equal('cancelled');
      // expired
      await manager.submit(req('will-expire'));
      await env.clock.advance(env.t(1_001));
      await manager.sweep();
      expect((await manager.status('will-expire')).state).to.equal('expired');

      for (const key of ['will-fail', 'will-cancel', 'will-expire']) {
        const again = await manager.submit(req(key));
        expect(again.state, key).to.equal('pending');
        expect(again.attempts, key).to.equal(0);
        expect(again.error, key).to.equal(undefined);
        expect(log.of('submitted', key), key).to.have.length(2);
      }
    });

    it('keeps a record that finished at or after keepFinishedSince instead of replacing it (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const leaseMs = env.t(1_000);
      await queue.enqueue(entry('kept'), { limits: {} });
      const lease = await queue.claim({ workerId: 'w1', leaseMs, policies: {} });
      expect(lease?.record.key).to.equal('kept');
      await env.clock.advance(env.t(10));
      const finishedAt = env.clock.now();
      await queue.complete('kept', lease?.token ?? '', { durationMs: 1 });
      const kept = await queue.enqueue(entry('kept'), { limits: {}, keepFinishedSince: finishedAt });
      expect(kept.outcome).to.equal('existing');
      expect(kept.record.state).to.equal('completed');
      expect(kept.record.attempts).to.equal(1);
      expect((await queue.get('kept'))?.state).to.equal('completed');
      const replaced = await queue.enqueue(entry('kept'), { limits: {}, keepFinishedSince: finishedAt + 1 });
      expect(replaced.outcome).to.equal('created');
      expect(replaced.record.state).to.equal('pending');
      expect(replaced.record.attempts).to.equal(0);
    });

    it('keeps a record kept by keepFinishedSince even when the queue is at its cap (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      await queue.enqueue(entry('done'), { limits: {} });
      const lease = await queue.claim({ workerId: 'w1', leaseMs: env.t(1_000), policies: {} });
      expect(lease?.record.key).to.equal('done');
      await env.clock.advance(env.t(10));
      const finishedAt = env.clock.now();
      await queue.complete('done', lease?.token ?? '', { durationMs: 1 });
      await queue.enqueue(entry('filler'), { limits: {} });
      // The caps are about adding records: one that is kept adds nothing.
      const kept = await queue.enqueue(entry('done'), { limits: { maxQueueLength: 1 }, keepFinishedSince: finishedAt });
      expect(kept.outcome).to.equal('existing');
      expect(kept.record.state).to.equal('completed');
      const refused = await rejectionOf(
        queue.enqueue(entry('done'), { limits: { maxQueueLength: 1 }, keepFinishedSince: finishedAt + 1 }),
      );
      expect(QueueFullError.is(refused), String(refused)).to.equal(true);
    });

    it('serves the result of a run that completes between its cache check and its enqueue', async function () {
      const env = await open();
      const manager = env.manager();
      await manager.submit(req('racy'));
      const lease = await env.queue.claim({ workerId: 'w1', leaseMs: env.t(1_000), policies: {} });
      expect(lease?.record.key).to.equal('racy');
      // A second submit reads the cache just before that worker commits the result and completes
      // the record: its enqueue then finds the run finished.
      const racing = racingHead(env.cache, async () => {
        await putResult(env, 'racy', 'temporary', { csv: 'the one run' });
        await env.queue.complete('racy', lease?.token ?? '', { durationMs: 1 });
      });
      const other = await env.otherProcess({}, { queue: shield(env.queue), cache: racing.cache });
      const log = new EventLog(env, other);
      const status = await other.submit(req('racy'));
      expect(racing.raced()).to.equal(true);
      expect(status.state).to.equal('completed');
      expect(status.attempts).to.equal(1);
      expect(log.of('submitted', 'racy')).to.have.length(0);
      expect(log.of('deduplicated', 'racy')).to.have.length(1);
      const record = await env.queue.get('racy');
      expect(record?.state).to.equal('completed');
      expect(await readText(await other.read('racy', 'csv'))).to.equal('the one run');
    });

    it('re-queues a completed key when forced', async function () {
      const env = await open();
      const manager = env.manager();
      await completeWithWorker(env, manager, [req('rebuild')]);
      expect((await manager.submit(req('rebuild'))).state).to.equal('completed');
      const forced = await manager.submit(req('rebuild'), { force: true });
      expect(forced.state).to.equal('pending');
      expect((await manager.status('rebuild')).state).to.equal('pending');
      expect((await manager.submit(req('rebuild'), { force: true })).state).to.equal('pending');
      expect((await manager.metrics()).byState.pending).to.equal(1);
    });

    it('reports an unknown key as unknown', async function () {
      const env = await open();
      const manager = env.manager();
      const status = await manager.status('never-seen');
      expect(status.state).to.equal('unknown');
      expect(status.key).to.equal('never-seen');
      expect(status.attempts).to.equal(0);
      expect(status.position).to.equal(undefined);
    });

    it('reports a key with a cached result as completed after its queue record was pruned', async function () {
      const env = await open();
      const manager = env.manager();
      await completeWithWorker(env, manager, [req('pruned')]);
      await env.clock.advance(env.t(10));
      expect(await manager.prune()).to.be.greaterThanOrEqual(1);
      expect(await env.queue.get('pruned')).to.equal(undefined);
      const status = await manager.status('pruned');
      expect(status.state).to.equal('completed');
      expect(status.result?.formats).to.have.property('csv');
      expect(await readText(await manager.read('pruned', 'csv'))).to.equal('result of pruned');
    });
  });
}

/**
 * The cache with `head('racy')` running `between` once, after its read and before it answers: as
 * if another worker committed the key's result and completed its run right after the read.
 */
function racingHead(cache: CacheManager, between: () => Promise<void>): { cache: CacheManager; raced: () => boolean } {
  let raced = false;
  const shielded = shield(cache);
  const wrapped = new Proxy(shielded, {
    get(obj, prop) {
      if (prop === 'head') {
        return async (key: string, area?: CacheArea) => {
          const found = await cache.head(key, area);
          if (key === 'racy' && !raced) {
            raced = true;
            await between();
          }
          return found;
        };
      }
      return Reflect.get(obj, prop, obj) as unknown;
    },
  });
  return { cache: wrapped, raced: () => raced };
}
