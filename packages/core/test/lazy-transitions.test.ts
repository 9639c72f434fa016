import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager, ForwardingQueueManager, REQUEST_EVENT_NAMES } from '../src/index.js';
import type { RequestManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';

/**
 * A manual clock whose time can jump without firing timers: an event loop that stalled, so that
 * no heartbeat and no sweep ran while a lease or a pending TTL ran out. The next call finds the
 * transition due and applies it lazily.
 */
class StallClock extends ManualClock {
  #offset = 0;

  override now(): number {
    return super.now() + this.#offset;
  }

  stall(ms: number): void {
    this.#offset += ms;
  }
}

interface Setup {
  rm: RequestManager;
  clock: StallClock;
  /** Every request event told, as `name` or `name(state)` for those with a status. */
  told: string[];
}

/** A manager over memory adapters: their synchronous twins (sync path), or behind a forwarder (promise path). */
function setup(path: 'sync' | 'async', settings: Record<string, number>): Setup {
  const clock = new StallClock();
  const memory = new MemoryQueueManager({}, clock);
  const queue = path === 'sync' ? memory : new ForwardingQueueManager(memory);
  const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings });
  const told: string[] = [];
  for (const name of REQUEST_EVENT_NAMES) {
    rm.events.on(name, (payload: object) => {
      const status = (payload as { status?: { state: string } }).status;
      told.push(status === undefined ? name : `${name}(${status.state})`);
    });
  }
  return { rm, clock, told };
}

describe('Request manager: transitions a call applied lazily are told before its own event', function () {
  for (const path of ['sync', 'async'] as const) {
    describe(`${path} path`, function () {
      it('cancel() of a request whose lease ran out tells requeued before cancelled', async function () {
        const { rm, clock, told } = setup(path, { leaseMs: 3_000, sweepMs: 5_000 });
        try {
          await rm.submit({ uri: '/lazy', key: 'lease' });
          rm.process(
            (job) =>
              new Promise((_, reject) => {
                job.signal.addEventListener('abort', () => {
                  reject(job.signal.reason as Error);
                });
              }),
          );
          await clock.tick();
          expect((await rm.status('lease')).state).to.equal('running');
          // No worker claims the request again once its lease is handed back.
          await rm.pause();
          clock.stall(4_000);
          const status = await rm.cancel('lease');
          expect(status.state).to.equal('cancelled');
          expect([...told]).to.deep.equal(['submitted(pending)', 'claimed', 'requeued', 'cancelled']);
          // The next sweep has nothing left to tell.
          await clock.advance(5_000);
          expect(told).to.have.length(4);
        } finally {
          await rm.close();
        }
      });

      it('a submit served from the cache tells the expiry of the forced rebuild it ended first', async function () {
        const { rm, clock, told } = setup(path, { pendingTtlMs: 10_000, sweepMs: 5_000 });
        try {
          const request = { uri: '/lazy', key: 'rebuild' };
          await rm.submit(request);
          const worker = rm.process(async (job) => {
            await job.write('csv', 'v1');
          });
          await rm.waitFor('rebuild');
          await worker.stop();
          await rm.submit(request, { force: true });
          clock.stall(11_000);
          told.length = 0;
          expect((await rm.submit(request)).state).to.equal('completed');
          expect([...told]).to.deep.equal(['expired', 'deduplicated(completed)']);
        } finally {
          await rm.close();
        }
      });

      it('status() tells an expiry its read applied before the caller sees it', async function () {
        const { rm, clock, told } = setup(path, { pendingTtlMs: 10_000, sweepMs: 5_000 });
        try {
          await rm.submit({ uri: '/lazy', key: 'ttl' });
          clock.stall(11_000);
          expect((await rm.status('ttl')).state).to.equal('expired');
          expect([...told]).to.deep.equal(['submitted(pending)', 'expired']);
        } finally {
          await rm.close();
        }
      });

      it('metrics() tells an expiry its read applied before the caller sees it', async function () {
        const { rm, clock, told } = setup(path, { pendingTtlMs: 10_000, sweepMs: 5_000 });
        try {
          await rm.submit({ uri: '/lazy', key: 'ttl' });
          clock.stall(11_000);
          expect((await rm.metrics()).byState.expired).to.equal(1);
          expect([...told]).to.deep.equal(['submitted(pending)', 'expired']);
        } finally {
          await rm.close();
        }
      });
    });
  }
});
