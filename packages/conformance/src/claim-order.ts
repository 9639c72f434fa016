import { expect } from 'chai';

import { InvalidRequestError, LeaseLostError, MAX_CLAIM_BATCH } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import { claimManyOf, entry, GatedHandler, rejectionOf, req } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 claim: priority first, FIFO within a priority, a fresh lease token on every claim. */
export function claimOrderTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('claim order', function () {
    const open = useEnv(ctx);

    it('claims higher priority first and FIFO within a priority', async function () {
      const env = await open();
      const manager = env.manager();
      const plan: [string, number][] = [
        ['low-1', -1],
        ['mid-1', 0],
        ['high-1', 5],
        ['mid-2', 0],
        ['low-2', -1],
        ['high-2', 5],
        ['mid-3', 0],
      ];
      for (const [key, priority] of plan) {
        await manager.submit(req(key, { priority }));
        await env.clock.advance(env.t(1));
      }
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      for (let i = 0; i < plan.length; i++) {
        await gated.waitStarted(i + 1, env.settings.pollMs);
        const key = gated.started[i];
        if (key !== undefined) gated.open(key);
      }
      expect(gated.started).to.deep.equal(['high-1', 'high-2', 'mid-1', 'mid-2', 'mid-3', 'low-1', 'low-2']);
    });

    it('keeps FIFO within a priority when submits share a clock instant', async function () {
      const env = await open();
      const manager = env.manager();
      const keys = ['f-3', 'f-1', 'f-4', 'f-2', 'f-0'];
      for (const key of keys) await manager.submit(req(key));
      const gated = new GatedHandler(env);
      manager.process(gated.handler, { concurrency: 1 });
      for (let i = 0; i < keys.length; i++) {
        await gated.waitStarted(i + 1, env.settings.pollMs);
        const key = gated.started[i];
        if (key !== undefined) gated.open(key);
      }
      expect(gated.started).to.deep.equal(keys);
    });

    it('claims a batch in the order claims in a row would, up to max (claimMany, SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const claimMany = claimManyOf(this, queue);
      const claim = { workerId: 'w1', leaseMs: env.t(3_000), policies: {} };
      const plan: [string, number][] = [
        ['b-low', -1],
        ['b-mid-1', 0],
        ['b-high', 5],
        ['b-mid-2', 0],
      ];
      for (const [key, priority] of plan) {
        await queue.enqueue(entry(key, { priority }), { limits: {} });
        await env.clock.advance(env.t(1));
      }
      const first = await claimMany(claim, 3);
      expect(first.map((l) => l.record.key)).to.deep.equal(['b-high', 'b-mid-1', 'b-mid-2']);
      for (const lease of first) {
        expect(lease.record.state).to.equal('running');
        expect((await queue.get(lease.record.key))?.state).to.equal('running');
      }
      expect(new Set(first.map((l) => l.token)).size, 'a token per lease').to.equal(3);
      // Fewer than max when the queue runs dry, then none.
      expect((await claimMany(claim, 5)).map((l) => l.record.key)).to.deep.equal(['b-low']);
      expect(await claimMany(claim, 5)).to.deep.equal([]);
      // Each lease fences its own request: completing one leaves the others running.
      const done = first[1];
      if (done !== undefined) await queue.complete(done.record.key, done.token, { durationMs: 1 });
      expect((await queue.get('b-mid-1'))?.state).to.equal('completed');
      expect((await queue.get('b-mid-2'))?.state).to.equal('running');
    });

    it('claims no batch while paused, and refuses a max that is not an integer from 1 to MAX_CLAIM_BATCH (claimMany, SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const claim = { workerId: 'w1', leaseMs: env.t(3_000), policies: {} };
      const claimMany = claimManyOf(this, queue);
      for (const key of ['p-1', 'p-2']) await queue.enqueue(entry(key), { limits: {} });
      await queue.setPaused(true);
      expect(await claimMany(claim, 2)).to.deep.equal([]);
      await queue.setPaused(false);
      for (const max of [0, -1, 2.5, MAX_CLAIM_BATCH + 1, Number.NaN]) {
        const error = await rejectionOf(claimMany(claim, max));
        expect(InvalidRequestError.is(error), `max ${String(max)}`).to.equal(true);
        expect((error as InvalidRequestError).field).to.equal('max');
      }
      expect((await queue.counts()).byState.pending, 'a refused batch claims nothing').to.equal(2);
      expect((await claimMany(claim, 2)).map((l) => l.record.key)).to.deep.equal(['p-1', 'p-2']);
    });

    it('issues a different lease token on every claim (SPI)', async function () {
      const env = await open();
      const { queue } = env;
      const claim = { workerId: 'w1', leaseMs: env.t(3_000), policies: {} };
      for (const key of ['t-1', 't-2', 't-3']) await queue.enqueue(entry(key), { limits: {} });
      const tokens: string[] = [];
      const keys: string[] = [];
      for (let i = 0; i < 3; i++) {
        const lease = await queue.claim(claim);
        expect(lease, `claim ${String(i + 1)}`).to.not.equal(undefined);
        if (lease === undefined) return;
        expect(lease.record.state).to.equal('running');
        expect(lease.record.attempts).to.equal(1);
        tokens.push(lease.token);
        keys.push(lease.record.key);
      }
      expect(await queue.claim(claim)).to.equal(undefined);
      expect(keys).to.deep.equal(['t-1', 't-2', 't-3']);
      // The same request claimed again (after a release) gets yet another token; the old one is fenced off.
      const first = tokens[0] ?? '';
      await queue.release('t-1', first, { countAttempt: false });
      const again = await queue.claim(claim);
      expect(again?.record.key).to.equal('t-1');
      tokens.push(again?.token ?? '');
      expect(new Set(tokens).size).to.equal(4);
      expect(LeaseLostError.is(await rejectionOf(queue.heartbeat('t-1', first, { leaseMs: env.t(3_000) })))).to.equal(
        true,
      );
      const hb = await queue.heartbeat('t-1', again?.token ?? '', { leaseMs: env.t(3_000) });
      expect(hb.cancelRequested).to.equal(false);
    });
  });
}
