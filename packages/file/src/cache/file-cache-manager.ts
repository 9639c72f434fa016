import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { inject, injectable } from 'inversify';

import {
  assertCacheArea,
  assertValidFormat,
  assertValidKey,
  BackendError,
  CACHE_AREAS,
  decodeKeyCursor,
  encodeKeyCursor,
  ClosedError,
  ConfigError,
  InvalidRequestError,
  LeaseLostError,
  KEY_PATTERN,
  sliceRange,
  SystemClock,
  TOKENS,
} from '@armlib/core';
import type {
  CacheArea,
  CacheCapabilities,
  CachedBody,
  CacheGetOptions,
  CacheListPage,
  CacheManager,
  CacheUrlOptions,
  Clock,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';
import {
  dirState,
  ensureDir,
  errnoOf,
  fsError,
  isMissing,
  READ_FLAGS,
  removeQuietly,
  syncDir,
  syncParent,
} from './fs-util.js';
import { collectKeyDir, collectStaging } from './garbage.js';
import { CacheLayout, commitIdTime, MANIFEST_FILE, newId, SHARD_PATTERN } from './layout.js';
import { publicManifest, readManifest, writeManifest } from './manifest.js';
import type { StoredManifest } from './manifest.js';
import { resolveFileCacheOptions } from './options.js';
import type { FileCacheManagerOptions, ResolvedFileCacheOptions } from './options.js';
import { FileStagedResult } from './staged-result.js';
import type { StagingHost } from './staged-result.js';

export { checkFileCacheOptions, FILE_CACHE_DEFAULTS } from './options.js';
export type { FileCacheManagerOptions } from './options.js';

/** Largest chunk a read stream hands out (the SPI promises bounded chunks). */
const READ_CHUNK_BYTES = 64 * 1024;
/** Reads retried when a concurrent commit or delete removed the files a manifest named. */
const READ_ATTEMPTS = 8;
/** Commits retried when a concurrent delete removed the key directory in between. */
const PUBLISH_ATTEMPTS = 5;
const CURSOR_TAG = 'file1';

interface Found {
  readonly area: CacheArea;
  readonly keyDir: string;
  readonly manifest: StoredManifest;
}

/**
 * The file {@link CacheManager}: results under one root directory, shared by every process on
 * the host that opens it (a web server and its workers).
 *
 * Layout (see {@link CacheLayout}): writes stream into `<dir>/staging/<id>/<format>`; a commit
 * renames that directory to `<dir>/<area>/<shard>/<key>/<commit id>/` and then renames a complete
 * `manifest.json` naming it into the key directory, which is the commit point. Readers read the
 * manifest and open the files it names, so they see the old result or the new one, all formats
 * or none, whatever crashes in between. Only then does the key's earlier result go, from both
 * areas; a crash just before that leaves the key in both areas, where reads see the persistent
 * one (old or new, but whole) until a `sweep` of either area keeps the newer commit only.
 *
 * What a crash leaves is garbage, never read: staging entries untouched for 24 hours are removed
 * when a cache opens and by `sweep`; commit directories no manifest names and temporary manifests
 * older than an hour are removed by a `sweep` of their area (younger ones may belong to a commit
 * in flight in another process) and when their key is deleted.
 *
 * Several processes may commit one key at once: the last manifest rename wins within an area,
 * the newer commit id across the two, so one whole result remains. The superseded commits'
 * files go at once, or as garbage later when a race hid them.
 *
 * Nothing is read or written outside `dir`: keys and formats are validated, every path is checked
 * to lie inside the root, directories are checked with lstat before use and files are opened with
 * O_NOFOLLOW, so a symlink planted inside the root is refused with a {@link BackendError}.
 *
 * Routed URLs are `${urlPrefix}${key}/${format}`, served by the host through `RequestManager.read`.
 * Unknown option names are ignored.
 */
@injectable()
export class FileCacheManager implements CacheManager {
  /** Routed URLs only; any process on the host can open the same directory. */
  readonly capabilities: CacheCapabilities = Object.freeze({ signedUrls: false, sharedAcrossProcesses: true });

  readonly #options: ResolvedFileCacheOptions;
  readonly #clock: Clock;
  readonly #layout: CacheLayout;
  readonly #durable: boolean;
  readonly #host: StagingHost;
  readonly #open = new Set<FileStagedResult>();
  #ready = false;
  #closed = false;

  constructor(
    @inject(TOKENS.CacheOptions) options: FileCacheManagerOptions = {},
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    this.#options = resolveFileCacheOptions(options);
    this.#clock = clock;
    this.#layout = new CacheLayout(this.#options.dir);
    this.#durable = this.#options.durability === 'full';
    this.#host = {
      durable: this.#durable,
      assertOpen: () => {
        this.#assertOpen();
      },
      createStagingDir: () => this.#createStagingDir(),
      publish: (key, area, dir, formats, fence) => this.#publish(key, area, dir, formats, this.#clock.now(), fence),
      release: (staged) => this.#open.delete(staged),
    };
  }

  /** The absolute root directory. */
  get dir(): string {
    return this.#layout.root;
  }

  async stage(key: string): Promise<StagedResult> {
    this.#assertOpen();
    assertValidKey(key);
    this.#prepare();
    const staged = new FileStagedResult(key, this.#host);
    this.#open.add(staged);
    return staged;
  }

  async head(key: string, area?: CacheArea): Promise<ResultManifest | undefined> {
    this.#assertOpen();
    assertValidKey(key);
    const only = area === undefined ? undefined : assertCacheArea(area);
    this.#prepare();
    const found = this.#find(key, only);
    return found === undefined ? undefined : publicManifest(found.manifest);
  }

  /**
   * Streams one format (or a range of it) from a file opened before this returns, so a concurrent
   * replacement or deletion of the result does not cut the stream short. The caller must consume
   * or destroy the body: that closes the file.
   */
  async get(key: string, format: string, options: CacheGetOptions = {}): Promise<CachedBody | undefined> {
    this.#assertOpen();
    assertValidKey(key);
    assertValidFormat(format);
    this.#prepare();
    for (let attempt = 1; ; attempt++) {
      const found = this.#find(key);
      const info = found === undefined ? undefined : formatOf(found.manifest, format);
      if (found === undefined || info === undefined) return undefined;
      // The files are gone when a concurrent commit, promote or delete removed them after we read
      // the manifest: read the manifest again.
      const path = this.#formatPath(found, format);
      let handle: FileHandle | undefined;
      try {
        if (path !== undefined) handle = await open(path, READ_FLAGS);
      } catch (error) {
        if (!isMissing(error)) throw fsError(error, `opening ${format} of '${key}'`);
      }
      if (handle === undefined) {
        if (attempt < READ_ATTEMPTS) continue;
        throw new BackendError(`file cache: '${key}' kept changing while it was read`, { retryable: true });
      }
      try {
        return await this.#body(handle, found.area, info, options);
      } catch (error) {
        await handle.close().catch(() => undefined);
        throw fsError(error, `reading ${format} of '${key}'`);
      }
    }
  }

  async url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined> {
    this.#assertOpen();
    assertValidKey(key);
    assertValidFormat(format);
    // Routed URLs do not expire, but a nonsensical expiry is still the caller's bug.
    const expires = (options as Partial<CacheUrlOptions> | undefined)?.expiresInSec;
    if (typeof expires !== 'number' || !(expires > 0) || !Number.isFinite(expires)) {
      throw new InvalidRequestError('expiresInSec', `must be a positive number of seconds, got ${String(expires)}`);
    }
    this.#prepare();
    const found = this.#find(key);
    if (found === undefined || formatOf(found.manifest, format) === undefined) return undefined;
    return `${this.#options.urlPrefix}${key}/${format}`;
  }

  async promote(key: string): Promise<boolean> {
    this.#assertOpen();
    assertValidKey(key);
    this.#prepare();
    for (let attempt = 1; ; attempt++) {
      const found = this.#find(key, 'temporary');
      if (found === undefined) return false;
      // Hard links: the temporary result stays readable until the persistent one is published.
      const dir = this.#createStagingDir();
      let complete = true;
      try {
        for (const format of Object.keys(found.manifest.formats)) {
          const from = this.#formatPath(found, format);
          if (from === undefined) complete = false;
          else linkOrCopy(from, join(dir, format));
        }
      } catch (error) {
        if (!isMissing(error)) {
          removeQuietly(dir);
          throw fsError(error, `promoting '${key}'`);
        }
        complete = false;
      }
      if (!complete) {
        // Replaced or deleted meanwhile: look again.
        removeQuietly(dir);
        if (attempt < READ_ATTEMPTS) continue;
        throw new BackendError(`file cache: '${key}' kept changing while it was promoted`, { retryable: true });
      }
      await this.#publish(
        key,
        'persistent',
        dir,
        found.manifest.formats,
        found.manifest.createdAt,
        found.manifest.fence,
      );
      return true;
    }
  }

  async delete(key: string, area?: CacheArea): Promise<number> {
    this.#assertOpen();
    assertValidKey(key);
    this.#prepare();
    let deleted = 0;
    for (const a of area === undefined ? CACHE_AREAS : [assertCacheArea(area)]) {
      if (await this.#remove(a, key)) deleted++;
    }
    return deleted;
  }

  async clear(area: CacheArea): Promise<number> {
    this.#assertOpen();
    assertCacheArea(area);
    this.#prepare();
    let cleared = 0;
    for (const key of this.#keysIn(area)) {
      if (await this.#remove(area, key)) cleared++;
    }
    return cleared;
  }

  async sweep(area: CacheArea, olderThan: number): Promise<number> {
    this.#assertOpen();
    assertCacheArea(area);
    this.#prepare();
    if (typeof olderThan !== 'number' || Number.isNaN(olderThan)) {
      throw new InvalidRequestError('olderThan', `must be a time in epoch ms, got ${String(olderThan)}`);
    }
    collectStaging(this.#layout.staging);
    let swept = 0;
    for (const key of this.#keysIn(area)) {
      const keyDir = this.#layout.keyDir(area, key);
      const manifest = readQuietly(keyDir, key, area);
      if (manifest !== undefined && manifest.createdAt < olderThan) {
        if (await this.#remove(area, key, manifest.commit)) swept++;
        continue;
      }
      collectKeyDir(keyDir, manifest?.commit);
      // A crash between a commit and the removal of the key's result in the other area leaves
      // both: the older commit goes now.
      const rival = manifest === undefined ? undefined : this.#find(key, otherArea(area));
      if (manifest !== undefined && rival !== undefined) {
        if (compareCommitIds(rival.manifest.commit, manifest.commit) > 0)
          await this.#remove(area, key, manifest.commit);
        else await this.#remove(rival.area, key, rival.manifest.commit);
      }
    }
    return swept;
  }

  async list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    this.#assertOpen();
    assertCacheArea(area);
    this.#prepare();
    const { limit, cursor } = options;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new InvalidRequestError('limit', `must be a positive integer, got ${String(limit)}`);
    }
    const after = cursor === undefined ? undefined : decodeKeyCursor(CURSOR_TAG, cursor);
    const keys = this.#keysIn(area)
      .filter((k) => after === undefined || k > after)
      .sort(compareStrings);
    const items: ResultManifest[] = [];
    let index = 0;
    for (; index < keys.length && items.length < limit; index++) {
      const key = keys[index] as string;
      const manifest = readManifest(this.#layout.keyDir(area, key), key, area);
      if (manifest !== undefined) items.push(publicManifest(manifest));
    }
    const last = items.at(-1);
    return index < keys.length && last !== undefined
      ? { items, cursor: encodeKeyCursor(CURSOR_TAG, last.key) }
      : { items };
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Staged writes never committed are discarded now rather than left for garbage collection.
    for (const staged of [...this.#open]) await staged.abort();
  }

  /** Checks that the cache is open and, the first time, sets up and checks the directory. */
  #prepare(): void {
    this.#assertOpen();
    if (this.#ready) return;
    const root = this.#layout.root;
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o755 });
    } catch (error) {
      throw new ConfigError('cannot create the file cache directory', [{ path: '/dir', message: String(error) }], {
        cause: error,
      });
    }
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(root);
    } catch (error) {
      throw new ConfigError('cannot use the file cache directory', [{ path: '/dir', message: String(error) }], {
        cause: error,
      });
    }
    if (!stat.isDirectory()) {
      const what = stat.isSymbolicLink() ? 'a symlink (give the real path)' : 'not a directory';
      throw new ConfigError('invalid file cache directory', [{ path: '/dir', message: `${root} is ${what}` }]);
    }
    ensureDir(this.#layout.staging);
    for (const area of CACHE_AREAS) ensureDir(this.#layout.areaDir(area));
    collectStaging(this.#layout.staging);
    this.#ready = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('file cache manager is closed');
  }

  /** The committed result of a key (persistent first, or only `area`). */
  #find(key: string, area?: CacheArea): Found | undefined {
    for (const a of area === undefined ? CACHE_AREAS : [area]) {
      const keyDir = this.#existingKeyDir(a, key);
      const manifest = keyDir === undefined ? undefined : readManifest(keyDir, key, a);
      if (keyDir !== undefined && manifest !== undefined) return { area: a, keyDir, manifest };
    }
    return undefined;
  }

  /** The key directory if it exists, every level checked not to be a symlink. */
  #existingKeyDir(area: CacheArea, key: string): string | undefined {
    if (dirState(this.#layout.areaDir(area)) === 'missing') return undefined;
    if (dirState(this.#layout.shardDir(area, key)) === 'missing') return undefined;
    const keyDir = this.#layout.keyDir(area, key);
    return dirState(keyDir) === 'missing' ? undefined : keyDir;
  }

  /**
   * Creates the key directory (and its area and shard) as needed, each level checked not to be a
   * symlink. Returns it, and whether it was created now.
   */
  async #ensureKeyDir(area: CacheArea, key: string): Promise<[string, boolean]> {
    const keyDir = this.#layout.keyDir(area, key);
    let created = false;
    for (const dir of [this.#layout.areaDir(area), this.#layout.shardDir(area, key), keyDir]) {
      created = ensureDir(dir);
      if (created && this.#durable) await syncParent(dir);
    }
    return [keyDir, created];
  }

  /** The file of one format, or undefined when its commit directory is gone (replaced meanwhile). */
  #formatPath(found: Found, format: string): string | undefined {
    const commitDir = this.#layout.inside(join(found.keyDir, found.manifest.commit));
    if (dirState(commitDir) === 'missing') return undefined;
    return this.#layout.inside(join(commitDir, format));
  }

  #createStagingDir(): string {
    this.#assertOpen();
    ensureDir(this.#layout.staging);
    const dir = this.#layout.inside(join(this.#layout.staging, newId('s')));
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
    } catch (error) {
      throw fsError(error, 'creating a staging directory');
    }
    return dir;
  }

  /**
   * Moves a complete staging directory in as the result of `key` in `area`: one rename of the
   * directory, then one rename of the manifest naming it (the commit point). Then the key's earlier
   * result goes, from both areas; a crash before that leaves the old commit as garbage.
   */
  async #publish(
    key: string,
    area: CacheArea,
    dir: string,
    formats: Readonly<Record<string, FormatInfo>>,
    createdAt: number,
    fence?: number,
  ): Promise<ResultManifest> {
    this.#assertOpen();
    assertCacheArea(area);
    if (this.#durable) await syncDir(dir);
    const other = otherArea(area);
    // This commit must order after the key's result in the other area, which it replaces.
    const replaced = this.#find(key, other)?.manifest.commit;
    const commit = newId('c', replaced === undefined ? 0 : (commitIdTime(replaced) ?? 0) + 1);
    let keyDir: string;
    let fresh: boolean;
    for (let attempt = 1; ; attempt++) {
      [keyDir, fresh] = await this.#ensureKeyDir(area, key);
      try {
        fs.renameSync(dir, join(keyDir, commit));
        break;
      } catch (error) {
        // A concurrent delete removed the (then empty) key directory in between: make it again.
        if (isMissing(error) && attempt < PUBLISH_ATTEMPTS && dirState(dir) === 'dir') continue;
        throw fsError(error, `committing '${key}'`);
      }
    }
    if (this.#durable) await syncDir(keyDir);
    // A key directory made just now has no earlier result (the usual case: a new key).
    const previous = fresh ? undefined : readQuietly(keyDir, key, area);
    // The fence check runs right before the manifest rename, with no await in between (unless
    // durable, where the manifest file is fsynced first): a holder that stalled past its lease
    // finds the result of the later claim and publishes nothing.
    if (fence !== undefined && this.#fencedOff(key, fence, previous, other)) {
      removeQuietly(join(keyDir, commit));
      collectKeyDir(keyDir, previous?.commit);
      throw new LeaseLostError(key, `commit of '${key}' refused: a later claim already published its result`);
    }
    const stored: StoredManifest = {
      key,
      area,
      createdAt,
      commit,
      formats: copyFormats(formats),
      ...(fence === undefined ? {} : { fence }),
    };
    await writeManifest(keyDir, stored, this.#durable);
    // The result this one replaced goes (no manifest names it any more, none ever will again).
    if (previous !== undefined && previous.commit !== commit) removeQuietly(join(keyDir, previous.commit));
    // A concurrent commit of the key in this area may have renamed its manifest over ours: then
    // ours is superseded for good and its files are garbage.
    const current = readQuietly(keyDir, key, area);
    if (current?.commit !== commit) {
      removeQuietly(join(keyDir, commit));
      return publicManifest(stored);
    }
    // A key has one result: of the two areas, the newer commit stays. Deciding by commit age (not
    // by who runs last) keeps one of two concurrent commits to different areas, never neither.
    const rival = this.#find(key, other);
    if (rival !== undefined) {
      if (compareCommitIds(rival.manifest.commit, commit) > 0) await this.#remove(area, key, commit);
      else await this.#remove(other, key, rival.manifest.commit);
    }
    return publicManifest(stored);
  }

  /** True when the key's current result, in either area, was committed with a fence above `fence`. */
  #fencedOff(key: string, fence: number, sameArea: StoredManifest | undefined, other: CacheArea): boolean {
    const rival = this.#find(key, other)?.manifest;
    return (sameArea?.fence ?? Number.NEGATIVE_INFINITY) > fence || (rival?.fence ?? Number.NEGATIVE_INFINITY) > fence;
  }

  /**
   * Removes the result of `key` in `area` (only if its commit is still `commit`, when given):
   * the manifest first (the result is gone from then on), then its files. False when there was none.
   */
  async #remove(area: CacheArea, key: string, commit?: string): Promise<boolean> {
    const keyDir = this.#existingKeyDir(area, key);
    if (keyDir === undefined) return false;
    const manifest = readQuietly(keyDir, key, area);
    if (manifest === undefined || (commit !== undefined && manifest.commit !== commit)) {
      collectKeyDir(keyDir, manifest?.commit);
      return false;
    }
    try {
      fs.unlinkSync(join(keyDir, MANIFEST_FILE));
    } catch (error) {
      if (isMissing(error)) return false; // a concurrent delete got there first
      throw fsError(error, `deleting '${key}'`);
    }
    if (this.#durable) await syncDir(keyDir);
    removeQuietly(join(keyDir, manifest.commit));
    collectKeyDir(keyDir, undefined);
    return true;
  }

  /** Keys with a directory in `area` (some may have no manifest), refusing symlinks on the way. */
  #keysIn(area: CacheArea): string[] {
    const areaDir = this.#layout.areaDir(area);
    if (dirState(areaDir) === 'missing') return [];
    const keys: string[] = [];
    for (const shard of readDir(areaDir)) {
      if (!SHARD_PATTERN.test(shard.name)) continue;
      const shardDir = this.#layout.inside(join(areaDir, shard.name));
      if (dirState(shardDir) === 'missing') continue;
      for (const entry of readDir(shardDir)) {
        if (!isKey(entry.name)) continue;
        if (entry.isSymbolicLink()) dirState(join(shardDir, entry.name)); // throws: a planted symlink
        if (entry.isDirectory()) keys.push(entry.name);
      }
    }
    return keys;
  }

  /** A body stream over one format, for the requested range. */
  async #body(handle: FileHandle, area: CacheArea, info: FormatInfo, options: CacheGetOptions): Promise<CachedBody> {
    const totalSize = (await handle.stat()).size;
    if (totalSize !== info.size) {
      throw new BackendError(
        `file cache: stored size ${String(totalSize)} differs from the manifest's ${String(info.size)}`,
      );
    }
    const range = sliceRange(totalSize, options.range);
    let body: Readable;
    if (range.length === 0) {
      await handle.close();
      body = Readable.from([]);
    } else {
      body = handle.createReadStream({ start: range.start, end: range.end, highWaterMark: READ_CHUNK_BYTES });
    }
    return {
      body,
      size: range.length,
      totalSize,
      contentType: info.contentType,
      ...(info.contentEncoding === undefined ? {} : { contentEncoding: info.contentEncoding }),
      area,
    };
  }
}

function formatOf(manifest: StoredManifest, format: string): FormatInfo | undefined {
  return Object.hasOwn(manifest.formats, format) ? manifest.formats[format] : undefined;
}

function copyFormats(formats: Readonly<Record<string, FormatInfo>>): Record<string, FormatInfo> {
  const copy: Record<string, FormatInfo> = {};
  for (const name of Object.keys(formats)) {
    const info = formats[name];
    if (info !== undefined) copy[name] = { ...info };
  }
  return copy;
}

/** The manifest, or undefined when it is missing or unreadable (it is about to be replaced or removed). */
function readQuietly(keyDir: string, key: string, area: CacheArea): StoredManifest | undefined {
  try {
    return readManifest(keyDir, key, area);
  } catch {
    return undefined;
  }
}

/** Hard-links `from` to `to`, copying where the file system has no hard links. */
function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch (error) {
    const code = errnoOf(error);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EMLINK') throw error;
    // copyFile follows symlinks, link does not: refuse one planted in place of a format file.
    if (fs.lstatSync(from).isSymbolicLink()) {
      throw new BackendError(`file cache: refusing to follow the symlink at ${from}`, { cause: error });
    }
    fs.copyFileSync(from, to, fs.constants.COPYFILE_EXCL);
  }
}

/** Orders commit ids by creation time, then by their random part (an arbitrary but shared tie-break). */
function compareCommitIds(a: string, b: string): number {
  const byTime = (commitIdTime(a) ?? 0) - (commitIdTime(b) ?? 0);
  return byTime !== 0 ? byTime : compareStrings(a, b);
}

function readDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw fsError(error, `listing ${dir}`);
  }
}

/** The rule of assertValidKey, without building an error for every stray name. */
function isKey(name: string): boolean {
  return KEY_PATTERN.test(name) && !name.endsWith('.') && !name.includes('..');
}

/** Code-unit order, independent of locale (as the memory cache lists). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function otherArea(area: CacheArea): CacheArea {
  return area === 'persistent' ? 'temporary' : 'persistent';
}
