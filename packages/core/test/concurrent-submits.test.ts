import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager, ForwardingQueueManager, REQUEST_EVENT_NAMES } from '../src/index.js';
import type { BatchRequest, EnqueueOptions, EnqueueResult, NewQueueEntry, RequestManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';

/** A manager over memory adapters behind forwarders: no synchronous twins, so submits take the promise path. */
function asyncManager(clock: ManualClock): RequestManager {
  return buildRequestManager({
    queue: new ForwardingQueueManager(new MemoryQueueManager({}, clock)),
    cache: new MemoryCacheManager({}, clock),
    clock,
  });
}

/** A queue whose enqueues wait, while `gate` is set, until it resolves: a slow write. */
class GatedEnqueue extends ForwardingQueueManager {
  gate: Promise<void> | undefined;

  override async enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    await this.gate;
    return this.inner.enqueue(entry, options);
  }
}

describe('Request manager: concurrent submits of one key (promise path)', function () {
  it('tells a deduplicated whose status is running after the claim it saw', async function () {
    const clock = new ManualClock();
    const queue = new GatedEnqueue(new MemoryQueueManager({}, clock));
    const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock });
    const told: string[] = [];
    for (const name of REQUEST_EVENT_NAMES) {
      rm.events.on(name, (payload: object) => {
        const status = (payload as { status?: { state: string } }).status;
        told.push(status === undefined ? name : `${name}(${status.state})`);
      });
    }
    try {
      const request = { uri: '/seen', key: 'seen' };
      await rm.submit(request);
      let open = (): void => undefined;
      queue.gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      // The second submit holds the key's events while its enqueue waits; a worker claims meanwhile.
      const second = rm.submit(request);
      await clock.tick();
      rm.process(() => new Promise<void>(() => undefined));
      await clock.tick();
      open();
      expect((await second).state).to.equal('running');
      expect([...told]).to.deep.equal(['submitted(pending)', 'claimed', 'deduplicated(running)']);
    } finally {
      await rm.close();
    }
  });

  for (const cached of [false, true]) {
    it(`tells each deduplicated before a claim that came after its status was read${cached ? ' (result cached)' : ''}`, async function () {
      const clock = new ManualClock();
      const rm = asyncManager(clock);
      const request: BatchRequest = { uri: '/together', key: 'together' };
      try {
        // The first run (when the result is to be cached) ends; later ones hold on.
        let runs = 0;
        rm.process(async (job) => {
          if (runs++ > 0 || !cached) await new Promise<void>(() => undefined);
          await job.write('csv', 'a,b\n');
        });
        if (cached) {
          await rm.submit(request);
          // A temporary result, promoted by the sticky submits below before they read the record.
          request.sticky = true;
          expect((await rm.waitFor('together')).state).to.equal('completed');
        }
        const told: string[] = [];
        for (const name of REQUEST_EVENT_NAMES) {
          rm.events.on(name, (payload: object) => {
            const status = (payload as { status?: { state: string } }).status;
            told.push(status === undefined ? name : `${name}(${status.state})`);
          });
        }
        // A forced rebuild and a plain submit at once: the plain one joins the rebuild (served
        // from the cache when the key has a result).
        const answers = await Promise.all([rm.submit(request, { force: true }), rm.submit(request)]);
        await clock.tick();
        expect(answers.map((s) => s.state)).to.deep.equal(['pending', 'pending']);
        expect((await rm.status('together')).state).to.equal('running');
        // A listener must never see the request pending after it was told of its claim.
        expect([...told]).to.deep.equal(['submitted(pending)', 'deduplicated(pending)', 'claimed']);
      } finally {
        await rm.close();
      }
    });
  }

  it('answers every sticky submit of a temporary result with the persistent area', async function () {
    const clock = new ManualClock();
    const rm = asyncManager(clock);
    try {
      const request = { uri: '/sticky', key: 'sticky' };
      await rm.submit(request);
      const worker = rm.process(async (job) => {
        await job.write('csv', 'a,b\n');
      });
      expect((await rm.waitFor('sticky')).result?.area).to.equal('temporary');
      await worker.stop();
      const sticky = { ...request, sticky: true };
      const answers = await Promise.all([rm.submit(sticky), rm.submit(sticky)]);
      expect(answers.map((s) => `${s.state}/${String(s.result?.area)}`)).to.deep.equal([
        'completed/persistent',
        'completed/persistent',
      ]);
      expect((await rm.status('sticky')).result?.area).to.equal('persistent');
    } finally {
      await rm.close();
    }
  });
});
