import { MemoryCacheManager, MemoryQueueManager } from '@armlib/core';

import { runConformance } from '../src/index.js';

runConformance({
  name: 'memory',
  create: ({ clock }) =>
    Promise.resolve({
      queue: new MemoryQueueManager({}, clock),
      cache: new MemoryCacheManager({}, clock),
    }),
});
