/**
 * Issue #4, point 4: four worker processes (and the test process) share one DynamoDB table and
 * one file cache directory, as four worker hosts and an API host would. Every claim, fenced call
 * and handler start/end is reported to the test, which checks the lease discipline from it.
 *
 * The cache is `FileCacheManager` on one temporary directory: results committed by one process
 * are seen by every other (submit finds them, the test reads them), which is what dedupe across
 * processes needs.
 */
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { buildRequestManager, keyOf, readAll, SystemClock } from '@armlib/core';
import type { BatchRequest, QueueRecord, RequestManager } from '@armlib/core';
import { FileCacheManager } from '@armlib/file';

import { DynamoQueueManager } from '../../src/index.js';
import { createTestTable, useBackend } from '../harness/fixture.js';
import type { TestTable } from '../harness/fixture.js';
import { heavyTestBackends } from './support/backends.js';
import { ChildPool } from './support/child-pool.js';
import { hostQueueOptions } from './support/host-options.js';
import type { ChildHandle } from './support/child-pool.js';
import { pollUntil } from '@armlib/conformance';

import { debug } from './support/debug.js';
import { takeoverMarker, URI } from './support/protocol.js';
import { retryingBackend } from './support/retry.js';
import type { ChildConfig, JobReport, ProbeReply, SubmitReply } from './support/protocol.js';
import { holderViolations, leaseHistories } from './support/trace.js';
import type { TraceEvent } from './support/trace.js';
import { TracingQueue } from './support/tracing-queue.js';

const WORKERS = 4;
/**
 * Short leases so a stalled worker loses its lease in seconds (heartbeats every ~1.3 s), yet long
 * enough that a claim slowed down by a loaded emulator still hands out a usable lease: the adapter
 * counts the lease from the start of the claim call, before its index Queries and retries.
 */
const LEASE_MS = 4_000;
/** Idle polls and sweeps of five processes are most of the emulator's load: not more often than needed. */
const POLL_MS = 500;
const SWEEP_MS = 2_000;
const CONCURRENCY = 2;
const MAX_ATTEMPTS = 5;
const SETTINGS = { leaseMs: LEASE_MS, pollMs: POLL_MS, sweepMs: SWEEP_MS, maxAttempts: MAX_ATTEMPTS };
/** Deadline of each wait on other processes (a loaded 2-core CI machine). */
const WAIT_MS = 40_000;

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Result line a handler wrote: `key,attempt,source,pid`. */
function parseResult(text: string): { key: string; attempt: number; source: string; pid: number } {
  const [key = '', attempt = '', source = '', pid = ''] = text.trim().split(',');
  return { key, attempt: Number(attempt), source, pid: Number(pid) };
}

