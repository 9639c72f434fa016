/**
 * Writes whose outcome the adapter cannot read at once: the write landed and its answer was lost
 * (every attempt of the SDK failing after the first one landed), sometimes with the read that
 * should have told failing too. Neither a group slot nor a report nor an attempt may be lost to
 * them: slots come back without waiting for the repair pass (two passes a minute apart, during
 * which a group capped at one runs nothing), transitions that landed are reported, and a claim
 * nobody holds is undone before its lease runs out and costs the request an attempt.
 *
 * Faults come from the fault run's injector, below the SDK's retries (the test clients keep the
 * SDK's default number of attempts): `timeout-after` lands the write and loses its answer, and
 * `timeout`s fail each retry of the SDK after it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BackendError, LeaseLostError, ManualClock, normalizeRequest } from '@armlib/core';
import type { ClaimOptions, NewQueueEntry } from '@armlib/core';
import * as chai from 'chai';
import chaiAsPromised from 'chai-as-promised';

import type { DynamoQueueManager } from '../src/index.js';
import { FaultInjector } from './fault-run/support/faults.js';
import { selectedBackends } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import type { TestTable } from './harness/fixture.js';

chai.use(chaiAsPromised);
const { expect } = chai;

/** SDK attempts per call of the test clients (the SDK's default, read from the client). */
let sdkAttempts = 0;

function entry(key: string, group = 'default', extra: Partial<NewQueueEntry> = {}): NewQueueEntry {
  return { key, request: normalizeRequest({ key, uri: '/test', group }), maxAttempts: 3, ...extra };
}

/** The next call of `command` lands, and every attempt the SDK makes of it fails: its answer is lost. */
function loseAnswer(faults: FaultInjector, command: RegExp): void {
  faults.failNext('timeout-after', command);
  for (let i = 1; i < sdkAttempts; i++) faults.failNext('timeout', command);
}

/** The next call of `command` fails, every attempt of it, before reaching the table. */
function failCall(faults: FaultInjector, command: RegExp): void {
  for (let i = 0; i < sdkAttempts; i++) faults.failNext('timeout', command);
}

/**
 * Runs `after` once, when the first command whose input `match` accepts has been answered or has
 * failed (before the adapter or the SDK's retry sees it); every command passes on unchanged.
 */
