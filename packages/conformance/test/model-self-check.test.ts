import { expect } from 'chai';
import fc from 'fast-check';

import { ManualClock, MemoryCacheManager, MemoryQueueManager } from '@armlib/core';
import type { CacheManager, QueueManager } from '@armlib/core';

import { cacheCommandArb, policyArb, queueCommandArb, runCacheSequence, runQueueSequence } from '../src/index.js';

/** The adapter with some methods replaced, as a buggy backend would behave. */
function mutate<T extends object>(target: T, overrides: Partial<Record<keyof T, (inner: T) => unknown>>): T {
  return new Proxy(target, {
    get(obj, prop) {
      const override = overrides[prop as keyof T];
      if (override !== undefined) return override(obj);
      const value: unknown = Reflect.get(obj, prop, obj);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
    },
  });
}

async function queueProperty(wrap: (queue: QueueManager) => QueueManager, numRuns: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.array(queueCommandArb(), { minLength: 8, maxLength: 30, size: 'max' }),
      policyArb(),
      async (commands, policies) => {
        const clock = new ManualClock();
        const queue = wrap(new MemoryQueueManager({}, clock));
        try {
          await runQueueSequence({ queue, clock, scale: 1, exactPosition: true }, commands, policies);
        } finally {
          await queue.close();
        }
      },
    ),
    { numRuns, seed: 42 },
  );
}

async function cacheProperty(wrap: (cache: CacheManager) => CacheManager, numRuns: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(cacheCommandArb(), { minLength: 8, maxLength: 25, size: 'max' }), async (commands) => {
      const clock = new ManualClock();
      const cache = wrap(new MemoryCacheManager({}, clock));
      try {
        await runCacheSequence({ cache, clock, scale: 1 }, commands);
      } finally {
        await cache.close();
      }
    }),
    { numRuns, seed: 42 },
  );
}

/** Expects fast-check to report a counterexample whose cause is a divergence from the model. */
async function expectDivergence(run: Promise<void>): Promise<void> {
  const error: unknown = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the broken adapter passed').to.be.instanceOf(Error);
  const messages: string[] = [];
  for (let e: unknown = error; e instanceof Error; e = e.cause) messages.push(e.message);
  expect(messages.join('\n')).to.match(/differs from the model/);
}

// The model-based tests are only worth something if they catch a wrong adapter: each case here
// breaks one rule of the SPI and expects the runner to report a divergence.
describe('conformance self-check: the reference models catch broken adapters', function () {
  this.timeout(60_000);

  it('accepts the memory adapters', async function () {
    await queueProperty((q) => q, 100);
    await cacheProperty((c) => c, 50);
  });

  const queueMutants: [string, (queue: QueueManager) => QueueManager][] = [
    [
      'release that always counts the attempt',
      (q) => mutate(q, { release: (inner) => (k: string, t: string) => inner.release(k, t, { countAttempt: true }) }),
    ],
    [
      'heartbeat that never reports a lost lease',
      (q) =>
        mutate(q, {
          heartbeat: (inner) => async (k: string, t: string, o: { leaseMs: number }) =>
            inner.heartbeat(k, t, o).catch(() => ({ cancelRequested: false, leaseExpiresAt: 0 })),
        }),
    ],
    [
      'enqueue that ignores caps',
      (q) =>
        mutate(q, {
          enqueue: (inner) => (e: Parameters<QueueManager['enqueue']>[0]) => inner.enqueue(e, { limits: {} }),
        }),
    ],
    [
      'claim that ignores group policies',
      (q) =>
        mutate(q, {
          claim: (inner) => (o: Parameters<QueueManager['claim']>[0]) => inner.claim({ ...o, policies: {} }),
        }),
    ],
    [
      'claim that ignores pause',
      (q) => mutate(q, { setPaused: () => () => Promise.resolve(), isPaused: () => () => Promise.resolve(false) }),
    ],
    [
      'enqueue that never makes a live record sticky',
      (q) =>
        mutate(q, {
          enqueue:
            (inner) => async (e: Parameters<QueueManager['enqueue']>[0], o: Parameters<QueueManager['enqueue']>[1]) => {
              const live = await inner.get(e.key);
              const joins = live?.state === 'pending' || live?.state === 'running';
              return inner.enqueue(joins ? { ...e, request: { ...e.request, sticky: false } } : e, o);
            },
        }),
    ],
    ['sweep that ignores retainUntil', (q) => mutate(q, { sweep: (inner) => () => inner.sweep() })],
    [
      'positions off by one',
      (q) =>
        mutate(q, {
          position: (inner) => async (k: string) => {
            const p = await inner.position(k);
            return p === undefined ? p : p + 1;
          },
        }),
    ],
  ];
  for (const [name, wrap] of queueMutants) {
    it(`catches a queue with ${name}`, async function () {
      await expectDivergence(queueProperty(wrap, 1_000));
    });
  }

  const cacheMutants: [string, (cache: CacheManager) => CacheManager][] = [
    ['promote that moves nothing', (c) => mutate(c, { promote: () => () => Promise.resolve(true) })],
    ['sweep that removes nothing', (c) => mutate(c, { sweep: () => () => Promise.resolve(0) })],
    ['head that ignores the area', (c) => mutate(c, { head: (inner) => (k: string) => inner.head(k) })],
  ];
  for (const [name, wrap] of cacheMutants) {
    it(`catches a cache with ${name}`, async function () {
      await expectDivergence(cacheProperty(wrap, 500));
    });
  }
});
