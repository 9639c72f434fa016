import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { buildRequestManager, ForwardingQueueManager } from '../src/index.js';
import type { BatchRequest, RequestManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';

/**
 * A manager over memory adapters: their synchronous twins (sync path), or with the queue behind a
 * forwarder, which has no twin and so forces the promise path.
 */
function setup(path: 'sync' | 'async'): { rm: RequestManager; clock: ManualClock } {
  const clock = new ManualClock();
  const memory = new MemoryQueueManager({}, clock);
  const queue = path === 'sync' ? memory : new ForwardingQueueManager(memory);
  return { rm: buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock }), clock };
}

/** Runs `request` to completion with a worker that writes one csv result, then stops the worker. */
async function complete(rm: RequestManager, request: BatchRequest): Promise<void> {
  await rm.submit(request);
  const worker = rm.process(async (job) => {
    await job.write('csv', 'v1');
  });
  await rm.waitFor(request.key ?? '');
  await worker.stop();
}

/** Cancels the pending run of `key` (its status still says completed: the cache holds a result). */
async function cancelled(rm: RequestManager, key: string): Promise<void> {
  const told: string[] = [];
  rm.events.on('cancelled', (event) => told.push(event.key));
  await rm.cancel(key);
  expect(told).to.deep.equal([key]);
}

describe('Request manager: a submit served from the cache describes its own request', function () {
  for (const path of ['sync', 'async'] as const) {
    describe(`${path} path`, function () {
      it('after a cancelled forced sticky rebuild, a plain submit is not reported sticky', async function () {
        const { rm } = setup(path);
        try {
          const plain = { uri: '/served', key: 'rebuilt' };
          await complete(rm, plain);
          // Sticky, group, priority and owner are not part of the key: the rebuild's record carries its own.
          const rebuild = await rm.submit(
            { ...plain, sticky: true, group: 'nightly', priority: 7, owner: 'ops' },
            { force: true },
          );
          expect(rebuild.state).to.equal('pending');
          await cancelled(rm, 'rebuilt');

          const status = await rm.submit(plain);
          expect(status.state).to.equal('completed');
          expect(status.result?.area).to.equal('temporary');
          expect(status.request?.sticky).to.equal(undefined);
          expect(status.request).to.deep.equal({ uri: '/served', key: 'rebuilt', group: 'default', priority: 0 });
        } finally {
          await rm.close();
        }
      });

      it('after a cancelled forced rebuild, a sticky submit that promotes the result is reported sticky', async function () {
        const { rm } = setup(path);
        try {
          const plain = { uri: '/served', key: 'promoted' };
          await complete(rm, plain);
          await rm.submit({ ...plain, priority: 3 }, { force: true });
          await cancelled(rm, 'promoted');

          const status = await rm.submit({ ...plain, sticky: true });
          expect(status.state).to.equal('completed');
          expect(status.result?.area).to.equal('persistent');
          expect(status.request).to.deep.equal({
            uri: '/served',
            key: 'promoted',
            sticky: true,
            group: 'default',
            priority: 0,
          });
        } finally {
          await rm.close();
        }
      });

      it('a submit served from the cache after the record was pruned describes its own request', async function () {
        const { rm, clock } = setup(path);
        try {
          const plain = { uri: '/served', key: 'pruned' };
          await complete(rm, plain);
          expect(await rm.prune({ finishedBefore: new Date(clock.now() + 1) })).to.equal(1);
          const status = await rm.submit({ ...plain, owner: 'ops' });
          expect(status.state).to.equal('completed');
          expect(status.attempts).to.equal(0);
          expect(status.request).to.deep.equal({ ...plain, owner: 'ops', group: 'default', priority: 0 });
        } finally {
          await rm.close();
        }
      });

      it('a plain submit of a key whose completed record is still there describes the run that made the result', async function () {
        const { rm } = setup(path);
        try {
          const sticky = { uri: '/served', key: 'made', sticky: true };
          await complete(rm, sticky);
          const status = await rm.submit({ uri: '/served', key: 'made' });
          expect(status.state).to.equal('completed');
          expect(status.attempts).to.equal(1);
          expect(status.request?.sticky).to.equal(true);
        } finally {
          await rm.close();
        }
      });
    });
  }
});
