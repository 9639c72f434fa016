import fc from 'fast-check';

import { ManualClock } from '@armlib/core';

import { cacheCommandArb, runCacheSequence } from './cache-model.js';
import { resolveContext } from './context.js';
import type { ResolvedCapabilities } from './context.js';
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
      this.timeout(
        modelTimeoutMs(ctx.capabilities, ctx.capabilities.propertyRuns, ctx.capabilities.propertyRunMs?.queue),
      );
      await assertInChains(
        () =>
          fc.asyncProperty(
            fc.array(queueCommandArb(), { minLength: 8, maxLength: 30, size: 'max' }),
            policyArb(),
            async (commands, policies) => {
              await withInstance(ctx.create, async (instance, clock) => {
                const granularity =
                  ctx.capabilities.clockGranularityMs ?? instance.queue.capabilities.clockGranularityMs;
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
        ctx.capabilities.propertyRuns,
        ctx.capabilities.propertyConcurrency,
      );
    });

    it(`cache SPI follows the reference model (${String(cacheRuns(ctx.capabilities.propertyRuns))} sequences)`, async function () {
      this.timeout(
        modelTimeoutMs(
          ctx.capabilities,
          cacheRuns(ctx.capabilities.propertyRuns),
          ctx.capabilities.propertyRunMs?.cache,
        ),
      );
      await assertInChains(
        () =>
          fc.asyncProperty(
            fc.array(cacheCommandArb(), { minLength: 1, maxLength: 25, size: 'max' }),
            async (commands) => {
              await withInstance(ctx.create, async (instance, clock) => {
                const granularity =
                  ctx.capabilities.clockGranularityMs ?? instance.queue.capabilities.clockGranularityMs;
                await runCacheSequence(
                  { cache: instance.cache, clock, scale: Math.max(1, Math.ceil(granularity / 10)) },
                  commands,
                );
              });
            },
          ),
        cacheRuns(ctx.capabilities.propertyRuns),
        ctx.capabilities.propertyConcurrency,
      );
    });
  });
}

/**
 * A model test's timeout: never below what it was before `propertyRunMs` existed
 * (`propertyRuns` × 200 ms, at least 60 s), raised to `runs` × `runMs` for a slow backend.
 */
function modelTimeoutMs(capabilities: ResolvedCapabilities, runs: number, runMs = 0): number {
  return Math.max(60_000, capabilities.propertyRuns * 200, runs * runMs);
}

/**
 * Runs `numRuns` sequences of the property that `make` builds, split over `chains` fast-check runs
 * that go side by side, each with its own seed (consecutive from one random base) and its own
 * share of the runs. One chain (the default) is a plain `fc.assert`, with fast-check's own seed
 * and its report unchanged. A failing chain shrinks on its own while the others finish; the test
 * then fails with every failing chain's report (seed, path, shrunk counterexample), the chain named.
 */
async function assertInChains<Ts>(make: () => fc.IAsyncProperty<Ts>, numRuns: number, chains: number): Promise<void> {
  const count = Math.max(1, Math.min(chains, numRuns));
  if (count === 1) {
    await fc.assert(make(), { numRuns });
    return;
  }
  const base = (Date.now() ^ Math.floor(Math.random() * 0x1_0000_0000)) | 0;
  const shares = Array.from({ length: count }, (_, i) => Math.floor(numRuns / count) + (i < numRuns % count ? 1 : 0));
  const outcomes = await Promise.allSettled(
    shares.map((runs, i) => fc.assert(make(), { numRuns: runs, seed: (base + i) | 0 })),
  );
  const failures: string[] = [];
  let first: unknown;
  outcomes.forEach((outcome, i) => {
    if (outcome.status === 'fulfilled') return;
    first ??= outcome.reason;
    const reason: unknown = outcome.reason;
    // fast-check keeps the property's own error (the step that diverged) as the cause.
    const cause: unknown = reason instanceof Error ? reason.cause : undefined;
    const message =
      (reason instanceof Error ? reason.message : String(reason)) +
      (cause instanceof Error ? `\nCaused by: ${cause.message}` : '');
    failures.push(
      `chain ${String(i + 1)} of ${String(count)} (${String(shares[i])} runs, seed ${String((base + i) | 0)}): ${message}`,
    );
  });
  if (failures.length > 0) {
    throw new Error(
      `${String(failures.length)} of ${String(count)} property chains failed\n\n${failures.join('\n\n')}`,
      {
        cause: first,
      },
    );
  }
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
