import { join } from 'node:path';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { ManualClock, MemoryQueueManager } from '@armlib/core';
import type { QueueManager } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/**
 * Activity, uri statistics and capacity are not part of the conformance suite: the memory queue
 * is their reference, so the same calls go to both and every answer must be the same.
 */
describe('FileQueueManager: metrics match the memory queue', function () {
  let dir: string;
  let clock: ManualClock;
  let file: FileQueueManager;
  let memory: MemoryQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new ManualClock(T0);
    file = new FileQueueManager({ dir }, clock);
    memory = new MemoryQueueManager({}, clock);
  });

  afterEach(async function () {
    await file.close();
    await memory.close();
    removeTempDir(dir);
  });

  async function both<T>(call: (q: QueueManager) => Promise<T>): Promise<T> {
    const expected = await call(memory);
    const actual = await call(file);
    expect(actual).to.deep.equal(expected);
    return actual;
  }

  it('learns the same durations, activity and capacity over a run of jobs', async function () {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    const uris = ['/a', '/b', '/c'];
    for (let i = 0; i < 120; i++) {
      const uri = uris[i % 3] ?? '/a';
      const group = i % 4 === 0 ? 'reports' : 'default';
      const e = entry(`k${String(i)}`, { uri, group }, { maxAttempts: 1 });
      await both(async (q) => (await q.enqueue(e, NO_LIMITS)).outcome);
      const file_lease = await file.claim(claimOptions());
      const memory_lease = await memory.claim(claimOptions());
      expect(file_lease?.record.key).to.equal(memory_lease?.record.key);
      const durationMs = i % 17 === 0 ? -5 : Math.round(random() * 1_000);
      if (i % 9 === 0) {
        const error = { code: 'X', message: 'x', retryable: false };
        await file.fail(e.key, file_lease?.token ?? '', { error });
        await memory.fail(e.key, memory_lease?.token ?? '', { error });
      } else {
        await file.complete(e.key, file_lease?.token ?? '', { durationMs });
        await memory.complete(e.key, memory_lease?.token ?? '', { durationMs });
      }
      await both((q) => q.uriStats(uri));
      if (i % 10 === 0) await both((q) => q.reportWorker(`w${String(i % 3)}`, i % 5, 30_000));
      await both((q) => q.capacity());
      await clock.advance(Math.round(random() * 20_000));
    }
    await both((q) => q.uriStats());
    await both((q) => q.activity(10));
    await both((q) => q.activity(3));
    await both((q) => q.activity(0));
    await both((q) => q.activity(60));
    await clock.advance(40_000);
    await both((q) => q.capacity());
  });

  it('counts a lease lost on the last attempt as failed in the activity', async function () {
    await both(async (q) => (await q.enqueue(entry('a', {}, { maxAttempts: 1 }), NO_LIMITS)).outcome);
    await both(async (q) => (await q.claim(claimOptions({ leaseMs: 100 })))?.record.key);
    await clock.advance(100);
    await both((q) => q.activity(1));
    await both(async (q) => (await q.sweep()).failed.map((r) => r.key));
  });

  it('counts each transition once when a transaction rolls back while it writes the waiting counts', async function () {
    await both(async (q) => (await q.enqueue(entry('a', { group: 'g1' }), NO_LIMITS)).outcome);
    await both(async (q) => (await q.enqueue(entry('c', { group: 'g2' }), NO_LIMITS)).outcome);
    // The counts are now due: the next transaction writes them, and the write of g2's fails.
    await clock.advance(1_500);
    const other = new Database(join(dir, 'queue.sqlite'));
    try {
      other.exec(
        `CREATE TRIGGER fail_g2 BEFORE INSERT ON activity WHEN new.grp = 'g2' BEGIN SELECT RAISE(ABORT, 'injected'); END`,
      );
      const failed: unknown = await file.enqueue(entry('b', { group: 'g1' }), NO_LIMITS).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect((failed as { code?: string } | undefined)?.code).to.equal('BACKEND');
      expect(await file.get('b')).to.equal(undefined);
      other.exec('DROP TRIGGER fail_g2');
    } finally {
      other.close();
    }
    // The memory queue saw the same two submits, not the one that rolled back.
    await both((q) => q.activity(1));
  });

  it('writes run times with the batched counts: at once for this process, within a second for others', async function () {
    // Reads of statistics not cached, so that what is measured is when the run times are written.
    const other = new FileQueueManager({ dir, statsCacheMs: 0 }, clock);
    try {
      for (const [key, durationMs] of [
        ['r1', 100],
        ['r2', 300],
      ] as const) {
        await both(async (q) => (await q.enqueue(entry(key, { uri: '/runs' }), NO_LIMITS)).outcome);
        const fileLease = await file.claim(claimOptions());
        const memoryLease = await memory.claim(claimOptions());
        await file.complete(key, fileLease?.token ?? '', { durationMs });
        await memory.complete(key, memoryLease?.token ?? '', { durationMs });
      }
      // This process sees its own run times (merged over the stored row), other processes not yet.
      const expected = await both((q) => q.uriStats('/runs'));
      expect(expected[0]?.count).to.equal(2);
      await both((q) => q.uriStats());
      expect(await other.uriStats('/runs')).to.deep.equal([]);
      // A transaction of this process a second later writes them, as it writes the counts.
      await clock.advance(1_000);
      await both(async (q) => (await q.enqueue(entry('r3', { uri: '/runs' }), NO_LIMITS)).outcome);
      expect(await other.uriStats('/runs')).to.deep.equal(expected);
      expect(await file.uriStats('/runs')).to.deep.equal(expected);
    } finally {
      await other.close();
    }
  });

  it('reads other processes run times again after statsCacheMs while its own wait to be written', async function () {
    // Review finding: with run times of its own waiting, a process answered from one snapshot of
    // the stored statistics until it wrote them, however long that took.
    const other = new FileQueueManager({ dir, statsCacheMs: 0 }, clock);
    const reader = new FileQueueManager({ dir, statsCacheMs: 500 }, clock);
    try {
      await reader.enqueue(entry('mine', { uri: '/stale' }), NO_LIMITS);
      const mine = await reader.claim(claimOptions());
      await reader.complete('mine', mine?.token ?? '', { durationMs: 1000 });
      expect((await reader.uriStats('/stale'))[0]?.count).to.equal(1);
      for (const key of ['o1', 'o2', 'o3']) {
        await other.enqueue(entry(key, { uri: '/stale' }), NO_LIMITS);
        const lease = await other.claim(claimOptions());
        await other.complete(key, lease?.token ?? '', { durationMs: 10 });
      }
      await other.close();
      // Within statsCacheMs the snapshot stands; after it, the other process's three count too.
      await clock.advance(499);
      expect((await reader.uriStats('/stale'))[0]?.count).to.equal(1);
      await clock.advance(1);
      expect((await reader.uriStats('/stale'))[0]?.count).to.equal(4);
    } finally {
      await other.close();
      await reader.close();
    }
  });

  it('reuses capacity and uri statistics read for statsCacheMs: its own writes and expired workers at once', async function () {
    const other = new FileQueueManager({ dir }, clock);
    const fresh = new FileQueueManager({ dir, statsCacheMs: 0 }, clock);
    const runOnce = async (key: string, durationMs: number): Promise<void> => {
      // A process that runs one job and stops (closing writes its batched run times).
      const worker = new FileQueueManager({ dir }, clock);
      try {
        await worker.enqueue(entry(key, { uri: '/eta' }), NO_LIMITS);
        const lease = await worker.claim(claimOptions());
        await worker.complete(key, lease?.token ?? '', { durationMs });
      } finally {
        await worker.close();
      }
    };
    try {
      await other.reportWorker('w1', 4, 10_000);
      expect(await file.capacity()).to.deep.equal({ workers: 1, slots: 4, busy: 0 });
      // Another process's report: not read again for statsCacheMs (default 2000)…
      await other.reportWorker('w2', 2, 10_000);
      expect(await file.capacity()).to.deep.equal({ workers: 1, slots: 4, busy: 0 });
      expect(await fresh.capacity()).to.deep.equal({ workers: 2, slots: 6, busy: 0 });
      // …but this process's own report is seen at once.
      await file.reportWorker('w3', 1, 500);
      expect(await file.capacity()).to.deep.equal({ workers: 3, slots: 7, busy: 0 });
      // A report stops counting when it expires, however recent the read.
      await clock.advance(500);
      expect(await file.capacity()).to.deep.equal({ workers: 2, slots: 6, busy: 0 });
      await other.removeWorker('w1');
      await clock.advance(1_999);
      expect(await file.capacity()).to.deep.equal({ workers: 2, slots: 6, busy: 0 });
      await clock.advance(1);
      expect(await file.capacity()).to.deep.equal({ workers: 1, slots: 2, busy: 0 });
      await file.removeWorker('w2');
      expect(await file.capacity()).to.deep.equal({ workers: 0, slots: 0, busy: 0 });

      await runOnce('e1', 100);
      expect((await file.uriStats('/eta'))[0]?.count).to.equal(1);
      await runOnce('e2', 300);
      expect((await file.uriStats('/eta'))[0]?.count).to.equal(1);
      expect((await fresh.uriStats('/eta'))[0]?.count).to.equal(2);
      await clock.advance(2_000);
      expect((await file.uriStats('/eta'))[0]?.count).to.equal(2);
      // Every uri at once (metrics) is never cached.
      await runOnce('e3', 200);
      expect((await file.uriStats())[0]?.count).to.equal(3);
      // A run time of this process counts at once.
      await file.enqueue(entry('e4', { uri: '/eta' }), NO_LIMITS);
      const lease = await file.claim(claimOptions());
      await file.complete('e4', lease?.token ?? '', { durationMs: 50 });
      expect((await file.uriStats('/eta'))[0]?.count).to.equal(4);
      // Once written (with the counts, a second later), read back rather than the read kept before.
      await clock.advance(1_000);
      await file.enqueue(entry('e5', { uri: '/eta' }), NO_LIMITS);
      expect((await file.uriStats('/eta'))[0]?.count).to.equal(4);
    } finally {
      await other.close();
      await fresh.close();
    }
  });

  it('rejects bad arguments the same way', async function () {
    for (const call of [
      (q: QueueManager) => q.activity(-1),
      (q: QueueManager) => q.reportWorker('w', -1, 1_000),
      (q: QueueManager) => q.reportWorker('w', 1, 0),
      (q: QueueManager) => q.claim(claimOptions({ leaseMs: 0 })),
      (q: QueueManager) => q.list({ limit: 0 }),
      (q: QueueManager) => q.list({ limit: 1, cursor: 'nope' }),
      (q: QueueManager) => q.prune(Number.NaN),
      (q: QueueManager) => q.sweep({ retainUntil: Number.NaN }),
    ]) {
      const outcome = async (q: QueueManager): Promise<string> =>
        call(q).then(
          () => 'ok',
          (error: unknown) => (error as { code?: string }).code ?? 'no code',
        );
      const expected = await outcome(memory);
      expect(expected).to.equal('INVALID_REQUEST');
      expect(await outcome(file)).to.equal(expected);
    }
  });
});
