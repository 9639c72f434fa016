import { createRequire } from 'node:module';

import { DynamoDBClient, GetItemCommand, QueryCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  BackendError,
  ClosedError,
  ConfigError,
  createRequestManager,
  InvalidRequestError,
  LeaseLostError,
  ManualClock,
  normalizeRequest,
  QueueFullError,
  QuotaExceededError,
} from '@armlib/core';
import type { NormalizedRequest } from '@armlib/core';
import * as chai from 'chai';
import chaiAsPromised from 'chai-as-promised';

import {
  armlibAdapter,
  attachCommandCounter,
  checkDynamoQueueOptions,
  DynamoQueueManager,
  dynamodbAdapter,
  ensureTable,
  measureLifecycleCost,
} from '../src/index.js';
import type { CommandCounter, DynamoQueueManagerOptions } from '../src/index.js';
import { Db } from '../src/db.js';
import { recordPk, recordSk, workShard } from '../src/layout.js';
import { DurationBuffer } from '../src/side-stats.js';
import { selectedBackends, uniqueTableName } from './harness/emulator.js';
import { createTestTable, useBackend } from './harness/fixture.js';
import { addMiddleware } from './harness/middleware.js';
import type { TestTable } from './harness/fixture.js';

chai.use(chaiAsPromised);
const { expect } = chai;

function request(key: string, extra: Partial<NormalizedRequest> = {}): NormalizedRequest {
  return { uri: '/test', key, group: 'default', priority: 0, ...extra };
}

