/**
 * A pause or resume that stops half-way and is never called again (its process died) must not
 * leave the state saying paused while claims run: PauseControl.repair, run by the sweeps, finishes
 * the last call to begin. A rejected write stands in for the death: the call stops there, as a
 * process killed at that write would, and nothing calls it again.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BackendError, ManualClock } from '@armlib/core';
import type { NormalizedRequest } from '@armlib/core';
import { expect } from 'chai';

import { Db } from '../src/db.js';
import type { DynamoQueueManager } from '../src/index.js';
import { pauseKey, pauseStateKey } from '../src/layout.js';
import { PauseControl } from '../src/pause.js';
import { selectedBackends } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import { addMiddleware } from './harness/middleware.js';
import type { TestTable } from './harness/fixture.js';

/** The queues' shard count (the default), which the PauseControl under test must match. */
const SHARDS = 4;
const CLAIM = { workerId: 'w', leaseMs: 10_000, policies: {} };

function request(key: string): NormalizedRequest {
  return { uri: '/test', key, group: 'default', priority: 0 };
}

/** Refuses (AccessDenied, which the SDK does not retry) every command `match` accepts until removed. */
function refuse(client: DynamoDBClient, match: (target: string, body: string) => boolean): { remove(): void } {
  return addMiddleware(client, (target, body, send) =>
    match(target, body)
      ? Promise.reject(Object.assign(new Error('denied'), { name: 'AccessDeniedException', $metadata: {} }))
      : send(),
  );
}

/** The commands `client` sends while `body` runs, by target. */
async function commandsDuring(client: DynamoDBClient, body: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const spy = addMiddleware(client, (target, _body, send) => {
    seen.push(target.split('.').pop() ?? target);
    return send();
  });
  try {
    await body();
  } finally {
    spy.remove();
  }
  return seen;
}

const isMarkerPut = (target: string, body: string): boolean => target.endsWith('.PutItem') && body.includes('PAUSE#');
const isMarkerDelete = (target: string, body: string): boolean =>
  target.endsWith('.DeleteItem') && body.includes('PAUSE#');
/** The resume's last write: the state set to running. */
const isResumeEnd = (target: string, body: string): boolean =>
  target.endsWith('.UpdateItem') && body.includes('"STATE"') && body.includes('":false"');

async function failing(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => undefined,
    (e: unknown) => e,
  );
}

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}: a pause or resume that stopped half-way`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: ManualClock;
    let queue: DynamoQueueManager;
    let db: Db;

    beforeEach(async function () {
      table = await createTestTable(backend());
      clock = new ManualClock();
      queue = table.queue(clock, { shards: SHARDS });
      db = new Db(table.client, table.name);
      await queue.enqueue({ key: 'job', request: request('job'), maxAttempts: 1 }, { limits: {} });
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    /** A pause that wrote its state and died before any marker. */
    async function pauseDiesBeforeItsMarkers(): Promise<void> {
      const refused = refuse(table.client, isMarkerPut);
      try {
        expect(BackendError.is(await failing(queue.setPaused(true)))).to.equal(true);
      } finally {
        refused.remove();
      }
      expect(await db.get(pauseKey(0))).to.equal(undefined);
    }

    it('is finished by a repair when it was a pause: the missing markers are put, and claims stop', async function () {
      await pauseDiesBeforeItsMarkers();
      await new PauseControl(db, SHARDS).repair(clock.now());
      expect(await queue.isPaused()).to.equal(true);
      expect(await queue.claim(CLAIM)).to.equal(undefined);
      // The markers carry the pause's epoch: a resume removes them all.
      await queue.setPaused(false);
      expect((await queue.claim(CLAIM))?.record.key).to.equal('job');
    });

    for (const when of ['after removing the markers', 'before removing any marker'] as const) {
      it(`is finished by a repair when it was a resume that stopped ${when}: the queue runs`, async function () {
        await queue.setPaused(true);
        const refused = refuse(table.client, when === 'after removing the markers' ? isResumeEnd : isMarkerDelete);
        try {
          expect(BackendError.is(await failing(queue.setPaused(false)))).to.equal(true);
        } finally {
          refused.remove();
        }
        expect(await queue.isPaused()).to.equal(true);
        await new PauseControl(db, SHARDS).repair(clock.now());
        expect(await queue.isPaused()).to.equal(false);
        expect((await queue.claim(CLAIM))?.record.key).to.equal('job');
      });
    }

    it('withdraws the markers it put when a resume began meanwhile: the later call decides', async function () {
      await pauseDiesBeforeItsMarkers();
      const other = table.queue(clock, { shards: SHARDS });
      try {
        // The repair's marker of shard 1 reaches the table only after another process resumed.
        let held = false;
        const hold = addMiddleware(table.client, async (target, body, send) => {
          if (!held && isMarkerPut(target, body) && body.includes('PAUSE#1')) {
            held = true;
            await other.setPaused(false);
          }
          return send();
        });
        try {
          await new PauseControl(db, SHARDS).repair(clock.now());
        } finally {
          hold.remove();
        }
        expect(held, 'the repair put shard 1').to.equal(true);
        expect(await queue.isPaused()).to.equal(false);
        for (let shard = 0; shard < SHARDS; shard++) expect(await db.get(pauseKey(shard))).to.equal(undefined);
        expect((await queue.claim(CLAIM))?.record.key).to.equal('job');
      } finally {
        await other.close();
      }
    });

    it('reads only, once a minute at most, when the state and the markers agree', async function () {
      const repair = new PauseControl(db, SHARDS);
      expect(await commandsDuring(table.client, () => repair.repair(clock.now()))).to.deep.equal(['GetItem']);
      await clock.advance(60_000);
      await queue.setPaused(true);
      expect(await commandsDuring(table.client, () => repair.repair(clock.now()))).to.deep.equal(
        Array(1 + SHARDS).fill('GetItem'),
      );
      await clock.advance(59_999);
      expect(await commandsDuring(table.client, () => repair.repair(clock.now()))).to.deep.equal([]);
    });

    it('leaves alone a call that did not record itself (an older armlib resuming)', async function () {
      await queue.setPaused(true);
      // An older armlib's resume takes the next epoch without recording its call, and removes the
      // markers; it has not set the state to running yet.
      await db.update({
        Key: pauseStateKey(),
        UpdateExpression: 'ADD #n :one',
        ExpressionAttributeNames: { '#n': 'pn' },
        ExpressionAttributeValues: { ':one': 1 },
      });
      for (let shard = 0; shard < SHARDS; shard++) await db.delete({ Key: pauseKey(shard) });
      // Putting the pause's markers back would outlive that resume (they would carry its epoch).
      await new PauseControl(db, SHARDS).repair(clock.now());
      for (let shard = 0; shard < SHARDS; shard++) expect(await db.get(pauseKey(shard))).to.equal(undefined);
    });

    // Needs the repair hook in DynamoQueueManager.sweep (`await this.#pause.repair(now)`).
    it('is finished by the next sweep: isPaused and claims agree', async function () {
      await pauseDiesBeforeItsMarkers();
      await queue.sweep();
      expect(await queue.isPaused()).to.equal(true);
      expect(await queue.claim(CLAIM)).to.equal(undefined);
    });
  });
}
