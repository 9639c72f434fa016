import { resolve } from 'node:path';

import { ConfigError, readAdapterOptions, tryReadAdapterOptions } from '@armlib/core';
import type { ConfigIssue } from '@armlib/core';

/** Options of {@link FileCacheManager} (the `cache.options` of a config using the `file` adapter). */
export interface FileCacheManagerOptions {
  /** Root directory shared with the file queue, resolved against the working directory. Default `./var/armlib` (or `ARMLIB_DIR`). */
  dir?: string;
  /**
   * `normal` (default): survives any process crash (kill -9): every publish is a rename of its files
   * and a SQLite transaction (WAL, `synchronous=NORMAL`).
   * `full`: also an OS crash or power loss: files and their directory are fsynced before the
   * transaction, which commits with `synchronous=FULL`.
   */
  durability?: 'normal' | 'full';
  /** Prefix of routed result URLs (the host serves them through `RequestManager.read`). Default '/results/'. */
  urlPrefix?: string;
  /**
   * Formats of at most this many bytes are kept inside the result's row of `cache.sqlite` instead
   * of a file of their own (up to 4 times this much per result): a small result then creates no
   * file at all, where creating one is most of a small commit's cost on a disk file system.
   * Default 8192; 0 keeps every format in a file; at most 65536.
   */
  inlineMaxBytes?: number;
}

/** {@link FileCacheManagerOptions} with every default applied and `dir` made absolute. */
export interface ResolvedFileCacheOptions {
  readonly dir: string;
  readonly durability: 'normal' | 'full';
  readonly urlPrefix: string;
  readonly inlineMaxBytes: number;
}

/** Defaults of {@link FileCacheManagerOptions} (`dir` before it is resolved against the working directory). */
export const FILE_CACHE_DEFAULTS: Readonly<Required<FileCacheManagerOptions>> = Object.freeze({
  dir: './var/armlib',
  durability: 'normal',
  urlPrefix: '/results/',
  inlineMaxBytes: 8192,
});

const KNOWN_OPTIONS: readonly string[] = ['dir', 'durability', 'urlPrefix', 'inlineMaxBytes'];

/** Upper bound of `inlineMaxBytes`: rows are read whole on every lookup. */
const MAX_INLINE_BYTES = 65536;

/**
 * Checks `cache.options` of the `file` adapter without touching the disk. Paths are relative to
 * the options (`/dir`, `/durability`, `/urlPrefix`, `/inlineMaxBytes`). An unknown option name is an
 * issue: a misspelt `durabilty` would otherwise run with the default durability unnoticed (the
 * config loader drops options written for another adapter when an environment variable switches it).
 */
export function checkFileCacheOptions(raw: unknown): ConfigIssue[] {
  // Each field read once: a getter or proxy trap that throws is an issue naming it, not a throw.
  const read = tryReadAdapterOptions(raw, KNOWN_OPTIONS);
  if (read.issues.length > 0) return read.issues;
  const options = read.value;
  if (options === undefined || options === null) return [];
  if (typeof options !== 'object' || Array.isArray(options)) return [{ path: '', message: 'must be an object' }];
  const given = options as Record<string, unknown>;
  const { dir, durability, urlPrefix, inlineMaxBytes } = given;
  const issues: ConfigIssue[] = [];
  for (const name of Object.keys(given)) {
    if (!KNOWN_OPTIONS.includes(name) && given[name] !== undefined) {
      issues.push({ path: `/${name}`, message: `unknown option (expected one of ${KNOWN_OPTIONS.join(', ')})` });
    }
  }
  if (dir !== undefined) {
    if (typeof dir !== 'string' || dir.trim() === '') {
      issues.push({ path: '/dir', message: `must be a non-empty string, got ${describe(dir)}` });
    } else if (dir.includes('\0')) {
      issues.push({ path: '/dir', message: 'must not contain a NUL character' });
    }
  }
  if (durability !== undefined && durability !== 'normal' && durability !== 'full') {
    issues.push({ path: '/durability', message: `must be 'normal' or 'full', got ${describe(durability)}` });
  }
  if (urlPrefix !== undefined && (typeof urlPrefix !== 'string' || !urlPrefix.endsWith('/'))) {
    issues.push({ path: '/urlPrefix', message: `must be a string ending with '/', got ${describe(urlPrefix)}` });
  }
  if (
    inlineMaxBytes !== undefined &&
    (typeof inlineMaxBytes !== 'number' ||
      !Number.isSafeInteger(inlineMaxBytes) ||
      inlineMaxBytes < 0 ||
      inlineMaxBytes > MAX_INLINE_BYTES)
  ) {
    issues.push({
      path: '/inlineMaxBytes',
      message: `must be an integer from 0 to ${String(MAX_INLINE_BYTES)}, got ${describe(inlineMaxBytes)}`,
    });
  }
  return issues;
}

/** Validates and completes the options; throws {@link ConfigError} listing every issue. */
export function resolveFileCacheOptions(raw: unknown): ResolvedFileCacheOptions {
  // Each field read once: a getter or proxy trap that throws is a ConfigError naming it.
  const options = readAdapterOptions(raw, KNOWN_OPTIONS, 'invalid file cache options');
  const issues = checkFileCacheOptions(options);
  if (issues.length > 0) throw new ConfigError('invalid file cache options', issues);
  const given = (options ?? {}) as FileCacheManagerOptions;
  return Object.freeze({
    dir: resolve(given.dir ?? FILE_CACHE_DEFAULTS.dir),
    durability: given.durability ?? FILE_CACHE_DEFAULTS.durability,
    urlPrefix: given.urlPrefix ?? FILE_CACHE_DEFAULTS.urlPrefix,
    inlineMaxBytes: given.inlineMaxBytes ?? FILE_CACHE_DEFAULTS.inlineMaxBytes,
  });
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\0/g, '\\0')}'`;
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return typeof value; // a bigint, a toJSON that throws
  }
}
