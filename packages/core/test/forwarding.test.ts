import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager, ForwardingCacheManager, ForwardingQueueManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { CacheManager } from '../src/spi/cache.js';
import type { QueueManager } from '../src/spi/queue.js';

/**
 * Every method of the SPI: the `Record` type fails to compile when the SPI gains or loses one.
 * `claimMany` is left out of the forwarding check: the forwarder has none (see the test below).
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

/** A decorator that watches one call: the keys it claims go to `claims`; the rest forwards. */
class Watching extends ForwardingQueueManager {
  readonly #claims: string[];

  constructor(inner: QueueManager, claims: string[]) {
    super(inner);
    this.#claims = claims;
  }

  override async claim(...args: Parameters<QueueManager['claim']>): ReturnType<QueueManager['claim']> {
    const lease = await this.inner.claim(...args);
    if (lease !== undefined) this.#claims.push(lease.record.key);
    return lease;
  }
}

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
    const queue = new Watching(new MemoryQueueManager({}, clock), claims);
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

describe('ForwardingQueueManager and the position an enqueue states', function () {
  /** An inner adapter whose enqueue states position 7. */
  function stating(): QueueManager {
    const target = echo(QUEUE_METHODS, {}) as Record<string, unknown>;
    target['enqueue'] = () => Promise.resolve({ outcome: 'created', record: { key: 'k' }, position: 7 });
    return target as unknown as QueueManager;
  }

  it('passes the stated position on, unless the decorator overrides position()', async function () {
    const entry = { key: 'k', request: { uri: '/x', key: 'k', group: 'default', priority: 0 }, maxAttempts: 1 };
    const plain = await new ForwardingQueueManager(stating()).enqueue(entry, { limits: {} });
    expect(plain.position).to.equal(7);
    class WatchingPosition extends ForwardingQueueManager {
      readonly asked: string[] = [];
      override position(key: string): Promise<number | undefined> {
        this.asked.push(key);
        return this.inner.position(key);
      }
    }
    const watched = await new WatchingPosition(stating()).enqueue(entry, { limits: {} });
    expect(watched).to.deep.equal({ outcome: 'created', record: { key: 'k' } });
  });

  it('lets a request manager ask a decorator that watches position() for the position of a submit', async function () {
    const clock = new ManualClock();
    class WatchingPosition extends ForwardingQueueManager {
      readonly asked: string[] = [];
      override position(key: string): Promise<number | undefined> {
        this.asked.push(key);
        return this.inner.position(key);
      }
    }
    const queue = new WatchingPosition(new MemoryQueueManager({}, clock));
    const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings: {} });
    const status = await rm.submit({ uri: '/watched' });
    expect(status.position).to.equal(1);
    expect(queue.asked).to.deep.equal([status.key]);
    await rm.close();
  });
});

describe('ForwardingQueueManager and claimMany', function () {
  it('has no claimMany, so a worker claims through the decorator, which sees every claim', async function () {
    const clock = new ManualClock();
    const claims: string[] = [];
    const queue = new Watching(new MemoryQueueManager({}, clock), claims);
    expect('claimMany' in queue).to.equal(false);
    const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings: {} });
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) keys.push((await rm.submit({ uri: '/watched', params: { i: String(i) } })).key);
    const release = gate();
    const worker = rm.process(() => release.promise, { concurrency: 3 });
    await clock.advance(10);
    expect(claims).to.deep.equal(keys);
    release.resolve();
    await worker.stop();
    await rm.close();
  });
});

async function* oneChunk(text: string): AsyncIterable<Uint8Array> {
  await Promise.resolve();
  yield new TextEncoder().encode(text);
}

/** A promise and the function that resolves it. */
function gate(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