for (const kind of heavyTestBackends()) {
  describe(`dynamodb (${kind}): several hosts`, function () {
    // Registered first, so its after hook (stopping the emulator) runs after the nested one's.
    const backend = useBackend(kind);
    describe('four worker processes on one table', function () {
      this.timeout(60_000);
      const pool = new ChildPool();
      const clock = new SystemClock();
      const parentErrors: string[] = [];
      let table: TestTable | undefined;
      let dir: string | undefined;
      let markerDir = '';
      let parent: RequestManager | undefined;
      let probeQueue: DynamoQueueManager | undefined;

      function api(): RequestManager {
        if (parent === undefined) throw new Error('the test manager was not built');
        return parent;
      }

      /** Queue records, read without tracing (the test's own view of the table). */
      async function record(key: string): Promise<QueueRecord | undefined> {
        if (probeQueue === undefined) throw new Error('no probe queue');
        return probeQueue.get(key);
      }

      async function allInState(keys: readonly string[], state: string, what: string): Promise<void> {
        let last = '';
        await pollUntil(
          async () => {
            const records = await Promise.all(keys.map(record));
            const off = records.map((r, i) => [keys[i], r?.state] as const).filter(([, s]) => s !== state);
            last = off
              .slice(0, 5)
              .map(([k, s]) => `${String(k)}=${String(s)}`)
              .join(', ');
            return off.length === 0;
          },
          { what, timeoutMs: WAIT_MS, intervalMs: 200, describe: () => `still ${last}; children:\n${pool.stderr()}` },
        );
      }

      /**
       * Waits until the worker's report of each completion has arrived: the table changes before the
       * worker hears back and tells the test over IPC.
       */
      async function completionsReported(keys: readonly string[]): Promise<void> {
        await pollUntil(
          () => {
            const histories = leaseHistories(pool.traces);
            return keys.every((k) => (histories.get(k) ?? []).some((l) => l.completed));
          },
          { what: 'the reports of the completions', timeoutMs: WAIT_MS },
        );
      }

      async function resultOf(key: string): Promise<ReturnType<typeof parseResult>> {
        const body = await api().read(key, 'csv');
        expect(body, `result of ${key}`).to.not.equal(undefined);
        if (body === undefined) throw new Error('unreachable');
        return parseResult(Buffer.from(await readAll(body.body)).toString('utf8'));
      }

      function jobs(key: string, phase?: JobReport['phase']): JobReport[] {
        return pool.jobs.filter((j) => j.key === key && (phase === undefined || j.phase === phase));
      }

      function traces(key: string): TraceEvent[] {
        return pool.traces.filter((t) => t.key === key);
      }

      function probeAll(key?: string): Promise<ProbeReply[]> {
        return Promise.all(
          pool.children.map((c) => c.request<ProbeReply>(key === undefined ? { cmd: 'probe' } : { cmd: 'probe', key })),
        );
      }

      before(async function () {
        this.timeout(120_000);
        const created = await createTestTable(backend());
        table = created;
        dir = await mkdtemp(join(tmpdir(), 'armlib-dynamodb-multi-host-'));
        markerDir = join(dir, 'markers');
        const cacheDir = join(dir, 'cache');
        await mkdir(markerDir, { recursive: true });
        probeQueue = created.queue(clock);
        const region = process.env['AWS_REGION'] ?? 'us-east-1';
        const endpoint = backend().endpoint;
        // The test process is the API host: its queue is configured like the workers' (own client).
        const queue = new TracingQueue(
          new DynamoQueueManager(hostQueueOptions(endpoint, region, created.name), clock),
          (event) => {
            pool.traces.push({ ...event, source: 'test', pid: process.pid });
          },
        );
        parent = buildRequestManager({
          queue,
          cache: new FileCacheManager({ dir: cacheDir }, clock),
          clock,
          settings: SETTINGS,
        });
        parent.events.on('error', ({ error, context }) => {
          parentErrors.push(`${context}: ${error instanceof Error ? error.message : String(error)}`);
        });
        const configs: ChildConfig[] = range(WORKERS).map((i) => ({
          name: `worker-${String(i + 1)}`,
          endpoint,
          region,
          tableName: created.name,
          cacheDir,
          markerDir,
          leaseMs: LEASE_MS,
          pollMs: POLL_MS,
          sweepMs: SWEEP_MS,
          concurrency: CONCURRENCY,
          maxAttempts: MAX_ATTEMPTS,
        }));
        await pool.start(configs);
      });

      after(async function () {
        this.timeout(60_000);
        try {
          await pool.stopAll(10_000);
        } finally {
          await pool.killAll();
          await parent?.close();
          await probeQueue?.close();
          await table?.drop();
          if (dir !== undefined) await rm(dir, { recursive: true, force: true });
        }
      });

      it('holds each request in one worker at a time; a worker stalled past its lease loses it and its completion cannot land', async function () {
        const stallKey = 'mh-stall';
        // The stalled process blocks its event loop until another worker has taken the request over.
        pool.onJob((r) => {
          if (r.key === stallKey && r.phase === 'start' && r.attempt > 1)
            writeFileSync(join(markerDir, takeoverMarker(stallKey)), '');
        });
        await retryingBackend('submit', () => api().submit({ uri: URI.stall, key: stallKey }));
        debug('stall submitted');
        const stalled = await pollUntil(() => jobs(stallKey, 'start').find((j) => j.attempt === 1), {
          what: 'the first attempt of the stall request to start',
          timeoutMs: WAIT_MS,
        });
        debug(`stall started in ${String(stalled.pid)}`);
        // The other three workers (and the staller's second slot, which is frozen too) share a batch meanwhile.
        const quickKeys = range(24).map((i) => `mh-quick-${String(i)}`);
        const statuses = await Promise.all(
          quickKeys.map((key) => retryingBackend('submit', () => api().submit({ uri: URI.quick, key }))),
        );
        for (const s of statuses) expect(['pending', 'running', 'completed']).to.include(s.state);

        debug('batch submitted');
        await allInState([stallKey, ...quickKeys], 'completed', 'the batch and the stalled request to complete');
        await completionsReported([stallKey, ...quickKeys]);
        debug('batch completed');
        const stallEnd = await pollUntil(() => jobs(stallKey, 'end').find((j) => j.attempt === 1), {
          what: 'the stalled attempt to resume and report',
          timeoutMs: WAIT_MS,
        });

        // The staller: its signal aborted for lease loss, a late write is refused, nothing of it landed.
        expect(stallEnd.pid).to.equal(stalled.pid);
        expect(stallEnd.aborted, 'stalled job signal aborted').to.equal(true);
        expect(stallEnd.reason).to.equal('lease-lost');
        expect(stallEnd.writeError).to.match(/LeaseLostError/);
        const leases = leaseHistories(pool.traces).get(stallKey) ?? [];
        const first = leases.find((l) => l.attempt === 1);
        expect(first, 'first lease of the stall request').to.not.equal(undefined);
        expect(first?.source).to.equal(pool.byPid(stalled.pid).name);
        expect(first?.lost, 'the staller was told LEASE_LOST by a fenced call').to.equal(true);
        expect(first?.completed, 'the lost lease completed').to.equal(false);
        expect(first?.finished, 'a finishing call of the lost lease landed').to.equal(false);
        const winner = leases.find((l) => l.completed);
        expect(winner, 'a later lease completed the stall request').to.not.equal(undefined);
        expect(winner?.attempt).to.be.greaterThan(1);
        const stallRecord = await record(stallKey);
        expect(stallRecord?.attempts).to.equal(winner?.attempt);
        const stallResult = await resultOf(stallKey);
        // The winner's line (the staller's own late write starts with 'stale', and would name attempt 1).
        expect(stallResult.key).to.equal(stallKey);
        expect(stallResult.attempt, 'the visible result is the winner’s').to.equal(winner?.attempt);

        // Every quick request: one completing lease, and the visible result is that lease's.
        const histories = leaseHistories(pool.traces);
        for (const key of quickKeys) {
          const done = (histories.get(key) ?? []).filter((l) => l.completed);
          expect(done.length, `completing leases of ${key}`).to.equal(1);
          const result = await resultOf(key);
          expect(result.attempt, `result attempt of ${key}`).to.equal(done[0]?.attempt);
        }
        const sources = new Set(quickKeys.flatMap((k) => jobs(k, 'start').map((j) => j.source)));
        expect(sources.size, 'workers that ran part of the batch').to.be.greaterThan(1);
      });

      it('a cancel issued in the test process aborts the job running in another process within one heartbeat', async function () {
        const key = 'mh-hold';
        await retryingBackend('submit', () => api().submit({ uri: URI.hold, key }));
        const start = await pollUntil(() => jobs(key, 'start')[0], {
          what: 'the held job to start',
          timeoutMs: WAIT_MS,
        });
        const holder: ChildHandle = pool.byPid(start.pid);

        debug(`hold started in ${holder.name}`);
        const status = await retryingBackend('cancel', () => api().cancel(key));
        debug(`cancel returned ${status.state}`);
        // The test process runs no worker: the request can only learn of the cancel through its heartbeat.
        if (status.state === 'running') expect(status.cancelRequested).to.equal(true);
        else expect(status.state).to.equal('cancelled');
        const after = await holder.request<ProbeReply>({ cmd: 'probe', key });

        const end = await pollUntil(() => jobs(key, 'end')[0], {
          what: 'the held job to see its signal abort',
          timeoutMs: WAIT_MS,
        });
        expect(end.aborted).to.equal(true);
        expect(end.reason).to.equal('cancelled');
        expect(end.writeError, 'a write after the cancel is refused').to.match(/ConflictError/);
        // Heartbeats started by the holder when its signal aborted: at most one more than when the
        // cancel had been written (a heartbeat already in flight then may still report no cancel).
        expect(end.heartbeatsAtAbort, 'heartbeats at abort').to.be.at.least(1);
        expect(end.heartbeatsAtAbort, 'heartbeats at abort vs after the cancel').to.be.at.most(
          after.heartbeatsStarted + 1,
        );
        const seen = traces(key).filter((t) => t.op === 'heartbeat' && t.ok && t.cancelRequested === true);
        expect(seen.length, 'heartbeats that reported the cancel before the job stopped').to.equal(1);

        await allInState([key], 'cancelled', 'the held request to end cancelled');
        expect((await api().status(key)).state).to.equal('cancelled');
        expect(await api().read(key, 'csv'), 'no partial output of a cancelled run').to.equal(undefined);
        const acks = await pollUntil(
          () => {
            const found = traces(key).filter((t) => t.op === 'acknowledgeCancel' && t.ok);
            return found.length > 0 ? found : undefined;
          },
          { what: 'the report of the cancel acknowledgement', timeoutMs: WAIT_MS },
        );
        expect(acks.map((t) => t.source)).to.deep.equal([holder.name]);
      });

      it('a pause issued in the test process is seen by all four workers; running jobs finish; submits from five processes make one entry per key; resume runs each once', async function () {
        const gates = ['mh-gate-1', 'mh-gate-2'];
        await Promise.all(gates.map((key) => retryingBackend('submit', () => api().submit({ uri: URI.gate, key }))));
        await pollUntil(() => gates.every((k) => jobs(k, 'start').length > 0), {
          what: 'the gated jobs to start',
          timeoutMs: WAIT_MS,
        });

        await retryingBackend('pause', () => api().pause());
        debug('paused');
        const atPause = await probeAll();
        expect(
          atPause.map((p) => p.paused),
          'each worker process sees the pause',
        ).to.deep.equal(range(WORKERS).map(() => true));

        // Running jobs finish while paused.
        await Promise.all(pool.children.flatMap((c) => gates.map((key) => c.request({ cmd: 'open', key }))));
        await allInState(gates, 'completed', 'the gated jobs to finish while paused');
        debug('gated jobs finished');

        // Five processes submit the same 16 requests at once, each in its own order.
        const requests: BatchRequest[] = range(16).map((i) => ({
          uri: URI.quick,
          params: { n: String(i), set: 'dedupe' },
        }));
        const keys = requests.map((r) => keyOf(r));
        const [fromChildren, fromTest] = await Promise.all([
          Promise.all(
            pool.children.map((c, i) =>
              c.request<SubmitReply[]>({ cmd: 'submit', requests: rotate(requests, 5 * i + 1) }),
            ),
          ),
          Promise.all(rotate(requests, 3).map((r) => retryingBackend('submit', () => api().submit(r)))),
        ]);
        debug('dedupe burst submitted');
        const replies = [...fromChildren.flat(), ...fromTest.map((s) => ({ key: s.key, state: s.state }))];
        expect(
          replies.filter((r) => 'error' in r),
          'submit errors',
        ).to.deep.equal([]);
        expect(new Set(replies.map((r) => r.state)), 'states returned while paused').to.deep.equal(
          new Set(['pending']),
        );
        const enqueues = pool.traces.filter((t) => t.op === 'enqueue' && keys.includes(t.key));
        expect(enqueues.length, 'enqueue calls (five per key)').to.equal(keys.length * 5);
        for (const key of keys) {
          const created = enqueues.filter((t) => t.key === key && t.op === 'enqueue' && t.outcome === 'created');
          expect(created.length, `entries created for ${key}`).to.equal(1);
        }

        // Every worker tries to claim a few more times (its poll is the clock): no claim of the new keys.
        const afterBurst = await probeAll();
        await pollUntil(
          async () => {
            const now = await probeAll();
            return now.every((p, i) => p.claimCalls >= (afterBurst[i]?.claimCalls ?? 0) + 3);
          },
          { what: 'every worker to poll three more times while paused', timeoutMs: WAIT_MS },
        );
        expect(
          pool.traces.filter((t) => t.op === 'claim' && keys.includes(t.key)),
          'claims while paused',
        ).to.deep.equal([]);
        const paused = await Promise.all(keys.map(record));
        expect(new Set(paused.map((r) => r?.state))).to.deep.equal(new Set(['pending']));
        expect((await api().metrics()).pause).to.equal('paused');

        await retryingBackend('resume', () => api().resume());
        debug('resumed');
        await allInState(keys, 'completed', 'the deduplicated requests to complete after resume');
        await completionsReported(keys);
        debug('deduplicated requests completed');
        const histories = leaseHistories(pool.traces);
        for (const key of keys) {
          const leases = histories.get(key) ?? [];
          // A second claim is legitimate only after the first lease was lost (a loaded machine can miss a lease).
          const extra = leases.slice(0, -1).filter((l) => !l.lost);
          expect(extra, `claims of ${key} without a lost lease before them`).to.deep.equal([]);
          expect(leases.filter((l) => l.completed).length, `completions of ${key}`).to.equal(1);
          const starts = jobs(key, 'start');
          expect(starts.length, `handler runs of ${key}`).to.equal(leases.length);
        }
        const page = await probeQueue?.list({ limit: 1000 });
        const listed = (page?.items ?? []).filter((r) => keys.includes(r.key)).map((r) => r.key);
        expect(listed.length, 'records of the deduplicated keys').to.equal(keys.length);
        expect(new Set(listed).size).to.equal(keys.length);
      });

      it('never had two live holders of one request (every phase, every process)', async function () {
        await pool.stopAll();
        const histories = leaseHistories(pool.traces);
        expect(histories.size, 'requests claimed over the run').to.be.greaterThan(40);
        expect(holderViolations(histories)).to.deep.equal([]);
        // Handler runs of one request overlap only when the earlier one had lost its lease.
        const overlaps: string[] = [];
        for (const key of histories.keys()) {
          const open = new Map<number, JobReport>();
          for (const j of jobs(key)) {
            if (j.phase === 'start') {
              for (const other of open.values()) {
                const end = jobs(key, 'end').find((e) => e.attempt === other.attempt && e.pid === other.pid);
                if (end?.reason !== 'lease-lost')
                  overlaps.push(
                    `${key}: attempt ${String(j.attempt)} started while attempt ${String(other.attempt)} ran and kept its lease`,
                  );
              }
              open.set(j.attempt, j);
            } else open.delete(j.attempt);
          }
        }
        expect(overlaps).to.deep.equal([]);
        expect(parentErrors, 'errors in the test process manager').to.deep.equal([]);
      });
    });
  });
}
