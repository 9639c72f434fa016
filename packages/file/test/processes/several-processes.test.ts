import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect } from 'chai';

import type { ManagerSettings, RequestManager } from '@armlib/core';

import { ChildPool } from './support/child-pool.js';
import type { ChildHandle } from './support/child-pool.js';
import { countByKey, fencingViolations, readText, resultProblems, waitTerminal } from './support/checks.js';
import { requestFor } from './support/content.js';
import type { JobSpec } from './support/content.js';
import { EventLog, eventsOf, readEvents } from './support/event-log.js';
import type { LogEvent } from './support/event-log.js';
import { openBackend, openManager } from './support/open.js';
import { pollUntil } from '@armlib/conformance';
import type { ChildConfig, SubmitOutcome } from './support/protocol.js';

/**
 * Issue #3, point 3: one submitting process (this one, plus submitter children for dedupe) and
 * three worker processes on one directory. Real processes need real time: short leases, and
 * every wait is a bounded poll on state the other processes change.
 */

const LEASE_MS = 1200;
const SETTINGS: Partial<ManagerSettings> = {
  leaseMs: LEASE_MS,
  maxAttempts: 20,
  pendingTtlMs: 0,
  finishedRetentionMs: 0,
  sweepMs: 200,
  pollMs: 50,
};
const WORKER = { concurrency: 3, leaseMs: LEASE_MS, pollMs: 50 };
const FORMATS = ['csv', 'json'] as const;
const WORK: JobSpec = { op: 'work', formats: FORMATS, chunks: 3, chunkDelayMs: 2 };
/** The file queue reads its clock inside the write lock: a new lease never starts before the old one expired. */
const FENCING_TOLERANCE_MS = 0;

/** The token a process held for a key when it logged `event`: its latest claim of the key before it. */
function holderTokenAt(keyEvents: readonly LogEvent[], event: LogEvent): string | undefined {
  let token: string | undefined;
  for (const e of keyEvents) {
    if (e === event) break;
    if (e.pid === event.pid && e.ev === 'claim' && e.outcome === 'ok') token = e.token;
  }
  return token;
}

