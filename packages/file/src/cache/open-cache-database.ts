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
 * Page size of a new database. Chosen for schema version 0, whose `WITHOUT ROWID` leaves kept at
 * most about 1,000 bytes of a row with 4 KiB pages and moved the rest to overflow pages (a lookup
 * of rows holding a 1 KiB format took 16 µs against 4.6 µs with 8 KiB pages). Kept for version 1:
 * a row with `inlineMaxBytes` of data still fits one leaf, and an existing database keeps its size.
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

/**
 * Version of the schema below, kept in the database's `user_version`. 0 is the first layout, whose
 * `results` table was `WITHOUT ROWID` on (area, key): rows, inline data included, sat in the order
 * of their random keys, so every commit rewrote a leaf page somewhere in the whole table and a
 * table larger than the page cache read a page back from the OS for each lookup. Version 1 keeps
 * rows in commit order (rowid) and finds keys through a small unique index.
 */
export const SCHEMA_VERSION = 1;

/**
 * Schema of the results table: one row per (area, key), the commit point of a result. Rows are
 * stored in the order they were written (`id`): a commit appends to the table's last pages, and
 * only the index on (area, key), about 60 bytes an entry, takes a random write. That halved the
 * cache's cost per commit on 200,000 results of 1 KiB (80 to 37 µs; a throwaway script on the bench
 * machine). `INSERT OR REPLACE` gives a replaced result a new id, at the end.
 */
const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS results (
  id INTEGER PRIMARY KEY,
  area TEXT NOT NULL,
  key TEXT NOT NULL,
  v INTEGER NOT NULL,
  commit_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  fence REAL,
  formats TEXT NOT NULL,
  data BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS results_area_key ON results (area, key);
CREATE TABLE IF NOT EXISTS cache_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = ${String(SCHEMA_VERSION)};
`;

/** The other table, for a version 0 database that lacks it and stays at version 0. */
const CACHE_META_SQL = `
CREATE TABLE IF NOT EXISTS cache_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
`;

/**
 * Moves the rows of a version 0 database to the version 1 table, oldest commit first, in the
 * caller's transaction. Processes still running the code of version 0 keep working on the new
 * table: their statements name the columns, and SQLite prepares them again after the change.
 */
const MIGRATE_FROM_0_SQL = `
ALTER TABLE results RENAME TO results_v0;
${SCHEMA_SQL}
INSERT INTO results (area, key, v, commit_id, created_at, fence, formats, data)
  SELECT area, key, v, commit_id, created_at, fence, formats, data FROM results_v0 ORDER BY created_at;
DROP TABLE results_v0;
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
export function openCacheDatabase(path: string, durable: boolean, migrate: MigratePolicy = 'auto'): Database.Database {
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
    // SQLite's checkpoint every 1000 pages is kept (the queue takes 4000): on the bench's file
    // lifecycle, 4000 was no faster here, with either schema version.
    db.pragma(`journal_size_limit = ${String(WAL_SIZE_LIMIT_BYTES)}`);
    db.pragma(`cache_size = -${String(PAGE_CACHE_KIB)}`);
    setUpSchema(db, migrate);
    return db;
  } catch (error) {
    db?.close();
    throw sqliteError(error, `opening ${path}`);
  }
}

/**
 * When opening migrates a database of schema version 0: `auto` when it is at most
 * {@link AUTO_MIGRATE_MAX_BYTES} (a failed attempt leaves it at version 0, which the cache reads
 * and writes as well), `always` whatever its size (failures are thrown).
 */
export type MigratePolicy = 'auto' | 'always';

/**
 * Largest database migrated when a process opens it: the copy holds the write lock (other
 * processes wait inside SQLite's busy handler, their event loops blocked, for at most
 * {@link CACHE_BUSY_TIMEOUT_MS}) and blocks the migrating process's event loop; 64 MiB took about
 * half a second on the bench machine. A larger one keeps version 0 until `migrateFileCache`.
 */
const AUTO_MIGRATE_MAX_BYTES = 64 * 1024 * 1024;

/** The database's schema: what is missing, if anything. */
type SchemaState = 'current' | 'tables missing' | 'version 0';

/** The schema state; throws for a database of a newer version than this code's. */
function schemaState(db: Database.Database): SchemaState {
  const version = db.pragma('user_version', { simple: true });
  if (typeof version !== 'number' || version > SCHEMA_VERSION) {
    throw new BackendError(
      `file cache: ${db.name} has schema version ${String(version)}, newer than this armlib's (${String(SCHEMA_VERSION)}): upgrade armlib`,
    );
  }
  const tables = db
    .prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${TABLES_SQL})`)
    .all();
  if (tables.length < SCHEMA_TABLES.length) return 'tables missing';
  return version === SCHEMA_VERSION ? 'current' : 'version 0';
}

/**
 * Creates a missing schema, and migrates a version 0 one as `migrate` says. Read first: both take
 * the write lock, and another process holding it makes this wait inside SQLite's busy handler,
 * which blocks the event loop; only a new database or an earlier version needs it. Checked again
 * inside the write transaction, where another process may have done it meanwhile.
 */
function setUpSchema(db: Database.Database, migrate: MigratePolicy): void {
  const state = schemaState(db);
  if (state === 'current') return;
  const pages = db.pragma('page_count', { simple: true });
  const pageSize = db.pragma('page_size', { simple: true });
  const size = typeof pages === 'number' && typeof pageSize === 'number' ? pages * pageSize : Infinity;
  const migrating = migrate === 'always' || size <= AUTO_MIGRATE_MAX_BYTES;
  if (state === 'version 0' && !migrating) return;
  try {
    db.transaction(() => {
      const now = schemaState(db);
      if (now === 'current') return;
      const hasResults = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'").get();
      if (hasResults === undefined) db.exec(SCHEMA_SQL);
      else if (migrating && db.pragma('user_version', { simple: true }) === 0) db.exec(MIGRATE_FROM_0_SQL);
      else db.exec(CACHE_META_SQL);
    }).immediate();
  } catch (error) {
    // Only a migration may fail quietly: the cache runs on version 0 as well, and a later open
    // tries again. A missing table cannot be done without.
    if (state !== 'version 0' || migrate === 'always') throw error;
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
