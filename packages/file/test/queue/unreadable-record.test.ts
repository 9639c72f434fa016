import path from 'node:path';

import Database from 'better-sqlite3';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { BackendError, ManualClock } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

use(chaiAsPromised);

/** A record damaged by hand (or written by another armlib version): one column of its row rewritten. */
const DAMAGE = {
  request: "UPDATE records SET request = '{not json' WHERE key = ?",
  state: "UPDATE records SET state = 'weird' WHERE key = ?",
} as const;

describe('FileQueueManager: a record that cannot be read', function () {
  let dir: string;
  let clock: ManualClock;
  let q: FileQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new ManualClock(T0);
    q = new FileQueueManager({ dir }, clock);
  });

  afterEach(async function () {
    await q.close();
    removeTempDir(dir);
  });

  /** Runs `sql` with `key` straight on the database file, as a hand edit would. */
  function onDisk<T>(fn: (db: Database.Database) => T): T {
    const db = new Database(path.join(dir, 'queue.sqlite'));
    try {
      return fn(db);
    } finally {
      db.close();
    }
  }

  function damage(key: string, how: keyof typeof DAMAGE): void {
    onDisk((db) => db.prepare(DAMAGE[how]).run(key));
  }

  async function readError(key: string): Promise<BackendError> {
    const error: unknown = await q.get(key).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!BackendError.is(error)) throw new Error(`expected a BackendError, got ${String(error)}`);
    return error;
  }

  it('fails a damaged head at its claim, in the same transaction, and claims the records behind it', async function () {
    for (const key of ['a', 'b', 'c']) await q.enqueue(entry(key), NO_LIMITS);
    damage('a', 'request');
    const keys = (await q.claimMany(claimOptions(), 5)).map((l) => l.record.key);
    expect(keys).to.deep.equal(['b', 'c']);
    const stored = onDisk((db) =>
      db.prepare<[string], { state: string; error: string }>('SELECT state, error FROM records WHERE key = ?').get('a'),
    );
    expect(stored?.state).to.equal('failed');
    expect((JSON.parse(stored?.error ?? '{}') as { code?: string }).code).to.equal('UNREADABLE_RECORD');
    expect((await q.counts()).byState).to.include({ pending: 0, running: 2, failed: 1 });
  });

  it('reports the damaged record to get as a non-retryable BackendError naming the key', async function () {
    await q.enqueue(entry('a'), NO_LIMITS);
    damage('a', 'request');
    const error = await readError('a');
    expect(error.retryable).to.equal(false);
    expect(error.message).to.include("'a'");
  });

  it('reports a record in an unknown state to get as a BackendError, not as that state', async function () {
    await q.enqueue(entry('a'), NO_LIMITS);
    damage('a', 'state');
    expect((await readError('a')).message).to.include("unknown state 'weird'");
  });

  it('leaves damaged records out of a list page, the cursor moving past them', async function () {
    for (const key of ['a', 'b', 'c']) await q.enqueue(entry(key), NO_LIMITS);
    damage('a', 'request');
    damage('c', 'state');
    const first = await q.list({ limit: 1 });
    expect(first.items).to.deep.equal([]);
    expect(first.cursor).to.be.a('string');
    const rest = await q.list({ limit: 10, ...(first.cursor === undefined ? {} : { cursor: first.cursor }) });
    expect(rest.items.map((r) => r.key)).to.deep.equal(['b']);
    expect((await q.list({ limit: 10 })).items.map((r) => r.key)).to.deep.equal(['b']);
  });

  it('cancels a damaged record by taking it away, so its key can be submitted again', async function () {
    await q.enqueue(entry('a'), NO_LIMITS);
    await q.enqueue(entry('w'), NO_LIMITS);
    damage('a', 'request');
    damage('w', 'state');
    expect(await q.cancel('a', {})).to.deep.equal({ outcome: 'missing' });
    expect(await q.cancel('w', {})).to.deep.equal({ outcome: 'missing' });
    expect(await q.get('a')).to.equal(undefined);
    expect((await q.enqueue(entry('a'), NO_LIMITS)).outcome).to.equal('created');
    expect((await q.claim(claimOptions()))?.record.key).to.equal('a');
  });

  it('does not fail every write when a damaged record falls due (pending expiry)', async function () {
    await q.enqueue(entry('a', {}, { pendingExpiresAt: T0 + 100 }), NO_LIMITS);
    damage('a', 'request');
    await clock.advance(200);
    expect((await q.enqueue(entry('b'), NO_LIMITS)).outcome).to.equal('created');
    expect((await q.claim(claimOptions()))?.record.key).to.equal('b');
  });
});
