import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

import type { RequestManager, RequestStatus } from '@armlib/core';

import { makeOutDir } from './make-out-dir.js';

/** A result format saved to disk. */
export interface SavedFile {
  readonly key: string;
  readonly format: string;
  readonly path: string;
  readonly size: number;
}

/**
 * Streams every format of every completed request from the manager into `<outDir>/<key>.<format>`
 * (keys and format names are file-name safe by construction). Creates `outDir` when needed.
 *
 * @throws ConfigError naming `--out` when `outDir` cannot be created (see {@link makeOutDir}).
 */
export async function saveResults(
  rm: RequestManager,
  statuses: readonly RequestStatus[],
  outDir: string,
): Promise<SavedFile[]> {
  await makeOutDir(outDir);
  const saved: SavedFile[] = [];
  for (const status of statuses) {
    if (status.state !== 'completed') continue;
    for (const format of Object.keys(status.result?.formats ?? {}).sort()) {
      const result = await rm.read(status.key, format);
      // A result can vanish between status and read (cleared, evicted); skip it rather than fail.
      if (result === undefined) continue;
      const path = join(outDir, `${status.key}.${format}`);
      await pipeline(result.body, createWriteStream(path));
      saved.push({ key: status.key, format, path, size: result.size });
    }
  }
  return saved;
}
