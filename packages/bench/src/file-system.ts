import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildRequestManager, SystemClock } from '@armlib/core';
import type { RequestManager } from '@armlib/core';
import { FileCacheManager, FileQueueManager } from '@armlib/file';

import { armlibSystem } from './armlib-system.js';
import type { LifecycleSystem } from './drive.js';

/** Durability the file rows run with: survives `kill -9` of any process (see docs/file-backend.md). */
export const FILE_BENCH_DURABILITY = 'normal';

/**
 * Where the file rows put their directories: `<repository>/var`, next to the default data
 * directory `./var/armlib`, so the bench runs on the disk a deployment would use. Not
 * `os.tmpdir()`: on the machine these benchmarks ran on, a `mkdir` under `/tmp` cost about
 * 0.7 ms of kernel time (an allocator quirk of that volume) against some 50 µs under the project,
 * which measured the volume rather than armlib.
 */
export const FILE_BENCH_PARENT = fileURLToPath(new URL('../../../../var/', import.meta.url));

/**
 * armlib's lifecycle on the file backend: a fresh directory (under `parent`, by default
 * {@link FILE_BENCH_PARENT}) with the queue database and the cache. Closing the system removes the
 * directory, unless `leftovers` is given: then its path is added there, for the caller to remove
 * once every file row has run. On ext4 without a journal (as on the machine these benchmarks ran
 * on), creating a file skips, one by one, the free inodes deleted in the last minute or so
 * (`recently_deleted` in the kernel's inode allocator), so removing one run's tens of thousands of
 * files right before the next run could slow that run's commits several times over.
 */
export function fileSystem(
  concurrency: number,
  payload: Uint8Array,
  run: string,
  parent = FILE_BENCH_PARENT,
  leftovers?: string[],
): LifecycleSystem {
  const dir = freshDir(parent, 'bench-file-');
  const system = armlibSystem(concurrency, payload, run, fileRequestManager(dir));
  return {
    ...system,
    async close() {
      try {
        await system.close();
      } finally {
        if (leftovers === undefined) removeDirs([dir]);
        else leftovers.push(dir);
      }
    },
  };
}

/** A fresh directory under `parent` (created as needed), its name starting with `prefix`. */
export function freshDir(parent: string, prefix: string): string {
  mkdirSync(parent, { recursive: true });
  return mkdtempSync(join(parent, prefix));
}

/**
 * A request manager on the file queue and cache in `dir`, with the bench's durability, no queue
 * caps and a 50 ms poll (the worker processes of the multi-process row use it too).
 */
export function fileRequestManager(dir: string): RequestManager {
  const clock = new SystemClock();
  return buildRequestManager({
    queue: new FileQueueManager({ dir, durability: FILE_BENCH_DURABILITY }, clock),
    cache: new FileCacheManager({ dir, durability: FILE_BENCH_DURABILITY }, clock),
    clock,
    settings: { maxQueueLength: 0, maxPendingPerOwner: 0, pollMs: 50 },
  });
}

/** Removes the directories of file runs. */
export function removeDirs(dirs: readonly string[]): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
