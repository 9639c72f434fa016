import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { BackendError, ConfigError, ManualClock } from '@armlib/core';
import type { ArmError, StagedResult } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { shardOf } from '../../src/cache/layout.js';
import { sqliteError } from '../../src/cache/open-cache-database.js';
import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { toArmError } from '../../src/queue/sqlite-errors.js';
import { bytes, put, text } from '../cache/support.js';
import { entry, NO_LIMITS, T0 } from '../queue/fixtures.js';
import type { FileSizeLimitReport } from './file-size-limit-child.js';

/**
 * Scratch directories go under the repository's `var/` (git-ignored): a disk file system, as in
 * production, rather than the tmpfs the other tests use. This file runs as
 * `packages/file/dist/test/storage/retryability.test.js`.
 */
const SCRATCH = fileURLToPath(new URL('../../../../../var/test-storage-errors/', import.meta.url));
const CHILD = fileURLToPath(new URL('./file-size-limit-child.js', import.meta.url));
/** Padding that makes each queue record or cached result take room in its database. */
const PAD = 'x'.repeat(1000);
/** Far above anything a test writes: lifts a `max_page_count` set by a test. */
const NO_PAGE_LIMIT = 1_073_741_823;

/** The two translations of a storage failure: the queue's and the cache's. */
const TRANSLATIONS: readonly (readonly [string, (error: unknown, what: string) => ArmError])[] = [
  ['queue', toArmError],
  ['cache', sqliteError],
];

/** What `fn` throws (fails when it throws nothing). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error, nothing was thrown');
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/** Runs `fn` on a fresh connection to `file`, closed after. */
function withDatabase<T>(file: string, fn: (db: Database.Database) => T, options?: Database.Options): T {
  const db = new Database(file, options);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

// Real SQLite errors, each made the way it happens: nothing here builds an error object by hand.

/** SQLITE_FULL: `max_page_count`, SQLite's own size cap, leaves no room for one more page. */
function diskFull(dir: string): unknown {
  return withDatabase(path.join(dir, 'full.sqlite'), (db) => {
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    // Cannot go below the current size: the database may not grow by one page.
    db.pragma('max_page_count = 1');
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    return thrown(() => {
      for (let i = 0; i < 10_000; i++) insert.run(Buffer.alloc(1000));
    });
  });
}

/** SQLITE_BUSY: another connection holds the write lock, and this one does not wait. */
function lockHeld(dir: string): unknown {
  const file = path.join(dir, 'busy.sqlite');
  return withDatabase(file, (holder) => {
    holder.exec('CREATE TABLE t (k INTEGER PRIMARY KEY)');
    holder.exec('BEGIN IMMEDIATE');
    try {
      return withDatabase(file, (db) => thrown(() => db.exec('BEGIN IMMEDIATE')), { timeout: 0 });
    } finally {
      holder.exec('ROLLBACK');
    }
  });
}

/** SQLITE_NOTADB: garbage over the whole file, header included. */
function notADatabase(dir: string): unknown {
  const file = path.join(dir, 'garbage.sqlite');
  fs.writeFileSync(file, Buffer.alloc(8192, 0x5a));
  return thrown(() => withDatabase(file, (db) => db.prepare('SELECT name FROM sqlite_master').all()));
}

/** SQLITE_CORRUPT: a valid header, but garbage over one page of the table's b-tree. */
function damagedPage(dir: string): unknown {
  const file = path.join(dir, 'damaged.sqlite');
  withDatabase(file, (db) => {
    db.pragma('page_size = 4096');
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    for (let i = 0; i < 200; i++) insert.run(Buffer.alloc(100, i));
  });
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 2 * 4096);
  } finally {
    fs.closeSync(fd);
  }
  return thrown(() => withDatabase(file, (db) => db.prepare('SELECT k, v FROM t').all()));
}

/** SQLITE_CONSTRAINT_PRIMARYKEY: the same key twice. */
function duplicateKey(dir: string): unknown {
  return withDatabase(path.join(dir, 'constraint.sqlite'), (db) => {
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY)');
    db.prepare("INSERT INTO t VALUES ('a')").run();
    return thrown(() => db.prepare("INSERT INTO t VALUES ('a')").run());
  });
}

