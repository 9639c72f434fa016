import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { BackendError, ClosedError, ManualClock } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { toArmError } from '../../src/queue/sqlite-errors.js';
import { entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

use(chaiAsPromised);

function backendError(fn: () => unknown): BackendError {
  try {
    fn();
  } catch (error) {
    if (BackendError.is(error)) return error;
    throw error;
  }
  throw new Error('expected a BackendError');
}

describe('FileQueueManager: errors', function () {
  let dir: string;

  beforeEach(function () {
    dir = makeTempDir();
  });

  afterEach(function () {
    removeTempDir(dir);
  });

  it('turns a corrupt database file into a non-retryable BackendError keeping the cause', function () {
    fs.writeFileSync(path.join(dir, 'queue.sqlite'), Buffer.alloc(8192, 0x5a));
    const error = backendError(() => new FileQueueManager({ dir }, new ManualClock(T0)));
    expect(error.retryable).to.equal(false);
    expect((error.cause as { code?: string }).code).to.match(/^SQLITE_NOTADB/);
  });

  it('refuses a database written by a newer schema', async function () {
    const q = new FileQueueManager({ dir }, new ManualClock(T0));
    await q.close();
    const db = new Database(path.join(dir, 'queue.sqlite'));
    db.prepare("UPDATE meta SET value = 99 WHERE name = 'schema_version'").run();
    db.close();
    const error = backendError(() => new FileQueueManager({ dir }, new ManualClock(T0)));
    expect(error.message).to.include('schema version 99');
  });

  it('reports a lock held by another process beyond the busy timeout as a retryable BackendError', async function () {
    const q = new FileQueueManager({ dir, busyTimeoutMs: 0 }, new ManualClock(T0));
    const other = new Database(path.join(dir, 'queue.sqlite'));
    try {
      other.prepare('BEGIN IMMEDIATE').run();
      const error: unknown = await q.enqueue(entry('a'), NO_LIMITS).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!BackendError.is(error)) throw new Error(`expected a BackendError, got ${String(error)}`);
      expect(error.retryable).to.equal(true);
      expect((error.cause as { code?: string }).code).to.match(/^SQLITE_BUSY/);
      other.prepare('ROLLBACK').run();
      // Nothing half-done: the call succeeds once the lock is gone.
      expect((await q.enqueue(entry('a'), NO_LIMITS)).outcome).to.equal('created');
    } finally {
      other.close();
      await q.close();
    }
  });

  it('throws ClosedError from every call after close, and closes twice quietly', async function () {
    const q = new FileQueueManager({ dir }, new ManualClock(T0));
    await q.close();
    await q.close();
    await expect(q.get('a')).to.be.rejectedWith(ClosedError);
    await expect(q.enqueue(entry('a'), NO_LIMITS)).to.be.rejectedWith(ClosedError);
    await expect(q.sweep()).to.be.rejectedWith(ClosedError);
    await expect(q.capacity()).to.be.rejectedWith(ClosedError);
    await expect(q.isPaused()).to.be.rejectedWith(ClosedError);
  });

  it('translates only foreign errors, passing armlib errors through', function () {
    const closed = new ClosedError('x');
    expect(toArmError(closed, 'get')).to.equal(closed);
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY_SNAPSHOT' });
    const retryable = (error: unknown): boolean | undefined => (BackendError.is(error) ? error.retryable : undefined);
    const translated = toArmError(busy, 'claim');
    expect(retryable(translated)).to.equal(true);
    expect(translated.cause).to.equal(busy);
    // A full disk passes (as ENOSPC does for the cache's data files): see test/storage/retryability.test.ts.
    expect(retryable(toArmError(Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' }), 'complete'))).to.equal(
      true,
    );
    expect(retryable(toArmError(new TypeError('boom'), 'list'))).to.equal(false);
  });
});