describe('@armlib/dynamodb options', function () {
  it('rejects a client together with a clientConfig, naming both paths', function () {
    const options = { tableName: 'armlib-x', client: undefined as unknown, clientConfig: { region: 'us-east-1' } };
    const table = `t-${String(Date.now())}`;
    const issues = checkDynamoQueueOptions({ ...options, client: {}, tableName: table });
    const both = issues.find((i) => i.path === '/client');
    expect(both?.message).to.include('/client').and.include('/clientConfig');
    expect(() => new DynamoQueueManager({ tableName: table, client: {} as never, clientConfig: {} }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.includes('/clientConfig');
  });

  it('names every bad field by its path and accepts good options', function () {
    const issues = checkDynamoQueueOptions({
      tableName: 'a',
      tablePrefix: 'b',
      shards: 0,
      endpoint: 'not a url',
      ensureTable: 'yes',
      bogus: 1,
    });
    const paths = issues.map((i) => i.path).sort();
    expect(paths).to.include.members(['/tableName', '/tablePrefix', '/shards', '/endpoint', '/ensureTable', '/bogus']);
    expect(checkDynamoQueueOptions({ tablePrefix: 'prod-', region: 'eu-west-1', shards: 8 })).to.deep.equal([]);
    expect(checkDynamoQueueOptions(undefined)).to.deep.equal([]);
    expect(new DynamoQueueManager({ tablePrefix: 'prod-', region: 'eu-west-1' }, new ManualClock()).tableName).to.equal(
      'prod-armlib-queue',
    );
  });

  it('refuses options it cannot read with a ConfigError naming the field, never the raw error', function () {
    const pathsOf = (options: unknown): string[] => {
      try {
        new DynamoQueueManager(options as DynamoQueueManagerOptions, new ManualClock());
      } catch (error) {
        expect(ConfigError.is(error), String(error)).to.equal(true);
        return (error as ConfigError).issues.map((i) => i.path);
      }
      return [];
    };
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(pathsOf(Object.defineProperty({}, 'tableName', { enumerable: true, get: boom }))).to.deep.equal([
      '/tableName',
    ]);
    expect(pathsOf(revoked)).to.deep.equal(['']);
    expect(pathsOf(new Proxy({}, { ownKeys: boom }))).to.deep.equal(['']);
    expect(pathsOf({ shards: 4n })).to.deep.equal(['/shards']);
    expect(pathsOf({ clientConfig: revoked })).to.deep.equal(['/clientConfig']);
    expect(
      pathsOf({
        clientConfig: {
          get requestHandler() {
            return boom();
          },
        },
      }),
    ).to.deep.equal(['/clientConfig']);
    expect(
      pathsOf({
        client: {
          get send() {
            return boom();
          },
        },
      }),
    ).to.deep.equal(['/client']);
    expect(pathsOf('x')).to.deep.equal(['']);
  });

  it('checkDynamoQueueOptions returns options it cannot read as issues naming the field, never throwing', function () {
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const [issue, ...others] = checkDynamoQueueOptions(
      Object.defineProperty({ tableName: 't' }, 'shards', { enumerable: true, get: boom }),
    );
    expect(others).to.deep.equal([]);
    expect(issue).to.include({ path: '/shards', message: 'cannot be read: boom' });
    expect((issue?.cause as Error | undefined)?.message).to.equal('boom');
    expect(checkDynamoQueueOptions(revoked).map((i) => i.path)).to.deep.equal(['']);
    expect(checkDynamoQueueOptions(new Proxy({}, { ownKeys: boom })).map((i) => i.path)).to.deep.equal(['']);
    expect(checkDynamoQueueOptions(new Proxy({ tableName: 't' }, { get: boom })).map((i) => i.path)).to.include(
      '/tableName',
    );
  });

  it('rejects region and endpoint given together with a ready client, naming both paths', function () {
    const client = new DynamoDBClient({ region: 'eu-west-1' });
    try {
      const options = { client, region: 'us-east-1', endpoint: 'http://127.0.0.1:8000', tableName: 'armlib-x' };
      expect(checkDynamoQueueOptions(options).map((i) => i.path)).to.have.members(['/region', '/endpoint']);
      expect(() => new DynamoQueueManager(options))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes('/endpoint');
      expect(checkDynamoQueueOptions({ client, tableName: 'armlib-x' })).to.deep.equal([]);
    } finally {
      client.destroy();
    }
  });

  it('accepts a client by its shape, not by the class of this copy of the SDK', function () {
    const fake = { send: () => Promise.resolve({}), middlewareStack: { add: () => undefined }, config: {} };
    expect(fake instanceof DynamoDBClient).to.equal(false);
    expect(checkDynamoQueueOptions({ client: fake })).to.deep.equal([]);
    for (const bad of [{}, { send: 1, middlewareStack: { add: () => undefined }, config: {} }, 'client']) {
      expect(checkDynamoQueueOptions({ client: bad }).map((i) => i.path)).to.deep.equal(['/client']);
    }
  });

  it('exports the adapter plugin as armlibAdapter and default', async function () {
    const mod = await import('../src/index.js');
    expect(armlibAdapter).to.equal(dynamodbAdapter);
    expect(mod.default).to.equal(dynamodbAdapter);
    expect(dynamodbAdapter.name).to.equal('dynamodb');
    expect(dynamodbAdapter.validateQueueOptions?.({ shards: -1 })).to.have.length(1);
  });
});

for (const kind of selectedBackends()) {
  describe(`@armlib/dynamodb on ${kind}`, function () {
    const backend = useBackend(kind);
    let table: TestTable;
    let clock: ManualClock;
    let queue: DynamoQueueManager;

    beforeEach(async function () {
      table = await createTestTable(backend());
      clock = new ManualClock();
      queue = table.queue(clock);
    });

    afterEach(async function () {
      await queue.close();
      await table.drop();
    });

    it('refuses, with a ConfigError naming each option, a process whose shards differ from the table’s', async function () {
      await queue.enqueue({ key: 'k', request: request('k'), maxAttempts: 1 }, { limits: {} });
      const other = table.queue(clock, { shards: 8, recordShards: 4 });
      try {
        const refused = await other.get('k').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(ConfigError.is(refused), String(refused)).to.equal(true);
        expect((refused as ConfigError).issues.map((issue) => issue.path)).to.deep.equal(['/shards', '/recordShards']);
        // Nothing was written by it: the key is queued once, where the first process put it.
        await expect(other.enqueue({ key: 'k2', request: request('k2'), maxAttempts: 1 }, { limits: {} })).to.be
          .rejected;
      } finally {
        await other.close();
      }
      const same = table.queue(clock);
      try {
        expect(
          (await same.enqueue({ key: 'k', request: request('k'), maxAttempts: 1 }, { limits: {} })).outcome,
        ).to.equal('existing');
      } finally {
        await same.close();
      }
    });

    it('ensureTable is idempotent', async function () {
      const again = await ensureTable(table.client, table.name);
      expect(again.created).to.equal(false);
      expect(again.ttlEnabled).to.equal(kind !== 'dynalite');
      const fresh = uniqueTableName();
      const first = await ensureTable(table.client, fresh);
      const second = await ensureTable(table.client, fresh);
      expect([first.created, second.created]).to.deep.equal([true, false]);
      const q = table.queue(clock, { tableName: fresh });
      await q.enqueue({ key: 'k', request: request('k'), maxAttempts: 1 }, { limits: {} });
      expect((await q.get('k'))?.state).to.equal('pending');
      await q.close();
      const { deleteTable } = await import('../src/index.js');
      await deleteTable(table.client, fresh);
    });

    it('throws ClosedError from every call after close, ensureTable included', async function () {
      await queue.enqueue({ key: 'k', request: request('k'), maxAttempts: 1 }, { limits: {} });
      await queue.close();
      const calls: [string, () => Promise<unknown>][] = [
        ['ensureTable', () => queue.ensureTable()],
        ['enqueue', () => queue.enqueue({ key: 'k2', request: request('k2'), maxAttempts: 1 }, { limits: {} })],
        ['get', () => queue.get('k')],
        ['position', () => queue.position('k')],
        ['claim', () => queue.claim({ leaseMs: 1_000, workerId: 'w', policies: {} })],
        ['claimMany', () => queue.claimMany({ leaseMs: 1_000, workerId: 'w', policies: {} }, 2)],
        ['heartbeat', () => queue.heartbeat('k', 't', { leaseMs: 1_000 })],
        ['complete', () => queue.complete('k', 't', { durationMs: 1 })],
        ['fail', () => queue.fail('k', 't', { error: { code: 'E', message: 'e', retryable: false } })],
        ['release', () => queue.release('k', 't', { countAttempt: false })],
        ['acknowledgeCancel', () => queue.acknowledgeCancel('k', 't', {})],
        ['cancel', () => queue.cancel('k', {})],
        ['list', () => queue.list({ limit: 10 })],
        ['counts', () => queue.counts()],
        ['prune', () => queue.prune(0)],
        ['sweep', () => queue.sweep()],
        ['setPaused', () => queue.setPaused(true)],
        ['isPaused', () => queue.isPaused()],
        ['activity', () => queue.activity(1)],
        ['uriStats', () => queue.uriStats()],
        ['reportWorker', () => queue.reportWorker('w', 1, 1_000)],
        ['removeWorker', () => queue.removeWorker('w')],
        ['capacity', () => queue.capacity()],
        ['flush', () => queue.flush()],
      ];
      for (const [name, call] of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(ClosedError.is(error), `${name}: ${String(error)}`).to.equal(true);
      }
    });

    it('sends no Scan through a whole lifecycle, list, counts, sweep, prune and metrics reads', async function () {
      const counter = attachCommandCounter(table.client);
      try {
        for (const key of ['a', 'b', 'c']) {
          await queue.enqueue(
            { key, request: request(key, { owner: 'o' }), maxAttempts: 2 },
            { limits: { maxQueueLength: 10, maxPendingPerOwner: 5 } },
          );
        }
        const lease = await queue.claim({
          workerId: 'w',
          leaseMs: 1000,
          policies: { default: { maxConcurrent: 2, minIntervalMs: 1 } },
        });
        expect(lease?.record.key).to.equal('a');
        if (lease === undefined) return;
        await queue.heartbeat('a', lease.token, { leaseMs: 1000, progress: 10 });
        await queue.complete('a', lease.token, { durationMs: 5, retainUntil: clock.now() + 1000 });
        await queue.position('b');
        await queue.list({ limit: 2 });
        await queue.counts();
        await queue.cancel('c', {});
        await clock.advance(5000);
        await queue.sweep({ retainUntil: clock.now() + 10 });
        await queue.prune(clock.now() + 1);
        await queue.activity(10);
        await queue.uriStats();
        await queue.capacity();
        await queue.setPaused(true);
        expect(await queue.isPaused()).to.equal(true);
        const snapshot = counter.snapshot();
        expect(snapshot.requests).to.be.greaterThan(20);
        expect(snapshot.commands).to.not.have.property('Scan');
        expect(snapshot.scans).to.equal(0);
      } finally {
        counter.detach();
      }
    });

    it('claims across every shard in priority, then FIFO order, and positions follow that order', async function () {
      const keys = Array.from({ length: 12 }, (_, i) => `s-${String(i)}`);
      for (const [i, key] of keys.entries()) {
        await queue.enqueue(
          { key, request: request(key, { priority: i % 3 === 0 ? 5 : 0 }), maxAttempts: 1 },
          { limits: {} },
        );
        await clock.advance(1);
      }
      const expected = [...keys.filter((_, i) => i % 3 === 0), ...keys.filter((_, i) => i % 3 !== 0)];
      const positions = await Promise.all(expected.map((k) => queue.position(k)));
      expect(positions).to.deep.equal(expected.map((_, i) => i + 1));
      const claimed: string[] = [];
      for (;;) {
        const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} });
        if (lease === undefined) break;
        claimed.push(lease.record.key);
      }
      expect(claimed).to.deep.equal(expected);
    });

    describe('claim batches', function () {
      const claim = { workerId: 'w', leaseMs: 10_000, policies: {} };
      let batcher: DynamoQueueManager;
      let counter: CommandCounter;

      beforeEach(function () {
        // No buffered-counter flush on a timer while the commands are counted (the suite's `queue`,
        // which flushes every second, sends nothing in the tests that count).
        batcher = table.queue(clock, { flushIntervalMs: 3_600_000 });
        counter = attachCommandCounter(table.client);
      });

      afterEach(async function () {
        counter.detach();
        await batcher.close();
      });

      it('claims a batch of 5 from one read of the 4 shard heads: 4 Queries and 5 updates, not 20 Queries', async function () {
        const keys = Array.from({ length: 8 }, (_, i) => `m-${String(i)}`);
        for (const [i, key] of keys.entries()) {
          await batcher.enqueue(
            { key, request: request(key, { priority: i % 4 === 3 ? 5 : 0 }), maxAttempts: 1 },
            { limits: {} },
          );
          await clock.advance(1);
        }
        counter.reset();
        const leases = await batcher.claimMany(claim, 5);
        // The order 5 claims in a row take: priority, then FIFO.
        expect(leases.map((l) => l.record.key)).to.deep.equal(['m-3', 'm-7', 'm-0', 'm-1', 'm-2']);
        const { commands } = counter.snapshot();
        expect(commands).to.deep.equal({ Query: 4, UpdateItem: 5 });
      });

      it('claims no more once its first lease has aged a quarter of the lease length, and hands over the leases it has', async function () {
        for (const key of ['s-1', 's-2', 's-3', 's-4']) {
          await batcher.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
          await clock.advance(1);
        }
        // Slow writes: each claim's update takes 1 s of the (manual) clock, a tenth of the lease.
        const slow = addMiddleware(table.client, async (_target, body, send) => {
          const out = await send();
          if (body.includes('"running"')) await clock.advance(1_000);
          return out;
        });
        try {
          const leases = await batcher.claimMany(claim, 4);
          // The third claim ends 3 s after the first began: past 10 s / 4, so no fourth.
          expect(leases.map((l) => l.record.key)).to.deep.equal(['s-1', 's-2', 's-3']);
        } finally {
          slow.remove();
        }
        expect((await batcher.get('s-4'))?.state).to.equal('pending');
      });

      it('fills a batch larger than a page of one shard, reading the heads again after the page is used up', async function () {
        // 130 requests in shard 0 of 4: more than the 100 entries a claim reads of a shard.
        const keys: string[] = [];
        for (let i = 0; keys.length < 130; i++) if (workShard(`p-${String(i)}`, 4) === 0) keys.push(`p-${String(i)}`);
        for (const key of keys) await batcher.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
        counter.reset();
        const leases = await batcher.claimMany(claim, 130);
        expect(leases.map((l) => l.record.key)).to.deep.equal(keys);
        // Two reads of the 4 heads: the first page, then what is left.
        expect(counter.snapshot().commands).to.deep.equal({ Query: 8, UpdateItem: 130 });
      });

      it('reads the heads again when another claimer took every candidate of the first read', async function () {
        for (const key of ['r-1', 'r-2', 'r-3']) {
          await queue.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
        }
        // Before the batch's first claim lands, another process claims all three and two more are queued.
        const taken: string[] = [];
        const held = interceptOnce(
          table.client,
          (target) => target.endsWith('.UpdateItem'),
          async () => {
            taken.push(...(await queue.claimMany({ ...claim, workerId: 'other' }, 3)).map((l) => l.record.key));
            for (const key of ['r-4', 'r-5']) {
              await queue.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
            }
          },
        );
        try {
          counter.reset();
          const leases = await batcher.claimMany(claim, 5);
          expect(held.fired).to.equal(true);
          expect(taken).to.deep.equal(['r-1', 'r-2', 'r-3']);
          // Claims in a row would each read again: the batch too, once its candidates were all lost.
          expect(leases.map((l) => l.record.key)).to.deep.equal(['r-4', 'r-5']);
          expect(leases.map((l) => l.record.workerId)).to.deep.equal(['w', 'w']);
        } finally {
          held.remove();
        }
      });

      it('returns the leases taken when a claim of the batch fails after others succeeded', async function () {
        for (const key of ['e-1', 'e-2', 'e-3']) {
          await queue.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
        }
        const fault = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('K#e-2'),
        );
        try {
          const leases = await batcher.claimMany(claim, 3);
          expect(fault.fired).to.equal(true);
          expect(leases.map((l) => l.record.key)).to.deep.equal(['e-1']);
        } finally {
          fault.remove();
        }
        expect((await queue.get('e-2'))?.state).to.equal('pending');
        // When the first claim fails, the batch fails.
        const first = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('K#e-2'),
        );
        try {
          await expect(batcher.claimMany(claim, 3)).to.be.rejectedWith(BackendError);
        } finally {
          first.remove();
        }
        expect((await batcher.claimMany(claim, 3)).map((l) => l.record.key)).to.deep.equal(['e-2', 'e-3']);
      });
    });

    it('counts no request waiting out a backoff, nor one past its pending deadline, ahead of the others', async function () {
      const keys = Array.from({ length: 8 }, (_, i) => `b-${String(i)}`);
      for (const key of keys) {
        await queue.enqueue({ key, request: request(key), maxAttempts: 3 }, { limits: {} });
        await clock.advance(1);
      }
      await queue.enqueue(
        { key: 'b-late', request: request('b-late'), maxAttempts: 1, pendingExpiresAt: clock.now() + 100 },
        { limits: {} },
      );
      // b-0 and b-1 are claimed and wait out backoffs; b-late passes its deadline.
      const error = { code: 'BUSY', message: 'busy', retryable: true };
      for (const [key, waitMs] of [
        ['b-0', 2_000],
        ['b-1', 1_000],
      ] as const) {
        const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} });
        expect(lease?.record.key).to.equal(key);
        if (lease === undefined) return;
        await queue.fail(key, lease.token, { error, retryAt: clock.now() + waitMs });
      }
      await clock.advance(100);
      const positions = async (): Promise<(number | undefined)[]> =>
        Promise.all([...keys, 'b-late'].map((k) => queue.position(k)));
      // The waiting ones take the place after the ready ones ahead of them: none.
      expect(await positions()).to.deep.equal([1, 1, 1, 2, 3, 4, 5, 6, undefined]);
      expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} }))?.record.key).to.equal('b-2');
      await clock.advance(1_000);
      expect(await positions()).to.deep.equal([1, 1, undefined, 2, 3, 4, 5, 6, undefined]);
      await clock.advance(1_000);
      expect(await positions()).to.deep.equal([1, 2, undefined, 3, 4, 5, 6, 7, undefined]);
    });

    it('reports a record past its pending deadline expired before the sweep, and frees its place under the caps', async function () {
      await queue.enqueue(
        { key: 'lapsed', request: request('lapsed'), maxAttempts: 1, pendingExpiresAt: clock.now() + 1_000 },
        { limits: {} },
      );
      await clock.advance(1_000);
      expect((await queue.get('lapsed'))?.state).to.equal('expired');
      expect((await queue.counts()).byState).to.deep.include({ pending: 0, expired: 1 });
      expect((await queue.list({ limit: 10, states: ['expired'] })).items.map((r) => r.key)).to.deep.equal(['lapsed']);
      expect((await queue.cancel('lapsed', {})).outcome).to.equal('unchanged');
      // No longer live: it takes no place under a cap.
      const capped = { limits: { maxQueueLength: 1 } };
      expect((await queue.enqueue({ key: 'one', request: request('one'), maxAttempts: 1 }, capped)).outcome).to.equal(
        'created',
      );
      // The sweep writes the expiry it reported; the record it frees was never counted.
      expect((await queue.sweep()).expired.map((r) => r.key)).to.deep.equal(['lapsed']);
      await expect(queue.enqueue({ key: 'two', request: request('two'), maxAttempts: 1 }, capped)).to.be.rejectedWith(
        QueueFullError,
      );
      const roomy = { limits: { maxQueueLength: 2 } };
      expect((await queue.enqueue({ key: 'two', request: request('two'), maxAttempts: 1 }, roomy)).outcome).to.equal(
        'created',
      );
    });

    it('prunes a record past its pending deadline like an expired one, its expiry reported by the next sweep', async function () {
      await queue.enqueue(
        { key: 'lapsed', request: request('lapsed'), maxAttempts: 1, pendingExpiresAt: clock.now() + 1_000 },
        { limits: {} },
      );
      await clock.advance(2_000);
      expect(await queue.prune(clock.now() - 500)).to.equal(1);
      expect(await queue.get('lapsed')).to.equal(undefined);
      const swept = await queue.sweep();
      expect(swept.expired.map((r) => [r.key, r.state, r.finishedAt])).to.deep.equal([
        ['lapsed', 'expired', clock.now() - 1_000],
      ]);
      expect((await queue.sweep()).expired).to.deep.equal([]);
    });

    it('keeps the last 256 run times of a uri for its percentiles, as the memory and file queues do', async function () {
      const durations = new DurationBuffer(new Db(table.client, table.name), 0);
      // 300 runs: the first 100 slow, then 200 fast. A window of 256 still holds 56 slow ones.
      for (let i = 0; i < 300; i++) durations.record('/timed', i < 100 ? 1_000 : 10);
      await durations.flush();
      const [stats] = await durations.read('/timed', clock.now());
      expect(stats?.count).to.equal(300);
      expect(stats?.p50Ms).to.equal(10);
      // p95: the 244th of the 256 samples sorted, one of the 56 slow ones (a window of 64 has none).
      expect(stats?.p95Ms).to.equal(1_000);
    });

    it('refuses a count of minutes that is not an integer >= 0 before sending anything (one Query per minute)', async function () {
      const q = table.queue(clock);
      try {
        for (const minutes of [1e5 + 0.5, Number.POSITIVE_INFINITY, 1.5, Number.NaN, -1, '3']) {
          const error: unknown = await q.activity(minutes as number).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(InvalidRequestError.is(error), `${String(minutes)}: ${String(error)}`).to.equal(true);
          expect((error as InvalidRequestError).field).to.equal('minutes');
        }
        // More minutes than a day (what the table keeps) are capped, not one Query each.
        expect(await q.activity(100_000)).to.have.length(24 * 60);
      } finally {
        await q.close();
      }
    });

    it('keeps every buffered count and run time that a failed flush did not write, for the next flush', async function () {
      const q = table.queue(clock, { flushIntervalMs: 3_600_000 });
      try {
        for (const key of ['a1', 'a2']) await q.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
        await clock.advance(60_000);
        for (const key of ['b1', 'b2', 'b3']) {
          await q.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
        }
        // The first minute's write fails: the second minute's counts must not go with it.
        const failed = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('ACT#'),
        );
        try {
          await expect(q.flush()).to.be.rejectedWith(BackendError);
          expect(failed.fired).to.equal(true);
        } finally {
          failed.remove();
        }
        await q.flush();
        expect((await q.activity(2)).map((bucket) => bucket.total.submitted)).to.deep.equal([2, 3]);
      } finally {
        await q.close();
      }
      const durations = new DurationBuffer(new Db(table.client, table.name), 0);
      durations.record('/u1', 5);
      durations.record('/u2', 7);
      const failed = failOnce(table.client, (command, input) => command === 'PutItemCommand' && input.includes('/u1'));
      try {
        await expect(durations.flush()).to.be.rejectedWith(BackendError);
      } finally {
        failed.remove();
      }
      await durations.flush();
      expect((await durations.read('/u1', clock.now()))[0]?.count).to.equal(1);
      expect((await durations.read('/u2', clock.now()))[0]?.count).to.equal(1);
    });

    it('writes the TTL attribute on finished records and hides them once past retainUntil', async function () {
      await queue.enqueue({ key: 't', request: request('t'), maxAttempts: 1 }, { limits: {} });
      const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} });
      if (lease === undefined) throw new Error('nothing claimed');
      const retainUntil = clock.now() + 60_000;
      await queue.complete('t', lease.token, { durationMs: 1, retainUntil });
      const raw = await table.client.send(
        new GetItemCommand({ TableName: table.name, Key: rawKey('t'), ConsistentRead: true }),
      );
      expect(raw.Item?.['xt']?.N).to.equal(String(Math.ceil(retainUntil / 1000)));
      expect(raw.Item?.['gk']).to.equal(undefined);
      expect((await queue.get('t'))?.state).to.equal('completed');
      await clock.advance(60_000);
      // DynamoDB deletes expired items lazily (dynalite never): every read ignores them meanwhile.
      expect(await queue.get('t')).to.equal(undefined);
      expect((await queue.list({ limit: 10 })).items).to.deep.equal([]);
      expect((await queue.counts()).byState.completed).to.equal(0);
      expect((await queue.cancel('t', {})).outcome).to.equal('missing');
      const again = await queue.enqueue({ key: 't', request: request('t'), maxAttempts: 1 }, { limits: {} });
      expect(again.outcome).to.equal('created');
    });

    it('prunes finished records past their retention, which reads no longer show, where TTL has not run', async function () {
      await queue.enqueue({ key: 'old', request: request('old'), maxAttempts: 1 }, { limits: {} });
      const lease = await queue.claim({ workerId: 'w', leaseMs: 60_000, policies: {} });
      if (lease === undefined) throw new Error('nothing claimed');
      await queue.complete('old', lease.token, { durationMs: 1, retainUntil: clock.now() + 1_000 });
      await clock.advance(5_000);
      expect(await queue.get('old')).to.equal(undefined);
      // TTL deletes it at some point (dynalite never, AWS up to days late): prune does, whatever
      // finishedBefore. Not counted: no read saw it any more (as the memory queue has evicted it).
      expect(await queue.prune(clock.now() - 60_000)).to.equal(0);
      const raw = await table.client.send(
        new QueryCommand({
          TableName: table.name,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: recordPk('old', 16) } },
          ConsistentRead: true,
        }),
      );
      expect(raw.Items ?? []).to.deep.equal([]);
      // A record re-enqueued under the key of one past retention is live: prune leaves it.
      await queue.enqueue({ key: 'again', request: request('again'), maxAttempts: 1 }, { limits: {} });
      const second = await queue.claim({ workerId: 'w', leaseMs: 60_000, policies: {} });
      if (second === undefined) throw new Error('nothing claimed');
      await queue.complete('again', second.token, { durationMs: 1, retainUntil: clock.now() + 1_000 });
      await clock.advance(5_000);
      await queue.enqueue({ key: 'again', request: request('again'), maxAttempts: 1 }, { limits: {} });
      expect(await queue.prune(clock.now())).to.equal(0);
      expect((await queue.get('again'))?.state).to.equal('pending');
    });

    it('stops concurrent enqueues of one process at the caps: each holds its place until its put settles', async function () {
      const limits = { maxQueueLength: 10, maxPendingPerOwner: 5 };
      const enqueue = async (key: string, owner?: string): Promise<string> => {
        const r = await queue.enqueue(
          { key, request: request(key, owner === undefined ? {} : { owner }), maxAttempts: 1 },
          { limits },
        );
        return r.outcome;
      };
      await enqueue('warm', 'alice');
      // 20 at once for one owner: 4 more fit under maxPendingPerOwner, as the memory queue has it.
      const owned = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => enqueue(`o-${String(i)}`, 'alice')));
      expect(owned.filter((r) => r.status === 'fulfilled' && r.value === 'created')).to.have.length(4);
      const quota = owned.filter((r) => r.status === 'rejected').map((r) => r.reason as unknown);
      expect(quota).to.have.length(16);
      for (const e of quota) expect(QuotaExceededError.is(e), String(e)).to.equal(true);
      // An enqueue of a live key gives its place back: 5 live, 5 more fit under maxQueueLength.
      const all = await Promise.allSettled([
        enqueue('warm', 'alice'),
        ...Array.from({ length: 20 }, (_, i) => enqueue(`q-${String(i)}`)),
      ]);
      expect(all[0]).to.deep.equal({ status: 'fulfilled', value: 'existing' });
      expect(all.filter((r) => r.status === 'fulfilled' && r.value === 'created')).to.have.length(5);
      const full = all.filter((r) => r.status === 'rejected').map((r) => r.reason as unknown);
      expect(full).to.have.length(15);
      for (const e of full) expect(QueueFullError.is(e), String(e)).to.equal(true);
      expect((await queue.counts()).byState.pending).to.equal(10);
    });

    it('carries the places of puts in flight across a refresh of the live counts', async function () {
      // Every enqueue reads the counts afresh; one put is held until three more enqueues ran.
      const fresh = table.queue(clock, { capsRefreshMs: 0 });
      const limits = { maxQueueLength: 3 };
      const enqueue = async (key: string): Promise<string> =>
        (await fresh.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits })).outcome;
      let later: PromiseSettledResult<string>[] = [];
      const held = interceptOnce(
        table.client,
        (target, body) => target.endsWith('.PutItem') && body.includes('K#first'),
        async () => {
          later = await Promise.allSettled(['b', 'c', 'd'].map(enqueue));
        },
      );
      try {
        expect(await enqueue('first')).to.equal('created');
        expect(held.fired).to.equal(true);
        // Their refresh did not see the held put, but counted its place: two of three fit.
        expect(later.filter((r) => r.status === 'fulfilled' && r.value === 'created')).to.have.length(2);
        expect(later.filter((r) => r.status === 'rejected' && QueueFullError.is(r.reason))).to.have.length(1);
        expect((await fresh.counts()).byState.pending).to.equal(3);
      } finally {
        held.remove();
        await fresh.close();
      }
    });

    it('refuses a request too large for one DynamoDB item with InvalidRequestError, writing nothing', async function () {
      // Within core's limits (params and body of 256 KiB each), over DynamoDB's 400 KB.
      const params: Record<string, string> = {};
      for (let i = 0; i < 60; i++) params[`p${String(i)}`] = 'x'.repeat(4000);
      const big = normalizeRequest({ uri: '/big', key: 'big', params, body: { blob: 'y'.repeat(200_000) } });
      const failure: unknown = await queue.enqueue({ key: 'big', request: big, maxAttempts: 1 }, { limits: {} }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(InvalidRequestError.is(failure), String(failure)).to.equal(true);
      expect((failure as InvalidRequestError).field).to.equal('request');
      expect((failure as Error).message).to.include('DynamoDB item size limit');
      expect(await queue.get('big')).to.equal(undefined);
      // Just under the limit it is queued, and the largest error and progress message still fit.
      let body = 200_000;
      let created: string | undefined;
      while (created === undefined && body > 0) {
        const r = normalizeRequest({ uri: '/big', key: 'near', params, body: { blob: 'y'.repeat(body) } });
        created = await queue.enqueue({ key: 'near', request: r, maxAttempts: 2 }, { limits: {} }).then(
          (out) => out.outcome,
          (e: unknown) => {
            if (!InvalidRequestError.is(e)) throw e;
            return undefined;
          },
        );
        body -= 256;
      }
      expect(created).to.equal('created');
      const lease = await queue.claim({ workerId: 'w'.repeat(200), leaseMs: 60_000, policies: {} });
      if (lease === undefined) throw new Error('nothing claimed');
      const message = '€'.repeat(1000) + '…';
      await queue.heartbeat('near', lease.token, { leaseMs: 60_000, progress: 50, message });
      const error = { code: 'X'.repeat(64), message, retryable: true };
      await queue.fail('near', lease.token, { error, retryAt: clock.now() });
      const again = await queue.claim({ workerId: 'w'.repeat(200), leaseMs: 60_000, policies: {} });
      if (again === undefined) throw new Error('nothing claimed');
      await queue.heartbeat('near', again.token, { leaseMs: 60_000, progress: 50, message });
      const failed = await queue.fail('near', again.token, { error, retainUntil: clock.now() + 1_000 });
      expect(failed.state).to.equal('failed');
    });

    it('accepts a client from another copy of the AWS SDK', async function () {
      const b = backend();
      // Skipped only against real AWS (no endpoint): the second SDK copy is pointed at the emulator the
      // harness started. CI and `npm test` always run an emulator, so it runs there.
      if (b.endpoint === undefined) this.skip();
      // A second load of the SDK's module file: another DynamoDBClient class, as a host's own copy is.
      const require = createRequire(import.meta.url);
      const path = require.resolve('@aws-sdk/client-dynamodb');
      const cached = require.cache[path];
      Reflect.deleteProperty(require.cache, path);
      let Other: new (config: object) => DynamoDBClient;
      try {
        Other = (require(path) as { DynamoDBClient: new (config: object) => DynamoDBClient }).DynamoDBClient;
      } finally {
        if (cached !== undefined) require.cache[path] = cached;
      }
      const client = new Other({
        endpoint: b.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' },
      });
      expect(client instanceof DynamoDBClient).to.equal(false);
      const q = new DynamoQueueManager({ client, tableName: table.name }, clock);
      try {
        expect(
          (await q.enqueue({ key: 'copy', request: request('copy'), maxAttempts: 1 }, { limits: {} })).outcome,
        ).to.equal('created');
        expect((await queue.get('copy'))?.state).to.equal('pending');
      } finally {
        await q.close();
        client.destroy();
      }
    });

    it('fences every call with the lease token', async function () {
      await queue.enqueue({ key: 'f', request: request('f'), maxAttempts: 3 }, { limits: {} });
      const lease = await queue.claim({ workerId: 'w', leaseMs: 1000, policies: {} });
      if (lease === undefined) throw new Error('nothing claimed');
      await expect(queue.heartbeat('f', 'stale', { leaseMs: 1000 })).to.be.rejectedWith(LeaseLostError);
      await expect(queue.complete('f', 'stale', { durationMs: 1 })).to.be.rejectedWith(LeaseLostError);
      await clock.advance(1000);
      await expect(queue.heartbeat('f', lease.token, { leaseMs: 1000 })).to.be.rejectedWith(LeaseLostError);
      const swept = await queue.sweep();
      expect(swept.requeued.map((r) => r.key)).to.deep.equal(['f']);
      const next = await queue.claim({ workerId: 'w2', leaseMs: 1000, policies: {} });
      expect(next?.token).to.be.a('string').and.not.equal(lease.token);
      expect(next?.record.attempts).to.equal(2);
    });

    it('finds an expired lease that a heartbeat shortened below its first deadline', async function () {
      await queue.enqueue({ key: 'short', request: request('short'), maxAttempts: 1 }, { limits: {} });
      const lease = await queue.claim({ workerId: 'w', leaseMs: 60_000, policies: {} });
      if (lease === undefined) throw new Error('nothing claimed');
      await queue.heartbeat('short', lease.token, { leaseMs: 100 });
      await clock.advance(100);
      const swept = await queue.sweep();
      expect(swept.failed.map((r) => [r.key, r.error?.code])).to.deep.equal([['short', 'LEASE_EXPIRED']]);
    });

    it('treats a retried write whose first attempt landed as done (enqueue, claim, complete)', async function () {
      // After the next matching write lands, its answer is "lost": the SDK retries, and the retry
      // meets a failed condition that the adapter must recognise as its own write.
      const hooks = attachWriteHooks(table.client);
      try {
        hooks.loseAnswer = once((target) => target.endsWith('.PutItem'));
        const created = await queue.enqueue({ key: 'r', request: request('r'), maxAttempts: 2 }, { limits: {} });
        expect(created.outcome).to.equal('created');
        hooks.loseAnswer = once((target) => target.endsWith('.UpdateItem'));
        const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} });
        expect(lease?.record.key).to.equal('r');
        if (lease === undefined) return;
        hooks.loseAnswer = once((target) => target.endsWith('.UpdateItem'));
        const done = await queue.complete('r', lease.token, { durationMs: 1 });
        expect(done.state).to.equal('completed');
        expect(hooks.lost).to.equal(3);
        await expect(queue.complete('r', 'another-token', { durationMs: 1 })).to.be.rejectedWith(LeaseLostError);
      } finally {
        hooks.remove();
      }
    });

    it('reports "existing" to a second process whose seq happens to equal the first one’s', async function () {
      // Seqs are clock ms plus random low bits: two processes can draw the same one. The loser of
      // the put must not take the winner's record for its own landed write.
      const peer = table.queue(clock);
      const random = Math.random;
      Math.random = () => 0.5;
      try {
        const first = await queue.enqueue({ key: 'same', request: request('same'), maxAttempts: 1 }, { limits: {} });
        const second = await peer.enqueue({ key: 'same', request: request('same'), maxAttempts: 1 }, { limits: {} });
        expect(first.outcome).to.equal('created');
        expect(second.outcome).to.equal('existing');
        expect(second.record.seq).to.equal(first.record.seq);
      } finally {
        Math.random = random;
        await peer.close();
      }
    });

    it('gives back a group slot leaked by a process that died between its two writes', async function () {
      const policies = { g: { maxConcurrent: 1 } };
      await queue.enqueue({ key: 'a', request: request('a', { group: 'g' }), maxAttempts: 1 }, { limits: {} });
      // The leak: a slot held for a request that is not running under that token.
      await table.client.send(
        new UpdateItemCommand({
          TableName: table.name,
          Key: { pk: { S: 'GROUPS' }, sk: { S: 'g' } },
          UpdateExpression: 'SET #run = :run',
          ExpressionAttributeNames: { '#run': 'run' },
          ExpressionAttributeValues: { ':run': { M: { 'dead-token': { S: 'ghost' } } } },
        }),
      );
      expect(await queue.claim({ workerId: 'w', leaseMs: 10_000, policies })).to.equal(undefined);
      await queue.sweep();
      expect(await queue.claim({ workerId: 'w', leaseMs: 10_000, policies })).to.equal(undefined);
      await clock.advance(60_000);
      await queue.sweep();
      const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies });
      expect(lease?.record.key).to.equal('a');
    });

    it('translates SDK errors into BackendError with retryable set', async function () {
      const cases: { error: Error; retryable: boolean }[] = [
        { error: sdkError('ThrottlingException', 400), retryable: true },
        { error: sdkError('ProvisionedThroughputExceededException', 400), retryable: true },
        { error: sdkError('RequestLimitExceeded', 400), retryable: true },
        { error: sdkError('InternalServerError', 500), retryable: true },
        { error: sdkError('ServiceUnavailable', 503), retryable: true },
        { error: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), retryable: true },
        { error: sdkError('TimeoutError', undefined), retryable: true },
        // Expired temporary credentials: the SDK's provider refreshes them, and the retry succeeds.
        { error: sdkError('ExpiredTokenException', 400), retryable: true },
        { error: sdkError('AccessDeniedException', 403), retryable: false },
        { error: sdkError('ValidationException', 400), retryable: false },
        { error: sdkError('ResourceNotFoundException', 400), retryable: false },
      ];
      for (const { error, retryable } of cases) {
        const name = 'armlibInjectFault';
        table.client.middlewareStack.add(() => () => Promise.reject(error), {
          step: 'initialize',
          name,
          override: true,
        });
        try {
          const failure: unknown = await queue.get('x').then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(BackendError.is(failure), `${error.name} gives a BackendError`).to.equal(true);
          expect((failure as BackendError).retryable, `${error.name} retryable`).to.equal(retryable);
          expect((failure as BackendError).cause).to.equal(error);
        } finally {
          table.client.middlewareStack.remove(name);
        }
      }
      // And a real one: a table that does not exist.
      const missing = table.queue(clock, { tableName: uniqueTableName('armlib-missing') });
      const failure: unknown = await missing.get('x').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(BackendError.is(failure)).to.equal(true);
      expect((failure as BackendError).retryable).to.equal(false);
      await missing.close();
    });

    it('measures the request units of one lifecycle', async function () {
      const cost = await measureLifecycleCost(queue);
      const { total } = cost;
      console.log(
        `      [${kind}] lifecycle: ${String(total.requests)} requests, ${String(total.writeUnits)} WCU, ${String(total.readUnits)} RCU, ${String(total.scans)} scans; ` +
          Object.entries(cost.steps)
            .map(([s, t]) => `${s} ${String(t.writeUnits)}W/${String(t.readUnits)}R/${String(t.requests)}req`)
            .join(', ') +
          `; flush ${String(cost.flush.writeUnits)}W/${String(cost.flush.readUnits)}R; pending status ${String(cost.pendingStatus.readUnits)}R/${String(cost.pendingStatus.requests)}req`,
      );
      expect(total.scans).to.equal(0);
      expect(total.requests).to.be.at.least(5);
      if (kind !== 'dynalite') {
        // dynalite reports no index units; DynamoDB Local and AWS do.
        expect(total.writeUnits).to.be.at.most(8);
        expect(total.readUnits).to.be.at.most(3);
      }
    });

    it('loads as the "dynamodb" adapter through createRequestManager', async function () {
      const b = backend();
      const name = uniqueTableName();
      const manager = await createRequestManager(
        {
          queue: {
            adapter: 'dynamodb',
            options: {
              tableName: name,
              ensureTable: true,
              region: 'us-east-1',
              ...(b.endpoint === undefined ? {} : { endpoint: b.endpoint }),
              ...(b.kind === 'aws'
                ? {}
                : { clientConfig: { credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' } } }),
            },
          },
          cache: { adapter: 'memory' },
        },
        { clock },
      );
      try {
        const status = await manager.submit({ uri: '/plugin', key: 'plugin-1' });
        expect(status.state).to.equal('pending');
        expect((await manager.status('plugin-1')).position).to.be.at.least(1);
        expect((await manager.metrics()).queueLength).to.equal(1);
      } finally {
        await manager.close();
        const { deleteTable } = await import('../src/index.js');
        await deleteTable(table.client, name);
      }
    });

    describe('retried writes and races', function () {
      let hooks: WriteHooks;
      beforeEach(function () {
        hooks = attachWriteHooks(table.client);
      });
      afterEach(function () {
        hooks.remove();
      });

      /** Runs `body` with a second queue manager on the table (another process's), closed after. */
      async function withOtherProcess(body: (other: DynamoQueueManager) => Promise<void>): Promise<void> {
        const other = table.queue(clock);
        try {
          await body(other);
        } finally {
          await other.close();
        }
      }

      it('keeps maxConcurrent when two processes race for one request and the one whose slot came second loses', async function () {
        const policies = { g: { maxConcurrent: 2 } };
        const options = { workerId: 'w', leaseMs: 60_000, policies };
        for (const key of ['a', 'b', 'c']) {
          await queue.enqueue({ key, request: request(key, { group: 'g' }), maxAttempts: 1 }, { limits: {} });
          await clock.advance(1);
        }
        // The first claim of `a` to reach the middleware (either process's: the two race) reaches the
        // table only after the other process took its own slot for `a`; the second claim of `a` only
        // after the first landed, so the process whose slot came second loses `a`.
        const otherSlotTaken = deferred();
        const firstClaimLanded = deferred();
        let claimsOfA = 0;
        let slotsForA = 0;
        const race = addMiddleware(table.client, async (target, body, send) => {
          const update = target.endsWith('.UpdateItem');
          const claimOfA = update && body.includes('"K#a"') && body.includes('"running"');
          const slotForA = update && body.includes('"GROUPS"') && body.includes('"a"');
          if (claimOfA && ++claimsOfA === 1) {
            await otherSlotTaken.promise;
            const out = await send();
            firstClaimLanded.resolve();
            return out;
          }
          if (claimOfA) await firstClaimLanded.promise;
          const out = await send();
          if (slotForA && ++slotsForA === 2) otherSlotTaken.resolve();
          return out;
        });
        try {
          await withOtherProcess(async (other) => {
            const [mine, theirs] = await Promise.all([queue.claim(options), other.claim(options)]);
            // One wins `a`; the other, having lost it, takes `b`.
            expect([mine?.record.key, theirs?.record.key].sort()).to.deep.equal(['a', 'b']);
            expect(claimsOfA, 'both tried a').to.equal(2);
            // Two run in g: no third claim, from either process.
            expect(await queue.claim(options)).to.equal(undefined);
            expect(await other.claim(options)).to.equal(undefined);
          });
        } finally {
          race.remove();
        }
        expect((await queue.get('c'))?.state).to.equal('pending');
      });

      it('reads as paused after a resume that failed half-way, and a second resume finishes it', async function () {
        await queue.enqueue({ key: 'held', request: request('held'), maxAttempts: 1 }, { limits: {} });
        await queue.setPaused(true);
        // One shard's marker cannot be removed.
        const denied = interceptOnce(
          table.client,
          (target, body) => target.endsWith('.DeleteItem') && body.includes('PAUSE#1'),
          () => Promise.reject(Object.assign(new Error('denied'), { name: 'AccessDeniedException', $metadata: {} })),
        );
        const failure: unknown = await queue.setPaused(false).then(
          () => undefined,
          (e: unknown) => e,
        );
        denied.remove();
        expect(BackendError.is(failure), String(failure)).to.equal(true);
        expect(await queue.isPaused()).to.equal(true);
        await queue.setPaused(false);
        expect(await queue.isPaused()).to.equal(false);
        expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} }))?.record.key).to.equal('held');
      });

      it('stays running when a pause marker lands after a concurrent resume from another process', async function () {
        await queue.enqueue({ key: 'held', request: request('held'), maxAttempts: 1 }, { limits: {} });
        await withOtherProcess(async (other) => {
          // The pause's marker of shard 1 reaches the table only after the other process resumed.
          const held = interceptOnce(
            table.client,
            (target, body) => target.endsWith('.PutItem') && body.includes('PAUSE#1'),
            () => other.setPaused(false),
          );
          await queue.setPaused(true);
          held.remove();
          expect(held.fired, 'the pause wrote shard 1').to.equal(true);
          // The resume began last: the queue reads as running, and claims run.
          expect(await queue.isPaused()).to.equal(false);
          expect(await other.isPaused()).to.equal(false);
          expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} }))?.record.key).to.equal('held');
        });
      });

      it('stays paused when a pause begins while a resume is still removing markers', async function () {
        await queue.enqueue({ key: 'held', request: request('held'), maxAttempts: 1 }, { limits: {} });
        await queue.setPaused(true);
        await withOtherProcess(async (other) => {
          const held = interceptOnce(
            table.client,
            (target, body) => target.endsWith('.DeleteItem') && body.includes('PAUSE#1'),
            () => other.setPaused(true),
          );
          await queue.setPaused(false);
          held.remove();
          expect(held.fired, 'the resume removed shard 1').to.equal(true);
          expect(await queue.isPaused()).to.equal(true);
          expect(await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} })).to.equal(undefined);
          await other.setPaused(false);
          expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} }))?.record.key).to.equal('held');
        });
      });

      it('removes a pause marker left by a pause that died racing a resume, on the next claim', async function () {
        await queue.enqueue({ key: 'held', request: request('held'), maxAttempts: 1 }, { limits: {} });
        await withOtherProcess(async (other) => {
          // The other process resumes before shard 1's marker lands; then the pausing process
          // fails before it can check whether a later call began (as if it died there).
          const held = interceptOnce(
            table.client,
            (target, body) => target.endsWith('.PutItem') && body.includes('PAUSE#1'),
            () => other.setPaused(false),
          );
          const check = interceptOnce(
            table.client,
            (target, body) => target.endsWith('.GetItem') && body.includes('"STATE"'),
            () => Promise.reject(Object.assign(new Error('denied'), { name: 'AccessDeniedException', $metadata: {} })),
          );
          const failure: unknown = await queue.setPaused(true).then(
            () => undefined,
            (e: unknown) => e,
          );
          held.remove();
          check.remove();
          expect([held.fired, check.fired]).to.deep.equal([true, true]);
          expect(BackendError.is(failure), String(failure)).to.equal(true);
          expect(await queue.isPaused()).to.equal(false);
          // The first claim meets the stale marker and removes it; the next one runs.
          expect(await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} })).to.equal(undefined);
          expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies: {} }))?.record.key).to.equal('held');
        });
      });

      it('takes a group slot whose write landed though its answer was lost, and leaks none', async function () {
        const policies = { g: { maxConcurrent: 1 } };
        for (const key of ['g1', 'g2']) {
          await queue.enqueue({ key, request: request(key, { group: 'g' }), maxAttempts: 2 }, { limits: {} });
        }
        hooks.loseAnswer = once(
          (target, body) =>
            target.endsWith('.UpdateItem') && body.includes('"GROUPS"') && body.includes('ConditionExpression'),
        );
        const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies });
        expect(hooks.lost, 'the slot write was retried').to.equal(1);
        expect(lease?.record.key).to.equal('g1');
        if (lease === undefined) return;
        await queue.complete('g1', lease.token, { durationMs: 1 });
        // The slot went back with the completion: the next request of the group runs at once.
        expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies }))?.record.key).to.equal('g2');
      });

      it('completes when giving the group slot back fails, and the slot is back for the next claim', async function () {
        const policies = { g: { maxConcurrent: 1 } };
        for (const key of ['g1', 'g2']) {
          await queue.enqueue({ key, request: request(key, { group: 'g' }), maxAttempts: 2 }, { limits: {} });
        }
        const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies });
        expect(lease?.record.key).to.equal('g1');
        if (lease === undefined) return;
        const fault = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('GROUPS'),
        );
        try {
          // The record write committed: complete reports it, the slot write's failure is not its.
          const done = await queue.complete('g1', lease.token, { durationMs: 1 });
          expect(fault.fired).to.equal(true);
          expect(done.state).to.equal('completed');
        } finally {
          fault.remove();
        }
        expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies }))?.record.key).to.equal('g2');
      });

      it('reports every sweep transition when giving a group slot back fails', async function () {
        const policies = { g: { maxConcurrent: 1 } };
        await queue.enqueue(
          { key: 'lapse', request: request('lapse', { group: 'g' }), maxAttempts: 3 },
          { limits: {} },
        );
        await queue.enqueue(
          { key: 'stale', request: request('stale'), maxAttempts: 1, pendingExpiresAt: clock.now() + 1_000 },
          { limits: {} },
        );
        expect((await queue.claim({ workerId: 'w', leaseMs: 1_000, policies, groups: ['g'] }))?.record.key).to.equal(
          'lapse',
        );
        await clock.advance(2_000);
        const fault = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('GROUPS'),
        );
        try {
          const swept = await queue.sweep();
          expect(fault.fired).to.equal(true);
          expect(swept.requeued.map((r) => r.key)).to.deep.equal(['lapse']);
          expect(swept.expired.map((r) => r.key)).to.deep.equal(['stale']);
        } finally {
          fault.remove();
        }
        expect((await queue.claim({ workerId: 'w', leaseMs: 1_000, policies, groups: ['g'] }))?.record.key).to.equal(
          'lapse',
        );
      });

      it('gives the group slot back when the claim of the record fails, and keeps a claim that landed', async function () {
        const policies = { g: { maxConcurrent: 1 }, h: { maxConcurrent: 1 } };
        for (const [key, group] of [
          ['x', 'g'],
          ['y', 'g'],
          ['h1', 'h'],
          ['h2', 'h'],
        ] as const) {
          await queue.enqueue({ key, request: request(key, { group }), maxAttempts: 2 }, { limits: {} });
        }
        const claimOf = (key: string) => (command: string, input: string) =>
          command === 'UpdateItemCommand' && input.includes(`K#${key}`);
        // The record's update fails before it reaches the table: the slot goes back.
        const failed = failOnce(table.client, claimOf('x'));
        try {
          const failure: unknown = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['g'] }).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(failed.fired).to.equal(true);
          expect(BackendError.is(failure), String(failure)).to.equal(true);
        } finally {
          failed.remove();
        }
        expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['g'] }))?.record.key).to.equal(
          'x',
        );
        // The record's update lands and then fails: the claim is this call's, and holds the slot.
        const landed = failOnce(table.client, claimOf('h1'), 'after');
        let lease: Awaited<ReturnType<DynamoQueueManager['claim']>>;
        try {
          lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['h'] });
          expect(landed.fired).to.equal(true);
        } finally {
          landed.remove();
        }
        expect(lease?.record.key).to.equal('h1');
        if (lease === undefined) return;
        expect(await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['h'] })).to.equal(undefined);
        await queue.complete('h1', lease.token, { durationMs: 1 });
        expect((await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['h'] }))?.record.key).to.equal(
          'h2',
        );
      });

      it('takes a finishing write whose answer was lost for its own when the worker calls again, and frees the slot', async function () {
        // The worker runtime calls complete/fail again after a retryable error: a new call, after
        // the SDK's retries. When the first call's write had landed, that is a success, not a lost lease.
        const policies = { g: { maxConcurrent: 1 } };
        for (const key of ['c', 'r', 'f', 'x', 'next']) {
          await queue.enqueue({ key, request: request(key, { group: 'g' }), maxAttempts: 2 }, { limits: {} });
        }
        const writeOf = (key: string) => (command: string, input: string) =>
          command === 'UpdateItemCommand' && input.includes(`K#${key}`);
        const claimNext = async (expected: string): Promise<string> => {
          const lease = await queue.claim({ workerId: 'w', leaseMs: 10_000, policies, groups: ['g'] });
          expect(lease?.record.key, 'the group slot is free again').to.equal(expected);
          return lease?.token ?? '';
        };
        const lostOnce = async (key: string, call: () => Promise<unknown>): Promise<void> => {
          const lost = failOnce(table.client, writeOf(key), 'after');
          try {
            const first = await call().then(
              () => undefined,
              (e: unknown) => e,
            );
            expect(lost.fired, `the write of ${key} was intercepted`).to.equal(true);
            expect(BackendError.is(first) && first.retryable, String(first)).to.equal(true);
          } finally {
            lost.remove();
          }
        };

        let token = await claimNext('c');
        const complete = () => queue.complete('c', token, { durationMs: 5 });
        await lostOnce('c', complete);
        expect((await complete()).state).to.equal('completed');
        // Once done, the lease has ended: a further call is refused.
        const again = await complete().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(LeaseLostError.is(again), String(again)).to.equal(true);

        token = await claimNext('r');
        const retry = () =>
          queue.fail('r', token, {
            retryAt: clock.now() + 60_000,
            error: { code: 'X', message: 'again', retryable: true },
          });
        await lostOnce('r', retry);
        expect((await retry()).state).to.equal('pending');

        token = await claimNext('f');
        const fail = () => queue.fail('f', token, { error: { code: 'X', message: 'gave up', retryable: false } });
        await lostOnce('f', fail);
        expect((await fail()).state).to.equal('failed');

        // A retry that meets a cancel request finishes the run as cancelled; that write lands, its
        // answer is lost, and the worker's retry of the same call must find it.
        token = await claimNext('x');
        expect((await queue.cancel('x', {})).outcome).to.equal('requested');
        const retryX = () =>
          queue.fail('x', token, {
            retryAt: clock.now() + 60_000,
            error: { code: 'X', message: 'again', retryable: true },
          });
        const lostCancel = failOnce(
          table.client,
          (command, input) => command === 'UpdateItemCommand' && input.includes('K#x') && input.includes('cancelled'),
          'after',
        );
        try {
          const first = await retryX().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(lostCancel.fired).to.equal(true);
          expect(BackendError.is(first) && first.retryable, String(first)).to.equal(true);
        } finally {
          lostCancel.remove();
        }
        expect((await retryX()).state).to.equal('cancelled');

        await claimNext('next');
        // A stale token is still refused: the landed write is recognised by its own lease only.
        const stale = await queue.complete('c', 'not-the-token', { durationMs: 1 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(LeaseLostError.is(stale), String(stale)).to.equal(true);
      });

      it('reports the transitions a sweep wrote before a write failed, as a part, and the rest next time', async function () {
        for (const key of ['a', 'b', 'c']) {
          await queue.enqueue({ key, request: request(key), maxAttempts: 3 }, { limits: {} });
        }
        expect(await queue.claimMany({ workerId: 'w', leaseMs: 1_000, policies: {} }, 3)).to.have.length(3);
        await clock.advance(5_000);
        // The sweep's second lease expiry fails before it reaches the table.
        let updates = 0;
        const failing = failOnce(table.client, (command) => command === 'UpdateItemCommand' && ++updates === 2);
        let first: Awaited<ReturnType<DynamoQueueManager['sweep']>>;
        try {
          first = await queue.sweep();
          expect(failing.fired).to.equal(true);
        } finally {
          failing.remove();
        }
        expect(first.requeued).to.have.length(1);
        expect(first.more).to.equal(true);
        const second = await queue.sweep();
        const told = [...first.requeued, ...second.requeued].map((r) => r.key).sort();
        expect(told).to.deep.equal(['a', 'b', 'c']);
        for (const key of told) expect((await queue.get(key))?.state).to.equal('pending');
      });

      it('reports a sweep transition and a cancel whose write landed though the answer was lost', async function () {
        const policies = { g: { maxConcurrent: 1 } };
        await queue.enqueue(
          { key: 'lapse', request: request('lapse', { group: 'g' }), maxAttempts: 3 },
          { limits: {} },
        );
        await queue.enqueue(
          { key: 'stale', request: request('stale'), maxAttempts: 1, pendingExpiresAt: clock.now() + 1_000 },
          { limits: {} },
        );
        await queue.enqueue({ key: 'drop', request: request('drop'), maxAttempts: 1 }, { limits: {} });
        expect((await queue.claim({ workerId: 'w', leaseMs: 1_000, policies, groups: ['g'] }))?.record.key).to.equal(
          'lapse',
        );
        await clock.advance(2_000);
        let lost = 0;
        hooks.loseAnswer = (target, body) =>
          target.endsWith('.UpdateItem') && (body.includes('K#lapse') || body.includes('K#stale')) && ++lost <= 2;
        const swept = await queue.sweep();
        expect(hooks.lost).to.equal(2);
        expect(swept.requeued.map((r) => r.key)).to.deep.equal(['lapse']);
        expect(swept.expired.map((r) => r.key)).to.deep.equal(['stale']);
        // The requeue gave the group's slot back.
        expect((await queue.claim({ workerId: 'w', leaseMs: 1_000, policies, groups: ['g'] }))?.record.key).to.equal(
          'lapse',
        );
        hooks.loseAnswer = once((target, body) => target.endsWith('.UpdateItem') && body.includes('K#drop'));
        const cancelled = await queue.cancel('drop', {});
        expect(hooks.lost).to.equal(3);
        expect(cancelled.outcome).to.equal('cancelled');
      });

      it('reports "created" for an enqueue whose put landed and was claimed before the retry', async function () {
        const peer = table.queue(clock);
        try {
          hooks.loseAnswer = once((target, body) => target.endsWith('.PutItem') && body.includes('K#mine'));
          hooks.afterLanding = () => peer.claim({ workerId: 'peer', leaseMs: 10_000, policies: {} });
          const result = await queue.enqueue({ key: 'mine', request: request('mine'), maxAttempts: 1 }, { limits: {} });
          expect(hooks.lost).to.equal(1);
          expect(result.outcome).to.equal('created');
          expect((await queue.get('mine'))?.state).to.equal('running');
        } finally {
          await peer.close();
        }
      });

      it('does not queue again a request whose enqueue landed, ran and finished before the retry', async function () {
        const peer = table.queue(clock);
        try {
          hooks.loseAnswer = once((target, body) => target.endsWith('.PutItem') && body.includes('K#fast'));
          hooks.afterLanding = async () => {
            const lease = await peer.claim({ workerId: 'peer', leaseMs: 10_000, policies: {} });
            if (lease !== undefined) await peer.complete('fast', lease.token, { durationMs: 1 });
          };
          const result = await queue.enqueue({ key: 'fast', request: request('fast'), maxAttempts: 1 }, { limits: {} });
          expect(hooks.lost).to.equal(1);
          expect(result.outcome).to.equal('created');
          const record = await queue.get('fast');
          expect(record?.state).to.equal('completed');
          expect(record?.attempts).to.equal(1);
          // A later submit of the key (another enqueue) still replaces the finished record.
          const again = await queue.enqueue({ key: 'fast', request: request('fast'), maxAttempts: 1 }, { limits: {} });
          expect(again.outcome).to.equal('created');
          expect((await queue.get('fast'))?.state).to.equal('pending');
        } finally {
          await peer.close();
        }
      });

      it('keeps a cancel requested between the sweep reading an expired lease and writing it', async function () {
        const peer = table.queue(clock);
        try {
          await queue.enqueue({ key: 'race', request: request('race'), maxAttempts: 3 }, { limits: {} });
          await queue.claim({ workerId: 'w', leaseMs: 1_000, policies: {} });
          await clock.advance(2_000);
          let requested: string | undefined;
          hooks.before = async (target, body) => {
            if (!target.endsWith('.UpdateItem') || !body.includes('K#race')) return false;
            requested = (await peer.cancel('race', {})).outcome;
            return true;
          };
          const swept = await queue.sweep();
          expect(requested).to.equal('requested');
          expect(swept.requeued).to.have.length(0);
          expect(swept.cancelled.map((r) => r.key)).to.deep.equal(['race']);
          expect((await queue.get('race'))?.state).to.equal('cancelled');
        } finally {
          await peer.close();
        }
      });

      it('leaves a request past its pending deadline to the sweep, unclaimed', async function () {
        await queue.enqueue(
          { key: 'late', request: request('late'), maxAttempts: 1, pendingExpiresAt: clock.now() + 1_000 },
          { limits: {} },
        );
        await clock.advance(2_000);
        expect(await queue.claim({ workerId: 'w', leaseMs: 1_000, policies: {} })).to.equal(undefined);
        expect((await queue.sweep()).expired.map((r) => r.key)).to.deep.equal(['late']);
      });

      it('lists every record across pages when two of them share a seq', async function () {
        const peer = table.queue(clock);
        const random = Math.random;
        Math.random = () => 0.5;
        try {
          for (const [q, key] of [
            [queue, 'same-a'],
            [peer, 'same-b'],
            [queue, 'same-c'],
          ] as const) {
            await q.enqueue({ key, request: request(key), maxAttempts: 1 }, { limits: {} });
          }
        } finally {
          Math.random = random;
          await peer.close();
        }
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await queue.list({ limit: 1, ...(cursor === undefined ? {} : { cursor }) });
          seen.push(...page.items.map((r) => r.key));
          cursor = page.cursor;
        } while (cursor !== undefined);
        expect([...seen].sort()).to.deep.equal(['same-a', 'same-b', 'same-c']);
      });
    });
  });
}

