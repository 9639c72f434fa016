import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildRequestManager, SystemClock } from '@armlib/core';
import { FileCacheManager, FileQueueManager } from '@armlib/file';

import { armlibSystem } from './armlib-system.js';
import type { LifecycleSystem } from './drive.js';

/** Durability the file rows run with: survives `kill -9` of any process (see docs/file-backend.md). */
export const FILE_BENCH_DURABILITY = 'normal';

/**
 * armlib's lifecycle on the file backend: a fresh directory with the queue database and the cache,
 * removed when the system closes.
 */
export function fileSystem(concurrency: number, payload: Uint8Array, run: string, parent = tmpdir()): LifecycleSystem {
  const dir = mkdtempSync(join(parent, 'armlib-bench-file-'));
  const clock = new SystemClock();
  const rm = buildRequestManager({
    queue: new FileQueueManager({ dir, durability: FILE_BENCH_DURABILITY }, clock),
    cache: new FileCacheManager({ dir, durability: FILE_BENCH_DURABILITY }, clock),
    clock,
    settings: { maxQueueLength: 0, maxPendingPerOwner: 0, pollMs: 50 },
  });
  const system = armlibSystem(concurrency, payload, run, rm);
  return {
    ...system,
    async close() {
      try {
        await system.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
