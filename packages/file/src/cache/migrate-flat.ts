import * as fs from 'node:fs';
import { join } from 'node:path';

import { BackendError, CACHE_AREAS } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

import { dirState, fsError, isMissing, unlinkQuietly } from './fs-util.js';
import { idTime, parseShardEntry, SHARD_PATTERN } from './layout.js';
import type { CacheLayout } from './layout.js';
import { recordLayoutVersion } from './layout-version.js';
import { readLegacyManifest } from './legacy-manifest.js';
import { otherArea } from './result-store.js';
import type { ResultStore } from './result-store.js';

/** The `cache_meta` entry that says the manifest files were imported (set in the import's transaction). */
const MIGRATED = 'migrated-from-flat-1';

/**
 * Migrates a directory of the `flat-1` layout (a manifest file per result) to rows of
 * `cache.sqlite`; the data files stay where they are, under the same names.
 *
 * 1. One transaction imports every manifest file it can read and marks the import done. Several
 *    processes opening the directory at once queue on the write lock; the ones after the first
 *    find the mark and import nothing, so a result committed in between is never overwritten by
 *    its old manifest. A key found in both areas (a crash of the old layout between two steps)
 *    keeps the newer commit, as that layout's sweep would have.
 * 2. The directory is recorded as the new layout.
 * 3. The manifest files are removed: never read again, whatever is left of them after a crash.
 *
 * A manifest the import cannot read (damaged, or of a newer armlib) is dropped: its key then has
 * no result (where the old layout refused to read it), and its data files are orphans, which a
 * sweep of the area removes. A read that fails for a passing reason (a retryable error: EIO,
 * EMFILE…) fails the whole import instead, which the next open of the cache tries again.
 */
export function migrateFlatLayout(layout: CacheLayout, store: ResultStore, durable: boolean): void {
  store.inTransaction('migrating the flat-1 layout of', (writer) => {
    if (store.meta(MIGRATED) !== undefined) return;
    for (const area of CACHE_AREAS) {
      for (const { shardDir, name, key } of manifestFiles(layout, area)) {
        let result;
        try {
          result = readLegacyManifest(join(shardDir, name), key, area);
        } catch (error) {
          // A transient failure (EIO, EMFILE…) must not drop a readable result: the import is
          // rolled back and the next open tries again. Only damage is dropped.
          if (BackendError.is(error) && error.retryable) throw error;
          continue;
        }
        if (result === undefined) continue;
        const rival = writer.find(otherArea(area), key);
        if (rival !== undefined && !(rival instanceof BackendError)) {
          if (compareCommitIds(rival.commit, result.commit) > 0) continue;
          writer.remove(rival.area, key);
        }
        writer.put(result);
      }
    }
    writer.setMeta(MIGRATED, new Date().toISOString());
  });
  recordLayoutVersion(layout, durable);
  for (const area of CACHE_AREAS) {
    for (const { shardDir, name } of manifestFiles(layout, area, true)) unlinkQuietly(join(shardDir, name));
  }
}

/**
 * The manifest files of `area` (with `temporary`, also those a commit was writing), the area and
 * shard directories checked not to be symlinks.
 */
function* manifestFiles(
  layout: CacheLayout,
  area: CacheArea,
  temporary = false,
): Generator<{ shardDir: string; name: string; key: string }> {
  const areaDir = layout.areaDir(area);
  if (dirState(areaDir) === 'missing') return;
  for (const shard of list(areaDir)) {
    if (!SHARD_PATTERN.test(shard)) continue;
    const shardDir = layout.inside(join(areaDir, shard));
    if (dirState(shardDir) !== 'dir') continue;
    for (const name of list(shardDir)) {
      const entry = parseShardEntry(name);
      if (entry?.kind === 'manifest' || (temporary && entry?.kind === 'temp-manifest')) {
        yield { shardDir, name, key: entry.key };
      }
    }
  }
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw fsError(error, `listing ${dir}`);
  }
}

/** Orders commit ids by creation time, then by their random part (the tie-break of the flat-1 layout). */
function compareCommitIds(a: string, b: string): number {
  const byTime = (idTime(a) ?? 0) - (idTime(b) ?? 0);
  return byTime !== 0 ? byTime : a < b ? -1 : a > b ? 1 : 0;
}