/** Hooks on the writes a client sends, for the windows between a write and its answer. */
interface WriteHooks {
  /** A write this matches lands, then its answer is lost (the SDK retries it). */
  loseAnswer: ((target: string, body: string) => boolean) | undefined;
  /** Answers lost so far. */
  lost: number;
  /** Runs after a write whose answer is lost has landed, before the retry. */
  afterLanding: (() => Promise<unknown>) | undefined;
  /** Runs before each command until it returns true. */
  before: ((target: string, body: string) => Promise<boolean>) | undefined;
  remove(): void;
}

/**
 * Holds the first command `match` accepts until `action` settles (a failed action fails the
 * command); every other command, including those `action` sends, passes straight through.
 */
function interceptOnce(
  client: DynamoDBClient,
  match: (target: string, body: string) => boolean,
  action: () => Promise<unknown>,
): { readonly fired: boolean; remove(): void } {
  let fired = false;
  const middleware = addMiddleware(client, async (target, body, send) => {
    if (!fired && match(target, body)) {
      fired = true;
      await action();
    }
    return send();
  });
  return {
    get fired() {
      return fired;
    },
    remove: () => {
      middleware.remove();
    },
  };
}
let intercepts = 0;

/**
 * Fails the first command `match` accepts (by command name and input) with a throttling error,
 * `before` it reaches the table or `after` it landed. Above the SDK's retries: it fails once.
 */
