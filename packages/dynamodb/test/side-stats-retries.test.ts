/**
 * Activity counters and run-time statistics written again after a lost answer, or by several
 * processes at once: each transition and each run time is counted once, none is dropped.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BackendError, ManualClock } from '@armlib/core';
import type { NormalizedRequest } from '@armlib/core';
import { expect } from 'chai';

import { DynamoQueueManager } from '../src/index.js';
import { FaultInjector } from './fault-run/support/faults.js';
import type { Fault } from './fault-run/support/faults.js';
import { selectedBackends } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import type { TestTable } from './harness/fixture.js';

/** Faults that let the write land and lose its answer: the SDK sends the write again. */
const LOST_ANSWERS: readonly Fault[] = ['internal-500-after', 'timeout-after', 'reset-after'];
const CLAIM = { workerId: 'w', leaseMs: 60_000, policies: {} };

function request(key: string, uri = '/test'): NormalizedRequest {
  return { uri, key, group: 'default', priority: 0 };
}

/** `flush()`'s failure, or undefined. */
async function failure(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => undefined,
    (e: unknown) => e,
  );
}

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}: statistics written again`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: ManualClock;
    let faults: FaultInjector;
    let queue: DynamoQueueManager;

    beforeEach(async function () {
      table = await createTestTable(backend());
      clock = new ManualClock();
      faults = new FaultInjector(1, 0);
      faults.attach(table.client);
      // Flushed by the tests only: no timer takes the one-shot faults.
      queue = table.queue(clock, { flushIntervalMs: 3_600_000 });
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    /** Queues faults for every attempt the SDK makes of the next `command`: the first after the write landed. */
    async function failAfterLanding(command: RegExp): Promise<number> {
      const attempts = await table.client.config.maxAttempts();
      faults.failNext('internal-500-after', command);
      for (let i = 1; i < attempts; i++) faults.failNext('internal-500', command);
      return attempts;
    }

    /** Runs one request of `uri` to completion on `q`, which buffers its run time. */
    async function runOne(q: DynamoQueueManager, key: string, uri: string, durationMs: number): Promise<void> {
      await q.enqueue({ key, request: request(key, uri), maxAttempts: 1 }, { limits: {} });
      const lease = await q.claim(CLAIM);
      if (lease === undefined) throw new Error(`${key}: nothing claimed`);
      await q.complete(lease.record.key, lease.token, { durationMs });
    }

    for (const fault of LOST_ANSWERS) {
      it(`counts activity once when a flush lands and its answer is lost (${fault}): the SDK sends it again`, async function () {
        await queue.enqueue({ key: 'a', request: request('a'), maxAttempts: 1 }, { limits: {} });
        faults.failNext(fault, /^UpdateItem/);
        await queue.flush();
        expect(faults.count(fault)).to.equal(1);
        expect((await queue.activity(1))[0]?.total.submitted).to.equal(1);
      });
    }

    it('counts activity once when a flush failed after its write landed, and the next flush sends it again', async function () {
      await queue.enqueue({ key: 'a', request: request('a'), maxAttempts: 1 }, { limits: {} });
      // Every attempt of the SDK fails; the first one after its write landed.
      const attempts = await failAfterLanding(/^UpdateItem/);
      const error = await failure(queue.flush());
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      // Counted meanwhile: written by the next flush, after the write in doubt.
      await queue.enqueue({ key: 'b', request: request('b'), maxAttempts: 1 }, { limits: {} });
      await queue.flush();
      expect(faults.count()).to.equal(attempts);
      expect((await queue.activity(1))[0]?.total.submitted).to.equal(2);
    });

    it('counts a run time once when its merge lands and its answer is lost: the SDK sends it again', async function () {
      await runOne(queue, 'r', '/timed', 40);
      faults.failNext('internal-500-after', /^PutItem/);
      await queue.flush();
      expect(faults.count()).to.equal(1);
      expect((await queue.uriStats('/timed'))[0]?.count).to.equal(1);
    });

    it('counts a run time once when a flush failed after its merge landed, and the next flush sends it again', async function () {
      await runOne(queue, 'r', '/timed', 40);
      const attempts = await failAfterLanding(/^PutItem/);
      const error = await failure(queue.flush());
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      await runOne(queue, 's', '/timed', 60);
      await queue.flush();
      expect(faults.count()).to.equal(attempts);
      expect((await queue.uriStats('/timed'))[0]?.count).to.equal(2);
    });

    it('counts every run time when ten processes flush the same uri at once', async function () {
      this.timeout(300_000);
      const INSTANCES = 10;
      const clients: DynamoDBClient[] = [];
      const queues: DynamoQueueManager[] = [];
      try {
        for (let i = 0; i < INSTANCES; i++) {
          const client = backend().client();
          clients.push(client);
          queues.push(new DynamoQueueManager({ client, tableName: table.name, flushIntervalMs: 3_600_000 }, clock));
        }
        // A few rounds, each a uri of its own: one round of ten racing writers may happen to spread out.
        for (const uri of ['/same-1', '/same-2', '/same-3']) {
          for (const [i, q] of queues.entries()) await runOne(q, `${uri}-${String(i)}`, uri, 100 + i);
          await Promise.all(queues.map((q) => q.flush()));
          expect((await queue.uriStats(uri))[0]?.count, uri).to.equal(INSTANCES);
        }
      } finally {
        await Promise.all(queues.map((q) => q.close()));
        for (const client of clients) client.destroy();
      }
    });
  });
}
