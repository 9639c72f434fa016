import { expect } from 'chai';

import type { ClaimOptions, GroupPolicy, QueueManager } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import type { TestEnv } from './context.js';
import { entry } from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** How far the wall clock steps back in these tests (an NTP correction, a resumed VM), ms before scaling. */
const STEP_MS = 60_000;

/**
 * §3.1 groups under a wall clock that steps back (an NTP step, a resumed VM): a group whose last
 * claim lies after the clock's reading is not held until the clock catches up. A group without
 * `minIntervalMs` is claimable at once; one with an interval waits at most that interval.
 */
export function clockStepBackTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('the wall clock stepping back', function () {
    const open = useEnv(ctx);

    /** Claims `key` of `group`, so that the group's last claim is now, then steps the clock back. */
    async function claimThenStepBack(env: TestEnv, key: string, group = 'default'): Promise<void> {
      await env.queue.enqueue(entry(key, { group }), { limits: {} });
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal(key);
      env.stepClockBack(env.t(STEP_MS));
    }

    it('claims at once from a group without a policy whose last claim lies ahead of the clock (SPI)', async function () {
      const env = await open();
      await claimThenStepBack(env, 'a');
      await env.queue.enqueue(entry('b'), { limits: {} });
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal('b');
    });

    it('claims at once when the claim names the group, or caps it without an interval (SPI)', async function () {
      const env = await open();
      await claimThenStepBack(env, 'a');
      await env.queue.enqueue(entry('b'), { limits: {} });
      await env.queue.enqueue(entry('c'), { limits: {} });
      expect((await env.queue.claim(claimOptions(env, { groups: ['default'] })))?.record.key).to.equal('b');
      const capped = claimOptions(env, {}, { default: { maxConcurrent: 5 } });
      expect((await env.queue.claim(capped))?.record.key).to.equal('c');
    });

    it('keeps the turns of groups claimed before the step (SPI)', async function () {
      const env = await open();
      await env.queue.enqueue(entry('a1', { group: 'first' }), { limits: {} });
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal('a1');
      await env.clock.advance(env.t(10));
      await env.queue.enqueue(entry('b1', { group: 'second' }), { limits: {} });
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal('b1');
      env.stepClockBack(env.t(STEP_MS));
      await env.queue.enqueue(entry('b2', { group: 'second' }), { limits: {} });
      await env.queue.enqueue(entry('a2', { group: 'first' }), { limits: {} });
      // Both last claims lie ahead of the clock: the group claimed less recently still goes first.
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal('a2');
      expect((await env.queue.claim(claimOptions(env)))?.record.key).to.equal('b2');
    });

    it('makes a group with minIntervalMs wait at most its interval, not until the clock catches up (SPI)', async function () {
      const env = await open();
      await claimThenStepBack(env, 'a');
      await env.queue.enqueue(entry('b'), { limits: {} });
      const interval = env.t(500);
      const spaced = claimOptions(env, {}, { default: { minIntervalMs: interval } });
      const claimed = await claimWithin(env, env.queue, spaced, interval);
      expect(claimed).to.equal('b');
    });
  });
}

function claimOptions(
  env: TestEnv,
  extra: Partial<ClaimOptions> = {},
  policies: Record<string, GroupPolicy> = {},
): ClaimOptions {
  return { workerId: 'conformance', leaseMs: env.settings.leaseMs, policies, ...extra };
}

/** The key the first successful claim took, trying every tenth of `withinMs` until that much time passed. */
async function claimWithin(
  env: TestEnv,
  queue: QueueManager,
  options: ClaimOptions,
  withinMs: number,
): Promise<string | undefined> {
  const step = Math.max(1, Math.floor(withinMs / 10));
  for (let waited = 0; ; waited += step) {
    const lease = await queue.claim(options);
    if (lease !== undefined) return lease.record.key;
    if (waited >= withinMs) return undefined;
    await env.clock.advance(step);
  }
}
