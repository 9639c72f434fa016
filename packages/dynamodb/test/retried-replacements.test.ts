/**
 * Writes that remove a record (an enqueue replacing a lapsed or finished one, a prune deleting
 * one) whose first attempt landed and whose answer was lost: the SDK retries, the retry meets a
 * failed condition (the record it was about is gone), and what the adapter reports must still be
 * what happened — the enqueue created its record and the record it replaced expired (reported
 * once), the prune dropped the record (counted).
 *
 * The answer of the first write that the table applies is lost (a timeout, which the SDK
 * retries); attempts the table refuses pass on unchanged, so the tests do not depend on how many
 * writes the adapter sends before the one that lands.
 */
import { Readable } from 'node:stream';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ManualClock, normalizeRequest, QueueFullError } from '@armlib/core';
import type { ClaimOptions, NewQueueEntry, NormalizedRequest, SweepResult } from '@armlib/core';
import * as chai from 'chai';
import chaiAsPromised from 'chai-as-promised';

import type { DynamoQueueManager } from '../src/index.js';
import { selectedBackends } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import type { TestTable } from './harness/fixture.js';
import { addMiddleware } from './harness/middleware.js';

chai.use(chaiAsPromised);
const { expect } = chai;

const WORKER: ClaimOptions = { workerId: 'w', leaseMs: 60_000, policies: {} };

function entry(
  key: string,
  extra: Partial<NewQueueEntry> = {},
  request: Partial<NormalizedRequest> = {},
): NewQueueEntry {
  return { key, request: { ...normalizeRequest({ key, uri: '/test' }), ...request }, maxAttempts: 3, ...extra };
}

/** The HTTP status of an attempt's answer, whether or not the deserializer has read it yet. */
function statusOf(answer: unknown): number | undefined {
  return (answer as { response?: { statusCode?: number } } | undefined)?.response?.statusCode;
}

/**
 * The first `command` (`PutItem`, `DeleteItem`) that the table applies loses its answer: the SDK
 * gets a timeout after the write landed, and retries it. `lost()` tells how many answers were lost.
 */
