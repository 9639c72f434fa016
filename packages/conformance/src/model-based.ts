import fc from 'fast-check';

import { ManualClock } from '@armlib/core';

import { cacheCommandArb, runCacheSequence } from './cache-model.js';
import { resolveContext } from './context.js';
import { policyArb, queueCommandArb, runQueueSequence } from './queue-commands.js';
import type { AdapterInstance, ConformanceOptions } from './types.js';

/**
 * Model-based tests: random sequences of SPI operations run against the adapter and a small
 * reference model, every observable compared after each step. A failure reports the (shrunk)
 * command sequence and the step that diverged.
 */
export function modelBasedTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('model-based', function () {
    it(`queue SPI follows the reference model (${String(ctx.capabilities.propertyRuns)} sequences)`, async function () {
      this.timeout(Math.max(60_000, ctx.capabilities.propertyRuns * 200));
      await fc.assert(
        fc.asyncProperty(
          fc.array(queueCommandArb(), { minLength: 8, maxLength: 30, size: 'max' }),
          policyArb(),
          async (commands, policies) => {
            await withInstance(ctx.create, async (instance, clock) => {
              const granularity = ctx.capabilities.clockGranularityMs ?? instance.queue.capabilities.clockGranularityMs;
              await runQueueSequence(
                {
                  queue: instance.queue,
                  clock,
                  scale: Math.max(1, Math.ceil(granularity / 10)),
                  exactPosition: ctx.capabilities.exactPosition ?? instance.queue.capabilities.exactPosition,
                },
                commands,
                policies,
              );
            });
          },
        ),
        { numRuns: ctx.capabilities.propertyRuns },
      );
    });

    it(`cache SPI follows the reference model (${String(cacheRuns(ctx.capabilities.propertyRuns))} sequences)`, async function () {
      this.timeout(Math.max(60_000, ctx.capabilities.propertyRuns * 200));
      await fc.assert(
        fc.asyncProperty(
          fc.array(cacheCommandArb(), { minLength: 1, maxLength: 25, size: 'max' }),
          async (commands) => {
            await withInstance(ctx.create, async (instance, clock) => {
              const granularity = ctx.capabilities.clockGranularityMs ?? instance.queue.capabilities.clockGranularityMs;
              await runCacheSequence(
                { cache: instance.cache, clock, scale: Math.max(1, Math.ceil(granularity / 10)) },
                commands,
              );
            });
          },
        ),
        { numRuns: cacheRuns(ctx.capabilities.propertyRuns) },
      );
    });
  });
}

function cacheRuns(propertyRuns: number): number {
  return Math.max(1, Math.ceil(propertyRuns / 5));
}

async function withInstance(
  create: ConformanceOptions['create'],
  body: (instance: AdapterInstance, clock: ManualClock) => Promise<void>,
): Promise<void> {
  const clock = new ManualClock();
  const instance = await create({ clock });
  try {
    await body(instance, clock);
  } finally {
    await Promise.allSettled([instance.queue.close(), instance.cache.close()]);
    await instance.close?.();
  }
}
