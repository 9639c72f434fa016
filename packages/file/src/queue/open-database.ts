import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';

import { BackendError, ConfigError } from '@armlib/core';

import { makeDirectories } from '../make-directories.js';
import type { ResolvedFileQueueOptions } from './options.js';
import { DB_FILE, SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';
import { toArmError } from './sqlite-errors.js';

const WAL_AUTOCHECKPOINT_PAGES = 4000;
const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;
/** The files the queue may touch inside its directory: the database and SQLite's companions. */
const DB_FILES = [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, `${DB_FILE}-journal`];

/**
 * Opens (creating when needed) `<dir>/queue.sqlite` in WAL mode with the schema in place.
 *
 * Confinement: the directory is created like `mkdir -p` ({@link makeDirectories}, not Node's
 * recursive mode, which hangs under `/proc`) and must be a real directory; it and the
 * database files must not be symlinks, so a link planted in the root cannot send the queue's
 * writes elsewhere. Throws `ConfigError` for those, `BackendError` for anything the file system
 * or SQLite refuses (a corrupt file, a newer schema, no permission).
 */
export function openQueueDatabase(options: ResolvedFileQueueOptions): Database.Database {
  const dir = options.dir;
  prepareDirectory(dir);
  let db: Database.Database | undefined;
  try {
    db = new Database(path.join(dir, DB_FILE), { timeout: options.busyTimeoutMs });
    configure(db, options);
    return db;
  } catch (error) {
    db?.close();
    throw toArmError(error, `opening ${path.join(dir, DB_FILE)}`);
  }
}

function prepareDirectory(dir: string): void {
  const existing = lstat(dir);
  if (existing?.isSymbolicLink() === true) {
    throw new ConfigError('invalid file queue options', [
      { path: '/dir', message: `'${dir}' is a symbolic link; give the real directory` },
    ]);
  }
  if (existing !== undefined && !existing.isDirectory()) {
    throw new ConfigError('invalid file queue options', [{ path: '/dir', message: `'${dir}' is not a directory` }]);
  }
  if (existing === undefined) {
    try {
      makeDirectories(dir, 0o700);
    } catch (error) {
      throw toArmError(error, `creating the directory '${dir}' (the dir option)`);
    }
  }
  for (const name of DB_FILES) {
    const stat = lstat(path.join(dir, name));
    if (stat !== undefined && (stat.isSymbolicLink() || !stat.isFile())) {
      throw new ConfigError('invalid file queue options', [
        {
          path: '/dir',
          message: `'${path.join(dir, name)}' is not a regular file (a symbolic link?); refusing to use it`,
        },
      ]);
    }
  }
}

function lstat(file: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw toArmError(error, `inspecting '${file}'`);
  }
}

function configure(db: Database.Database, options: ResolvedFileQueueOptions): void {
  // busy_timeout first: switching to WAL and creating the schema may wait for another process.
  db.pragma(`busy_timeout = ${String(options.busyTimeoutMs)}`);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') {
    throw new BackendError(`file queue: could not switch ${DB_FILE} to WAL mode (got ${String(mode)})`);
  }
  // WAL frames reach the OS at each commit (kill -9 safe); FULL also fsyncs them (power-loss safe).
  db.pragma(`synchronous = ${options.durability === 'full' ? 'FULL' : 'NORMAL'}`);
  // A checkpoint (copying the WAL into the database, with an fsync) every 4000 pages rather than
  // SQLite's 1000: hot pages (group counts, indexes) are copied once per checkpoint, however often
  // they were written, and the fsyncs are rarer. The WAL is cut back to 16 MiB after a burst.
  db.pragma(`wal_autocheckpoint = ${String(WAL_AUTOCHECKPOINT_PAGES)}`);
  db.pragma(`journal_size_limit = ${String(WAL_SIZE_LIMIT_BYTES)}`);
  // Savepoints (one per call in a group commit) and statements with triggers keep the pages they
  // change in a statement journal; SQLite's default moves it to a temporary file past 64 KiB, and a
  // batch of claims passed that in most transactions: most of this database's writes went to that
  // file. In memory, the file lifecycle of the bench ran about 15 % faster. Every call here changes
  // a bounded number of records, but for applying due transitions (prune works in chunks).
  db.pragma('temp_store = MEMORY');
  db.transaction(() => {
    db.exec(SCHEMA_SQL);
    const version = db.prepare("SELECT value FROM meta WHERE name = 'schema_version'").pluck().get();
    if (typeof version !== 'number' || version > SCHEMA_VERSION) {
      throw new BackendError(
        `file queue: ${DB_FILE} has schema version ${String(version)}, this armlib knows up to ${String(SCHEMA_VERSION)}`,
      );
    }
  }).immediate();
}
