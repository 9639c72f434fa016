/**
 * Issue #4, point 6: a 1,000-request run in which about 10% of DynamoDB SDK calls fail —
 * throttling, 5xx, timeouts and dropped connections, before or after the request reached the
 * server — injected by client middleware with a seeded PRNG.
 *
 * Where the faults go: in the `deserialize` step, below the SDK's retry layer. The API host and
 * two worker hosts use clients with `maxAttempts: 1`, so every injected fault reaches armlib (the
 * point is armlib's behaviour: core's worker loop and sweeps must cope). Two more worker hosts
 * keep the SDK's default retry (3 attempts): there the SDK hides most faults, but a write applied
 * and then answered by a fault is sent again by the SDK and fails its own condition — the case
 * that conditional writes must survive.
 *
 * All hosts run in this process (one clock): the lease-holder check compares lease expiries the
 * holders were told with the times of later claims on that one clock.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { expect } from 'chai';

import { BackendError, buildRequestManager, MemoryCacheManager, readAll, SystemClock } from '@armlib/core';
import type { BatchRequest, CacheManager, Job, QueueRecord, RequestManager, Worker } from '@armlib/core';

import { DynamoQueueManager } from '../../src/index.js';
import { createTestTable, useBackend } from '../harness/fixture.js';
import type { TestTable } from '../harness/fixture.js';
import { heavyTestBackends } from '../multi-host/support/backends.js';
import { pollUntil } from '@armlib/conformance';

import { debug } from '../multi-host/support/debug.js';
import { holderViolations, leaseHistories } from '../multi-host/support/trace.js';
import type { TraceEvent } from '../multi-host/support/trace.js';
import { TracingQueue } from '../multi-host/support/tracing-queue.js';
import { FaultInjector } from './support/faults.js';
import type { Fault } from './support/faults.js';

/** 1,000 as the issue asks; smaller only to debug a failure faster. */
const REQUESTS = Number(process.env['ARMLIB_FAULT_RUN_REQUESTS'] ?? '1000');
const FAULT_RATE = 0.1;
const SEED = Number(process.env['ARMLIB_FAULT_SEED'] ?? '20261123');
const SETTINGS = {
  leaseMs: 1_500,
  // Idle polls and sweeps of five hosts are most of the emulator's load: not more often than needed.
  pollMs: 250,
  sweepMs: 2_000,
  // Lost claim answers and lost completions each cost an attempt (the lease runs out): room for several.
  maxAttempts: 10,
  retryBaseMs: 50,
  retryMaxMs: 400,
  // No queue cap: with one, each enqueue that finds the adapter's live-count snapshot stale reads
  // the whole work index (concurrent submits each do it), which dominates a 1,000-request burst on
  // an emulator; caps are not what this run is about.
  maxQueueLength: 0,
};
const CONCURRENCY = 8;
const RUN_DEADLINE_MS = 300_000;
const FAKE_CREDENTIALS = { accessKeyId: 'fake', secretAccessKey: 'fake' };

