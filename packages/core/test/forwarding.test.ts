import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { ForwardingCacheManager, ForwardingQueueManager, InvalidRequestError, MAX_CLAIM_BATCH } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { CacheManager } from '../src/spi/cache.js';
import type { QueueManager } from '../src/spi/queue.js';

/**
 * Every method of the SPI: the `Record` type fails to compile when the SPI gains or loses one.
 * `claimMany` is left out of the forwarding check: it goes through the forwarder's own `claim`.
 */
const QUEUE_METHODS = Object.keys({
  enqueue: 0,
  get: 0,
  position: 0,
  claim: 0,
  claimMany: 0,
  heartbeat: 0,
  complete: 0,
  fail: 0,
  release: 0,
  acknowledgeCancel: 0,
  cancel: 0,
  list: 0,
  counts: 0,
  sweep: 0,
  takeTransitions: 0,
  prune: 0,
  setPaused: 0,
  isPaused: 0,
  activity: 0,
  uriStats: 0,
  reportWorker: 0,
  removeWorker: 0,
  capacity: 0,
  close: 0,
} satisfies Record<Exclude<keyof QueueManager, 'capabilities'>, 0>).filter((name) => name !== 'claimMany');

const CACHE_METHODS = Object.keys({
  stage: 0,
  head: 0,
  get: 0,
  url: 0,
  promote: 0,
  delete: 0,
  clear: 0,
  sweep: 0,
  list: 0,
  close: 0,
} satisfies Record<Exclude<keyof CacheManager, 'capabilities'>, 0>);

/** A stand-in adapter that answers every call with its own name and arguments. */
function echo(methods: readonly string[], capabilities: object): unknown {
  const target: Record<string, unknown> = { capabilities };
  for (const name of methods) target[name] = (...args: unknown[]) => Promise.resolve({ name, args });
  return target;
}

describe('ForwardingQueueManager and ForwardingCacheManager', function () {
  it('hand every queue SPI call, with its arguments and result, to the inner adapter', async function () {
    const capabilities = { exactPosition: true, sharedAcrossProcesses: false, clockGranularityMs: 1 };
    const forwarder = new ForwardingQueueManager(echo(QUEUE_METHODS, capabilities) as QueueManager);
    expect(forwarder.capabilities).to.equal(capabilities);
    for (const name of QUEUE_METHODS) {
      const method = (forwarder as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name];
      expect(method, name).to.be.a('function');
      expect(await method?.call(forwarder, 'a', 'b', 'c')).to.deep.equal({
        name,
        args: ['a', 'b', 'c'].slice(0, method?.length),
      });
    }
  });

  it('hand every cache SPI call, with its arguments and result, to the inner adapter', async function () {
    const capabilities = { signedUrls: false, sharedAcrossProcesses: true };
    const forwarder = new ForwardingCacheManager(echo(CACHE_METHODS, capabilities) as CacheManager);
    expect(forwarder.capabilities).to.equal(capabilities);
    for (const name of CACHE_METHODS) {
      const method = (forwarder as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name];
      expect(method, name).to.be.a('function');
      expect(await method?.call(forwarder, 'a', 'b', 'c')).to.deep.equal({
        name,
        args: ['a', 'b', 'c'].slice(0, method?.length),
      });
    }
  });

  it('lets a subclass watch one call and leave the rest forwarding, on real memory adapters', async function () {
    const clock = new ManualClock();
    const claims: string[] = [];
    class Watching extends ForwardingQueueManager {
      override async claim(...args: Parameters<QueueManager['claim']>): ReturnType<QueueManager['claim']> {
        const lease = await this.inner.claim(...args);
        if (lease !== undefined) claims.push(lease.record.key);
        return lease;
      }
    }
    const queue = new Watching(new MemoryQueueManager({}, clock));
    const request = { uri: '/x', key: 'k1', group: 'default', priority: 0 };
    await queue.enqueue({ key: 'k1', request, maxAttempts: 1 }, { limits: {} });
    const lease = await queue.claim({ workerId: 'w', leaseMs: 1000, policies: {} });
    expect(claims).to.deep.equal(['k1']);
    expect((await queue.get('k1'))?.state).to.equal('running');
    await queue.complete('k1', lease?.token ?? '', { durationMs: 1 });
    expect((await queue.counts()).byState.completed).to.equal(1);
    await queue.close();
    const cache = new ForwardingCacheManager(new MemoryCacheManager({}, clock));
    const staged = await cache.stage('k1');
    await staged.write('csv', oneChunk('a,b\n'), { contentType: 'text/csv' });
    await staged.commit('temporary');
    expect((await cache.head('k1'))?.formats['csv']?.size).to.equal(4);
    await cache.close();
  });
});

