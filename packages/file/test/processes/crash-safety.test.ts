import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import type { ManagerSettings, QueueManager, RequestManager } from '@armlib/core';

import { ChildPool } from './support/child-pool.js';
import type { ChildHandle } from './support/child-pool.js';
import { countByKey, fencingViolations, readText, resultProblems, waitTerminal } from './support/checks.js';
import { contentFor, prng, requestFor } from './support/content.js';
import { KILL_PHASES } from './support/kill-switch.js';
import type { JobSpec } from './support/content.js';
import { EventLog, readEvents } from './support/event-log.js';
import type { LogEvent } from './support/event-log.js';
import { errorCode } from './support/logging-queue.js';
import { openBackend, openManager } from './support/open.js';
import { pollUntil } from '@armlib/conformance';
import type { ChildConfig } from './support/protocol.js';

/**
 * Issue #3, point 2: worker processes are SIGKILLed at random moments (claims, result writes,
 * commits, heartbeats) and restarted, over and over, while this process keeps submitting.
 * Afterwards nothing committed is lost, nothing torn is readable, every request is completed
 * once with the right content, and no lease outlives its expiry.
 */

const SEED = Number(process.env['ARMLIB_CRASH_SEED'] ?? 0x5eed2026);
/** The submitter keeps this many requests pending or running while the kills go on … */
const BACKLOG = 12;
/** … and submits at least MIN and at most MAX requests in all. */
const MIN_REQUESTS = 200;
const MAX_REQUESTS = 400;
const KILLS = Number(process.env['ARMLIB_CRASH_KILLS'] ?? 30);
const WORKERS = 3;
const LEASE_MS = 1000;
const SWEEP_MS = 250;
const SETTINGS: Partial<ManagerSettings> = {
  leaseMs: LEASE_MS,
  // Kills count as attempts; no request may run out of them here.
  maxAttempts: 200,
  pendingTtlMs: 0,
  finishedRetentionMs: 0,
  sweepMs: SWEEP_MS,
  pollMs: 50,
};
const WORKER = { concurrency: 2, leaseMs: LEASE_MS, pollMs: 50 };
const FORMATS = ['csv', 'json', 'txt'] as const;
/** Three formats in four chunks each, with real awaits: a job spends most of its time writing. */
const WORK: JobSpec = { op: 'work', formats: FORMATS, chunks: 4, chunkDelayMs: 20 };
/** Slow jobs for the last phase, so that every worker holds leases when all are killed at once. */
const SLOW: JobSpec = { op: 'work', formats: FORMATS, chunks: 8, chunkDelayMs: 60 };
/** A lease past its expiry by more than this, while four processes sweep every SWEEP_MS, is stuck. */
const STUCK_AFTER_MS = SWEEP_MS + 5_000;
/** The file queue reads its clock inside the write lock: a new lease never starts before the old one expired. */
const FENCING_TOLERANCE_MS = 0;

/** Logged steps that open an operation, and the phase each one is. */
const OPENERS: Readonly<Record<string, string>> = {
  'claim-start': 'claim',
  'hb-start': 'heartbeat',
  'cwrite-start': 'write',
  'commit-start': 'commit',
  'complete-start': 'complete',
};
/** Logged steps that close an operation, by the step that opened it. */
const CLOSERS: Readonly<Record<string, string>> = {
  claim: 'claim-start',
  'claim-err': 'claim-start',
  hb: 'hb-start',
  'hb-err': 'hb-start',
  cwrite: 'cwrite-start',
  'cwrite-err': 'cwrite-start',
  commit: 'commit-start',
  'commit-err': 'commit-start',
  complete: 'complete-start',
  'complete-err': 'complete-start',
};

/** The operations a killed process had in flight: opened in its log and never closed. */
function inFlight(victimEvents: readonly LogEvent[]): string[] {
  const open = new Map<string, string>();
  // A worker claims one at a time, and a claim's start line cannot name the key it will get.
  const id = (opener: string, e: LogEvent): string =>
    opener === 'claim-start' ? opener : `${opener}/${e.key ?? ''}/${e.token ?? ''}/${e.format ?? ''}`;
  for (const e of victimEvents) {
    const phase = OPENERS[e.ev];
    if (phase !== undefined) open.set(id(e.ev, e), phase);
    const opener = CLOSERS[e.ev];
    if (opener !== undefined) open.delete(id(opener, e));
  }
  return [...new Set(open.values())].sort();
}

