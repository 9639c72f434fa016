import { S3Client } from '@aws-sdk/client-s3';

import { MemoryQueueManager } from '@armlib/core';
import { runConformance } from '@armlib/conformance';

import { S3CacheManager } from '../src/index.js';
import { InFlightRequests, waitForRequestsBeforeAdvance } from './harness/io-aware-clock.js';
import { s3TestEnv } from './harness/s3-env.js';

describe('@armlib/s3', function () {
  // Every cache call is an HTTP round trip (several per commit): tests that run hundreds of jobs
  // need more than the root default on a loaded 2-core machine. Tests setting their own keep it.
  this.timeout(90_000);

  // The S3 cache paired with the memory queue; peers are second S3 caches over the same bucket and
  // prefix, each with its own client (as another process would open them). Isolation: one fresh
  // key prefix per factory call, in the harness's bucket. The suite's clock waits for the S3
  // requests in flight before it moves (see io-aware-clock.ts for why).
  runConformance({
    name: 's3 (s3rver) cache + memory queue',
    create: async ({ clock }) => {
      const env = await s3TestEnv();
      const prefix = env.newPrefix();
      const inFlight = new InFlightRequests();
      waitForRequestsBeforeAdvance(clock, inFlight);
      const clients: S3Client[] = [];
      const client = (): S3Client => {
        const created = inFlight.watch(new S3Client(env.clientConfig));
        clients.push(created);
        return created;
      };
      const queue = new MemoryQueueManager({}, clock);
      return {
        queue,
        cache: new S3CacheManager({ bucket: env.bucket, prefix, client: client() }, clock),
        peer: () =>
          Promise.resolve({
            queue,
            cache: new S3CacheManager({ bucket: env.bucket, prefix, client: client() }, clock),
          }),
        close: async () => {
          // The caches were given these clients, so they leave them open: the suite closed the caches first.
          for (const c of clients) c.destroy();
          await env.release(prefix);
        },
      };
    },
    // Each step of the cache model reads every key and lists both areas over HTTP (about 40
    // requests): the suite's 1,000 propertyRuns make 200 cache sequences at 1.3–1.6 s each on a busy
    // two-core machine (s3rver runs in this process, so sequences side by side would gain nothing),
    // some 5 minutes; `propertyRunMs` bounds that test at 3 s a sequence (10 minutes). The queue
    // model runs on the memory queue here (1,000 sequences in seconds). ARMLIB_S3_PROPERTY_RUNS
    // overrides the count.
    capabilities: {
      propertyRuns: Number(process.env['ARMLIB_S3_PROPERTY_RUNS'] ?? '1000'),
      propertyConcurrency: Number(process.env['ARMLIB_S3_PROPERTY_CONCURRENCY'] ?? '1'),
      propertyRunMs: { cache: 3_000 },
    },
  });
});