describe('ForwardingQueueManager.claimMany', function () {
  const request = (key: string) => ({ uri: '/x', key, group: 'default', priority: 0 });
  const options = { workerId: 'w', leaseMs: 1000, policies: {} };

  async function filled(queue: QueueManager, n: number): Promise<void> {
    for (let i = 1; i <= n; i++) {
      await queue.enqueue({ key: `k${String(i)}`, request: request(`k${String(i)}`), maxAttempts: 1 }, { limits: {} });
    }
  }

  it('claims through the subclass claim, so a decorator watching claim sees every claim of a batch', async function () {
    const claims: string[] = [];
    class Watching extends ForwardingQueueManager {
      override async claim(...args: Parameters<QueueManager['claim']>): ReturnType<QueueManager['claim']> {
        const lease = await this.inner.claim(...args);
        if (lease !== undefined) claims.push(lease.record.key);
        return lease;
      }
    }
    const queue = new Watching(new MemoryQueueManager({}, new ManualClock()));
    await filled(queue, 3);
    const leases = await queue.claimMany(options, 5);
    expect(leases.map((l) => l.record.key)).to.deep.equal(['k1', 'k2', 'k3']);
    expect(claims).to.deep.equal(['k1', 'k2', 'k3']);
    await queue.close();
  });

  it('stops at max and refuses a max that is not an integer from 1 to MAX_CLAIM_BATCH', async function () {
    const queue = new ForwardingQueueManager(new MemoryQueueManager({}, new ManualClock()));
    await filled(queue, 3);
    expect((await queue.claimMany(options, 2)).map((l) => l.record.key)).to.deep.equal(['k1', 'k2']);
    for (const max of [0, 1.5, -1, MAX_CLAIM_BATCH + 1, Number.NaN, '2']) {
      const error = await queue.claimMany(options, max as number).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(InvalidRequestError.is(error), String(max)).to.equal(true);
      expect((error as InvalidRequestError).field).to.equal('max');
    }
    expect((await queue.get('k3'))?.state, 'a refused batch claims nothing').to.equal('pending');
    await queue.close();
  });

  it('hands over the leases already taken when a later claim of the batch throws', async function () {
    let calls = 0;
    class FailingSecond extends ForwardingQueueManager {
      override claim(...args: Parameters<QueueManager['claim']>): ReturnType<QueueManager['claim']> {
        if (++calls === 2) return Promise.reject(new Error('claim failed'));
        return this.inner.claim(...args);
      }
    }
    const queue = new FailingSecond(new MemoryQueueManager({}, new ManualClock()));
    await filled(queue, 3);
    expect((await queue.claimMany(options, 3)).map((l) => l.record.key)).to.deep.equal(['k1']);
    calls = 1;
    const error = await queue.claimMany(options, 3).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as Error).message, 'a batch whose first claim throws rejects').to.equal('claim failed');
    await queue.close();
  });
});

async function* oneChunk(text: string): AsyncIterable<Uint8Array> {
  await Promise.resolve();
  yield new TextEncoder().encode(text);
}
