import path from 'node:path';

import { ConfigError, readAdapterOptions, tryReadAdapterOptions } from '@armlib/core';
import type { ConfigIssue } from '@armlib/core';

/** Options of the file queue (the `queue.options` of a config using the `file` adapter). */
export interface FileQueueManagerOptions {
  /**
   * Root directory shared with the file cache; the queue keeps `queue.sqlite` (and SQLite's
   * `-wal` / `-shm` files) there and nothing else. Relative paths resolve against the working
   * directory. Default `./var/armlib` (the configuration sets it from `ARMLIB_DIR`).
   */
  dir?: string;
  /**
   * `normal` (default): every committed transition survives the crash of any process (kill -9)
   * at any instant. `full`: also an OS crash or power loss (an fsync per commit; slower).
   */
  durability?: 'normal' | 'full';
  /** How long a call waits for another process's transaction to finish before failing, ms. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * How long duration statistics and worker capacity read from the database are reused, ms; default
   * 2000 (0: read on every call). They only feed ETAs and metrics. What this process writes is seen
   * at once, and a worker report stops counting when it expires; other processes' reports and run
   * times up to this long late.
   */
  statsCacheMs?: number;
}

/** Options with defaults applied and the directory made absolute. */
export interface ResolvedFileQueueOptions {
  readonly dir: string;
  readonly durability: 'normal' | 'full';
  readonly busyTimeoutMs: number;
  readonly statsCacheMs: number;
}

/** Default root directory, relative to the working directory. */
export const DEFAULT_DIR = './var/armlib';
const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DEFAULT_STATS_CACHE_MS = 2000;
/** An hour: longer would leave ETAs on figures that old. */
const MAX_STATS_CACHE_MS = 3_600_000;
/** Longer than any real path; keeps absurd values from reaching the file system. */
const MAX_DIR_LENGTH = 4096;
/** SQLite takes the busy timeout as a C int. */
const MAX_BUSY_TIMEOUT_MS = 2_147_483_647;

/** The option names of the file queue. */
const KNOWN: ReadonlySet<string> = new Set(['dir', 'durability', 'busyTimeoutMs', 'statsCacheMs']);

/**
 * Checks `queue.options` of the `file` adapter without touching the disk. Issue paths are JSON
 * pointers relative to the options (`/dir`, `/durability`, `/busyTimeoutMs`, `/statsCacheMs`). An unknown option
 * name is an issue (a misspelt option would otherwise be silently ignored); a name set to
 * `undefined` is not, as undefined keeps the default. Switching adapters by environment variable
 * still works: the configuration drops the options written for the other adapter.
 */
export function checkFileQueueOptions(given: unknown): ConfigIssue[] {
  // Each field read once: a getter or proxy trap that throws is an issue naming it, not a throw.
  const read = tryReadAdapterOptions(given, KNOWN);
  if (read.issues.length > 0) return read.issues;
  const options = read.value;
  if (options === undefined || options === null) return [];
  if (typeof options !== 'object' || Array.isArray(options)) return [{ path: '', message: 'must be an object' }];
  const issues: ConfigIssue[] = [];
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!KNOWN.has(name) && o[name] !== undefined) {
      issues.push({ path: `/${name}`, message: `unknown option (expected one of ${[...KNOWN].join(', ')})` });
    }
  }
  const dir = o['dir'];
  if (dir !== undefined) {
    if (typeof dir !== 'string' || dir.length === 0) {
      issues.push({ path: '/dir', message: 'must be a non-empty string (a directory path)' });
    } else if (dir.includes('\0')) {
      issues.push({ path: '/dir', message: 'must not contain a NUL character' });
    } else if (dir.length > MAX_DIR_LENGTH) {
      issues.push({ path: '/dir', message: `must be at most ${String(MAX_DIR_LENGTH)} characters long` });
    }
  }
  const durability = o['durability'];
  if (durability !== undefined && durability !== 'normal' && durability !== 'full') {
    issues.push({ path: '/durability', message: `must be 'normal' or 'full', got ${show(durability)}` });
  }
  const busy = o['busyTimeoutMs'];
  if (
    busy !== undefined &&
    (!Number.isSafeInteger(busy) || (busy as number) < 0 || (busy as number) > MAX_BUSY_TIMEOUT_MS)
  ) {
    issues.push({
      path: '/busyTimeoutMs',
      message: `must be an integer number of ms from 0 to ${String(MAX_BUSY_TIMEOUT_MS)}, got ${show(busy)}`,
    });
  }
  const statsCacheMs = o['statsCacheMs'];
  if (
    statsCacheMs !== undefined &&
    (!Number.isSafeInteger(statsCacheMs) ||
      (statsCacheMs as number) < 0 ||
      (statsCacheMs as number) > MAX_STATS_CACHE_MS)
  ) {
    issues.push({
      path: '/statsCacheMs',
      message: `must be an integer number of ms from 0 to ${String(MAX_STATS_CACHE_MS)}, got ${show(statsCacheMs)}`,
    });
  }
  return issues;
}

/** Validates (throwing `ConfigError` with every issue) and applies the defaults. */
export function resolveFileQueueOptions(given: FileQueueManagerOptions | null | undefined): ResolvedFileQueueOptions {
  // Each field read once: a getter or proxy trap that throws is a ConfigError naming it.
  const options = readAdapterOptions(given, KNOWN, 'invalid file queue options');
  const issues = checkFileQueueOptions(options);
  if (issues.length > 0) throw new ConfigError('invalid file queue options', issues);
  const o = (options ?? {}) as FileQueueManagerOptions;
  return {
    dir: path.resolve(process.cwd(), o.dir ?? DEFAULT_DIR),
    durability: o.durability ?? 'normal',
    busyTimeoutMs: o.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
    statsCacheMs: o.statsCacheMs ?? DEFAULT_STATS_CACHE_MS,
  };
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 40 ? `${value.slice(0, 40)}…` : value}'`;
  if (value === null) return 'null';
  try {
    if (Array.isArray(value)) return 'an array';
  } catch {
    // A revoked proxy: an object.
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return `a ${typeof value}`;
}