/**
 * Reads every format of a key that may be committing right now: each readable format must be
 * exact, and once one is readable every later one must be too (none, then all).
 */
async function partialReadProblems(manager: RequestManager, key: string): Promise<string[]> {
  const problems: string[] = [];
  let seen: string | undefined;
  for (const format of FORMATS) {
    const text = await readText(manager, key, format);
    if (text === undefined) {
      if (seen !== undefined) problems.push(`${key}: ${seen} readable, then ${format} not (partial result)`);
    } else {
      seen ??= format;
      if (text !== contentFor(key, format)) problems.push(`${key}/${format}: wrong content while committing`);
    }
  }
  return problems;
}

describe('file backend: crash safety under SIGKILL (issue #3.2)', function () {
  this.timeout(240_000);

  let root: string;
  let dir: string;
  let logFile: string;
  let manager: RequestManager;
  let queue: QueueManager;
  const pool = new ChildPool();

  before(async function () {
    root = await mkdtemp(path.join(tmpdir(), 'armlib-crash-'));
    dir = path.join(root, 'armlib');
    logFile = path.join(root, 'events.jsonl');
    await mkdir(path.join(root, 'gates'), { recursive: true });
    const backend = openBackend(dir, new EventLog(logFile));
    queue = backend.queue;
    manager = openManager(backend, SETTINGS);
    await manager.metrics();
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

  it('loses nothing, tears nothing and strands no lease while workers are killed over and over', async function () {
    const started = Date.now();
    // One generator per loop: their interleaving depends on timing, each one's sequence does not.
    const killRng = prng(SEED);
    const submitRng = prng(SEED + 1);
    const observeRng = prng(SEED + 2);
    const note = `seed ${String(SEED)} (ARMLIB_CRASH_SEED)`;
    let generation = 0;
    /** Starts a worker process; a standby has loaded everything but claims only once told to work. */
    const startChild = (standby: boolean): Promise<ChildHandle> => {
      generation++;
      const config: ChildConfig = {
        name: `worker-${String(generation)}`,
        dir,
        logFile,
        gateDir: path.join(root, 'gates'),
        settings: SETTINGS,
        worker: WORKER,
        deferWorker: standby,
      };
      return pool.start(config);
    };
    let workers: ChildHandle[] = await Promise.all(Array.from({ length: WORKERS }, () => startChild(false)));
    // A node process takes a while to start on a loaded machine: killed workers are replaced at
    // once by standbys started ahead, so kills come fast and workers are always busy.
    const standbys: Promise<ChildHandle>[] = [startChild(true), startChild(true)];
    standbys.forEach((p) => {
      p.catch(() => undefined);
    });

    // What this process saw; every list must be empty at the end.
    const acknowledged = new Map<string, string>();
    const submitErrors: string[] = [];
    const readProblems: string[] = [];
    const regressions: string[] = [];
    const stuck: string[] = [];
    const seenCompleted = new Set<string>();
    const kills: { pid: number; at: number; how: string }[] = [];
    let killing = true;

    let submitting = true;
    let submitted = 0;
    const submitter = async (): Promise<void> => {
      try {
        while (submitted < MAX_REQUESTS && (killing || submitted < MIN_REQUESTS)) {
          // Keep a backlog while the kills go on, so a worker is busy whenever one is killed.
          if (killing) {
            const { byState } = await queue.counts();
            if (byState.pending + byState.running >= BACKLOG) {
              await delay(20);
              continue;
            }
          }
          const key = `crash-${String(submitted++)}`;
          try {
            acknowledged.set(key, (await manager.submit(requestFor(key, WORK))).state);
          } catch (error) {
            submitErrors.push(`${key}: ${errorCode(error)}: ${String(error)}`);
          }
          await delay(Math.floor(submitRng() * 10));
        }
      } finally {
        submitting = false;
      }
    };

    /** Workers holding a lease now (a worker id carries its pid). */
    const busyWorkers = async (): Promise<ChildHandle[]> => {
      const running = (await queue.list({ states: ['running'], limit: 1000 })).items;
      return workers.filter((w) => running.some((r) => r.workerId?.includes(`-${String(w.pid)}-`) === true));
    };

    /**
     * Half the kills come from here at a random moment; the other half are armed in the victim
     * to fire a random fraction of a millisecond (a few ms for result writes) after a
     * chosen step starts, from a thread, so they land inside claims, heartbeats, result writes,
     * commits and completions. An armed kill whose step does not come soon is delivered from here.
     */
    const killer = async (): Promise<void> => {
      try {
        while (kills.length < KILLS) {
          await delay(50 + Math.floor(killRng() * 400));
          // A busy worker, when one shows up soon: killing an idle one tests little.
          const busy = await pollUntil(
            async () => {
              const found = await busyWorkers();
              return found.length > 0 ? found : undefined;
            },
            { what: 'a busy worker', timeoutMs: 1_000 },
          ).catch(() => workers);
          const victim = busy[Math.floor(killRng() * busy.length)];
          if (victim === undefined) continue;
          let how = 'random';
          if (kills.length % 2 === 1) {
            const phase = KILL_PHASES[Math.floor(killRng() * KILL_PHASES.length)] ?? 'claim';
            // A result write streams for tens of ms; the other steps take about a millisecond.
            const delayMs = killRng() * (phase === 'write' ? 8 : 1.5);
            how = `armed:${phase}`;
            try {
              await victim.request({ cmd: 'arm', phase, delayMs }, 5_000);
            } catch {
              // It died already (the armed step came at once).
            }
            const fired = await Promise.race([victim.exited.then(() => true), delay(1_500).then(() => false)]);
            if (!fired) how = `${how}:not-reached`;
          }
          workers = workers.filter((w) => w !== victim);
          kills.push({ pid: victim.pid, at: Date.now(), how });
          await victim.kill();
          const next = standbys.shift();
          standbys.push(startChild(true));
          standbys.at(-1)?.catch(() => undefined);
          if (next !== undefined) {
            const standby = await next;
            await standby.request({ cmd: 'work' });
            workers.push(standby);
          }
        }
      } finally {
        killing = false;
      }
    };

    /** Reads results while all this goes on: whatever is readable must be whole and exact. */
    const observer = async (): Promise<void> => {
      let lastStuckCheck = 0;
      while (killing || submitting) {
        const keys = [...acknowledged.keys()];
        const key = keys[Math.floor(observeRng() * keys.length)];
        if (key !== undefined) {
          const status = await manager.status(key);
          if (status.state === 'completed') {
            seenCompleted.add(key);
            readProblems.push(...(await resultProblems(manager, status, FORMATS)));
          } else {
            if (seenCompleted.has(key)) regressions.push(`${key}: seen completed, later ${status.state}`);
            // Not completed yet: a result may already be committed, but never in part.
            readProblems.push(...(await partialReadProblems(manager, key)));
          }
        }
        if (Date.now() - lastStuckCheck > 500) {
          lastStuckCheck = Date.now();
          const running = await queue.list({ states: ['running'], limit: 1000 });
          for (const r of running.items) {
            if (r.leaseExpiresAt !== undefined && r.leaseExpiresAt < Date.now() - STUCK_AFTER_MS) {
              stuck.push(
                `${r.key}: running, lease expired at ${String(r.leaseExpiresAt)}, seen at ${String(Date.now())}`,
              );
            }
          }
        }
        await delay(10);
      }
    };

    await Promise.all([submitter(), killer(), observer()]);
    const keys = Array.from({ length: submitted }, (_, i) => `crash-${String(i)}`);
    const statuses = await waitTerminal(manager, keys);
    const chaosDone = Date.now();

    // Last phase: every worker holds leases when all of them die at once. With nobody left to
    // renew them, one sweep after their expiry must hand every one of them back.
    const slowKeys = Array.from({ length: 12 }, (_, i) => `crash-slow-${String(i)}`);
    for (const key of slowKeys) acknowledged.set(key, (await manager.submit(requestFor(key, SLOW))).state);
    await pollUntil(async () => (await queue.list({ states: ['running'], limit: 100 })).items.length >= WORKERS, {
      what: 'the slow jobs to run',
    });
    await Promise.all(workers.map((w) => w.kill()));
    const orphaned = (await queue.list({ states: ['running'], limit: 100 })).items;
    expect(orphaned.length, 'leases held when every worker died').to.be.at.least(1);
    const lastExpiry = Math.max(...orphaned.map((r) => r.leaseExpiresAt ?? 0));
    await pollUntil(() => Date.now() > lastExpiry, { what: 'the orphaned leases to expire' });
    await manager.sweep();
    const stillRunning = (await queue.list({ states: ['running'], limit: 100 })).items;
    expect(
      stillRunning.map((r) => r.key),
      'running records after a sweep past every lease',
    ).to.deep.equal([]);
    // The standbys take over at once, with one fresh worker.
    const revived = await Promise.all(standbys.splice(0));
    await Promise.all(revived.map((w) => w.request({ cmd: 'work' })));
    workers = [...revived, await startChild(false)];
    const slowStatuses = await waitTerminal(manager, slowKeys);
    await Promise.all(workers.map((w) => w.request({ cmd: 'stop' })));

    const { events, skipped } = readEvents(logFile);
    const allKeys = [...keys, ...slowKeys];
    const completes = countByKey(events, (e) => e.ev === 'complete');
    const problems: string[] = [];
    for (const key of allKeys) {
      const status = statuses.get(key) ?? slowStatuses.get(key);
      if (!acknowledged.has(key)) problems.push(`${key}: submit never acknowledged`);
      if (status?.state !== 'completed') {
        problems.push(`${key}: ended ${String(status?.state)} (acknowledged as ${String(acknowledged.get(key))})`);
        continue;
      }
      // A kill between the commit and its log line hides a completion, never adds one.
      if ((completes.get(key) ?? 0) > 1) problems.push(`${key}: completed ${String(completes.get(key))} times`);
      problems.push(...(await resultProblems(manager, status, FORMATS)));
    }
    const listed = await queue.list({ limit: 1000 });
    const listedKeys = listed.items.map((r) => r.key).sort();
    const managerErrors = events
      .filter((e) => e.ev === 'manager-error' && e.code !== 'LEASE_LOST' && e.code !== 'CLOSED')
      .map((e) => `pid ${String(e.pid)} ${e.context ?? ''}: ${e.message ?? ''}`);

    // Where the kills landed: the operations each victim had in flight.
    const landed = new Map<string, number>();
    const kinds = new Map<string, number>();
    for (const kill of kills) {
      const phases = inFlight(events.filter((e) => e.pid === kill.pid));
      for (const phase of phases.length === 0 ? ['nothing'] : phases) landed.set(phase, (landed.get(phase) ?? 0) + 1);
      kinds.set(kill.how, (kinds.get(kill.how) ?? 0) + 1);
    }
    const summary =
      `crash-safety: ${note}, ${String(kills.length)} kills ${JSON.stringify(Object.fromEntries(kinds))} ` +
      `+ 1 kill of all ${String(WORKERS)} workers; in flight at the kills ${JSON.stringify(Object.fromEntries(landed))}; ` +
      `${String(allKeys.length)} requests, ${String(generation)} worker processes, ` +
      `chaos ${String(Math.round((chaosDone - started) / 1000))} s, total ${String(Math.round((Date.now() - started) / 1000))} s, ` +
      `${String(skipped)} cut log lines`;
    console.log(`      ${summary}`);

    expect(submitErrors, `submits that failed (${note})`).to.deep.equal([]);
    expect(problems, `final state (${note})`).to.deep.equal([]);
    expect(readProblems, `results read during the run (${note})`).to.deep.equal([]);
    expect(regressions, `completed requests that went back (${note})`).to.deep.equal([]);
    expect(stuck, `leases stuck past their expiry (${note})`).to.deep.equal([]);
    expect(listedKeys, 'one queue record per request').to.deep.equal([...allKeys].sort());
    expect(fencingViolations(events, FENCING_TOLERANCE_MS), `fencing (${note})`).to.deep.equal([]);
    expect(managerErrors, `errors reported by workers (${note})`).to.deep.equal([]);
    expect(kills.length).to.equal(KILLS);

    await manager.close();
    const db = new Database(path.join(dir, 'queue.sqlite'), { readonly: true, fileMustExist: true });
    try {
      expect(db.pragma('integrity_check')).to.deep.equal([{ integrity_check: 'ok' }]);
    } finally {
      db.close();
    }
  });
});
