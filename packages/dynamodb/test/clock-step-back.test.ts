import { SteppingClock } from '@armlib/conformance';
import type { ClaimOptions, GroupPolicy, NewQueueEntry } from '@armlib/core';
import { expect } from 'chai';

import type { DynamoQueueManager } from '../src/index.js';
import { selectedBackends } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import type { TestTable } from './harness/fixture.js';

/** How far the wall clock steps back (an NTP correction, a resumed VM). */
const STEP_MS = 60_000;

function entry(key: string): NewQueueEntry {
  return { key, request: { uri: '/test', key, group: 'default', priority: 0 }, maxAttempts: 3 };
}

function claimOptions(policy?: GroupPolicy): ClaimOptions {
  return { workerId: 'w', leaseMs: 10_000, policies: policy === undefined ? {} : { default: policy } };
}

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}: the wall clock steps back`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: SteppingClock;
    let queue: DynamoQueueManager;

    beforeEach(async function () {
      table = await createTestTable(backend());
      clock = new SteppingClock();
      queue = table.queue(clock);
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    /** Claims `key` under `policy` (so the group's last claim is now), then steps the clock back. */
    async function claimThenStepBack(key: string, policy?: GroupPolicy): Promise<void> {
      await queue.enqueue(entry(key), { limits: {} });
      expect((await queue.claim(claimOptions(policy)))?.record.key).to.equal(key);
      clock.stepBack(STEP_MS);
    }

    it('takes a claim time more than one interval ahead for a step back, then spaces claims again', async function () {
      const spaced = { minIntervalMs: 500 };
      await claimThenStepBack('a', spaced);
      await queue.enqueue(entry('b'), { limits: {} });
      await queue.enqueue(entry('c'), { limits: {} });
      expect((await queue.claim(claimOptions(spaced)))?.record.key).to.equal('b');
      expect(await queue.claim(claimOptions(spaced))).to.equal(undefined);
      await clock.advance(500);
      expect((await queue.claim(claimOptions(spaced)))?.record.key).to.equal('c');
    });

    it('keeps the interval after a claim time less than one interval ahead (a clock behind another host)', async function () {
      const spaced = { minIntervalMs: 500 };
      await queue.enqueue(entry('a'), { limits: {} });
      expect((await queue.claim(claimOptions(spaced)))?.record.key).to.equal('a');
      clock.stepBack(100);
      await queue.enqueue(entry('b'), { limits: {} });
      expect(await queue.claim(claimOptions(spaced))).to.equal(undefined);
      await clock.advance(599);
      expect(await queue.claim(claimOptions(spaced))).to.equal(undefined);
      await clock.advance(1);
      expect((await queue.claim(claimOptions(spaced)))?.record.key).to.equal('b');
    });
  });
}