function afterFirst(
  client: DynamoDBClient,
  match: (target: string, body: string) => boolean,
  after: () => Promise<void>,
): { remove(): void } {
  const name = `armlibAfterFirst${String(++hooks)}`;
  let fired = false;
  client.middlewareStack.add(
    (next) => async (args) => {
      const target = (args.request as { headers?: Record<string, string> }).headers?.['x-amz-target'] ?? '';
      const hit = !fired && match(target, JSON.stringify((args as { input?: unknown }).input ?? null));
      if (hit) fired = true;
      try {
        return await next(args);
      } finally {
        if (hit) await after();
      }
    },
    // Above the fault injector (priority low): the command it sees has passed the injector.
    { step: 'deserialize', name, override: true },
  );
  return { remove: () => client.middlewareStack.remove(name) };
}
let hooks = 0;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}: writes whose outcome is unknown`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: ManualClock;
    let faults: FaultInjector;
    let queue: DynamoQueueManager;
    const capped: ClaimOptions = { workerId: 'w', leaseMs: 60_000, policies: { capped: { maxConcurrent: 1 } } };

    beforeEach(async function () {
      table = await createTestTable(backend());
      faults = new FaultInjector(1, 0);
      faults.attach(table.client);
      sdkAttempts = await table.client.config.maxAttempts();
      clock = new ManualClock();
      queue = table.queue(clock);
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    /** A lease in `capped` run to its end: the group item exists and the table layout is checked. */
    async function warmUp(): Promise<void> {
      await queue.enqueue(entry('warm', 'capped'), { limits: {} });
      const lease = await queue.claim(capped);
      expect(lease?.record.key).to.equal('warm');
      await queue.complete('warm', lease?.token ?? '', { durationMs: 1 });
    }

    describe('group slots', function () {
      it('gives back a slot whose take landed but whose answer was lost', async function () {
        await warmUp();
        await queue.enqueue(entry('a', 'capped'), { limits: {} });
        loseAnswer(faults, /UpdateItem/);
        const failure = await rejection(queue.claim(capped));
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(faults.count('timeout-after')).to.equal(1);
        // At once, not after two repair passes a minute apart: the group has its slot back.
        expect((await queue.claim(capped))?.record.key).to.equal('a');
      });

      it('gives back the slot of a completion misread as a lost lease (the key submitted again before the retry)', async function () {
        await queue.enqueue(entry('a', 'capped'), { limits: {} });
        await queue.enqueue(entry('b', 'capped'), { limits: {} });
        const lease = await queue.claim(capped);
        expect(lease?.record.key).to.equal('a');
        const other = table.queue(clock);
        try {
          // The completion lands; another process submits `a` again; the answer is lost; the SDK's
          // retry fails its condition and finds no write id of its own on the new record.
          faults.failNext('timeout-after', /UpdateItem/);
          const resubmit = afterFirst(
            table.client,
            (target, body) => target.endsWith('.UpdateItem') && body.includes('"completed"'),
            async () => {
              await other.enqueue(entry('a', 'capped'), { limits: {} });
            },
          );
          const failure = await rejection(queue.complete('a', lease?.token ?? '', { durationMs: 1 }));
          resubmit.remove();
          expect(LeaseLostError.is(failure), String(failure)).to.equal(true);
        } finally {
          await other.close();
        }
        expect((await queue.get('a'))?.state).to.equal('pending');
        // Nothing runs in the group: its one slot is free.
        expect(await queue.claim(capped)).to.not.equal(undefined);
      });

      it('keeps the slot of a lease that ran out until a sweep ends it (the cap holds meanwhile)', async function () {
        await queue.enqueue(entry('a', 'capped'), { limits: {} });
        await queue.enqueue(entry('b', 'capped'), { limits: {} });
        const lease = await queue.claim(capped);
        expect(lease?.record.key).to.equal('a');
        await clock.advance(61_000);
        const failure = await rejection(queue.complete('a', lease?.token ?? '', { durationMs: 1 }));
        expect(LeaseLostError.is(failure), String(failure)).to.equal(true);
        // `a` still runs as stored (no sweep yet): one runs in the group, and `b` waits.
        expect(await queue.claim(capped)).to.equal(undefined);
        const swept = await queue.sweep();
        expect(swept.requeued.map((r) => r.key)).to.deep.equal(['a']);
        expect((await queue.claim(capped))?.record.key).to.equal('a');
      });
    });

    describe('sweeps', function () {
      it('reports a lease expiry whose write landed but whose answer was lost, and frees its slot', async function () {
        await warmUp();
        await queue.enqueue(entry('a', 'capped'), { limits: {} });
        const lease = await queue.claim({ ...capped, leaseMs: 1_000 });
        expect(lease?.record.key).to.equal('a');
        await clock.advance(2_000);
        loseAnswer(faults, /UpdateItem/);
        const swept = await queue.sweep();
        expect(faults.count('timeout-after')).to.equal(1);
        expect(swept.requeued.map((r) => r.key)).to.deep.equal(['a']);
        expect((await queue.claim(capped))?.record.key).to.equal('a');
      });

      it('reports at the next sweep a lease expiry whose write landed and whose read-back failed, and frees its slot then', async function () {
        await warmUp();
        await queue.enqueue(entry('a', 'capped'), { limits: {} });
        const lease = await queue.claim({ ...capped, leaseMs: 1_000 });
        expect(lease?.record.key).to.equal('a');
        await clock.advance(2_000);
        // Once the sweep has read the record: its requeue lands, its answer and the read-back are lost.
        const arm = afterFirst(
          table.client,
          (target) => target.endsWith('.GetItem'),
          () => {
            loseAnswer(faults, /UpdateItem/);
            failCall(faults, /GetItem/);
            return Promise.resolve();
          },
        );
        const failure = await rejection(queue.sweep());
        arm.remove();
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(faults.count('timeout-after')).to.equal(1);
        expect((await queue.get('a'))?.state).to.equal('pending');
        const swept = await queue.sweep();
        expect(swept.requeued.map((r) => r.key)).to.deep.equal(['a']);
        expect((await queue.claim(capped))?.record.key).to.equal('a');
      });

      it('reports at the next sweep a pending expiry whose write landed and whose read-back failed', async function () {
        await queue.enqueue(entry('x', 'default', { pendingExpiresAt: clock.now() + 500 }), { limits: {} });
        await clock.advance(1_000);
        loseAnswer(faults, /UpdateItem/);
        failCall(faults, /GetItem/);
        const failure = await rejection(queue.sweep());
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(faults.count('timeout-after')).to.equal(1);
        expect((await queue.get('x'))?.state).to.equal('expired');
        const swept = await queue.sweep();
        expect(swept.expired.map((r) => r.key)).to.deep.equal(['x']);
        // Reported once.
        expect((await queue.sweep()).expired).to.deep.equal([]);
      });
    });

    describe('claims', function () {
      it('makes a request claimable again, its attempts unchanged, after a claim whose answer and read-back were lost', async function () {
        await queue.enqueue(entry('once', 'default', { maxAttempts: 1 }), { limits: {} });
        const options: ClaimOptions = { workerId: 'w', leaseMs: 30_000, policies: {} };
        loseAnswer(faults, /UpdateItem/);
        failCall(faults, /GetItem/);
        const failure = await rejection(queue.claim(options));
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(faults.count('timeout-after')).to.equal(1);
        // The next claim gets it (on its first attempt still), rather than its lease running out unheld.
        const lease = await queue.claim(options);
        expect(lease?.record.key).to.equal('once');
        expect(lease?.record.attempts).to.equal(1);
        expect((await queue.complete('once', lease?.token ?? '', { durationMs: 1 })).state).to.equal('completed');
      });

      it('undoes such a claim at the next sweep, and gives its group slot back', async function () {
        await warmUp();
        await queue.enqueue(entry('a', 'capped', { maxAttempts: 1 }), { limits: {} });
        // The slot is taken; the claim after it lands, its answer and the read-back are lost.
        const arm = afterFirst(
          table.client,
          (target, body) => target.endsWith('.UpdateItem') && body.includes('"GROUPS"'),
          () => {
            loseAnswer(faults, /UpdateItem/);
            failCall(faults, /GetItem/);
            return Promise.resolve();
          },
        );
        const failure = await rejection(queue.claim(capped));
        arm.remove();
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(faults.count('timeout-after')).to.equal(1);
        await queue.sweep();
        const record = await queue.get('a');
        expect(record?.state).to.equal('pending');
        expect(record?.attempts).to.equal(0);
        expect((await queue.claim(capped))?.record.key).to.equal('a');
      });
    });
  });
}