/** SQLITE_ERROR: SQL that does not parse (misuse by the program). */
function badSql(dir: string): unknown {
  return withDatabase(path.join(dir, 'syntax.sqlite'), (db) => thrown(() => db.prepare('SELEC 1')));
}

/** SQLITE_READONLY: a write through a read-only connection. */
function readOnly(dir: string): unknown {
  const file = path.join(dir, 'readonly.sqlite');
  withDatabase(file, (db) => db.exec('CREATE TABLE t (k TEXT PRIMARY KEY)'));
  return withDatabase(file, (db) => thrown(() => db.prepare("INSERT INTO t VALUES ('a')").run()), { readonly: true });
}

/** SQLITE_CANTOPEN: the database path names a directory. */
function cannotOpen(dir: string): unknown {
  const file = path.join(dir, 'a-directory.sqlite');
  fs.mkdirSync(file);
  return thrown(() => new Database(file).close());
}

/** Each real error, the code SQLite gives it, and whether the backend should call it retryable. */
const REAL_ERRORS: readonly {
  readonly what: string;
  readonly make: (dir: string) => unknown;
  readonly code: RegExp;
  readonly retryable: boolean;
}[] = [
  { what: 'a full database', make: diskFull, code: /^SQLITE_FULL$/, retryable: true },
  { what: 'a lock held by another connection', make: lockHeld, code: /^SQLITE_BUSY/, retryable: true },
  { what: 'garbage over the header', make: notADatabase, code: /^SQLITE_NOTADB$/, retryable: false },
  { what: 'a damaged page', make: damagedPage, code: /^SQLITE_CORRUPT/, retryable: false },
  { what: 'a duplicate key', make: duplicateKey, code: /^SQLITE_CONSTRAINT/, retryable: false },
  { what: 'SQL that does not parse', make: badSql, code: /^SQLITE_ERROR$/, retryable: false },
  { what: 'a write through a read-only connection', make: readOnly, code: /^SQLITE_READONLY/, retryable: false },
  { what: 'a directory at the database path', make: cannotOpen, code: /^SQLITE_CANTOPEN/, retryable: false },
];

/**
 * Records every `better-sqlite3` connection opened under `dir` while installed (each runs a
 * `pragma` right after it opens), so that a test can reach the connection of a manager it
 * created and set SQLite's `max_page_count` on it. Test-only: patches the driver's prototype,
 * nothing in the backend; call `restore` at once after the manager opened its database.
 */
function captureConnections(dir: string): { readonly connections: Database.Database[]; restore(): void } {
  const proto = Database.prototype;
  const original = Object.getOwnPropertyDescriptor(proto, 'pragma');
  const pragma: unknown = original?.value;
  if (original === undefined || typeof pragma !== 'function') throw new Error('better-sqlite3 has no pragma method');
  const connections: Database.Database[] = [];
  proto.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions): unknown {
    if (this.name.startsWith(dir + path.sep) && !connections.includes(this)) connections.push(this);
    return Reflect.apply(pragma, this, [source, options]);
  };
  return {
    connections,
    restore: () => {
      Object.defineProperty(proto, 'pragma', original);
    },
  };
}

/** The one connection `capture` recorded. */
function onlyConnection(capture: { readonly connections: Database.Database[] }): Database.Database {
  expect(capture.connections, 'connections opened').to.have.length(1);
  const [db] = capture.connections;
  if (db === undefined) throw new Error('no connection');
  return db;
}

/** The size of the database of `db`, in pages. */
function pageCount(db: Database.Database): number {
  return Number(db.pragma('page_count', { simple: true }));
}

/** A retryable BackendError for SQLITE_FULL, naming the code and keeping SQLite's error as its cause. */
function expectRetryableFull(error: unknown, context: string): void {
  if (!BackendError.is(error)) throw new Error(`${context}: expected a BackendError, got ${String(error)}`);
  expect(error.retryable, `${context}: ${error.message}`).to.equal(true);
  expect(error.message, context).to.include('SQLITE_FULL');
  expect(codeOf(error.cause), context).to.equal('SQLITE_FULL');
}

