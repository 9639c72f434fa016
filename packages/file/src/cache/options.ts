import { resolve } from 'node:path';

import { ConfigError } from '@armlib/core';
import type { ConfigIssue } from '@armlib/core';

/** Options of {@link FileCacheManager} (the `cache.options` of a config using the `file` adapter). */
export interface FileCacheManagerOptions {
  /** Root directory shared with the file queue, resolved against the working directory. Default `./var/armlib` (or `ARMLIB_DIR`). */
  dir?: string;
  /**
   * `normal` (default): survives any process crash (kill -9), since every publish is a rename.
   * `full`: also an OS crash or power loss: files, manifests and directories are fsynced around each rename.
   */
  durability?: 'normal' | 'full';
  /** Prefix of routed result URLs (the host serves them through `RequestManager.read`). Default '/results/'. */
  urlPrefix?: string;
}

/** {@link FileCacheManagerOptions} with every default applied and `dir` made absolute. */
export interface ResolvedFileCacheOptions {
  readonly dir: string;
  readonly durability: 'normal' | 'full';
  readonly urlPrefix: string;
}

/** Defaults of {@link FileCacheManagerOptions} (`dir` before it is resolved against the working directory). */
export const FILE_CACHE_DEFAULTS: Readonly<Required<FileCacheManagerOptions>> = Object.freeze({
  dir: './var/armlib',
  durability: 'normal',
  urlPrefix: '/results/',
});

/**
 * Checks `cache.options` of the `file` adapter without touching the disk. Paths are relative to
 * the options (`/dir`, `/durability`, `/urlPrefix`); unknown option names are ignored, so that
 * switching `cache.adapter` does not fail on options meant for another adapter.
 */
export function checkFileCacheOptions(options: unknown): ConfigIssue[] {
  if (options === undefined || options === null) return [];
  if (typeof options !== 'object' || Array.isArray(options)) return [{ path: '', message: 'must be an object' }];
  const { dir, durability, urlPrefix } = options as Record<string, unknown>;
  const issues: ConfigIssue[] = [];
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
  return issues;
}

/** Validates and completes the options; throws {@link ConfigError} listing every issue. */
export function resolveFileCacheOptions(options: unknown): ResolvedFileCacheOptions {
  const issues = checkFileCacheOptions(options);
  if (issues.length > 0) throw new ConfigError('invalid file cache options', issues);
  const given = (options ?? {}) as FileCacheManagerOptions;
  return Object.freeze({
    dir: resolve(given.dir ?? FILE_CACHE_DEFAULTS.dir),
    durability: given.durability ?? FILE_CACHE_DEFAULTS.durability,
    urlPrefix: given.urlPrefix ?? FILE_CACHE_DEFAULTS.urlPrefix,
  });
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\0/g, '\\0')}'`;
  return value === undefined || typeof value === 'function' ? String(value) : JSON.stringify(value);
}
