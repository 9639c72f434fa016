import { MemoryCacheManager, MemoryQueueManager } from '@armlib/core';

import { cancelTests, pauseTests, realConcurrencyTests, runConformance } from '../src/index.js';
import type { ConformanceOptions } from '../src/index.js';

runConformance({
  name: 'memory',
  create: ({ clock }) =>
    Promise.resolve({
      queue: new MemoryQueueManager({}, clock),
      cache: new MemoryCacheManager({}, clock),
    }),
});

// The memory adapters cannot be shared across processes, but handing out the same objects as a
// "peer" runs the suite's multi-instance code paths (peer managers, claim loops on peers) as well.
const withPeers: ConformanceOptions = {
  name: 'memory, same objects as peers',
  create: ({ clock }) => {
    const queue = new MemoryQueueManager({}, clock);
    const cache = new MemoryCacheManager({}, clock);
    return Promise.resolve({ queue, cache, peer: () => Promise.resolve({ queue, cache }) });
  },
};
describe(`armlib conformance: ${withPeers.name}`, function () {
  realConcurrencyTests(withPeers);
  cancelTests(withPeers);
  pauseTests(withPeers);
});
