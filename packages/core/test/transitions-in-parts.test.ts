import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager, ForwardingQueueManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { QueueRecord, SweepOptions, SweepResult } from '../src/spi/queue.js';

/** A queue that hands its transitions over two records at a time, as an adapter with a long report may. */
class InParts extends ForwardingQueueManager {
  #rest: QueueRecord[] = [];
  takes = 0;

  override async sweep(options?: SweepOptions): Promise<SweepResult> {
    const part = this.#part(await this.inner.sweep(options));
    return this.#rest.length > 0 ? { ...part, more: true } : part;
  }

  override takeTransitions(options?: SweepOptions): SweepResult | undefined {
    this.takes++;
    if (this.#rest.length > 0) return this.#part(undefined);
    const taken = this.inner.takeTransitions?.(options);
    return taken === undefined ? undefined : this.#part(taken);
  }

  #part(result: SweepResult | undefined): SweepResult {
    if (result !== undefined) this.#rest.push(...result.expired);
    const expired = this.#rest.splice(0, 2);
    return { requeued: [], failed: [], expired, cancelled: [], dropped: result?.dropped ?? 0 };
  }
}

describe('Request manager: transitions handed over in parts', function () {
  for (const how of ['a sweep', 'the submit that found them due'] as const) {
    it(`tells every transition after ${how}, in order, taking until the queue has none`, async function () {
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const queue = new InParts(new MemoryQueueManager({}, clock));
      const rm = buildRequestManager({
        queue,
        cache: new MemoryCacheManager({}, clock),
        clock,
        settings: { pendingTtlMs: 1_000 },
      });
      try {
        const keys: string[] = [];
        for (let i = 0; i < 5; i++) keys.push((await rm.submit({ uri: '/parts', key: `p${String(i)}` })).key);
        const told: string[] = [];
        rm.events.on('expired', (e) => told.push(e.key));
        await clock.advance(1_000);
        if (how === 'a sweep') await rm.sweep();
        else await rm.submit({ uri: '/parts', key: 'later' });
        expect(told).to.deep.equal(keys);
        // The last take found none left: three parts of two, then undefined.
        expect(queue.takes).to.be.at.least(3);
        for (const key of keys) expect((await rm.status(key)).state).to.equal('expired');
      } finally {
        await rm.close();
      }
    });
  }

  it('tells at most 16 parts in one go, from a queue that always has more', async function () {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const memory = new MemoryQueueManager({}, clock);
    let n = 0;
    const endless = (): SweepResult => ({
      requeued: [],
      failed: [],
      expired: [{ key: `x${String(n++)}` } as QueueRecord],
      cancelled: [],
      dropped: 0,
      more: true,
    });
    const queue = new (class extends ForwardingQueueManager {
      override sweep(): Promise<SweepResult> {
        return Promise.resolve(endless());
      }
      override takeTransitions(): SweepResult | undefined {
        return endless();
      }
    })(memory);
    const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings: {} });
    try {
      let told = 0;
      rm.events.on('expired', () => told++);
      await rm.sweep();
      expect(told).to.equal(16);
      await rm.submit({ uri: '/parts', key: 'one' });
      expect(told).to.equal(32);
    } finally {
      await rm.close();
    }
  });
});
