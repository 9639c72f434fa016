import * as fs from 'node:fs';
import { join } from 'node:path';

import Database from 'better-sqlite3';

import { ConfigError } from '@armlib/core';

import { CacheLayout } from './layout.js';
import { CACHE_DB_FILE, openCacheDatabase, SCHEMA_VERSION, sqliteError } from './open-cache-database.js';

/** What {@link migrateFileCache} found and left. */
export interface FileCacheMigration {
  /** Schema version of `cache.sqlite` before. */
  readonly from: number;
  /** Schema version after: the current one. */
  readonly to: number;
}

/**
 * Moves the file cache database of `dir` (`<dir>/cache.sqlite`) to the current schema version,
 * whatever its size. A process that opens the cache migrates a database of schema version 0 by
 * itself only up to 64 MiB, since the copy holds the database's write lock; run this for a larger
 * one, with every process that uses the directory stopped. Synchronous: it blocks until done
 * (100,000 results of 1 KiB took about a second on the bench machine). A current database is left
 * as it is (`from` equals `to`).
 *
 * @param dir - the file cache's directory (its `dir` option).
 * @throws ConfigError when `dir` is not a directory or holds no cache database; BackendError when
 *   the database cannot be migrated (it is then left as it was).
 */
export function migrateFileCache(dir: string): FileCacheMigration {
  if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0')) {
    throw new ConfigError('not a file cache directory', [
      { path: '/dir', message: 'must be a non-empty path without NUL characters' },
    ]);
  }
  const layout = new CacheLayout(dir);
  const stat = fs.lstatSync(layout.root, { throwIfNoEntry: false });
  if (stat?.isDirectory() !== true) {
    throw new ConfigError('not a file cache directory', [
      { path: '/dir', message: `${layout.root} is not a directory (a symlink is not followed)` },
    ]);
  }
  const path = layout.inside(join(layout.root, CACHE_DB_FILE));
  // lstat: a symlink planted in place of the database is not followed (openCacheDatabase refuses it too).
  if (fs.lstatSync(path, { throwIfNoEntry: false })?.isFile() !== true) {
    throw new ConfigError('not a file cache directory', [
      { path: '/dir', message: `${layout.root} has no ${CACHE_DB_FILE} (or it is not a regular file)` },
    ]);
  }
  let from: unknown;
  try {
    const reader = new Database(path, { readonly: true, fileMustExist: true });
    try {
      from = reader.pragma('user_version', { simple: true });
    } finally {
      reader.close();
    }
  } catch (error) {
    throw sqliteError(error, `reading ${path}`);
  }
  openCacheDatabase(path, true, 'always').close();
  return { from: typeof from === 'number' ? from : 0, to: SCHEMA_VERSION };
}
