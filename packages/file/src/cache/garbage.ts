import * as fs from 'node:fs';
import { join } from 'node:path';

import { dirState, removeQuietly, unlinkQuietly } from './fs-util.js';
import { idTime, stageIdOf } from './layout.js';
import type { ShardEntry } from './layout.js';

/**
 * Age after which an untouched staging is garbage: the write that owned it died. Generous,
 * because a long job may stage one format and compute for hours before writing the next (a file
 * being written is touched all along, and each write creates a fresh file of its staging).
 */
export const STALE_STAGING_MS = 24 * 60 * 60 * 1000;
/**
 * Age after which a data file that no row names (or a manifest file the `flat-1` layout was
 * writing) is garbage: a commit writes its row milliseconds after moving its files in, so an hour
 * means the committing process died in between (and a commit that stalls half this long gives up
 * rather than write its row).
 */
export const STALE_COMMIT_MS = 60 * 60 * 1000;

/**
 * Removes the stagings untouched for {@link STALE_STAGING_MS}: the files of one staging
 * (`<stage id>@…`) go together, aged by the newest mtime among them, or by the time in the stage
 * id when that is later (a promotion's hard links keep the mtime of an old result's files). Real
 * time, not the injected clock: mtimes are real. Returns how many entries went. Throws only when
 * the staging directory is a symlink; other failures leave garbage for the next time.
 */
export function collectStaging(stagingDir: string, now = Date.now()): number {
  // The one check that may throw: never list (let alone delete in) a directory a symlink points to.
  if (dirState(stagingDir) === 'missing') return 0;
  const stagings = new Map<string, { newest: number; names: string[] }>();
  for (const name of listQuietly(stagingDir)) {
    const mtime = lstatQuietly(join(stagingDir, name))?.mtimeMs;
    if (mtime === undefined) continue;
    // A name of no staging (left by hand, or by a crash of something else) is aged alone.
    const stageId = stageIdOf(name);
    const group = stageId ?? name;
    const staging = stagings.get(group);
    const born = stageId === undefined ? undefined : idTime(stageId);
    if (staging === undefined) stagings.set(group, { newest: Math.max(mtime, born ?? mtime), names: [name] });
    else {
      staging.names.push(name);
      if (mtime > staging.newest) staging.newest = mtime;
    }
  }
  let removed = 0;
  for (const { newest, names } of stagings.values()) {
    if (now - newest <= STALE_STAGING_MS) continue;
    for (const name of names) removeQuietly(join(stagingDir, name));
    removed += names.length;
  }
  return removed;
}

/**
 * Removes what a crash left of one key in its shard directory: data files of commits other than
 * `current` (the commit its row names, if any), and temporary manifest files of the `flat-1`
 * layout, older than {@link STALE_COMMIT_MS} by the time in their commit id. Younger leftovers may
 * be a concurrent commit between moving its files in and writing its row, so they stay. Never
 * throws.
 */
export function collectOrphans(
  shardDir: string,
  entries: readonly { readonly name: string; readonly entry: ShardEntry }[],
  current: string | undefined,
  now = Date.now(),
): number {
  let removed = 0;
  for (const { name, entry } of entries) {
    if (entry.kind === 'manifest' || entry.commit === current) continue;
    const committedAt = idTime(entry.commit);
    if (committedAt !== undefined && now - committedAt > STALE_COMMIT_MS && unlinkQuietly(join(shardDir, name))) {
      removed++;
    }
  }
  return removed;
}

function listQuietly(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function lstatQuietly(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}