function failOnce(
  client: DynamoDBClient,
  match: (command: string, input: string) => boolean,
  when: 'before' | 'after' = 'before',
): { readonly fired: boolean; remove(): void } {
  const name = `armlibFailOnce${String(++intercepts)}`;
  const state = { fired: false, remove: () => client.middlewareStack.remove(name) };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const hit =
        !state.fired && match(context.commandName ?? '', JSON.stringify((args as { input?: unknown }).input ?? null));
      if (hit) state.fired = true;
      if (hit && when === 'before') throw sdkError('ThrottlingException', 400);
      const result = await next(args);
      if (hit) throw sdkError('ThrottlingException', 400);
      return result;
    },
    { step: 'initialize', name, override: true },
  );
  return state;
}

/** A predicate true for the first command it matches only. */
function once(match: (target: string, body: string) => boolean): (target: string, body: string) => boolean {
  let used = false;
  return (target, body) => {
    if (used || !match(target, body)) return false;
    used = true;
    return true;
  };
}

function attachWriteHooks(client: DynamoDBClient): WriteHooks {
  const hooks: WriteHooks = {
    loseAnswer: undefined,
    lost: 0,
    afterLanding: undefined,
    before: undefined,
    remove: () => {
      middleware.remove();
    },
  };
  const middleware = addMiddleware(client, async (target, body, send) => {
    const before = hooks.before;
    if (before !== undefined) {
      // Unset while it runs: what it sends itself goes through here too.
      hooks.before = undefined;
      if (!(await before(target, body))) hooks.before ??= before;
    }
    const result = await send();
    const lose = hooks.loseAnswer;
    if (lose !== undefined && lose(target, body)) {
      hooks.lost++;
      const after = hooks.afterLanding;
      hooks.afterLanding = undefined;
      await after?.();
      throw Object.assign(new Error('connection reset after the write'), {
        name: 'TimeoutError',
        code: 'ECONNRESET',
        $metadata: {},
      });
    }
    return result;
  });
  return hooks;
}

function rawKey(key: string): Record<string, { S: string }> {
  // Default layout: 16 record partitions.
  return { pk: { S: recordPk(key, 16) }, sk: { S: recordSk(key) } };
}

function sdkError(name: string, status: number | undefined): Error {
  return Object.assign(new Error(`injected ${name}`), {
    name,
    $fault: status !== undefined && status >= 500 ? 'server' : 'client',
    $metadata: status === undefined ? {} : { httpStatusCode: status },
  });
}

/** A promise and the function that resolves it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
