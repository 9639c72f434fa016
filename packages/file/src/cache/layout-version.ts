import * as fs from 'node:fs';
import { dirname, join } from 'node:path';

import { CACHE_AREAS, ConfigError } from '@armlib/core';

import { isRetryableStorageError } from '../queue/sqlite-errors.js';
import {
  assertRegularFile,
  CREATE_FLAGS,
  fsError,
  isMissing,
  READ_FLAGS,
  syncDirSync,
  unlinkQuietly,
} from './fs-util.js';
import { FLAT_LAYOUT_VERSION, LAYOUT_FILE, LAYOUT_VERSION, newId, STAGING_DIR } from './layout.js';
import type { CacheLayout } from './layout.js';

/**
 * Checks (once per cache instance) that the directory holds this layout, recording it in a fresh
 * directory. The layout is persistent on users' disks: a directory written by another layout (an
 * earlier armlib kept a directory per key and per commit) is refused with a {@link ConfigError}
 * rather than misread (its results would look absent, and `sweep` would leave its files forever).
 * Returns `'flat-1'` for a directory of the previous layout (manifest files), which the caller
 * migrates and then records as this layout with {@link recordLayoutVersion}.
 */
export function checkLayoutVersion(layout: CacheLayout, durable: boolean): 'current' | typeof FLAT_LAYOUT_VERSION {
  const path = join(layout.root, LAYOUT_FILE);
  let version = readVersion(path);
  if (version === undefined) {
    // Recorded before any directory of the cache exists: a directory without the record is older.
    const older = [STAGING_DIR, ...CACHE_AREAS].filter((name) => exists(join(layout.root, name)));
    // Another process opening the fresh directory at the same time may have recorded the layout
    // and made those directories since the first read: read the record again before refusing.
    if (older.length > 0) version = readVersion(path);
    if (older.length > 0 && version === undefined) {
      throw new ConfigError('the file cache directory holds an older cache layout', [
        {
          path: '/dir',
          message:
            `${layout.root} has ${older.map((name) => `${name}/`).join(', ')} but no ${LAYOUT_FILE}: ` +
            'an armlib with another cache layout wrote them. Remove those directories (the results are ' +
            'computed again on demand; the queue files may stay) or give the cache another dir',
        },
      ]);
    }
    if (version === undefined) {
      record(path, durable);
      version = readVersion(path);
    }
  }
  if (version === FLAT_LAYOUT_VERSION) return FLAT_LAYOUT_VERSION;
  if (version !== LAYOUT_VERSION) {
    throw new ConfigError('the file cache directory uses another cache layout', [
      {
        path: '/dir',
        message: `${path} says '${String(version)}' but this armlib reads '${LAYOUT_VERSION}' (and migrates '${FLAT_LAYOUT_VERSION}'): use the armlib that wrote it, or another dir`,
      },
    ]);
  }
  return 'current';
}

/** Records this layout in the directory (over the record of the layout it was migrated from). */
export function recordLayoutVersion(layout: CacheLayout, durable: boolean): void {
  record(join(layout.root, LAYOUT_FILE), durable);
}

function readVersion(path: string): string | undefined {
  try {
    const fd = fs.openSync(path, READ_FLAGS);
    try {
      assertRegularFile(fd, path);
      return fs.readFileSync(fd, 'utf8').trim();
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    if (isMissing(error)) return undefined;
    // A full disk or an I/O error passes: the open may be tried again (a permission does not).
    if (isRetryableStorageError(error)) throw fsError(error, `reading ${path}`);
    throw new ConfigError(
      'cannot read the file cache layout',
      [{ path: '/dir', message: `${path}: ${String(error)}` }],
      {
        cause: error,
      },
    );
  }
}

/**
 * Writes the record complete under a temporary name, then renames it in: no process reads a part
 * of it (processes opening the fresh directory at once all write the same record). When durable, the
 * record and its name are synced before any area directory exists: a power loss must not keep the
 * areas and lose the record, which would have the directory refused as an older layout.
 */
function record(path: string, durable: boolean): void {
  const temp = `${path}.${newId()}.tmp`;
  try {
    const fd = fs.openSync(temp, CREATE_FLAGS, 0o644);
    try {
      fs.writeFileSync(fd, `${LAYOUT_VERSION}\n`, 'utf8');
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, path);
    if (durable) syncDirSync(dirname(path));
  } catch (error) {
    if (isRetryableStorageError(error)) throw fsError(error, `recording the layout in ${path}`);
    throw new ConfigError(
      'cannot record the file cache layout',
      [{ path: '/dir', message: `${path}: ${String(error)}` }],
      {
        cause: error,
      },
    );
  } finally {
    unlinkQuietly(temp);
  }
}

function exists(path: string): boolean {
  try {
    return fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return true;
  }
}
