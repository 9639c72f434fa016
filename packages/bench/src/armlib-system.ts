import { buildRequestManager, MemoryCacheManager, MemoryQueueManager, SystemClock } from '@armlib/core';
import type { RequestManager, Worker } from '@armlib/core';

import type { LifecycleSystem } from './drive.js';

/** A request manager on fresh memory adapters and the system clock, with no queue caps. */
export function memoryRequestManager(): RequestManager {
  const clock = new SystemClock();
  return buildRequestManager({
    queue: new MemoryQueueManager({}, clock),
    cache: new MemoryCacheManager({}, clock),
    clock,
    settings: { maxQueueLength: 0, maxPendingPerOwner: 0 },
  });
}

/**
 * armlib's lifecycle through its public API: `submit` (derived key), a worker from `process`
 * writing `payload` as csv, completion seen through the `completed` event, then `status`.
 * On the memory adapters unless another request manager is given (it is closed with the system).
 */
export function armlibSystem(
  concurrency: number,
  payload: Uint8Array,
  run: string,
  rm: RequestManager = memoryRequestManager(),
): LifecycleSystem {
  let worker: Worker | undefined;
  return {
    async submit(index) {
      await rm.submit({ uri: '/bench/report', params: { run, i: String(index) } });
    },
    onCompleted(callback) {
      rm.events.on('completed', (e) => {
        // The index travels in the request's params, so no key-to-index map is needed.
        const i = e.status.request?.params?.['i'];
        callback(e.key, typeof i === 'string' ? Number(i) : Number.NaN);
      });
    },
    async isCompleted(key) {
      return (await rm.status(key)).state === 'completed';
    },
    start() {
      worker = rm.process(
        async (job) => {
          await job.write('csv', payload);
        },
        { concurrency },
      );
    },
    async close() {
      await worker?.stop();
      await rm.close();
    },
  };
}
