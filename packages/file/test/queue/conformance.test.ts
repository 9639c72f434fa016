import { MemoryCacheManager } from '@armlib/core';
import { runConformance } from '@armlib/conformance';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

// Each test gets a fresh directory; peer() opens a second queue on the same directory, as another
// process would (the cache is core's memory cache, shared as an object: only the queue is under test).
runConformance({
  name: 'file queue (SQLite) + memory cache',
  create: ({ clock }) => {
    const dir = makeTempDir();
    const queue = new FileQueueManager({ dir }, clock);
    const cache = new MemoryCacheManager({}, clock);
    return Promise.resolve({
      queue,
      cache,
      peer: () => Promise.resolve({ queue: new FileQueueManager({ dir }, clock), cache }),
      close: () => {
        removeTempDir(dir);
        return Promise.resolve();
      },
    });
  },
});
