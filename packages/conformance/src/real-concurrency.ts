import { expect } from 'chai';

import type { QueueManager, RequestManager } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import { claimManyOf, entry, EventLog, req, untilTerminal } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 atomicity under real concurrency: one entry per key, each request claimed exactly once. */
export function realConcurrencyTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('real concurrency', function () {
    const open = useEnv(ctx);

    it('creates one entry for 50 concurrent submits of one key', async function () {
      const env = await open();
      const managers: RequestManager[] = [env.manager()];
      // Spread the submits over several "processes" when the backend is shared.
      if (env.instance.peer !== undefined) for (let i = 0; i < 3; i++) managers.push(await env.otherProcess());
      const log = new EventLog(env, ...managers);
      const statuses = await Promise.all(
        Array.from({ length: 50 }, (_, i) => pick(managers, i).submit(req('hot-key'))),
      );
      for (const s of statuses) {
        expect(s.key).to.equal('hot-key');
        expect(s.state).to.equal('pending');
      }
      expect(new Set(statuses.map((s) => s.submittedAt)).size).to.equal(1);
      expect(log.of('submitted', 'hot-key')).to.have.length(1);
      expect(log.of('deduplicated', 'hot-key')).to.have.length(49);
      expect((await managers[0]?.metrics())?.byState.pending).to.equal(1);
    });

    it('creates one record for 50 concurrent enqueues of one key (SPI)', async function () {
      const env = await open();
      const queues: QueueManager[] = [env.queue];
      if (env.instance.peer !== undefined) for (let i = 0; i < 3; i++) queues.push((await env.peerAdapters()).queue);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => pick(queues, i).enqueue(entry('race'), { limits: {} })),
      );
      expect(results.filter((r) => r.outcome === 'created')).to.have.length(1);
      expect(results.filter((r) => r.outcome === 'existing')).to.have.length(49);
      expect(new Set(results.map((r) => r.record.seq)).size).to.equal(1);
      expect((await env.queue.counts()).byState.pending).to.equal(1);
    });

    it('hands each of 200 requests to exactly one of 8 concurrent claimers (SPI)', async function () {
      const env = await open();
      const total = 200;
      for (let i = 0; i < total; i++) await env.queue.enqueue(entry(`job-${String(i)}`), { limits: {} });
      const queues: QueueManager[] = [];
      for (let i = 0; i < 8; i++) queues.push(i === 0 ? env.queue : (await env.peerAdapters()).queue);
      const claimedBy = new Map<string, number[]>();
      await Promise.all(
        queues.map(async (queue, worker) => {
          for (;;) {
            const lease = await queue.claim({ workerId: `w${String(worker)}`, leaseMs: env.t(600_000), policies: {} });
            if (lease === undefined) return;
            claimedBy.set(lease.record.key, [...(claimedBy.get(lease.record.key) ?? []), worker]);
            await queue.complete(lease.record.key, lease.token, { durationMs: 1 });
          }
        }),
      );
      expect(claimedBy.size).to.equal(total);
      const twice = [...claimedBy].filter(([, workers]) => workers.length !== 1);
      expect(twice, 'claimed more than once').to.deep.equal([]);
      expect((await env.queue.counts()).byState.completed).to.equal(total);
    });

    it('hands each of 200 requests to exactly one of 8 concurrent claimers taking batches (claimMany, SPI)', async function () {
      const env = await open();
      const total = 200;
      for (let i = 0; i < total; i++) await env.queue.enqueue(entry(`batch-${String(i)}`), { limits: {} });
      claimManyOf(this, env.queue);
      const queues: QueueManager[] = [];
      for (let i = 0; i < 8; i++) queues.push(i === 0 ? env.queue : (await env.peerAdapters()).queue);
      const claimedBy = new Map<string, number[]>();
      await Promise.all(
        queues.map(async (queue, worker) => {
          const claimMany = claimManyOf(this, queue);
          for (let round = 0; ; round++) {
            const options = { workerId: `w${String(worker)}`, leaseMs: env.t(600_000), policies: {} };
            const leases = await claimMany(options, 1 + ((worker + round) % 7));
            if (leases.length === 0) return;
            for (const lease of leases) {
              claimedBy.set(lease.record.key, [...(claimedBy.get(lease.record.key) ?? []), worker]);
            }
            await Promise.all(leases.map((l) => queue.complete(l.record.key, l.token, { durationMs: 1 })));
          }
        }),
      );
      expect(claimedBy.size).to.equal(total);
      const twice = [...claimedBy].filter(([, workers]) => workers.length !== 1);
      expect(twice, 'claimed more than once').to.deep.equal([]);
      expect((await env.queue.counts()).byState.completed).to.equal(total);
    });

    it('runs each of 200 requests once across 8 workers', async function () {
      const env = await open();
      const managers: RequestManager[] = [env.manager()];
      for (let i = 1; i < 8; i++) managers.push(await env.otherProcess());
      const runs = new Map<string, number>();
      const keys = Array.from({ length: 200 }, (_, i) => `w-${String(i)}`);
      for (const key of keys) await managers[0]?.submit(req(key));
      for (const manager of managers) {
        manager.process(
          async (job) => {
            runs.set(job.key, (runs.get(job.key) ?? 0) + 1);
            await job.write('csv', job.key);
          },
          { concurrency: 2 },
        );
      }
      const first = managers[0];
      if (first === undefined) return;
      await untilTerminal(env, first, keys, env.settings.pollMs);
      expect(runs.size).to.equal(keys.length);
      expect([...runs].filter(([, n]) => n !== 1)).to.deep.equal([]);
      expect((await first.metrics()).byState.completed).to.equal(keys.length);
    });
  });
}

/** The i-th item, round robin. */
function pick<T>(items: readonly T[], i: number): T {
  const item = items[i % items.length];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}
