import * as fs from 'node:fs';
import { join } from 'node:path';

import { dirState, removeEmptyDir, removeQuietly } from './fs-util.js';
import { commitIdTime, MANIFEST_FILE, TEMP_MANIFEST_PATTERN } from './layout.js';

/**
 * Age after which an untouched staging entry is garbage: the write that owned it died. Generous,
 * because a long job may stage one format and compute for hours before writing the next (every
 * write and commit touches its staging directory, and a file being written is touched all along).
 */
export const STALE_STAGING_MS = 24 * 60 * 60 * 1000;
/**
 * Age after which a commit directory that no manifest names, or a temporary manifest, is garbage:
 * a commit publishes its manifest milliseconds after moving its directory in, so an hour means
 * the committing process died in between.
 */
export const STALE_COMMIT_MS = 60 * 60 * 1000;

/**
 * Removes staging entries untouched for {@link STALE_STAGING_MS} (by the newest mtime of the
 * entry and of the files in it). Real time, not the injected clock: mtimes are real.
 * Returns how many went. Throws only when the staging directory is a symlink; other failures
 * leave garbage for the next time.
 */
export function collectStaging(stagingDir: string, now = Date.now()): number {
  // The one check that may throw: never list (let alone delete in) a directory a symlink points to.
  if (dirState(stagingDir) === 'missing') return 0;
  let removed = 0;
  for (const name of listQuietly(stagingDir)) {
    const path = join(stagingDir, name);
    const touched = newestMtime(path);
    if (touched !== undefined && now - touched > STALE_STAGING_MS) {
      removeQuietly(path);
      removed++;
    }
  }
  return removed;
}

/**
 * Removes what a crash left in one key directory: commit directories that `current` (the commit
 * the manifest names, if any) is not and that are older than {@link STALE_COMMIT_MS}, and stale
 * temporary manifests; then the key directory itself when it is empty. Younger leftovers may be a
 * concurrent commit between its two renames, so they stay. Never throws.
 */
export function collectKeyDir(keyDir: string, current: string | undefined, now = Date.now()): number {
  let removed = 0;
  for (const name of listQuietly(keyDir)) {
    if (name === MANIFEST_FILE || name === current) continue;
    const committedAt = commitIdTime(name);
    if (committedAt !== undefined) {
      if (now - committedAt > STALE_COMMIT_MS) {
        removeQuietly(join(keyDir, name));
        removed++;
      }
    } else if (TEMP_MANIFEST_PATTERN.test(name)) {
      const touched = newestMtime(join(keyDir, name));
      if (touched !== undefined && now - touched > STALE_COMMIT_MS) {
        removeQuietly(join(keyDir, name));
        removed++;
      }
    }
  }
  if (current === undefined) removeEmptyDir(keyDir);
  return removed;
}

function listQuietly(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Newest mtime of `path` and, for a directory, of its direct entries (not following symlinks). */
function newestMtime(path: string): number | undefined {
  const stat = lstatQuietly(path);
  if (stat === undefined) return undefined;
  let newest = stat.mtimeMs;
  if (stat.isDirectory()) {
    for (const name of listQuietly(path)) {
      const entry = lstatQuietly(join(path, name));
      if (entry !== undefined && entry.mtimeMs > newest) newest = entry.mtimeMs;
    }
  }
  return newest;
}

function lstatQuietly(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}
