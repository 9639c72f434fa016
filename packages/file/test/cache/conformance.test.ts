import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { MemoryQueueManager } from '@armlib/core';
import { runConformance } from '@armlib/conformance';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';

// The file cache paired with the memory queue: the suite's cache groups (and the model) run on a
// fresh directory per test; peers open a second cache on the SAME directory, as another process would.
runConformance({
  name: 'file cache (memory queue)',
  create: async ({ clock }) => {
    const dir = await mkdtemp(join(tmpdir(), 'armlib-file-cache-'));
    const queue = new MemoryQueueManager({}, clock);
    return {
      queue,
      cache: new FileCacheManager({ dir }, clock),
      peer: () => Promise.resolve({ queue, cache: new FileCacheManager({ dir }, clock) }),
      close: () => rm(dir, { recursive: true, force: true }),
    };
  },
});