describe('file backend: several processes on one directory (issue #3.3)', function () {
  this.timeout(120_000);

  let root: string;
  let dir: string;
  let gateDir: string;
  let logFile: string;
  let manager: RequestManager;
  const pool = new ChildPool();
  let workers: ChildHandle[] = [];

  function childConfig(name: string, worker: boolean): ChildConfig {
    return worker
      ? { name, dir, logFile, gateDir, settings: SETTINGS, worker: WORKER }
      : { name, dir, logFile, gateDir, settings: SETTINGS };
  }

  function events(): LogEvent[] {
    return readEvents(logFile).events;
  }

  async function openGate(name: string): Promise<void> {
    await writeFile(path.join(gateDir, name), '');
  }

  /** Every worker is still alive (a crash would make later assertions meaningless). */
  function expectWorkersAlive(): void {
    for (const w of workers) expect(w.alive, `${w.name} died: ${w.describeExit()}`).to.equal(true);
  }

  before(async function () {
    root = await mkdtemp(path.join(tmpdir(), 'armlib-processes-'));
    dir = path.join(root, 'armlib');
    gateDir = path.join(root, 'gates');
    logFile = path.join(root, 'events.jsonl');
    await mkdir(gateDir, { recursive: true });
    manager = openManager(openBackend(dir, new EventLog(logFile)), SETTINGS);
    // The test process creates the database first; the three workers then open it at the same time.
    await manager.metrics();
    workers = await Promise.all([1, 2, 3].map((i) => pool.start(childConfig(`worker-${String(i)}`, true))));
  });

  /** Gates the current test uses: opened after it, whatever happened, so nothing stays blocked. */
  let gates: string[] = [];

  afterEach(async function () {
    await manager.resume().catch(() => undefined);
    for (const gate of gates) await openGate(gate).catch(() => undefined);
    gates = [];
  });

  after(async function () {
    await pool.killAll();
    // Set only once `before` got that far.
    const opened = manager as RequestManager | undefined;
    await opened?.close().catch(() => undefined);
    // ARMLIB_TEST_KEEP_DIR=1 keeps the directory and its event log for a post-mortem.
    if ((root as string | undefined) === undefined) return;
    if (process.env['ARMLIB_TEST_KEEP_DIR'] === '1') console.log(`      kept ${root}`);
    else await rm(root, { recursive: true, force: true });
  });

  it('dedupes concurrent submits of the same keys from four processes: one entry and one execution each', async function () {
    const keys = Array.from({ length: 24 }, (_, i) => `dedupe-${String(i)}`);
    gates.push('dedupe');
    const spec: JobSpec = { ...WORK, op: 'gate', gate: 'dedupe' };
    const submitters = await Promise.all(
      [1, 2, 3].map((i) => pool.start(childConfig(`submitter-${String(i)}`, false))),
    );
    // Each process submits every key, in its own order, all at once; jobs hold at the gate, so
    // none finishes (and could be re-queued by a late submit) while submits are still arriving.
    const orders = [
      keys,
      [...keys].reverse(),
      [...keys.slice(12), ...keys.slice(0, 12)],
      [...keys.slice(6), ...keys.slice(0, 6)],
    ];
    const [mine, ...theirs] = await Promise.all([
      Promise.all(
        (orders[0] ?? []).map(async (key): Promise<SubmitOutcome> => {
          const status = await manager.submit(requestFor(key, spec));
          return { key, state: status.state };
        }),
      ),
      ...submitters.map(
        (child, i) =>
          child.request({ cmd: 'submit', requests: (orders[i + 1] ?? []).map((k) => requestFor(k, spec)) }) as Promise<
            SubmitOutcome[]
          >,
      ),
    ]);
    const outcomes = [...mine, ...theirs.flat()];
    expect(outcomes).to.have.length(keys.length * 4);
    for (const o of outcomes) {
      expect(o.error, `submit of ${o.key} failed`).to.equal(undefined);
      expect(['pending', 'running'], `submit of ${o.key}`).to.include(o.state);
    }
    await Promise.all(submitters.map((s) => s.request({ cmd: 'stop' })));

    await openGate('dedupe');
    const statuses = await waitTerminal(manager, keys);
    expectWorkersAlive();
    // A worker logs its completion just after the queue has it: wait for the lines too.
    await pollUntil(
      () => {
        const logged = countByKey(events(), (e) => e.ev === 'complete');
        return keys.every((k) => (logged.get(k) ?? 0) >= 1);
      },
      { what: 'every completion to be logged' },
    );
    const log = events();
    const created = countByKey(log, (e) => e.ev === 'enqueue' && e.outcome === 'created');
    const existing = countByKey(log, (e) => e.ev === 'enqueue' && e.outcome === 'existing');
    const starts = countByKey(log, (e) => e.ev === 'start');
    const completes = countByKey(log, (e) => e.ev === 'complete');
    const lost = countByKey(log, (e) => e.ev === 'abort' && e.reason === 'lease-lost');
    for (const key of keys) {
      const status = statuses.get(key);
      expect(status?.state, key).to.equal('completed');
      expect(created.get(key), `${key}: entries created`).to.equal(1);
      expect(existing.get(key), `${key}: submits that found the entry`).to.equal(3);
      // A run is repeated only after its lease was lost (a badly stalled CI machine): say so.
      expect((starts.get(key) ?? 0) - (lost.get(key) ?? 0), `${key}: executions`).to.equal(1);
      expect(completes.get(key), `${key}: completions`).to.equal(1);
      if (status !== undefined) expect(await resultProblems(manager, status, FORMATS)).to.deep.equal([]);
    }
    // One record per key in the queue, whichever process lists it.
    const listed = await manager.list({ limit: 1000 });
    const listedKeys = listed.items.map((s) => s.key).filter((k) => k.startsWith('dedupe-'));
    expect([...listedKeys].sort()).to.deep.equal([...keys].sort());
  });

  it('aborts a job running in a worker process within one heartbeat of a cancel issued here', async function () {
    const key = 'cancel-1';
    await manager.submit(requestFor(key, { ...WORK, op: 'until-abort' }));
    // Running, and its holder heartbeating: the cancel must travel through the shared queue.
    const claim = await pollUntil(
      () => {
        const mine = eventsOf(events(), key);
        const c = mine.find((e) => e.ev === 'claim' && e.outcome === 'ok');
        return c !== undefined && mine.some((e) => e.ev === 'hb' && e.token === c.token) ? c : undefined;
      },
      { what: `${key} to be claimed and heartbeating` },
    );
    expect(claim.pid).to.not.equal(process.pid);

    const status = await manager.cancel(key);
    const cancelledAt = Date.now();
    expect(status.state).to.equal('running');
    expect(status.cancelRequested).to.equal(true);

    const abort = await pollUntil(() => eventsOf(events(), key).find((e) => e.ev === 'abort'), {
      what: `the job's signal to abort in pid ${String(claim.pid)}`,
    });
    const final = await manager.waitFor(key, { timeoutMs: 60_000 });
    expect(final.state).to.equal('cancelled');
    expect(abort.reason).to.equal('cancelled');
    expect(abort.pid).to.equal(claim.pid);

    // "Within one heartbeat": the first heartbeat of the holder that started after the cancel
    // was acknowledged reports it, and the signal aborts before another heartbeat starts.
    const beats = eventsOf(events(), key).filter((e) => e.token === claim.token);
    const startedAfter = beats.filter((e) => e.ev === 'hb-start' && e.t >= cancelledAt && e.t <= abort.t);
    expect(startedAfter.length, 'heartbeats between the cancel and the abort').to.be.at.most(1);
    const answered = beats.filter((e) => e.ev === 'hb' && (e.t0 ?? 0) >= cancelledAt);
    for (const beat of answered) expect(beat.cancel, 'a heartbeat after the cancel must report it').to.equal(true);
    // Partial output discarded.
    expect(await readText(manager, key, 'csv')).to.equal(undefined);
    expectWorkersAlive();
  });

  it('pause is seen by every worker process: no claims after it, running jobs finish, resume continues', async function () {
    const workerPids = workers.map((w) => w.pid);
    const held = ['pause-held-1', 'pause-held-2'];
    gates.push('pause-hold');
    // Two jobs at most: no worker (3 slots each) is full, so each keeps polling for work.
    for (const key of held) await manager.submit(requestFor(key, { ...WORK, op: 'gate', gate: 'pause-hold' }));
    await pollUntil(
      async () => (await Promise.all(held.map((k) => manager.status(k)))).every((s) => s.state === 'running'),
      { what: 'the held jobs to run' },
    );

    await manager.pause();
    const pausedAt = Date.now();
    expect((await manager.metrics()).pause).to.equal('pausing');
    const waiting = Array.from({ length: 6 }, (_, i) => `pause-waiting-${String(i)}`);
    for (const key of waiting) expect((await manager.submit(requestFor(key, WORK))).state).to.equal('pending');

    /** Every worker has polled (and found nothing to claim) at least twice since `since`. */
    const everyWorkerPolled = (since: number) => () => {
      const log = events();
      return workerPids.every(
        (pid) =>
          log.filter((e) => e.pid === pid && e.ev === 'claim' && e.outcome === 'none' && (e.t0 ?? 0) > since).length >=
          2,
      );
    };
    await pollUntil(everyWorkerPolled(pausedAt), { what: 'every worker to poll while paused' });
    for (const key of waiting) expect((await manager.status(key)).state, key).to.equal('pending');
    for (const key of held) expect((await manager.status(key)).state, key).to.equal('running');

    // Jobs that were running when the pause came finish normally.
    await openGate('pause-hold');
    const heldDone = await waitTerminal(manager, held);
    for (const key of held) expect(heldDone.get(key)?.state, key).to.equal('completed');
    const heldDoneAt = Date.now();
    expect((await manager.metrics()).pause).to.equal('paused');
    await pollUntil(everyWorkerPolled(heldDoneAt), { what: 'every worker to poll again with free slots' });
    for (const key of waiting) expect((await manager.status(key)).state, key).to.equal('pending');
    const lateClaims = events().filter((e) => e.ev === 'claim' && e.outcome === 'ok' && (e.t0 ?? 0) > pausedAt);
    expect(
      lateClaims.map((e) => `${e.key ?? ''} by pid ${String(e.pid)}`),
      'claims started after the pause',
    ).to.deep.equal([]);

    await manager.resume();
    expect((await manager.metrics()).pause).to.equal('running');
    const done = await waitTerminal(manager, waiting);
    for (const key of waiting) {
      const status = done.get(key);
      expect(status?.state, key).to.equal('completed');
      if (status !== undefined) expect(await resultProblems(manager, status, FORMATS)).to.deep.equal([]);
    }
    expectWorkersAlive();
  });

  it('holds each request by one worker at a time; a worker whose lease was stolen is fenced off', async function () {
    const keys = Array.from({ length: 30 }, (_, i) => `fence-${String(i)}`);
    // Each blocks its worker's event loop for three leases on the first attempt: no heartbeats,
    // so another worker takes the request over while the first still believes it holds it.
    const stalled = 'fence-stall';
    const observer = 'fence-observe';
    const stallMs = 3 * LEASE_MS;
    await manager.submit(requestFor(stalled, { ...WORK, op: 'stall', stallMs }));
    await manager.submit(requestFor(observer, { ...WORK, op: 'stall-observe', stallMs }));
    for (const key of keys) await manager.submit(requestFor(key, WORK));
    const all = [stalled, observer, ...keys];
    const statuses = await waitTerminal(manager, all);
    // The stale holders go on after the request has moved on; their signals abort once a
    // heartbeat or the fenced completion is refused (which may come after the handler returned).
    await pollUntil(
      () =>
        [stalled, observer].every((k) => {
          const mine = eventsOf(events(), k);
          return (
            mine.some((e) => e.ev === 'end' && e.attempt === 1) && mine.some((e) => e.ev === 'abort' && e.attempt === 1)
          );
        }),
      { what: 'the stalled handlers to return and their signals to abort' },
    );
    const log = events();

    for (const key of all) {
      const status = statuses.get(key);
      expect(status?.state, key).to.equal('completed');
      // The stale holders' output ("STALE …") never becomes visible: the content is exact.
      if (status !== undefined) expect(await resultProblems(manager, status, FORMATS)).to.deep.equal([]);
    }
    for (const key of [stalled, observer]) {
      const mine = eventsOf(log, key);
      const first = mine.find((e) => e.ev === 'claim' && e.outcome === 'ok' && e.attempt === 1);
      expect(first, `${key}: first claim`).to.not.equal(undefined);
      const firstToken = first?.token;
      const takeover = mine.find((e) => e.ev === 'claim' && e.outcome === 'ok' && e.token !== firstToken);
      expect(takeover, `${key}: taken over by a second lease`).to.not.equal(undefined);
      expect(statuses.get(key)?.attempts, `${key}: attempts`).to.be.at.least(2);
      // The stale holder learned it lost the lease (its heartbeat or commit was refused) …
      const refused = mine.filter((e) => e.token === firstToken && e.ev.endsWith('-err') && e.code === 'LEASE_LOST');
      expect(refused.length, `${key}: fenced calls of the stale holder refused with LEASE_LOST`).to.be.at.least(1);
      expect(
        mine.some((e) => e.ev === 'abort' && e.pid === first?.pid && e.attempt === 1 && e.reason === 'lease-lost'),
        `${key}: stale holder's signal aborted with lease-lost`,
      ).to.equal(true);
      // … and none of its calls succeeded after the takeover.
      const late = mine.filter(
        (e) =>
          e.token === firstToken &&
          ['hb', 'complete', 'fail', 'release'].includes(e.ev) &&
          (e.t0 ?? 0) > (takeover?.t ?? 0),
      );
      expect(
        late.map((e) => e.ev),
        `${key}: calls of the stale holder that succeeded after the takeover`,
      ).to.deep.equal([]);
      // Its result was never committed.
      const staleCommits = mine.filter((e) => e.ev === 'commit' && holderTokenAt(mine, e) === firstToken);
      expect(staleCommits.length, `${key}: commits by the stale holder`).to.equal(0);
    }
    // What the observing handler saw once its lease was gone: an aborted signal, and refusals.
    const seen = eventsOf(log, observer);
    expect(seen.find((e) => e.ev === 'observed-abort')?.reason).to.equal('lease-lost');
    expect(seen.find((e) => e.ev === 'write-err')?.code, 'write after the lease was lost').to.equal('LEASE_LOST');
    expect(seen.find((e) => e.ev === 'progress-err')?.code, 'progress after the lease was lost').to.equal('LEASE_LOST');

    // Fencing over everything every process did in this suite.
    expect(fencingViolations(log, FENCING_TOLERANCE_MS)).to.deep.equal([]);
    expectWorkersAlive();
  });
  // SPEC §3.1 fencing: "nothing it does afterwards can change the request or its visible result".
  // The pause lands after the worker's pre-commit fence and before the cache commit, which the
  // cache SPI does not fence: today the stale output replaces the completed result (see report).
  it('a holder stalled inside its commit, past its lease, cannot make its output visible', async function () {
    const key = 'commit-stall-1';
    await manager.submit(requestFor(key, { ...WORK, op: 'commit-stall' }));
    const status = (await waitTerminal(manager, [key])).get(key);
    expect(status?.state).to.equal('completed');
    // Let the stalled process go on with its commit and try to complete.
    const stall = await pollUntil(() => eventsOf(events(), key).find((e) => e.ev === 'commit-stall'), {
      what: 'the commit stall',
    });
    await pollUntil(
      () =>
        eventsOf(events(), key).some(
          (e) => e.pid === stall.pid && e.t > stall.t && ['complete', 'complete-err', 'commit-err'].includes(e.ev),
        ),
      { what: 'the stalled holder to finish its commit' },
    );
    const log = eventsOf(events(), key);
    const claims = log.filter((e) => e.ev === 'claim' && e.outcome === 'ok');
    expect(claims.length, 'leases issued').to.be.at.least(2);
    expect(claims[0]?.pid).to.equal(stall.pid);
    const final = await manager.status(key);
    expect(final.state).to.equal('completed');
    // The stale holder wrote "STALE …": the visible result must still be the new holder's.
    expect(await resultProblems(manager, final, FORMATS)).to.deep.equal([]);
    expectWorkersAlive();
  });
});
