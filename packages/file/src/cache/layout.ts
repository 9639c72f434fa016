import { randomInt } from 'node:crypto';
import { join, resolve, sep } from 'node:path';

import { BackendError, FORMAT_PATTERN, KEY_PATTERN } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

/** Name of the directory of writes in progress, under the root. */
export const STAGING_DIR = 'staging';
/** Name of the file, under the root, that records which layout the cache directory uses. */
export const LAYOUT_FILE = 'cache-layout';
/** Content of {@link LAYOUT_FILE} for this layout: rows in `cache.sqlite`, data files in shard directories. */
export const LAYOUT_VERSION = 'sqlite-1';
/** The layout before: a manifest file per result (`<key>@manifest`); migrated on first open (see migrate-flat.ts). */
export const FLAT_LAYOUT_VERSION = 'flat-1';
/**
 * Separator of the parts of a file name. Outside the key and format alphabets (KEY_PATTERN,
 * FORMAT_PATTERN), so a name splits into its parts unambiguously.
 */
export const NAME_SEPARATOR = '@';
/** Second part of the name of a key's manifest in the `flat-1` layout: `<key>@manifest`. */
export const MANIFEST_PART = 'manifest';

/** Digits of the creation time (epoch ms, base 36, zero-padded) that start a commit id: enough until about the year 5000. */
const TIME_DIGITS = 9;
/** Digits of the process-random part of an id (about 26 bits). */
const PROCESS_DIGITS = 5;
/** Digits of the per-process counter of an id (about 31 bits, wrapping). */
const COUNTER_DIGITS = 6;
/** Length of a commit or staging id. */
export const ID_LENGTH = TIME_DIGITS + PROCESS_DIGITS + COUNTER_DIGITS;

/**
 * A commit or staging id: `<time><process><counter>`, 20 base-36 digits. The time lets garbage
 * collection age an orphan by its name alone. Short, because it is part of every data file's name:
 * a 200-character key, the id and a 32-character format with their two separators make 254 bytes,
 * within the 255 of a file name.
 */
export const ID_PATTERN = /^[0-9a-z]{20}$/;
/** A shard directory: two lowercase hex digits. */
export const SHARD_PATTERN = /^[0-9a-f]{2}$/;
/** Prefix of the second part of a manifest being written: `<key>@manifest.<commit id>`, renamed over `<key>@manifest`. */
const TEMP_MANIFEST_PREFIX = `${MANIFEST_PART}.`;

/** What a name in a shard directory is (see {@link parseShardEntry}). */
export type ShardEntry =
  | { readonly kind: 'manifest'; readonly key: string }
  | { readonly kind: 'temp-manifest'; readonly key: string; readonly commit: string }
  | { readonly kind: 'data'; readonly key: string; readonly commit: string; readonly format: string };

/**
 * Paths of the cache under its root:
 *
 * ```
 * <root>/cache-layout                                  the layout version (sqlite-1)
 * <root>/cache.sqlite                                  the commit points: a row per (area, key), small formats inline
 * <root>/staging/<stage id>@<format>                   writes in progress (invisible)
 * <root>/<area>/<shard>/<key>@<commit id>@<format>     the other formats of one commit
 * ```
 *
 * (`<key>@manifest` and `<key>@manifest.<commit id>` are manifest files of the `flat-1` layout,
 * read once by the migration and removed.) The area and shard directories are made once and never
 * removed, so a new result creates one data file per format not kept in its row, and no
 * directory per key or per commit.
 * Every path is built from a validated key or format and checked to lie inside the root again
 * (defence in depth).
 */
export class CacheLayout {
  /** Absolute root directory. */
  readonly root: string;
  /** Absolute staging directory. */
  readonly staging: string;
  readonly #prefix: string;
  /** Area and shard directories by `<area>/<shard>` (or area alone), each checked once. */
  readonly #dirs = new Map<string, string>();
  /** The directories checked to lie inside the root (staging and those of {@link #dirs}). */
  readonly #checked = new Set<string>();

  constructor(root: string) {
    this.root = resolve(root);
    this.#prefix = this.root.endsWith(sep) ? this.root : this.root + sep;
    this.staging = this.inside(join(this.root, STAGING_DIR));
    this.#checked.add(this.staging);
  }

  /** `<root>/<area>`. */
  areaDir(area: CacheArea): string {
    return this.#dir(area);
  }

  /** `<root>/<area>/<shard of key>`. */
  shardDir(area: CacheArea, key: string): string {
    return this.#dir(`${area}/${shardOf(key)}`);
  }

  /** `<shardDir>/<key>@manifest`. */
  manifestPath(shardDir: string, key: string): string {
    return this.#child(shardDir, `${key}${NAME_SEPARATOR}${MANIFEST_PART}`);
  }