function loseFirstLanded(client: DynamoDBClient, command: string): { lost(): number; remove(): void } {
  let lost = 0;
  const hook = addMiddleware(client, async (target, _body, send) => {
    if (lost > 0 || !target.endsWith(`.${command}`)) return send();
    // A refused attempt (a failed condition) throws here or answers 400: it passes on as it is.
    const answer = await send();
    const status = statusOf(answer);
    if (status !== undefined && status !== 200) return answer;
    lost++;
    const body = (answer as { response?: { body?: unknown } }).response?.body;
    if (body instanceof Readable) body.destroy();
    throw Object.assign(new Error('injected: socket timed out waiting for the response'), { name: 'TimeoutError' });
  });
  return {
    lost: () => lost,
    remove: () => {
      hook.remove();
    },
  };
}

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}: removals whose answer was lost`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: ManualClock;
    let queue: DynamoQueueManager;

    beforeEach(async function () {
      table = await createTestTable(backend());
      // The SDK must retry (its default is 3 attempts): the retry is what meets the failed condition.
      expect(await table.client.config.maxAttempts()).to.be.at.least(2);
      clock = new ManualClock();
      // Caps read once per test: the counts are this process's own from then on.
      queue = table.queue(clock, { capsRefreshMs: 3_600_000 });
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    /** Enqueues `key` with a pending deadline, and moves the clock past it (no sweep has run). */
    async function lapsed(key: string, limits = {}): Promise<void> {
      await queue.enqueue(entry(key, { pendingExpiresAt: clock.now() + 500 }), { limits });
      await clock.advance(1_000);
      expect((await queue.get(key))?.state).to.equal('expired');
    }

    /** Enqueues `key`, runs it to completion, retained `retainMs` from then. */
    async function completed(key: string, retainMs: number): Promise<void> {
      await queue.enqueue(entry(key), { limits: {} });
      const lease = await queue.claim(WORKER);
      expect(lease?.record.key).to.equal(key);
      await queue.complete(key, lease?.token ?? '', { durationMs: 1, retainUntil: clock.now() + retainMs });
    }

    describe('enqueue over a record it replaces', function () {
      it('reports the expiry of the lapsed record it replaced, once', async function () {
        await lapsed('x');
        const loss = loseFirstLanded(table.client, 'PutItem');
        const result = await queue.enqueue(entry('x', {}, { priority: 7 }), { limits: {} });
        loss.remove();
        expect(loss.lost()).to.equal(1);
        expect(result.outcome).to.equal('created');
        expect(result.record.request.priority).to.equal(7);
        const stored = await queue.get('x');
        expect([stored?.state, stored?.request.priority]).to.deep.equal(['pending', 7]);
        // The replaced record expired: told once, by the take right after the enqueue.
        const taken = queue.takeTransitions();
        expect(taken?.expired.map((r) => [r.key, r.state])).to.deep.equal([['x', 'expired']]);
        expect(queue.takeTransitions()).to.equal(undefined);
        expect((await queue.sweep()).expired).to.deep.equal([]);
      });

      it('gives back the place under the caps of the lapsed record it replaced', async function () {
        const cap = { maxQueueLength: 2 };
        await lapsed('x', cap);
        const loss = loseFirstLanded(table.client, 'PutItem');
        expect((await queue.enqueue(entry('x'), { limits: cap })).outcome).to.equal('created');
        loss.remove();
        expect(loss.lost()).to.equal(1);
        // One live record (the new `x`): a second fits under a cap of two, a third does not.
        expect((await queue.enqueue(entry('y'), { limits: cap })).outcome).to.equal('created');
        await expect(queue.enqueue(entry('z'), { limits: cap })).to.be.rejectedWith(QueueFullError);
      });

      it('reports the expiry of a lapsed record once when a sweep of another process writes it meanwhile', async function () {
        await lapsed('x');
        const other = table.queue(clock);
        let swept: SweepResult | undefined;
        try {
          // Right after the enqueue's first put reaches the table, the other process sweeps.
          let fired = false;
          const hook = addMiddleware(table.client, async (target, _body, send) => {
            if (fired || !target.endsWith('.PutItem')) return send();
            fired = true;
            try {
              return await send();
            } finally {
              swept = await other.sweep();
            }
          });
          const result = await queue.enqueue(entry('x'), { limits: {} });
          hook.remove();
          expect(result.outcome).to.equal('created');
        } finally {
          await other.close();
        }
        expect((await queue.get('x'))?.state).to.equal('pending');
        // Whichever wrote the expiry (the sweep, or the enqueue by replacing the record) tells it, once.
        const told = [...(swept?.expired ?? []), ...(queue.takeTransitions()?.expired ?? [])];
        expect(told.map((r) => r.key)).to.deep.equal(['x']);
        expect((await queue.sweep()).expired).to.deep.equal([]);
      });

      it('reports nothing of a finished record past its retention that it replaced', async function () {
        await completed('x', 1_000);
        await clock.advance(2_000);
        const loss = loseFirstLanded(table.client, 'PutItem');
        const result = await queue.enqueue(entry('x'), { limits: {} });
        loss.remove();
        expect(loss.lost()).to.equal(1);
        expect(result.outcome).to.equal('created');
        expect((await queue.get('x'))?.state).to.equal('pending');
        expect(queue.takeTransitions()).to.equal(undefined);
        expect((await queue.sweep()).expired).to.deep.equal([]);
      });
    });

    describe('prune', function () {
      it('counts a finished record whose delete landed', async function () {
        await completed('x', 3_600_000);
        await clock.advance(1_000);
        const loss = loseFirstLanded(table.client, 'DeleteItem');
        const dropped = await queue.prune(clock.now());
        loss.remove();
        expect(loss.lost()).to.equal(1);
        expect(dropped).to.equal(1);
        expect(await queue.get('x')).to.equal(undefined);
        expect(await queue.prune(clock.now())).to.equal(0);
      });

      it('counts a lapsed record whose delete landed, and reports its expiry once', async function () {
        await lapsed('x');
        const loss = loseFirstLanded(table.client, 'DeleteItem');
        const dropped = await queue.prune(clock.now());
        loss.remove();
        expect(loss.lost()).to.equal(1);
        expect(dropped).to.equal(1);
        expect(await queue.get('x')).to.equal(undefined);
        expect((await queue.sweep()).expired.map((r) => [r.key, r.state])).to.deep.equal([['x', 'expired']]);
        expect((await queue.sweep()).expired).to.deep.equal([]);
      });

      it('does not count a record past its retention whose delete landed', async function () {
        await completed('x', 1_000);
        await clock.advance(2_000);
        const loss = loseFirstLanded(table.client, 'DeleteItem');
        const dropped = await queue.prune(clock.now() - 5_000);
        loss.remove();
        expect(loss.lost()).to.equal(1);
        expect(dropped).to.equal(0);
      });
    });
  });
}
