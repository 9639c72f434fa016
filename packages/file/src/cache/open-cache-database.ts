import * as fs from 'node:fs';

import Database from 'better-sqlite3';

import { BackendError } from '@armlib/core';
import type { ArmError } from '@armlib/core';

import { storageError } from '../queue/sqlite-errors.js';

/** Name of the results database under the root. */
export const CACHE_DB_FILE = 'cache.sqlite';
/** The files SQLite may make next to the database: each is refused when something else is there. */
const DB_COMPANIONS = ['', '-wal', '-shm', '-journal'];
/**
 * Longest wait for another process's write lock, ms. Commits, promotions and deletions wait from
 * the event loop (the group commit's LockWait); SQLite's own busy handler, which blocks the event
 * loop, waits only where a new database gets its schema, where an earlier layout is migrated and
 * in close's last commit. The cache's transactions are tiny (a few rows); only a clear or sweep of
 * a large area holds the lock longer.
 */
export const CACHE_BUSY_TIMEOUT_MS = 10_000;
/**
 * Page size of a new database. A row lives in the leaf pages of the table's b-tree; with the
 * default 4 KiB pages a `WITHOUT ROWID` table keeps at most about 1,000 bytes of a row there and
 * moves the rest to overflow pages, so a row holding a 1 KiB format spilled, the tree held three
 * rows per leaf, and a lookup took 16 µs against 4.6 µs with 8 KiB pages (about 2,000 bytes in
 * the leaf; 20,000 such rows, a throwaway script on the bench machine).
 */
const PAGE_SIZE_BYTES = 8192;
/** The WAL is cut back to this size after a burst. */
const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;
/**
 * SQLite's page cache for this connection, KiB (its default is 2 MiB). A row holds up to
 * `inlineMaxBytes` of data, so the table outgrows 2 MiB at a few thousand results, and then every
 * lookup of a key (each submit checks the cache) reads pages back from the OS.
 */
const PAGE_CACHE_KIB = 16 * 1024;

/** Schema of the results table: one row per (area, key), the commit point of a result. */
const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS results (
  area TEXT NOT NULL,
  key TEXT NOT NULL,
  v INTEGER NOT NULL,
  commit_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  fence REAL,
  formats TEXT NOT NULL,
  data BLOB,
  PRIMARY KEY (area, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
`;

/** The tables of {@link SCHEMA_SQL}: when all are there, the schema is in place. */
const SCHEMA_TABLES = ['results', 'cache_meta'];
const TABLES_SQL = SCHEMA_TABLES.map((name) => `'${name}'`).join(', ');

/**
 * Opens (creating when needed) `<root>/cache.sqlite` in WAL mode with the schema in place, as the
 * queue opens its database: `synchronous=NORMAL` survives a killed process, `FULL` (durability
 * `full`) also a power loss. The root was checked by the caller; the database and its companions
 * must not be symlinks (nor anything but regular files), so a link planted in the root cannot
 * send the cache's writes elsewhere: {@link BackendError} otherwise, as for any other planted
 * symlink.
 */
export function openCacheDatabase(path: string, durable: boolean): Database.Database {
  for (const suffix of DB_COMPANIONS) refuseNonFile(path + suffix);
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { timeout: CACHE_BUSY_TIMEOUT_MS });
    // Takes effect only on a database still empty (before WAL mode and the schema); else ignored.
    db.pragma(`page_size = ${String(PAGE_SIZE_BYTES)}`);
    const mode: unknown = db.pragma('journal_mode = WAL', { simple: true });
    if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') {
      throw new BackendError(`file cache: could not switch ${path} to WAL mode (got ${String(mode)})`);
    }
    db.pragma(`synchronous = ${durable ? 'FULL' : 'NORMAL'}`);
    // SQLite's checkpoint every 1000 pages is kept (the queue takes 4000): in two alternating
    // pairs of 10,000 small commits, 4000 was no faster here (a commit dirties a leaf page of a
    // random key, so a longer WAL holds fewer repeated pages than the queue's).
    db.pragma(`journal_size_limit = ${String(WAL_SIZE_LIMIT_BYTES)}`);
    db.pragma(`cache_size = -${String(PAGE_CACHE_KIB)}`);
    const database = db;
    // Read first: creating the schema takes the write lock, and another process holding it would
    // make this open wait inside SQLite's busy handler, which blocks the event loop. Only a new
    // database (or one another process is setting up right now) needs it.
    const tables = database
      .prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${TABLES_SQL})`)
      .all();
    if (tables.length < SCHEMA_TABLES.length) database.transaction(() => database.exec(SCHEMA_SQL)).immediate();
    return database;
  } catch (error) {
    db?.close();
    throw sqliteError(error, `opening ${path}`);
  }
}

/**
 * What the cache throws for a failure of SQLite (or of the file system around the database):
 * armlib errors pass unchanged; others become a {@link BackendError} naming the code and keeping
 * the original as `cause`, retryable for a passing condition (lock contention, a full disk, an
 * I/O error…), as the queue's and the data files' errors are: see {@link storageError}.
 */
export function sqliteError(error: unknown, what: string): ArmError {
  return storageError(error, 'file cache', what);
}

function refuseNonFile(path: string): void {
  let stat: fs.Stats | undefined;
  try {
    stat = fs.lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    throw sqliteError(error, `checking ${path}`);
  }
  if (stat === undefined || stat.isFile()) return;
  throw new BackendError(
    stat.isSymbolicLink()
      ? `file cache: refusing to follow the symlink at ${path} (nothing is read or written outside the cache directory)`
      : `file cache: ${path} should be a regular file`,
  );
}
