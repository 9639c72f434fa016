import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { ConfigError } from '@armlib/core';

/**
 * Creates the results directory and whichever of its ancestors are missing, one level at a time.
 * Node 20's recursive `mkdir` never settles when the system's `mkdir` answers ENOENT under a parent
 * that exists (`--out /proc/x`, a pseudo file system), so the demo would hang after its whole run;
 * one plain `mkdir` per level fails once instead. (`@armlib/file` has the same walk, not exported.)
 *
 * @param outDir - the directory given with `--out`.
 * @throws ConfigError naming `--out` and the path, with the file system's error as its cause, when
 *   the directory cannot be created or something other than a directory is there. The demo's
 *   entry point prints an armlib error's message without a stack trace.
 */
export async function makeOutDir(outDir: string): Promise<void> {
  const dir = resolve(outDir);
  try {
    const missing: string[] = [];
    // Bounded by the number of path components: each step moves to a strictly shorter parent.
    for (let current = dir; !(await exists(current)); current = dirname(current)) {
      missing.push(current);
      if (dirname(current) === current) break;
    }
    for (const level of missing.reverse()) {
      try {
        await mkdir(level);
      } catch (error) {
        // Another process may have made it since the walk: fine when it is a directory.
        if ((error as NodeJS.ErrnoException).code === 'EEXIST' && (await isDirectory(level))) continue;
        throw error;
      }
    }
    if (!(await isDirectory(dir))) throw new Error(`'${dir}' exists and is not a directory`);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`--out must be a directory that can be created, got '${outDir}': ${reason}`, [], {
      cause: error,
    });
  }
}

/** Whether something is at `path` (following symlinks); errors other than ENOENT are thrown. */
async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
