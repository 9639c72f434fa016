import path from 'node:path';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { BackendError, ManualClock, QueueFullError } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/** The keys of the records table, read by a connection of its own (what another process sees). */
function committedKeys(dir: string): string[] {
  const db = new Database(path.join(dir, 'queue.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT key FROM records ORDER BY seq').pluck().all() as string[];
  } finally {
    db.close();
  }
}

/** Lets the event loop turn `n` times (each `setImmediate` runs after the turn's I/O and timers). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The calls of one turn of the event loop share one transaction (group commit). */
describe('FileQueueManager: group commit', function () {
  let dir: string;
  let queue: FileQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    queue = new FileQueueManager({ dir, busyTimeoutMs: 20 }, new ManualClock(T0));
  });

  afterEach(async function () {
    await queue.close();
    removeTempDir(dir);
  });

  it('gives each call of a batch its own outcome: a failing call does not undo the others', async function () {
    const outcomes = await Promise.allSettled([
      queue.enqueue(entry('a'), NO_LIMITS),
      // The queue already holds 'a' when this call runs: over the cap.
      queue.enqueue(entry('b'), { limits: { maxQueueLength: 1 } }),
      queue.enqueue(entry('c'), NO_LIMITS),
    ]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    const rejected = outcomes[1] as PromiseRejectedResult;
    expect(QueueFullError.is(rejected.reason), String(rejected.reason)).to.equal(true);
    // Resolved only once committed: another connection sees them at once.
    expect(committedKeys(dir)).to.deep.equal(['a', 'c']);
  });

  it('runs the calls of a batch in the order they were made, reads included', async function () {
    const enqueued = queue.enqueue(entry('a'), NO_LIMITS);
    const read = queue.get('a');
    const claimed = queue.claim(claimOptions());
    const position = queue.position('a');
    expect((await enqueued).outcome).to.equal('created');
    expect((await read)?.state).to.equal('pending');
    expect((await claimed)?.record.key).to.equal('a');
    expect(await position).to.equal(undefined);
    expect((await queue.get('a'))?.state).to.equal('running');
  });

  it('fails every call of a batch, and applies none, when its transaction cannot commit', async function () {
    const other = new Database(path.join(dir, 'queue.sqlite'));
    other.exec('BEGIN IMMEDIATE');
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      outcomes = await Promise.allSettled([queue.enqueue(entry('a'), NO_LIMITS), queue.enqueue(entry('b'), NO_LIMITS)]);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    for (const outcome of outcomes) {
      expect(outcome.status).to.equal('rejected');
      const reason = (outcome as PromiseRejectedResult).reason as unknown;
      expect(BackendError.is(reason) && reason.retryable, String(reason)).to.equal(true);
    }
    expect(committedKeys(dir)).to.deep.equal([]);
    // The lock gone, the same calls go through.
    expect((await queue.enqueue(entry('a'), NO_LIMITS)).outcome).to.equal('created');
    expect(committedKeys(dir)).to.deep.equal(['a']);
  });

  describe('waiting for a lock held by another connection', function () {
    let patient: FileQueueManager;
    let other: Database.Database;

    beforeEach(function () {
      // A long busy timeout: inside SQLite's busy handler, a batch would block this event loop
      // (and the connection holding the lock, which lives on it) for the whole 10 s.
      patient = new FileQueueManager({ dir: `${dir}-patient`, busyTimeoutMs: 10_000 }, new ManualClock(T0));
      other = new Database(path.join(`${dir}-patient`, 'queue.sqlite'));
    });

    afterEach(async function () {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
      await patient.close();
      removeTempDir(`${dir}-patient`);
    });

    it('waits from the event loop, and commits once the lock is free', async function () {
      other.exec('BEGIN IMMEDIATE');
      let settled = false;
      const enqueued = patient.enqueue(entry('a'), NO_LIMITS).finally(() => {
        settled = true;
      });
      // The batch has found the lock held and waits: the event loop keeps turning meanwhile.
      await turns(20);
      expect(settled).to.equal(false);
      other.exec('ROLLBACK');
      expect((await enqueued).outcome).to.equal('created');
      expect(committedKeys(`${dir}-patient`)).to.deep.equal(['a']);
    });

    it('lets calls made while it waits join the batch after its own, in order', async function () {
      other.exec('BEGIN IMMEDIATE');
      const first = patient.enqueue(entry('a'), NO_LIMITS);
      await turns(20);
      const second = patient.enqueue(entry('b'), NO_LIMITS);
      const read = patient.get('a');
      await turns(5);
      other.exec('ROLLBACK');
      expect((await first).outcome).to.equal('created');
      expect((await second).outcome).to.equal('created');
      // The read was made after the first enqueue, so it sees it.
      expect((await read)?.state).to.equal('pending');
      expect(committedKeys(`${dir}-patient`)).to.deep.equal(['a', 'b']);
    });
  });

  it('commits what waits before closing', async function () {
    const enqueued = queue.enqueue(entry('a'), NO_LIMITS);
    await queue.close();
    expect((await enqueued).outcome).to.equal('created');
    expect(committedKeys(dir)).to.deep.equal(['a']);
  });

  describe('deadlines set earlier in the same batch', function () {
    /** A clock whose every reading is `step` ms after the previous one, once stepping. */
    class SteppingClock extends ManualClock {
      step = 0;
      #offset = 0;
      override now(): number {
        const now = super.now() + this.#offset;
        this.#offset += this.step;
        return now;
      }
    }
    let clock: SteppingClock;
    let stepping: FileQueueManager;

    beforeEach(function () {
      clock = new SteppingClock(T0);
      stepping = new FileQueueManager({ dir: `${dir}-stepping` }, clock);
    });

    afterEach(async function () {
      await stepping.close();
      removeTempDir(`${dir}-stepping`);
    });

    // The calls of a batch share what they know of the earliest deadline: each one that sets a
    // deadline must lower it, or a later call of the batch would miss a transition due by then.
    it('applies a lease set by a claim of the batch once a later call of it finds it expired', async function () {
      await stepping.enqueue(entry('a'), NO_LIMITS);
      clock.step = 10;
      const claimed = stepping.claim(claimOptions({ leaseMs: 5 }));
      const read = stepping.get('a');
      expect((await claimed)?.record.state).to.equal('running');
      const record = await read;
      expect(record?.state).to.equal('pending');
      expect(record?.attempts).to.equal(1);
    });

    it('applies a lease extended by a heartbeat of the batch once a later call of it finds it expired', async function () {
      await stepping.enqueue(entry('a'), NO_LIMITS);
      const lease = await stepping.claim(claimOptions({ leaseMs: 60_000 }));
      if (lease === undefined) throw new Error('no lease');
      // Probed first (no deadline due), then cut to 5 ms by the heartbeat.
      await stepping.get('a');
      clock.step = 10;
      const beat = stepping.heartbeat('a', lease.token, { leaseMs: 5 });
      const read = stepping.get('a');
      expect((await beat).cancelRequested).to.equal(false);
      expect((await read)?.state).to.equal('pending');
    });

    it('expires a pending record enqueued in the batch once a later call of it finds it past its deadline', async function () {
      await stepping.enqueue(entry('other'), NO_LIMITS);
      clock.step = 10;
      const enqueued = stepping.enqueue(entry('a', {}, { pendingExpiresAt: clock.now() + 15 }), NO_LIMITS);
      const read = stepping.get('a');
      expect((await enqueued).outcome).to.equal('created');
      expect((await read)?.state).to.equal('expired');
    });

    it('expires a record finished in the batch once a later call of it finds it past its retention', async function () {
      await stepping.enqueue(entry('a'), NO_LIMITS);
      const lease = await stepping.claim(claimOptions({ leaseMs: 60_000 }));
      if (lease === undefined) throw new Error('no lease');
      clock.step = 10;
      const completed = stepping.complete('a', lease.token, { durationMs: 1, retainUntil: clock.now() + 15 });
      const read = stepping.get('a');
      expect((await completed).state).to.equal('completed');
      expect(await read).to.equal(undefined);
    });
  });
});
