import { randomBytes } from 'node:crypto';
import { join, resolve, sep } from 'node:path';

import { BackendError } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

/** Name of the directory of writes in progress, under the root. */
export const STAGING_DIR = 'staging';
/** Name of the commit point of a key, in its key directory. */
export const MANIFEST_FILE = 'manifest.json';

/** A commit directory: `c<epoch ms, base 36>.<64 random bits>`; the time lets garbage collection age it. */
export const COMMIT_ID_PATTERN = /^c([0-9a-z]{1,12})\.[0-9a-f]{16}$/;
/** A shard directory: two lowercase hex digits. */
export const SHARD_PATTERN = /^[0-9a-f]{2}$/;
/** A manifest being written: renamed over {@link MANIFEST_FILE} when complete. */
export const TEMP_MANIFEST_PATTERN = /^manifest\.json\.[0-9a-f]{16}\.tmp$/;

/**
 * Paths of the cache under its root:
 *
 * ```
 * <root>/staging/s<time>.<random>/<format>            writes in progress (invisible)
 * <root>/<area>/<shard>/<key>/manifest.json           the commit point: names the commit directory
 * <root>/<area>/<shard>/<key>/c<time>.<random>/<format>
 * ```
 *
 * Every path is built from a validated key or format and checked to lie inside the root again
 * (defence in depth).
 */
export class CacheLayout {
  /** Absolute root directory. */
  readonly root: string;
  /** Absolute staging directory. */
  readonly staging: string;
  readonly #prefix: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.#prefix = this.root.endsWith(sep) ? this.root : this.root + sep;
    this.staging = this.inside(join(this.root, STAGING_DIR));
  }

  /** `<root>/<area>`. */
  areaDir(area: CacheArea): string {
    return this.inside(join(this.root, area));
  }

  /** `<root>/<area>/<shard of key>`. */
  shardDir(area: CacheArea, key: string): string {
    return this.inside(join(this.root, area, shardOf(key)));
  }

  /** `<root>/<area>/<shard of key>/<key>`. */
  keyDir(area: CacheArea, key: string): string {
    return this.inside(join(this.root, area, shardOf(key), key));
  }

  /** Returns `path` when it lies strictly inside the root; throws otherwise. */
  inside(path: string): string {
    const resolved = resolve(path);
    if (!resolved.startsWith(this.#prefix) || resolved.length === this.#prefix.length) {
      throw new BackendError(`file cache: refusing to touch ${path}: it is outside ${this.root}`);
    }
    return resolved;
  }
}

/**
 * The shard of a key: the low byte of its FNV-1a hash as two hex digits, so that no directory
 * holds more than about 1/256 of the keys. Stable across processes and versions (it is on disk).
 */
export function shardOf(key: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash & 0xff).toString(16).padStart(2, '0');
}

/**
 * 64 bits unique to this process and call: 32 random bits drawn once per process, then a counter.
 * Two processes (or restarts) collide only if their random halves match and their counters meet
 * within the same millisecond, which the time in every name makes harmless anyway: a name is
 * only ever created with O_EXCL, mkdir or a rename into a fresh name.
 */
function uniqueHex(): string {
  counter = (counter + 1) >>> 0;
  return processPart + counter.toString(16).padStart(8, '0');
}

const processPart = randomBytes(4).toString('hex');
let counter = randomBytes(4).readUInt32LE(0);

/**
 * A fresh commit (`c`) or staging (`s`) directory name, carrying its creation time (`notBefore`
 * at the earliest, so that a commit orders after one it replaces even if the clock stepped back).
 */
export function newId(kind: 'c' | 's', notBefore = 0): string {
  return `${kind}${Math.max(Date.now(), notBefore).toString(36)}.${uniqueHex()}`;
}

/** The creation time (epoch ms) carried by a commit id, or undefined for any other name. */
export function commitIdTime(name: string): number | undefined {
  const match = COMMIT_ID_PATTERN.exec(name);
  return match?.[1] === undefined ? undefined : parseInt(match[1], 36);
}

/** A fresh temporary manifest name. */
export function tempManifestName(): string {
  return `${MANIFEST_FILE}.${uniqueHex()}.tmp`;
}
