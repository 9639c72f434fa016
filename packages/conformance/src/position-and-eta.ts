import { expect } from 'chai';

import { resolveContext, useEnv } from './context.js';
import { entry, EventLog, GatedHandler, req, untilTerminal } from './helpers.js';
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
      // Serving order: priority, then groups in turn ('elsewhere' has not had one; the runner's group has).
      const order = ['urgent', 'third', 'first', 'second'];
      const submitted = [
        await manager.submit(req('first', { estimatedMs: 5_000 })),
        await manager.submit(req('second', { estimatedMs: 5_000 })),
        await manager.submit(req('urgent', { estimatedMs: 5_000, priority: 10 })),
        await manager.submit(req('third', { estimatedMs: 5_000, group: 'elsewhere' })),
      ];
      // What each submit answered: its place when it joined the line.
      if (env.exactPosition) expect(submitted.map((s) => s.position)).to.deep.equal([1, 2, 1, 2]);
      for (const s of submitted) expect(s.etaMs).to.be.a('number').and.at.least(0);

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
      // ETAs grow with the positions the adapter gives (an estimated position orders them too).
      const byPosition = statuses
        .map((s) => ({ key: s.key, position: s.position ?? 0, eta: s.etaMs ?? Number.NaN }))
        .sort((a, b) => a.position - b.position);
      for (const { eta } of byPosition) expect(eta).to.be.a('number').and.at.least(0);
      for (let i = 1; i < byPosition.length; i++) {
        const [before, at] = [byPosition[i - 1], byPosition[i]];
        expect(at?.eta, `eta of ${at?.key ?? ''} vs ${before?.key ?? ''}`).to.be.at.least(before?.eta ?? 0);
      }
      expect(byPosition[byPosition.length - 1]?.eta).to.be.greaterThan(byPosition[0]?.eta ?? 0);

      // The queue moves: positions drop as requests ahead are served.
      gated.open('runner');
      await env.until(() => gated.started.length >= 2, { stepMs: env.settings.pollMs, what: 'next claim' });
      expect(gated.started[1]).to.equal('urgent');
      expect((await manager.status('urgent')).position).to.equal(0);
      if (env.exactPosition) {
        expect((await manager.status('third')).position).to.equal(1);
        expect((await manager.status('first')).position).to.equal(2);
      }
      for (const key of [...order, 'runner']) gated.open(key);
      await untilTerminal(env, manager, ['runner', ...order], env.settings.pollMs);
      const done = await manager.status('third');
      expect(done.position).to.equal(undefined);
      expect(done.etaMs).to.equal(undefined);
    });

    it('gives, where an enqueue states a position, the one position() reads right after (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const stated: [string, number | undefined, number | undefined][] = [];
      const enqueue = async (key: string, extra: Parameters<typeof entry>[1] = {}): Promise<void> => {
        const result = await queue.enqueue(entry(key, extra), { limits: {} });
        stated.push([key, result.position, await queue.position(key)]);
      };
      await enqueue('a');
      await enqueue('b', { priority: 5 });
      await enqueue('c', { group: 'other' });
      const claimed = await queue.claim({ workerId: 'w', leaseMs: env.t(60_000), policies: {}, groups: ['default'] });
      expect(claimed?.record.key).to.equal('b');
      await enqueue('d', { priority: -1 });
      await enqueue('e', { priority: 5, group: 'other' });
      for (const [key, given, read] of stated) {
        if (given !== undefined) expect(given, `position stated by the enqueue of ${key}`).to.equal(read);
      }
      // Calls made together (one transaction for a queue that groups them): each stated position
      // is the one read once all of them are done, whatever the others changed.
      const together = await Promise.all([
        queue.enqueue(entry('f'), { limits: {} }),
        queue.enqueue(entry('g', { priority: 20 }), { limits: {} }),
        queue.enqueue(entry('h', { group: 'third' }), { limits: {} }),
        queue.claim({ workerId: 'w', leaseMs: env.t(60_000), policies: {}, groups: ['third'] }),
      ]);
      // Where the calls are not ordered (a remote queue), the claim may also have found 'h' not there yet.
      expect([undefined, 'h']).to.include(together[3]?.record.key);
      for (const [i, key] of ['f', 'g', 'h'].entries()) {
        const given = (together[i] as { position?: number }).position;
        if (given !== undefined)
          expect(given, `position stated by the enqueue of ${key}`).to.equal(await queue.position(key));
      }
      // A second enqueue of a live key states nothing it cannot stand by either.
      const again = await queue.enqueue(entry('a'), { limits: {} });
      expect(again.outcome).to.equal('existing');
      if (again.position !== undefined) expect(again.position).to.equal(await queue.position('a'));
      // Nor does one whose pending deadline has already come: the record expires before any read.
      const late = await queue.enqueue(entry('late', {}, { pendingExpiresAt: env.clock.now() }), { limits: {} });
      if (late.position !== undefined) expect(late.position).to.equal(await queue.position('late'));
      expect(await queue.position('late')).to.equal(undefined);
      if (env.exactPosition) expect(stated.map(([, , read]) => read)).to.deep.equal([1, 1, 2, 3, 1]);
    });

    it('counts positions in the turns groups take, as claims serve them (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const lease = { workerId: 'w', leaseMs: env.t(60_000), policies: {} };
      for (const key of ['a1', 'a2', 'a3']) await queue.enqueue(entry(key, { group: 'a' }), { limits: {} });
      for (const key of ['b1', 'b2', 'b3']) await queue.enqueue(entry(key, { group: 'b' }), { limits: {} });
      await queue.enqueue(entry('c1', { group: 'c' }), { limits: {} });
      // Urgent work in group b: b takes its turn there first, so at priority 0 it comes after a and c.
      await queue.enqueue(entry('u1', { group: 'b', priority: 5 }), { limits: {} });
      const serving = ['u1', 'a1', 'c1', 'b1', 'a2', 'b2', 'a3', 'b3'];
      const pending = [...serving];
      const snapshots: Record<string, number | undefined>[] = [];
      while (pending.length > 0) {
        const positions: Record<string, number | undefined> = {};
        for (const key of pending) positions[key] = await queue.position(key);
        snapshots.push(positions);
        const claimed = await queue.claim(lease);
        expect(claimed?.record.key, `claim ${String(snapshots.length)}`).to.equal(pending[0]);
        pending.shift();
      }
      for (const [i, positions] of snapshots.entries()) {
        const remaining = serving.slice(i);
        if (env.exactPosition) {
          // Each position is the request's place in the order the claims then took.
          const exact = Object.fromEntries(remaining.map((key, at) => [key, at + 1]));
          expect(positions, `before claim ${String(i + 1)}`).to.deep.equal(exact);
        } else {
          for (const key of remaining) expect(positions[key], key).to.be.a('number').and.at.least(1);
        }
      }
    });

    it('counts no request waiting out a retry backoff ahead of requests ready now (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const lease = { workerId: 'w', leaseMs: env.t(60_000), policies: {} };
      // Serving order (priority, then seq): urgent, first, backoff, second.
      await queue.enqueue(entry('first'), { limits: {} });
      await queue.enqueue(entry('backoff', { group: 'retrying' }), { limits: {} });
      await queue.enqueue(entry('second'), { limits: {} });
      await queue.enqueue(entry('urgent', { group: 'retrying', priority: 5 }), { limits: {} });
      const error = { code: 'BUSY', message: 'try later', retryable: true };
      for (const [key, waitMs] of [
        ['urgent', 60_000],
        ['backoff', 30_000],
      ] as const) {
        const claimed = await queue.claim({ ...lease, groups: ['retrying'] });
        expect(claimed?.record.key).to.equal(key);
        if (claimed === undefined) return;
        await queue.fail(key, claimed.token, { error, retryAt: env.clock.now() + env.t(waitMs) });
      }
      const positions = async (): Promise<Record<string, number | undefined>> => {
        const out: Record<string, number | undefined> = {};
        for (const key of ['urgent', 'first', 'backoff', 'second']) out[key] = await queue.position(key);
        return out;
      };
      const expectPositions = async (exact: Record<string, number>, when: string): Promise<void> => {
        const got = await positions();
        if (env.exactPosition) expect(got, when).to.deep.equal(exact);
        else for (const p of Object.values(got)) expect(p, when).to.be.a('number').and.at.least(1);
      };
      // The ready requests are served first, in their order; one waiting takes the place after the
      // ready ones ahead of it, where it would be were it ready now.
      await expectPositions({ urgent: 1, first: 1, backoff: 2, second: 2 }, 'both waiting');
      await env.clock.advance(env.t(30_000));
      await expectPositions({ urgent: 1, first: 1, backoff: 2, second: 3 }, 'backoff ready');
      await env.clock.advance(env.t(30_000));
      await expectPositions({ urgent: 1, first: 2, backoff: 3, second: 4 }, 'all ready');
      expect((await queue.claim(lease))?.record.key).to.equal('urgent');
    });

    it('gives a request ready now a shorter ETA than one waiting out a long backoff ahead of it', async function () {
      const env = await open();
      const manager = env.manager({ settings: { retryBaseMs: 60_000, retryMaxMs: 60_000 } });
      const log = new EventLog(env, manager);
      let failed = false;
      const gated = new GatedHandler(env, async (job) => {
        if (job.key === 'flaky' && !failed) {
          failed = true;
          throw new Error('busy, try later');
        }
        await job.write('csv', job.key);
      });
      gated.open('flaky');
      await manager.submit(req('flaky', { estimatedMs: env.t(1_000) }));
      const worker = manager.process(gated.handler, { concurrency: 1 });
      await env.until(() => log.of('retried', 'flaky').length === 1, {
        stepMs: env.settings.pollMs,
        what: 'the first attempt to fail',
      });
      await worker.stop({ graceMs: 0 });
      await manager.submit(req('fresh', { estimatedMs: env.t(1_000) }));
      const flaky = await manager.status('flaky');
      const fresh = await manager.status('fresh');
      expect(flaky.state).to.equal('pending');
      if (env.exactPosition) expect([flaky.position, fresh.position]).to.deep.equal([1, 1]);
      expect(fresh.etaMs)
        .to.be.a('number')
        .and.below(flaky.etaMs ?? 0);
      // The one ready now is served first.
      gated.open('fresh');
      manager.process(gated.handler, { concurrency: 1 });
      await gated.waitStarted(2, env.settings.pollMs);
      expect(gated.started).to.deep.equal(['flaky', 'fresh']);
    });

    it('counts running leases in capacity().busy, where the adapter reports it (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const lease = { workerId: 'w', leaseMs: env.t(60_000), policies: {} };
      await queue.reportWorker('w', 4, env.t(120_000));
      for (const key of ['a', 'b', 'c']) await queue.enqueue(entry(key), { limits: {} });
      const busy = async (): Promise<number | undefined> => (await queue.capacity()).busy;
      if (!env.reportsBusy) {
        // Not declared: left out, or a count.
        const read = await busy();
        if (read !== undefined) expect(read).to.satisfy(Number.isSafeInteger).and.at.least(0);
        return;
      }
      expect(await busy(), 'nothing claimed').to.equal(0);
      const a = await queue.claim(lease);
      const b = await queue.claim(lease);
      expect([a?.record.key, b?.record.key]).to.deep.equal(['a', 'b']);
      if (a === undefined || b === undefined) return;
      expect(await busy(), 'two claimed').to.equal(2);
      await queue.complete('a', a.token, { durationMs: env.t(10) });
      expect(await busy(), 'one completed').to.equal(1);
      const c = await queue.claim(lease);
      expect(c?.record.key).to.equal('c');
      if (c === undefined) return;
      expect(await busy(), 'claimed again').to.equal(2);
      const error = { code: 'BUSY', message: 'try later', retryable: true };
      await queue.fail('c', c.token, { error, retryAt: env.clock.now() + env.t(120_000) });
      expect(await busy(), 'one back to pending for a retry').to.equal(1);
      // A lease that has expired holds no slot, even before any call applied the expiry (a crashed
      // worker's leases must not make every ETA wait for them).
      await env.clock.advance(env.t(60_000));
      expect(await busy(), 'lease expired, not applied yet').to.equal(0);
      expect((await queue.get('b'))?.state).to.equal('pending');
      expect(await busy(), 'lease expired').to.equal(0);
      // Workers are not what is counted: the running leases are, whoever holds them.
      expect((await queue.capacity()).slots).to.equal(4);
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
