import path from 'node:path';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { buildRequestManager, ManualClock, MemoryCacheManager } from '@armlib/core';
import type { SweepResult } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, LEASE_MS, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/** Rows of a table, read straight from the database file as another process would. */
function rows(dir: string, table: string): number {
  const db = new Database(path.join(dir, 'queue.sqlite'), { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('FileQueueManager: housekeeping in sweeps', function () {
  let dir: string;
  let clock: ManualClock;
  let queue: FileQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new ManualClock(T0);
    queue = new FileQueueManager({ dir }, clock);
  });

  afterEach(async function () {
    await queue.close();
    removeTempDir(dir);
  });

  it('forgets the history of many empty groups once their interval passed, and keeps claiming right', async function () {
    this.timeout(60_000);
    const policies = { g0: { minIntervalMs: 60_000 } };
    for (let i = 0; i < 1100; i++) {
      const group = `g${String(i)}`;
      await queue.enqueue(entry(`k${String(i)}`, { group }), NO_LIMITS);
      const lease = await queue.claim(claimOptions({ groups: [group], policies }));
      await queue.complete(`k${String(i)}`, lease?.token ?? '', { durationMs: 1 });
    }
    await clock.advance(1_000);
    expect(await queue.prune(clock.now())).to.equal(1100);
    await queue.sweep();
    // g0's interval has not passed: its history stays, and it still holds back a claim.
    expect(rows(dir, 'groups')).to.equal(1);
    await queue.enqueue(entry('again', { group: 'g0' }), NO_LIMITS);
    expect(await queue.claim(claimOptions({ policies }))).to.equal(undefined);
    await clock.advance(60_000);
    expect((await queue.claim(claimOptions({ policies })))?.record.key).to.equal('again');
    expect((await queue.counts()).byState.running).to.equal(1);
  });

  it('prunes in chunks: every record finished before the time, none after it, none unfinished', async function () {
    this.timeout(60_000);
    const tokens = new Map<string, string>();
    for (let i = 0; i < 2500; i++) await queue.enqueue(entry(`k${String(i)}`), NO_LIMITS);
    for (let i = 0; i < 2500; i++) {
      const lease = await queue.claim(claimOptions({ leaseMs: 600_000 }));
      if (lease !== undefined) tokens.set(lease.record.key, lease.token);
    }
    // Kept records (running, then finished late) sit between pruned ones, across chunk boundaries.
    const complete = (i: number): Promise<unknown> =>
      queue.complete(`k${String(i)}`, tokens.get(`k${String(i)}`) ?? '', { durationMs: 1 });
    for (let i = 0; i < 2500; i++) if (i % 5 !== 0) await complete(i);
    await clock.advance(1_000);
    const cutoff = clock.now();
    await clock.advance(1_000);
    for (let i = 0; i < 2500; i += 10) await complete(i);

    expect(await queue.prune(cutoff)).to.equal(2000);
    expect((await queue.counts()).byState).to.include({ completed: 250, running: 250 });
    expect(await queue.get('k1')).to.equal(undefined);
    expect((await queue.get('k10'))?.state).to.equal('completed');
    expect((await queue.get('k5'))?.state).to.equal('running');
    expect(await queue.prune(cutoff)).to.equal(0);
  });

  it('keeps ten minutes of activity and only live worker reports', async function () {
    await queue.reportWorker('w1', 2, 1_000);
    for (let minute = 0; minute < 15; minute++) {
      await queue.enqueue(entry(`k${String(minute)}`), NO_LIMITS);
      await clock.advance(60_000);
    }
    await queue.sweep();
    expect(rows(dir, 'activity')).to.be.at.most(10);
    expect(rows(dir, 'workers')).to.equal(0);
    const buckets = await queue.activity(10);
    expect(buckets.map((b) => b.total.submitted)).to.deep.equal([1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  });

  it('empties the sweep journal as it reports it', async function () {
    await queue.enqueue(entry('a', {}, { pendingExpiresAt: T0 + 10 }), NO_LIMITS);
    await clock.advance(10);
    expect((await queue.get('a'))?.state).to.equal('expired');
    expect(rows(dir, 'sweep_journal')).to.equal(1);
    expect((await queue.sweep()).expired.map((r) => r.key)).to.deep.equal(['a']);
    expect(rows(dir, 'sweep_journal')).to.equal(0);
  });

  it('hands over the requeue a claim applied while other calls of the process wait for their commit', async function () {
    await queue.enqueue(entry('a'), NO_LIMITS);
    // Another process claimed it and died: its lease runs out.
    const dead = new FileQueueManager({ dir }, clock);
    try {
      expect(await dead.claim(claimOptions({ workerId: 'killed' }))).to.not.equal(undefined);
    } finally {
      await dead.close();
    }
    await clock.advance(LEASE_MS + 1);
    const lease = await queue.claim(claimOptions());
    expect(lease?.record).to.include({ key: 'a', attempts: 2 });
    // Any other call of this process, in the same turn: it waits for the next group commit.
    const other = queue.reportWorker('w2', 1, LEASE_MS);
    const taken = queue.takeTransitions({});
    await other;
    expect(taken?.requeued.map((r) => r.key)).to.deep.equal(['a']);
    expect((await queue.sweep()).requeued).to.deep.equal([]);
  });

  it('applies many due transitions at once and hands them over in parts, in order, none twice', async function () {
    // Three leases that will run out (back to pending), then 2,300 requests that will expire.
    for (const key of ['r1', 'r2', 'r3']) await queue.enqueue(entry(key), NO_LIMITS);
    for (let i = 0; i < 3; i++) expect(await queue.claim(claimOptions())).to.not.equal(undefined);
    const expiring: string[] = [];
    for (let i = 0; i < 2300; i += 500) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(i + 500, 2300); j++) {
        expiring.push(`e${String(j)}`);
        batch.push(queue.enqueue(entry(`e${String(j)}`, {}, { pendingExpiresAt: T0 + 10 }), NO_LIMITS));
      }
      await Promise.all(batch);
    }
    await clock.advance(LEASE_MS);
    const requeued: string[] = [];
    const expired: string[] = [];
    const parts: number[] = [];
    const add = (result: SweepResult): void => {
      requeued.push(...result.requeued.map((r) => r.key));
      expired.push(...result.expired.map((r) => r.key));
      parts.push(result.requeued.length + result.expired.length);
    };
    // A sweep reports the first part and says more follow; a take hands over the next part, and
    // the next sweep the last one.
    const first = await queue.sweep();
    add(first);
    expect(first.more).to.equal(true);
    const taken = queue.takeTransitions();
    expect(taken).to.not.equal(undefined);
    if (taken !== undefined) add(taken);
    const last = await queue.sweep();
    add(last);
    expect(last.more).to.equal(undefined);
    expect(queue.takeTransitions()).to.equal(undefined);
    expect(parts).to.deep.equal([1000, 1000, 303]);
    expect(requeued).to.deep.equal(['r1', 'r2', 'r3']);
    expect(expired).to.deep.equal(expiring);
    expect(rows(dir, 'sweep_journal')).to.equal(0);
    expect((await queue.get('e2299'))?.state).to.equal('expired');
    expect((await queue.get('r3'))?.state).to.equal('pending');
  });

  it('through a request manager, tells a requeue of a later part before a worker claims that request', async function () {
    // r1's lease runs out in the first part, X's in the second, behind 1,200 expiries.
    await queue.enqueue(entry('r1'), NO_LIMITS);
    expect((await queue.claim(claimOptions({ workerId: 'gone' })))?.record.key).to.equal('r1');
    for (let i = 0; i < 1200; i += 400) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < i + 400; j++) {
        batch.push(queue.enqueue(entry(`e${String(j)}`, { group: 'ge' }, { pendingExpiresAt: T0 + 10 }), NO_LIMITS));
      }
      await Promise.all(batch);
    }
    await queue.enqueue(entry('X', { group: 'gx' }), NO_LIMITS);
    expect((await queue.claim(claimOptions({ workerId: 'gone', groups: ['gx'] })))?.record.key).to.equal('X');
    const rm = buildRequestManager({ queue, cache: new MemoryCacheManager({}, clock), clock, settings: {} });
    const order: string[] = [];
    let expired = 0;
    rm.events.on('requeued', (e) => order.push(`requeued:${e.key}`));
    rm.events.on('claimed', (e) => order.push(`claimed:${e.key}`));
    rm.events.on('expired', () => expired++);
    const worker = rm.process(() => new Promise<void>(() => undefined), {
      concurrency: 2,
      pollMs: 3_600_000,
      groups: ['default', 'gx'],
    });
    try {
      await clock.advance(LEASE_MS);
      await rm.sweep();
      expect(expired).to.equal(1200);
      await clock.advance(10);
      expect(order.slice(0, 2)).to.deep.equal(['requeued:r1', 'requeued:X']);
      expect(order.slice(2).sort()).to.deep.equal(['claimed:X', 'claimed:r1']);
    } finally {
      await worker.stop({ graceMs: 0 }).catch(() => undefined);
      await rm.close();
    }
  });
});
