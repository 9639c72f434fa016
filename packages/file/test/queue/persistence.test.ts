import { expect } from 'chai';

import { ManualClock } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, LEASE_MS, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

describe('FileQueueManager: durability across close and reopen', function () {
  let dir: string;
  let clock: ManualClock;
  const open: FileQueueManager[] = [];

  function queue(): FileQueueManager {
    const q = new FileQueueManager({ dir }, clock);
    open.push(q);
    return q;
  }

  beforeEach(function () {
    dir = makeTempDir();
    clock = new ManualClock(T0);
  });

  afterEach(async function () {
    for (const q of open.splice(0)) await q.close();
    removeTempDir(dir);
  });

  it('keeps pending, running and finished records, their order, the pause flag and the lease token', async function () {
    const first = queue();
    await first.enqueue(entry('done'), NO_LIMITS);
    await first.enqueue(entry('low'), NO_LIMITS);
    await first.enqueue(entry('high', { priority: 5 }), NO_LIMITS);
    await first.enqueue(entry('run', { priority: 9 }), NO_LIMITS);
    const runLease = await first.claim(claimOptions());
    expect(runLease?.record.key).to.equal('run');
    await first.enqueue(entry('later'), NO_LIMITS);
    const done = await first.claim(claimOptions());
    expect(done?.record.key).to.equal('high');
    await first.complete('high', done?.token ?? '', { durationMs: 40, retainUntil: T0 + 60_000 });
    await first.setPaused(true);
    await first.close();

    const second = queue();
    expect(await second.isPaused()).to.equal(true);
    expect((await second.get('high'))?.state).to.equal('completed');
    expect((await second.get('high'))?.retainUntil).to.equal(T0 + 60_000);
    expect((await second.get('run'))?.state).to.equal('running');
    expect(await second.position('done')).to.equal(1);
    expect(await second.position('low')).to.equal(2);
    expect(await second.position('later')).to.equal(3);
    const page = await second.list({ limit: 10 });
    expect(page.items.map((r) => r.key)).to.deep.equal(['done', 'low', 'high', 'run', 'later']);
    // The lease survives: the holder keeps fencing with its token.
    const beat = await second.heartbeat('run', runLease?.token ?? '', { leaseMs: LEASE_MS, progress: 30 });
    expect(beat.cancelRequested).to.equal(false);
    expect((await second.uriStats('/reports/sales'))[0]?.count).to.equal(1);

    // New entries continue the submission order after a reopen.
    await second.enqueue(entry('newest'), NO_LIMITS);
    const all = await second.list({ limit: 10 });
    const seqs = all.items.map((r) => r.seq);
    expect([...seqs].sort((a, b) => a - b)).to.deep.equal(seqs);
    expect(all.items.at(-1)?.key).to.equal('newest');
  });

  it('keeps a seq never reused, even after the newest record is pruned', async function () {
    const first = queue();
    await first.enqueue(entry('a'), NO_LIMITS);
    const lease = await first.claim(claimOptions());
    const finished = await first.complete('a', lease?.token ?? '', { durationMs: 1 });
    await clock.advance(10);
    expect(await first.prune(clock.now())).to.equal(1);
    await first.close();

    const second = queue();
    const again = await second.enqueue(entry('a'), NO_LIMITS);
    expect(again.record.seq).to.be.greaterThan(finished.seq);
  });

  it('reports a transition applied by one instance in the next sweep of another, exactly once', async function () {
    const first = queue();
    const other = queue();
    await first.enqueue(entry('a', {}, { maxAttempts: 1 }), NO_LIMITS);
    await first.claim(claimOptions());
    await clock.advance(LEASE_MS);
    // A read in one instance applies the expiry (the lease ran out on the last attempt)...
    expect((await first.get('a'))?.state).to.equal('failed');
    // ...and a sweep in the other reports it, with the sweep's retention.
    const swept = await other.sweep({ retainUntil: clock.now() + 5_000 });
    expect(swept.failed.map((r) => [r.key, r.error?.code, r.retainUntil])).to.deep.equal([
      ['a', 'LEASE_EXPIRED', clock.now() + 5_000],
    ]);
    expect((await first.get('a'))?.retainUntil).to.equal(clock.now() + 5_000);
    const again = await first.sweep();
    expect(again.failed).to.deep.equal([]);
  });

  it('shares activity (batched), worker reports and uri statistics between instances', async function () {
    const first = queue();
    const other = queue();
    await first.reportWorker('w1', 4, 10_000);
    await first.enqueue(entry('a'), NO_LIMITS);
    const lease = await other.claim(claimOptions());
    await other.complete('a', lease?.token ?? '', { durationMs: 120 });
    expect(await other.capacity()).to.deep.equal({ workers: 1, slots: 4, busy: 0 });
    // Activity counts are batched per process: written within a second, and at every sweep.
    await first.sweep();
    const [bucket] = await other.activity(1);
    expect(bucket?.total).to.deep.equal({ submitted: 1, claimed: 1, completed: 1, failed: 0 });
    expect(await first.uriStats()).to.deep.equal([
      { uri: '/reports/sales', count: 1, avgMs: 120, p50Ms: 120, p95Ms: 120 },
    ]);
    await other.removeWorker('w1');
    expect(await first.capacity()).to.deep.equal({ workers: 0, slots: 0, busy: 0 });
  });

  it('writes batched activity counts a second after they were made, or at close', async function () {
    const first = queue();
    const other = queue();
    await first.enqueue(entry('a'), NO_LIMITS);
    expect((await other.activity(1))[0]?.total.submitted).to.equal(0);
    await clock.advance(1_000);
    // The next transaction of the counting process writes them, with its own.
    await first.enqueue(entry('b'), NO_LIMITS);
    expect((await other.activity(1))[0]?.total.submitted).to.equal(2);
    await first.enqueue(entry('c'), NO_LIMITS);
    expect((await other.activity(1))[0]?.total.submitted).to.equal(2);
    await first.close();
    expect((await other.activity(1))[0]?.total.submitted).to.equal(3);
  });
});
