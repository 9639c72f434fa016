import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { BackendError, createRequestManager, ManualClock } from '@armlib/core';
import type { RequestManager } from '@armlib/core';

import { FileCacheManager } from '../src/cache/file-cache-manager.js';
import { IDENTITY_CHECK_INTERVAL_MS } from '../src/database-identity.js';
import { FileQueueManager } from '../src/queue/file-queue-manager.js';
import { bytes, put, text } from './cache/support.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './queue/fixtures.js';
import { makeTempDir, removeTempDir } from './queue/temp-dir.js';

/**
 * A manual clock that can also jump at once, without letting the event loop turn as
 * `advance` does: for calls made in one turn, before and after the check falls due.
 */
class JumpingClock extends ManualClock {
  #offset = 0;

  override now(): number {
    return super.now() + this.#offset;
  }

  /** Moves every later reading by `ms` (back when negative), synchronously. */
  jump(ms: number): void {
    this.#offset += ms;
  }
}

/** Checks that `error` is the non-retryable BackendError saying that `file` was removed or replaced. */
function expectLost(error: unknown, file: string, how: 'removed' | 'replaced'): void {
  if (!BackendError.is(error)) throw new Error(`expected a BackendError, got ${String(error)}`);
  expect(error.retryable, error.message).to.equal(false);
  expect(error.message).to.include(file);
  expect(error.message).to.include(`was ${how}`);
}

/** Checks that `promise` rejects with the error of {@link expectLost}. */
async function lostDatabase(promise: Promise<unknown>, file: string, how: 'removed' | 'replaced'): Promise<void> {
  let error: unknown = new Error('expected a rejection, got a value');
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expectLost(error, file, how);
}

/** Replaces `<dir>/<name>` by a fresh file of the same kind, made in `scratch` by `make`. */
async function replaceFile(
  dir: string,
  name: string,
  scratch: string,
  make: (dir: string) => Promise<void>,
): Promise<void> {
  await make(scratch);
  fs.renameSync(path.join(scratch, name), path.join(dir, name));
}