/** A cache several managers share; only the test closes it. */
function sharedCache(cache: CacheManager): CacheManager {
  return new Proxy(cache, {
    get(target, prop) {
      if (prop === 'close') return () => Promise.resolve();
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An error as the fault check sees it. */
interface Surfaced {
  readonly where: string;
  readonly error: unknown;
}

function describeError(e: Surfaced): string {
  const error = e.error;
  const name = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const retryable = BackendError.is(error) ? ` retryable=${String(error.retryable)}` : '';
  return `${e.where}: ${name}${retryable}`;
}

/** Name (or errno code) of the SDK error behind an armlib error. */
function causeName(error: unknown): string | undefined {
  const cause = error instanceof Error ? (error.cause as { name?: unknown; code?: unknown } | undefined) : undefined;
  if (cause === undefined) return undefined;
  if (typeof cause.code === 'string') return cause.code;
  return typeof cause.name === 'string' ? cause.name : undefined;
}

for (const kind of heavyTestBackends()) {
  describe(`dynamodb (${kind}): faults`, function () {
    // Registered first, so its after hook (stopping the emulator) runs after the nested one's.
    const backend = useBackend(kind);

    describe('SDK calls failing under a running system', function () {
      // A guard, not a target: ~3 to 4 minutes on a 2-core machine loaded by other jobs (load average
      // 12 to 17), where the emulator answers ~30 times slower than idle.
      this.timeout(420_000);
      const clock = new SystemClock();
      const clients: DynamoDBClient[] = [];
      const managers: RequestManager[] = [];
      const workers: Worker[] = [];
      const cache = new MemoryCacheManager({}, clock);
      let table: TestTable | undefined;
      const ownTables: TestTable[] = [];

      function client(maxAttempts: number, injector: FaultInjector): DynamoDBClient {
        const endpoint = backend().endpoint;
        // More sockets than the default 50: a host submitting 20 requests at once has ~100 calls in flight.
        const requestHandler = { httpAgent: { keepAlive: true, maxSockets: 128 } };
        const c =
          endpoint === undefined
            ? new DynamoDBClient({ maxAttempts, requestHandler })
            : new DynamoDBClient({
                endpoint,
                region: 'us-east-1',
                credentials: FAKE_CREDENTIALS,
                maxAttempts,
                requestHandler,
              });
        injector.attach(c);
        clients.push(c);
        return c;
      }

      function tableName(): string {
        if (table === undefined) throw new Error('no table');
        return table.name;
      }

      before(async function () {
        this.timeout(120_000);
        table = await createTestTable(backend());
      });

      after(async function () {
        this.timeout(60_000);
        try {
          await Promise.allSettled(workers.map((w) => w.stop({ graceMs: 0 })));
          await Promise.allSettled(managers.map((m) => m.close()));
          await cache.close();
        } finally {
          for (const c of clients) c.destroy();
          await table?.drop();
          await Promise.allSettled(ownTables.map((t) => t.drop()));
        }
      });

      it('loses nothing, never has two live holders, and surfaces every failure as a retryable BackendError', async function () {
        const traces: TraceEvent[] = [];
        const surfaced: Surfaced[] = [];
        const injectors: FaultInjector[] = [];

        /** One host: its own client (with faults), queue and manager; the cache is shared. */
        function host(name: string, sdkAttempts: number): RequestManager {
          const injector = new FaultInjector(SEED + injectors.length, FAULT_RATE);
          injectors.push(injector);
          const queue = new TracingQueue(
            new DynamoQueueManager({ client: client(sdkAttempts, injector), tableName: tableName() }, clock),
            (event) => traces.push({ ...event, source: name, pid: process.pid }),
          );
          const manager = buildRequestManager({ queue, cache: sharedCache(cache), clock, settings: SETTINGS });
          manager.events.on('error', ({ error, context }) => surfaced.push({ where: `${name}: ${context}`, error }));
          managers.push(manager);
          return manager;
        }

        async function handler(job: Job, name: string): Promise<void> {
          // One request in ten runs long enough for a few heartbeats (each can fail too).
          const n = Number(/\d+$/.exec(job.key)?.[0] ?? '0');
          await delay(n % 10 === 0 ? 700 : 5);
          await job.write('csv', `${job.key},${String(job.attempt)},${name}\n`);
        }

        const api = host('api', 1);
        const hosts: [string, number][] = [
          ['worker-raw-1', 1],
          ['worker-raw-2', 1],
          ['worker-sdk-retry-1', 3],
          ['worker-sdk-retry-2', 3],
        ];
        for (const [name, attempts] of hosts) {
          workers.push(host(name, attempts).process((job) => handler(job, name), { concurrency: CONCURRENCY }));
        }

        // The API host submits everything, 20 at a time; a caller retries a retryable failure.
        const requests: BatchRequest[] = Array.from({ length: REQUESTS }, (_, i) => ({
          uri: '/fault-run',
          key: `fr-${String(i)}`,
        }));
        let submitRetries = 0;
        for (let i = 0; i < requests.length; i += 20) {
          if (i % 100 === 0) debug(`submitting from ${String(i)}`);
          await Promise.all(
            requests.slice(i, i + 20).map(async (request) => {
              for (let attempt = 1; ; attempt++) {
                try {
                  await api.submit(request);
                  return;
                } catch (error) {
                  surfaced.push({ where: `api: submit ${String(request.key)}`, error });
                  if (!BackendError.is(error) || !error.retryable || attempt >= 20) {
                    debug(`submit of ${String(request.key)} gave up at attempt ${String(attempt)}: ${String(error)}`);
                    throw error;
                  }
                  submitRetries++;
                  await delay(20 * attempt);
                }
              }
            }),
          );
        }
        debug(`submitted ${String(REQUESTS)} (${String(submitRetries)} submit retries)`);

        // Nothing lost: every request completes (sweeps requeue leases whose claim or completion was lost).
        if (table === undefined) throw new Error('no table');
        const verifyQueue = new DynamoQueueManager({ client: table.client, tableName: table.name }, clock);
        try {
          let last = '';
          await pollUntil(
            async () => {
              const counts = await verifyQueue.counts();
              last = JSON.stringify(counts.byState);
              debug(`counts ${last}`);
              return counts.byState.completed === REQUESTS;
            },
            {
              what: `all ${String(REQUESTS)} requests to complete`,
              timeoutMs: RUN_DEADLINE_MS,
              intervalMs: 500,
              describe: () => last,
            },
          );
          debug(`all completed; faults injected: ${String(injectors.reduce((n, i) => n + i.count(), 0))}`);
          await Promise.all(workers.map((w) => w.stop({ graceMs: 5_000 })));

          const counts = await verifyQueue.counts();
          expect(counts.byState).to.deep.include({
            completed: REQUESTS,
            pending: 0,
            running: 0,
            failed: 0,
            cancelled: 0,
            expired: 0,
          });
          // The visible result of each request is the one of its last claim (which completed it): no
          // earlier holder's output landed, whatever was lost on the way.
          const wrong: string[] = [];
          const records = new Map<string, QueueRecord>();
          let cursor: string | undefined;
          do {
            const page = await verifyQueue.list(cursor === undefined ? { limit: 500 } : { limit: 500, cursor });
            for (const r of page.items) records.set(r.key, r);
            cursor = page.cursor;
          } while (cursor !== undefined);
          for (const request of requests) {
            const key = request.key ?? '';
            const record = records.get(key);
            const body = await cache.get(key, 'csv');
            const text = body === undefined ? '' : Buffer.from(await readAll(body.body)).toString('utf8');
            const attempt = Number(text.split(',')[1]);
            if (record?.state !== 'completed' || attempt !== record.attempts) {
              wrong.push(
                `${key}: record ${String(record?.state)} attempts ${String(record?.attempts)}, result ${JSON.stringify(text)}`,
              );
            }
          }
          expect(
            wrong.slice(0, 10),
            `${String(wrong.length)} requests whose result is not the last claim's`,
          ).to.deep.equal([]);
        } finally {
          await verifyQueue.close();
        }

        // Never two live holders (by the lease times each holder was told).
        const histories = leaseHistories(traces);
        expect(histories.size).to.equal(REQUESTS);
        expect(holderViolations(histories).slice(0, 10)).to.deep.equal([]);

        // Every failure a caller or a worker saw is a BackendError, retryable (all injected faults are transient).
        const bad = surfaced.filter((e) => !BackendError.is(e.error) || !e.error.retryable);
        expect(bad.slice(0, 10).map(describeError), 'errors that are not retryable BackendErrors').to.deep.equal([]);
        const byCause = new Map<string, number>();
        for (const e of surfaced) {
          const name = causeName(e.error) ?? 'none';
          byCause.set(name, (byCause.get(name) ?? 0) + 1);
        }
        debug(`surfaced errors by cause: ${JSON.stringify([...byCause])}`);
        for (const name of ['ThrottlingException', 'InternalServerError', 'TimeoutError', 'ECONNRESET']) {
          expect(byCause.get(name) ?? 0, `errors surfaced with cause ${name}`).to.be.greaterThan(0);
        }

        // The run did exercise what it claims to: ~10% of calls failed, many of them after the write was applied.
        const calls = injectors.reduce((n, i) => n + i.calls, 0);
        const injected = injectors.reduce((n, i) => n + i.count(), 0);
        expect(injected / calls).to.be.within(0.07, 0.13);
        const afterApplied = (command: string): number =>
          injectors.reduce((n, i) => {
            let k = 0;
            for (const [name, c] of i.injected) {
              if (name.includes(command) && /-after /.test(name)) k += c;
            }
            return n + k;
          }, 0);
        debug(
          `calls ${String(calls)}, injected ${String(injected)}, after-applied UpdateItem ${String(afterApplied('UpdateItem'))} PutItem ${String(afterApplied('PutItem'))}; ${JSON.stringify(injectors.flatMap((i) => [...i.injected]))}`,
        );
        expect(
          afterApplied('UpdateItem'),
          'conditional updates whose answer was lost after they applied',
        ).to.be.greaterThan(10);
        expect(afterApplied('PutItem'), 'enqueues whose answer was lost after they applied').to.be.greaterThan(0);
      });

      it('maps each kind of failure of a control call to BackendError with the right retryable flag', async function () {
        const injector = new FaultInjector(SEED, 0);
        // A table of its own: nothing of the long run (even one that failed) is in the way.
        const own = await createTestTable(backend());
        ownTables.push(own);
        // No timers of its own that could take the one-shot faults: sweeps and counter flushes far apart.
        const queue = new DynamoQueueManager(
          { client: client(1, injector), tableName: own.name, flushIntervalMs: 3_600_000 },
          clock,
        );
        const manager = buildRequestManager({
          queue,
          cache: sharedCache(cache),
          clock,
          settings: { ...SETTINGS, sweepMs: 3_600_000 },
        });
        managers.push(manager);
        const key = 'fr-control';
        await manager.submit({ uri: '/fault-run', key });

        async function failure(fault: Fault, call: () => Promise<unknown>, command?: RegExp): Promise<BackendError> {
          injector.failNext(fault, command);
          try {
            await call();
          } catch (error) {
            expect(BackendError.is(error), `${fault}: ${String(error)}`).to.equal(true);
            return error as BackendError;
          }
          throw new Error(`${fault}: the call succeeded`);
        }

        const cases: [Fault, boolean, string, () => Promise<unknown>][] = [
          ['access-denied', false, 'AccessDeniedException', () => manager.cancel(key)],
          ['validation', false, 'ValidationException', () => manager.status(key)],
          ['throttling', true, 'ThrottlingException', () => manager.status(key)],
          ['throughput', true, 'ProvisionedThroughputExceededException', () => manager.cancel(key)],
          ['internal-500', true, 'InternalServerError', () => manager.status(key)],
          ['unavailable-503', true, 'Unknown', () => manager.status(key)],
          ['timeout', true, 'TimeoutError', () => manager.submit({ uri: '/fault-run', key: 'fr-control-2' })],
          ['reset', true, 'ECONNRESET', () => manager.submit({ uri: '/fault-run', key: 'fr-control-2' })],
        ];
        for (const [fault, retryable, cause, call] of cases) {
          const error = await failure(fault, call);
          expect(error.retryable, `${fault} retryable`).to.equal(retryable);
          expect(causeName(error), `${fault} cause`).to.equal(cause);
        }

        // A submit whose write applied but whose answer was lost: the caller's retry finds the one entry.
        const lost = await failure(
          'reset-after',
          () => manager.submit({ uri: '/fault-run', key: 'fr-control-3' }),
          /PutItem/,
        );
        expect(lost.retryable).to.equal(true);
        const again = await manager.submit({ uri: '/fault-run', key: 'fr-control-3' });
        expect(again.state).to.equal('pending');
        // One entry each; fr-control-2 never reached the table.
        const pending = (await manager.list({ state: 'pending', limit: 1000 })).items.map((s) => s.key);
        expect(pending.filter((k) => k.startsWith('fr-control')).sort()).to.deep.equal(['fr-control', 'fr-control-3']);

        // A pause whose write failed is reported as failed; a retry pauses, and resume undoes it.
        const pauseError = await failure('access-denied', () => manager.pause());
        expect(pauseError.retryable).to.equal(false);
        await manager.pause();
        expect((await manager.metrics()).pause).to.equal('paused');
        await manager.resume();
        expect((await manager.metrics()).pause).to.equal('running');
      });
    });
  });
}
