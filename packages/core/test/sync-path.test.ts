import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager } from '../src/manager/build.js';
import { DefaultRequestManager } from '../src/manager/default-request-manager.js';
import type { ManagerEvents, RequestManager } from '../src/manager/types.js';
import type { BatchRequest, RequestStatus } from '../src/model.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';

/** The adapter behind a Proxy: the manager cannot see its synchronous twins, so it takes the promise path. */
function wrapped<T extends object>(target: T): T {
  return new Proxy(target, {
    get(obj, prop) {
      const value: unknown = Reflect.get(obj, prop, obj);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
    },
  });
}

interface Side {
  rm: RequestManager;
  clock: ManualClock;
  events: string[];
}

function side(wrap: boolean): Side {
  const clock = new ManualClock();
  const queue = new MemoryQueueManager({}, clock);
  const cache = new MemoryCacheManager({}, clock);
  const rm = buildRequestManager({
    queue: wrap ? wrapped(queue) : queue,
    cache: wrap ? wrapped(cache) : cache,
    clock,
    settings: { leaseMs: 3000, retryBaseMs: 100, retryMaxMs: 100 },
  });
  const events: string[] = [];
  for (const name of ['submitted', 'deduplicated', 'claimed', 'completed', 'failed', 'retried'] as const) {
    rm.events.on(name, (payload: ManagerEvents[typeof name]) => {
      events.push(`${name} ${payload.key}`);
    });
  }
  return { rm, clock, events };
}

/** Events grouped by key, in order within each key. */
function byKey(events: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const event of events) {
    const [name = '', key = ''] = event.split(' ');
    (out[key] ??= []).push(name);
  }
  return out;
}

const REQUESTS: BatchRequest[] = [
  { uri: '/r/a', params: { x: '1' } },
  { uri: '/r/a', params: { x: '2' }, priority: 5 },
  { uri: '/r/b', estimatedMs: 250, group: 'g1' },
  { uri: '/r/b', params: { y: ['2', '1'] }, group: 'g1', sticky: true },
  { uri: '/r/c', key: 'chosen-key', owner: 'alice' },
  { uri: '/r/fail', params: { n: '1' } },
  { uri: '/r/a', params: { x: '1' } },
];

describe('synchronous fast path of the memory adapters', () => {
  let fast: Side;
  let slow: Side;
  const random = Math.random;
  beforeEach(() => {
    // Retry jitter must be the same on both sides.
    Math.random = () => 0.5;
  });
  afterEach(async () => {
    Math.random = random;
    await fast.rm.close();
    await slow.rm.close();
  });

  it('is taken only when the manager holds the adapters themselves', async () => {
    fast = side(false);
    slow = side(true);
    const syncOf = (rm: RequestManager): unknown => (rm instanceof DefaultRequestManager ? rm.sync : 'no manager');
    expect(syncOf(fast.rm)).to.be.an('object');
    expect(syncOf(slow.rm)).to.equal(undefined);
    await Promise.resolve();
  });

  it('gives the same statuses, events and results as the promise path', async () => {
    fast = side(false);
    slow = side(true);
    const both = [fast, slow];
    const statuses = async (s: Side, keys: readonly string[]): Promise<RequestStatus[]> => {
      const out: RequestStatus[] = [];
      for (const key of keys) out.push(await s.rm.status(key));
      return out;
    };

    const submitted: RequestStatus[][] = [[], []];
    for (const request of REQUESTS) {
      for (const [i, s] of both.entries()) submitted[i]?.push(await s.rm.submit(request));
    }
    expect(submitted[0]).to.deep.equal(submitted[1]);
    const keys = [...new Set(submitted[0]?.map((s) => s.key))];
    expect(await statuses(fast, keys)).to.deep.equal(await statuses(slow, keys));

    for (const s of both) {
      s.rm.process(
        async (job) => {
          if (job.request.uri === '/r/fail' && job.attempt === 1) throw new Error('flaky');
          await job.write('csv', `${job.key},${String(job.attempt)}\n`);
          await job.write('json', Buffer.from(JSON.stringify({ key: job.key })));
        },
        { concurrency: 2 },
      );
    }
    // Steps past the retry delay (75 ms) and the idle poll (1 s) that claims the retry.
    for (let step = 0; step < 10; step++) {
      for (const s of both) await s.clock.advance(step < 4 ? 25 : 250);
      expect(await statuses(fast, keys)).to.deep.equal(await statuses(slow, keys));
    }
    const final = await statuses(fast, keys);
    expect(final.map((s) => s.state)).to.deep.equal(keys.map(() => 'completed'));
    // Concurrent jobs may interleave differently (the fast path claims the next job on the tick
    // that completed one); each request's own events come in the same order.
    expect(byKey(fast.events)).to.deep.equal(byKey(slow.events));
    for (const key of keys) {
      const [a, b] = await Promise.all(both.map((s) => s.rm.read(key, 'csv')));
      expect(a?.size).to.be.a('number').and.equal(b?.size);
    }
    // A resubmit of a completed key is served from the cache the same way.
    for (const request of REQUESTS.slice(0, 3)) {
      expect(await fast.rm.submit(request)).to.deep.equal(await slow.rm.submit(request));
    }
    expect(byKey(fast.events)).to.deep.equal(byKey(slow.events));
  });
});