  /** `<shardDir>/<key>@manifest.<commit>`: the manifest of `commit` while it is written. */
  tempManifestPath(shardDir: string, key: string, commit: string): string {
    return this.#child(shardDir, `${key}${NAME_SEPARATOR}${TEMP_MANIFEST_PREFIX}${commit}`);
  }

  /** `<shardDir>/<key>@<commit>@<format>`. */
  dataPath(shardDir: string, key: string, commit: string, format: string): string {
    return this.#child(shardDir, `${key}${NAME_SEPARATOR}${commit}${NAME_SEPARATOR}${format}`);
  }

  /**
   * `<root>/staging/<stage id>@<format>`, or `…@<format>@<suffix>` for a further write of the
   * format in the same staged result (each write streams into a file of its own).
   */
  stagingPath(stageId: string, format: string, suffix?: string): string {
    const name = `${stageId}${NAME_SEPARATOR}${format}${suffix === undefined ? '' : NAME_SEPARATOR + suffix}`;
    return this.#child(this.staging, name);
  }

  /** A directory under the root (relative path made of known names), resolved and checked once. */
  #dir(relative: string): string {
    let dir = this.#dirs.get(relative);
    if (dir === undefined) {
      dir = this.inside(join(this.root, relative));
      this.#dirs.set(relative, dir);
      this.#checked.add(dir);
    }
    return dir;
  }

  /**
   * `<dir>/<name>`, checked to lie inside the root. For a directory this layout checked already,
   * checking that the name is a single component (no separator, NUL, `.` or `..`) keeps the path
   * inside as surely as resolving it, for far less on every call.
   */
  #child(dir: string, name: string): string {
    if (!this.#checked.has(dir)) return this.inside(join(dir, name));
    if (
      name === '' ||
      name === '.' ||
      name === '..' ||
      name.includes('/') ||
      name.includes(sep) ||
      name.includes('\0')
    ) {
      throw new BackendError(`file cache: refusing to touch ${dir}${sep}${name}: it is not one name inside ${dir}`);
    }
    return dir + sep + name;
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
 * What a name found in a shard directory is, or undefined for a name this cache never makes
 * (left alone).
 */
export function parseShardEntry(name: string): ShardEntry | undefined {
  const parts = name.split(NAME_SEPARATOR);
  const [key, second, format] = parts;
  if (key === undefined || second === undefined || !isKey(key)) return undefined;
  if (parts.length === 2) {
    if (second === MANIFEST_PART) return { kind: 'manifest', key };
    if (second.startsWith(TEMP_MANIFEST_PREFIX)) {
      const commit = second.slice(TEMP_MANIFEST_PREFIX.length);
      return ID_PATTERN.test(commit) ? { kind: 'temp-manifest', key, commit } : undefined;
    }
    return undefined;
  }
  if (parts.length === 3 && format !== undefined && ID_PATTERN.test(second) && isFormat(format)) {
    return { kind: 'data', key, commit: second, format };
  }
  return undefined;
}

/** The stage id a staging file belongs to (the part before the first separator), or undefined. */
export function stageIdOf(name: string): string | undefined {
  const id = name.slice(0, name.indexOf(NAME_SEPARATOR));
  return ID_PATTERN.test(id) ? id : undefined;
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

const PROCESS_SPACE = 36 ** PROCESS_DIGITS;
const COUNTER_SPACE = 36 ** COUNTER_DIGITS;
/** Drawn once per process: two processes collide only if these match and their counters meet in one millisecond. */
const processPart = randomInt(PROCESS_SPACE).toString(36).padStart(PROCESS_DIGITS, '0');
let counter = randomInt(COUNTER_SPACE);

/**
 * A fresh commit or staging id carrying its creation time (`notBefore` at the earliest, so that a
 * commit orders after one it replaces even if the clock stepped back). Unique to this process and
 * call; names built from it are only ever created with O_EXCL or a rename into a fresh name, so
 * even a collision could not mix two results.
 */
export function newId(notBefore = 0): string {
  counter = (counter + 1) % COUNTER_SPACE;
  const time = Math.max(Date.now(), notBefore).toString(36).padStart(TIME_DIGITS, '0');
  return time + processPart + counter.toString(36).padStart(COUNTER_DIGITS, '0');
}

/** The creation time (epoch ms) carried by an id, or undefined for any other name. */
export function idTime(id: string): number | undefined {
  return ID_PATTERN.test(id) ? parseInt(id.slice(0, TIME_DIGITS), 36) : undefined;
}

/** The rule of assertValidKey, without building an error for every stray name. */
export function isKey(name: string): boolean {
  return KEY_PATTERN.test(name) && !name.endsWith('.') && !name.includes('..');
}

/** The rule of assertValidFormat, likewise. */
export function isFormat(name: string): boolean {
  return FORMAT_PATTERN.test(name) && !name.endsWith('.') && !name.includes('..');
}