describe('file backend: the database removed or replaced under a running manager', function () {
  let root: string;
  let dir: string;

  beforeEach(function () {
    root = makeTempDir('armlib-file-removed-');
    dir = path.join(root, 'armlib');
    fs.mkdirSync(dir);
  });

  afterEach(function () {
    removeTempDir(root);
  });

  describe('FileQueueManager', function () {
    it('fails every call with a non-retryable BackendError once its directory was removed', async function () {
      const clock = new ManualClock(T0);
      const q = new FileQueueManager({ dir }, clock);
      const file = path.join(dir, 'queue.sqlite');
      expect((await q.enqueue(entry('before'), NO_LIMITS)).outcome).to.equal('created');

      fs.rmSync(dir, { recursive: true, force: true });
      await clock.advance(IDENTITY_CHECK_INTERVAL_MS);

      await lostDatabase(q.enqueue(entry('after'), NO_LIMITS), file, 'removed');
      // Found once, it stays found: no further interval is needed for reads nor writes.
      await lostDatabase(q.get('before'), file, 'removed');
      await lostDatabase(q.position('before'), file, 'removed');
      await lostDatabase(q.claim(claimOptions()), file, 'removed');
      await lostDatabase(q.counts(), file, 'removed');
      await lostDatabase(q.list({ limit: 10 }), file, 'removed');
      await lostDatabase(q.isPaused(), file, 'removed');
      await lostDatabase(q.sweep(), file, 'removed');
      // Closing is the remedy, not another failure.
      await q.close();

      // A new manager on the directory created again starts from an empty queue, and works.
      const fresh = new FileQueueManager({ dir }, clock);
      try {
        expect(await fresh.get('before')).to.equal(undefined);
        expect((await fresh.enqueue(entry('after'), NO_LIMITS)).outcome).to.equal('created');
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS);
        expect((await fresh.get('after'))?.state).to.equal('pending');
        expect((await fresh.sweep()).expired).to.deep.equal([]);
      } finally {
        await fresh.close();
      }
    });

    it('fails once its queue.sqlite was replaced by another database', async function () {
      const clock = new ManualClock(T0);
      const q = new FileQueueManager({ dir }, clock);
      try {
        await q.enqueue(entry('a'), NO_LIMITS);
        await replaceFile(dir, 'queue.sqlite', path.join(root, 'other'), async (other) => {
          const made = new FileQueueManager({ dir: other }, clock);
          await made.enqueue(entry('other'), NO_LIMITS);
          await made.close();
        });
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS);
        await lostDatabase(q.get('a'), path.join(dir, 'queue.sqlite'), 'replaced');
      } finally {
        await q.close();
      }
    });

    it('does not acknowledge the calls waiting for the group commit in which the removal was found', async function () {
      const clock = new JumpingClock(T0);
      const q = new FileQueueManager({ dir }, clock);
      const file = path.join(dir, 'queue.sqlite');
      try {
        await q.enqueue(entry('a'), NO_LIMITS);
        fs.rmSync(dir, { recursive: true, force: true });
        // Made before the check falls due: it joins the next group commit.
        const early = q.enqueue(entry('b'), NO_LIMITS);
        clock.jump(IDENTITY_CHECK_INTERVAL_MS);
        // Same turn: this one finds the file gone, and its batch must not commit either.
        const late = q.enqueue(entry('c'), NO_LIMITS);
        await lostDatabase(late, file, 'removed');
        await lostDatabase(early, file, 'removed');
      } finally {
        await q.close();
      }
    });

    it('checks at once on a sweep, and when the clock steps back, without waiting for the interval', async function () {
      const clock = new JumpingClock(T0);
      const q = new FileQueueManager({ dir }, clock);
      const file = path.join(dir, 'queue.sqlite');
      try {
        await q.enqueue(entry('a'), NO_LIMITS);
        fs.rmSync(dir, { recursive: true, force: true });
        await lostDatabase(q.sweep(), file, 'removed');
      } finally {
        await q.close();
      }
      fs.mkdirSync(dir);
      const again = new FileQueueManager({ dir }, clock);
      try {
        await again.enqueue(entry('a'), NO_LIMITS);
        fs.rmSync(dir, { recursive: true, force: true });
        clock.jump(-1);
        await lostDatabase(again.get('a'), file, 'removed');
      } finally {
        await again.close();
      }
    });

    it('never reports a database that checkpoints, truncates its WAL or is vacuumed in place', async function () {
      const clock = new ManualClock(T0);
      const q = new FileQueueManager({ dir }, clock);
      const file = path.join(dir, 'queue.sqlite');
      try {
        const inode = fs.statSync(file).ino;
        for (let i = 0; i < 200; i++) await q.enqueue(entry(`k${String(i)}`), NO_LIMITS);
        const other = new Database(file);
        try {
          other.pragma('wal_checkpoint(TRUNCATE)');
          other.exec('VACUUM');
          other.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          other.close();
        }
        expect(fs.statSync(file).ino).to.equal(inode);
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS);
        expect((await q.enqueue(entry('after'), NO_LIMITS)).outcome).to.equal('created');
        expect((await q.get('k0'))?.state).to.equal('pending');
        await q.sweep();
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS * 10);
        expect((await q.counts()).byState.pending).to.equal(201);
      } finally {
        await q.close();
      }
    });
  });

  describe('FileCacheManager', function () {
    it('fails every call with a non-retryable BackendError once its directory was removed', async function () {
      const clock = new ManualClock(T0);
      const cache = new FileCacheManager({ dir, inlineMaxBytes: 0 }, clock);
      const file = path.join(dir, 'cache.sqlite');
      await put(cache, 'before', 'persistent', { csv: 'a,b\n' });
      const staged = await cache.stage('staged');
      await staged.write('csv', bytes('x\n'), { contentType: 'text/csv' });

      fs.rmSync(dir, { recursive: true, force: true });
      await clock.advance(IDENTITY_CHECK_INTERVAL_MS);

      await lostDatabase(cache.head('before'), file, 'removed');
      await lostDatabase(cache.get('before', 'csv'), file, 'removed');
      await lostDatabase(put(cache, 'after', 'persistent', { csv: 'c\n' }), file, 'removed');
      await lostDatabase(staged.commit('temporary'), file, 'removed');
      await lostDatabase(cache.promote('before'), file, 'removed');
      await lostDatabase(cache.delete('before'), file, 'removed');
      await lostDatabase(cache.list('persistent', { limit: 10 }), file, 'removed');
      await lostDatabase(cache.sweep('temporary', T0), file, 'removed');
      await staged.abort();
      await cache.close();

      const fresh = new FileCacheManager({ dir }, clock);
      try {
        expect(await fresh.head('before')).to.equal(undefined);
        await put(fresh, 'after', 'persistent', { csv: 'c\n' });
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS);
        expect(await text(fresh, 'after', 'csv')).to.equal('c\n');
      } finally {
        await fresh.close();
      }
    });

    it('fails a commit once its cache.sqlite was replaced, and a sweep checks at once', async function () {
      const clock = new ManualClock(T0);
      const cache = new FileCacheManager({ dir }, clock);
      const file = path.join(dir, 'cache.sqlite');
      try {
        await put(cache, 'a', 'temporary', { csv: '1\n' });
        const staged = await cache.stage('b');
        await staged.write('csv', bytes('2\n'), { contentType: 'text/csv' });
        await replaceFile(dir, 'cache.sqlite', path.join(root, 'other'), async (other) => {
          const made = new FileCacheManager({ dir: other }, clock);
          await put(made, 'other', 'temporary', { csv: '3\n' });
          await made.close();
        });
        // No interval passed: the sweep compares anyway.
        await lostDatabase(cache.sweep('temporary', T0), file, 'replaced');
        await lostDatabase(staged.commit('temporary'), file, 'replaced');
        await staged.abort();
      } finally {
        await cache.close();
      }
    });

    it('never reports a database that checkpoints, truncates its WAL or is vacuumed in place', async function () {
      const clock = new ManualClock(T0);
      const cache = new FileCacheManager({ dir }, clock);
      const file = path.join(dir, 'cache.sqlite');
      try {
        for (let i = 0; i < 50; i++) await put(cache, `k${String(i)}`, 'temporary', { csv: `${String(i)}\n` });
        const inode = fs.statSync(file).ino;
        const other = new Database(file);
        try {
          other.pragma('wal_checkpoint(TRUNCATE)');
          other.exec('VACUUM');
          other.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          other.close();
        }
        expect(fs.statSync(file).ino).to.equal(inode);
        await clock.advance(IDENTITY_CHECK_INTERVAL_MS);
        expect(await text(cache, 'k7', 'csv')).to.equal('7\n');
        await put(cache, 'after', 'persistent', { csv: 'ok\n' });
        expect(await cache.sweep('temporary', T0 - 1)).to.equal(0);
      } finally {
        await cache.close();
      }
    });
  });

  describe('the request manager', function () {
    let managers: RequestManager[];

    beforeEach(function () {
      managers = [];
    });

    afterEach(async function () {
      for (const rm of managers) await rm.close();
    });

    async function open(clock: ManualClock): Promise<RequestManager> {
      const rm = await createRequestManager(
        {
          queue: { adapter: 'file', options: { dir } },
          cache: { adapter: 'file', options: { dir } },
          manager: { sweepMs: 1_000 },
        },
        { env: {}, clock },
      );
      managers.push(rm);
      return rm;
    }

    it('reports a removed directory on its error event at the next sweep, and rejects submits', async function () {
      const clock = new ManualClock(T0);
      const rm = await open(clock);
      await rm.submit({ uri: '/r', key: 'before' });
      const errors: { error: unknown; context: string }[] = [];
      rm.events.on('error', (event) => {
        errors.push(event);
      });

      fs.rmSync(dir, { recursive: true, force: true });
      await clock.advance(1_000);

      expect(errors.map((e) => e.context)).to.deep.equal(['sweep']);
      expectLost(errors[0]?.error, path.join(dir, 'queue.sqlite'), 'removed');
      // The split brain the check prevents: a submit acknowledged as pending that no other process
      // sees. (The cache, read first, or the queue may be the one to tell.)
      await lostDatabase(rm.submit({ uri: '/r', key: 'after' }), dir, 'removed');

      // Another process (here a second manager) on the directory created again works.
      fs.mkdirSync(dir, { recursive: true });
      const other = await open(clock);
      expect((await other.submit({ uri: '/r', key: 'after' })).state).to.equal('pending');
      expect((await other.status('before')).state).to.equal('unknown');
    });
  });
});