/** The files of `key` in its shard directory of `area`. */
function filesOf(dir: string, area: string, key: string): string[] {
  const shardDir = path.join(dir, area, shardOf(key));
  if (!fs.existsSync(shardDir)) return [];
  return fs.readdirSync(shardDir).filter((name) => name.startsWith(`${key}@`));
}

describe('file backend: which storage failures are retryable', function () {
  let dir: string;

  beforeEach(function () {
    fs.mkdirSync(SCRATCH, { recursive: true });
    dir = fs.mkdtempSync(SCRATCH);
  });

  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sorts real SQLite errors the same way in the queue and the cache: a full disk and a held lock pass, damage, constraints and misuse do not', function () {
    for (const { what, make, code, retryable } of REAL_ERRORS) {
      const error = make(dir);
      expect(codeOf(error), what).to.match(code);
      for (const [side, translate] of TRANSLATIONS) {
        const context = `${side}, ${what} (${String(codeOf(error))})`;
        const translated = translate(error, 'testing');
        if (!BackendError.is(translated)) throw new Error(`${context}: expected a BackendError`);
        expect(translated.retryable, `${context}: ${translated.message}`).to.equal(retryable);
        expect(translated.cause, context).to.equal(error);
        expect(translated.message, context).to.include(String(codeOf(error)));
      }
    }
  });

  it('sorts by the same rule the codes no test can provoke (given by name, as SQLite and node:fs name them)', function () {
    const table: readonly (readonly [string, boolean])[] = [
      // Passing: I/O errors, a WAL lock race, exhausted memory, contention.
      ['SQLITE_IOERR_FSYNC', true],
      ['SQLITE_IOERR_SHORT_READ', true],
      ['SQLITE_IOERR_READ', true],
      ['SQLITE_IOERR_LOCK', true],
      ['SQLITE_IOERR_SHMMAP', true],
      ['SQLITE_IOERR_IN_PAGE', true],
      ['SQLITE_PROTOCOL', true],
      ['SQLITE_NOMEM', true],
      ['SQLITE_BUSY_SNAPSHOT', true],
      ['SQLITE_LOCKED_SHAREDCACHE', true],
      // Damage, a path that cannot be opened, misuse, permissions, a cancelled statement.
      ['SQLITE_IOERR_CORRUPTFS', false],
      ['SQLITE_IOERR_DATA', false],
      ['SQLITE_CORRUPT_INDEX', false],
      ['SQLITE_CANTOPEN_ISDIR', false],
      ['SQLITE_CANTOPEN_SYMLINK', false],
      ['SQLITE_MISUSE', false],
      ['SQLITE_PERM', false],
      ['SQLITE_READONLY_DBMOVED', false],
      ['SQLITE_ABORT_ROLLBACK', false],
      ['SQLITE_INTERRUPT', false],
      ['SQLITE_TOOBIG', false],
      ['SQLITE_SCHEMA', false],
      ['SQLITE_INTERNAL', false],
      // The file system's codes, wherever they reach the queue or the cache.
      ['ENOSPC', true],
      ['EDQUOT', true],
      ['EIO', true],
      ['EMFILE', true],
      ['ENOMEM', true],
      ['EACCES', false],
      ['EROFS', false],
      ['ENOTDIR', false],
      ['EFBIG', false],
    ];
    for (const [code, retryable] of table) {
      const error = Object.assign(new Error('as reported'), { code });
      for (const [side, translate] of TRANSLATIONS) {
        const translated = translate(error, 'testing');
        const context = `${side}, ${code}: ${translated.message}`;
        expect(BackendError.is(translated) && translated.retryable, context).to.equal(retryable);
        expect(translated.message, context).to.include(code);
      }
    }
  });

  it('reports a real I/O error of the queue (a write past the file size limit: SQLITE_IOERR_WRITE) as retryable, and keeps every record it acknowledged', async function () {
    // Skipped on Windows only: the file size limit comes from the POSIX shell's `ulimit -f`, which
    // Windows lacks. Every supported machine (Linux, as CI) runs it.
    if (process.platform === 'win32') this.skip();
    // 2048 blocks of 512 bytes (dash) or 1 KiB (bash): room for the schema and a few dozen records.
    const child = spawnSync('/bin/sh', ['-c', 'ulimit -f 2048 && exec "$@"', 'sh', process.execPath, CHILD, dir], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(child.status, child.stderr).to.equal(0);
    const report = JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as FileSizeLimitReport;
    const failure = report.failure;
    if (failure === undefined) throw new Error('the file size limit was never reached');
    expect(failure.isBackendError, failure.message).to.equal(true);
    expect(failure.causeCode, failure.message).to.match(/^SQLITE_IOERR/);
    expect(failure.retryable, failure.message).to.equal(true);
    expect(failure.message).to.include(String(failure.causeCode));
    // The cache sorts that same error the same way.
    expect(failure.cache.retryable, failure.cache.message).to.equal(true);
    expect(failure.cache.sameCause).to.equal(true);
    expect(report.acknowledged.length).to.be.greaterThan(0);
    // Without the limit, every record the child was told about is there.
    const queue = new FileQueueManager({ dir }, new ManualClock(T0));
    try {
      for (const key of report.acknowledged) expect((await queue.get(key))?.state, key).to.equal('pending');
      expect((await queue.enqueue(entry('after', { body: PAD }), NO_LIMITS)).outcome).to.equal('created');
    } finally {
      await queue.close();
    }
  });

  it('FileQueueManager: enqueues that find the database full reject retryably, the records before stay, and the same calls succeed once there is room', async function () {
    const capture = captureConnections(dir);
    let queue: FileQueueManager;
    try {
      queue = new FileQueueManager({ dir }, new ManualClock(T0));
    } finally {
      capture.restore();
    }
    const db = onlyConnection(capture);
    const acknowledged: string[] = [];
    const rejected: { key: string; error: unknown }[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        await queue.enqueue(entry(`before-${String(i)}`, { body: PAD }), NO_LIMITS);
        acknowledged.push(`before-${String(i)}`);
      }
      // The database may grow by two more pages only.
      db.pragma(`max_page_count = ${String(pageCount(db) + 2)}`);
      // Batches of eight calls, each batch one group commit, until the database cannot grow.
      for (let batch = 0; rejected.length === 0 && batch < 1000; batch++) {
        const keys = Array.from({ length: 8 }, (_, i) => `k-${String(batch)}-${String(i)}`);
        const outcomes = await Promise.allSettled(
          keys.map((key) => queue.enqueue(entry(key, { body: PAD }), NO_LIMITS)),
        );
        outcomes.forEach((outcome, i) => {
          const key = keys[i] ?? '';
          if (outcome.status === 'fulfilled') acknowledged.push(key);
          else rejected.push({ key, error: outcome.reason });
        });
      }
      expect(rejected, 'rejected enqueues').to.not.have.length(0);
      for (const { key, error } of rejected) expectRetryableFull(error, key);
      // As another process sees the directory: every acknowledged record, none of the rejected ones.
      const other = new FileQueueManager({ dir }, new ManualClock(T0));
      try {
        for (const key of acknowledged) expect((await other.get(key))?.state, key).to.equal('pending');
        for (const { key } of rejected) expect(await other.get(key), key).to.equal(undefined);
      } finally {
        await other.close();
      }
      // Room again: the calls that failed succeed as they are, on the same manager.
      db.pragma(`max_page_count = ${String(NO_PAGE_LIMIT)}`);
      for (const { key } of rejected) {
        expect((await queue.enqueue(entry(key, { body: PAD }), NO_LIMITS)).outcome, key).to.equal('created');
      }
    } finally {
      db.pragma(`max_page_count = ${String(NO_PAGE_LIMIT)}`);
      await queue.close();
    }
  });

  it('FileCacheManager: a commit that finds the database full rejects retryably, leaves no data file, the results before stay, and the same staged result commits once there is room', async function () {
    const capture = captureConnections(dir);
    const cache = new FileCacheManager({ dir });
    try {
      // The cache opens its database on first use.
      await put(cache, 'first', 'persistent', { csv: 'first' });
    } finally {
      capture.restore();
    }
    const db = onlyConnection(capture);
    const committed = new Map<string, string>([['first', 'first']]);
    /** A large format: in a data file rather than in the row. */
    const big = 'y'.repeat(32 * 1024);
    let failed: { key: string; error: unknown; staged: StagedResult; csv: string } | undefined;
    try {
      for (let i = 0; failed === undefined && i < 1000; i++) {
        // Ten results first, then the database may grow by two more pages only.
        if (i === 10) db.pragma(`max_page_count = ${String(pageCount(db) + 2)}`);
        const key = `r${String(i).padStart(4, '0')}`;
        // A small format, kept in the row (which fills the database), and a large one in a file.
        const csv = `${key}:${'x'.repeat(3000)}`;
        const staged = await cache.stage(key);
        await staged.write('csv', bytes(csv), { contentType: 'text/csv' });
        await staged.write('html', bytes(big), { contentType: 'text/html' });
        try {
          await staged.commit('temporary');
          committed.set(key, csv);
        } catch (error) {
          // Kept open, as the refused commit leaves it: it is committed again below.
          failed = { key, error, staged, csv };
        }
      }
      if (failed === undefined) throw new Error('the database never filled up');
      expectRetryableFull(failed.error, failed.key);
      // The failed commit's data files, moved in before its row, are gone again.
      expect(filesOf(dir, 'temporary', failed.key)).to.deep.equal([]);
      // As another process sees the directory: every result committed before, whole; none for the failed key.
      const other = new FileCacheManager({ dir });
      try {
        for (const [key, csv] of committed) {
          expect(await text(other, key, 'csv'), key).to.equal(csv);
          if (key !== 'first') expect(await text(other, key, 'html'), key).to.equal(big);
        }
        expect(await other.head(failed.key)).to.equal(undefined);
      } finally {
        await other.close();
      }
      // Room again: the same staged result commits when the caller retries (its data file went back
      // to staging), and so does the key from a fresh staging, as a retried job would commit it.
      db.pragma(`max_page_count = ${String(NO_PAGE_LIMIT)}`);
      await failed.staged.commit('temporary');
      expect(await text(cache, failed.key, 'csv')).to.equal(failed.csv);
      expect(await text(cache, failed.key, 'html')).to.equal(big);
      await put(cache, failed.key, 'temporary', { csv: 'again', html: big });
      expect(await text(cache, failed.key, 'csv')).to.equal('again');
      expect(await text(cache, failed.key, 'html')).to.equal(big);
    } finally {
      db.pragma(`max_page_count = ${String(NO_PAGE_LIMIT)}`);
      await cache.close();
    }
  });
  it('FileCacheManager: a layout record that cannot be written for a passing reason is a retryable BackendError, a permission a ConfigError', async function () {
    // The first use of a fresh directory writes its layout record (a temporary file, renamed in).
    // The default export is node's own fs object, which the cache's `import * as fs` sees once synced.
    const nodeFs = fs;
    const original = nodeFs.writeFileSync;
    const failWith = (code: string): void => {
      nodeFs.writeFileSync = (...args: Parameters<typeof fs.writeFileSync>) => {
        const [target] = args;
        if (typeof target === 'number' && fs.readlinkSync(`/proc/self/fd/${String(target)}`).includes('cache-layout')) {
          throw Object.assign(new Error(`${code}: injected, write`), { code, syscall: 'write' });
        }
        original(...args);
      };
      syncBuiltinESMExports();
    };
    const restore = (): void => {
      nodeFs.writeFileSync = original;
      syncBuiltinESMExports();
    };
    for (const [code, retryable] of [
      ['ENOSPC', true],
      ['EIO', true],
      ['EACCES', false],
    ] as const) {
      const cacheDir = path.join(dir, code);
      let error: unknown;
      failWith(code);
      try {
        error = await new FileCacheManager({ dir: cacheDir }).head('k').then(
          () => undefined,
          (e: unknown) => e,
        );
      } finally {
        restore();
      }
      if (retryable) {
        expect(BackendError.is(error) && error.retryable, `${code}: ${String(error)}`).to.equal(true);
      } else {
        expect(ConfigError.is(error), `${code}: ${String(error)}`).to.equal(true);
      }
      expect((error as Error).cause, code).to.have.property('code', code);
      // Nothing was left half done: the next open records the layout and works.
      const again = new FileCacheManager({ dir: cacheDir });
      try {
        expect(await again.head('k')).to.equal(undefined);
        expect(fs.readFileSync(path.join(cacheDir, 'cache-layout'), 'utf8')).to.equal('sqlite-1\n');
      } finally {
        await again.close();
      }
    }
  });
});
