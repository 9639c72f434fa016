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
  isSymlinkRefusal,
  READ_FLAGS,
  syncDir,
  syncFile,
  syncParent,
  unlinkQuietly,
} from './fs-util.js';
import { collectOrphans, collectStaging } from './garbage.js';
import { CacheLayout, idTime, newId, parseShardEntry, SHARD_PATTERN } from './layout.js';
import type { ShardEntry } from './layout.js';
import { checkLayoutVersion } from './layout-version.js';
import { fileFormats, inlineBytes, publicManifest, readManifest, writeManifest } from './manifest.js';
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
const CURSOR_TAG = 'file1';

interface Found {
  readonly area: CacheArea;
  readonly shardDir: string;
  readonly manifest: StoredManifest;
}

/** The names of one key found in a shard directory. */
interface KeyEntries {
  manifest: boolean;
  readonly entries: { readonly name: string; readonly entry: ShardEntry }[];
}

/**
 * The file {@link CacheManager}: results under one root directory, shared by every process on
 * the host that opens it (a web server and its workers).
 *
 * Layout (see {@link CacheLayout}): writes stream into `<dir>/staging/<stage id>@<format>`; a
 * commit renames each file to `<dir>/<area>/<shard>/<key>@<commit id>@<format>` and then renames
 * a complete manifest naming the commit over `<key>@manifest`, which is the commit point. Readers read the
 * manifest and open the files it names, so they see the old result or the new one, all formats
 * or none, whatever crashes in between. Only then does the key's earlier result go, from both
 * areas; a crash just before that leaves the key in both areas, where reads see the persistent
 * one (old or new, but whole) until a `sweep` of either area keeps the newer commit only.
 *
 * What a crash leaves is garbage, never read: staging entries untouched for 24 hours are removed
 * when a cache opens and by `sweep`; data files no manifest names and temporary manifests
 * older than an hour are removed by a `sweep` of their area (younger ones may belong to a commit
 * in flight in another process).
 *
 * Several processes may commit one key at once: the last manifest rename wins within an area,
 * the newer commit id across the two, so one whole result remains. The superseded commits'
 * files go at once, or as garbage later when a race hid them.
 *
 * Nothing is read or written outside `dir`: keys and formats are validated, every path is checked
 * to lie inside the root, directories are checked with lstat on every call and files are opened with
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
      newStageId: () => newId(),
      checkStaging: () => {
        this.#checkStaging();
      },
      stagingPath: (id, format, suffix) => this.#layout.stagingPath(id, format, suffix),
      inlineMaxBytes: this.#options.inlineMaxBytes,
      publish: (key, area, files, inline, formats, fence) =>
        this.#publish(key, area, files, toBase64(inline), formats, this.#clock.now(), fence),
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
      const inline = inlineBytes(found.manifest, format);
      if (inline !== undefined) return inlineBody(inline, found.area, info, options);
      // The files are gone when a concurrent commit, promote or delete removed them after we read
      // the manifest: read the manifest again.
      let handle: FileHandle | undefined;
      try {
        handle = await open(this.#formatPath(found, format), READ_FLAGS);
      } catch (error) {
        if (!isMissing(error)) throw fsError(error, `opening ${format} of '${key}'`);
      }
      if (handle === undefined) {
        if (attempt < READ_ATTEMPTS) continue;
        throw new BackendError(`file cache: '${key}' kept changing while it was read`, { retryable: true });
      }
      try {
        if (!(await handle.stat()).isFile()) {
          throw new BackendError(`file cache: refusing to read ${format} of '${key}': it is not a regular file`);
        }
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
      this.#checkStaging();
      const id = newId();
      const files = new Map<string, string>();
      let complete = true;
      try {
        for (const format of fileFormats(found.manifest)) {
          const to = this.#layout.stagingPath(id, format);
          // A hard link shares the data the commit synced; a copy is new data, synced like a write.
          const copied = linkOrCopy(this.#formatPath(found, format), to);
          files.set(format, to);
          if (copied && this.#durable) await syncFile(to);
        }
      } catch (error) {
        for (const path of files.values()) unlinkQuietly(path);
        if (!isMissing(error)) throw fsError(error, `promoting '${key}'`);
        complete = false;
      }
      if (!complete) {
        // Replaced or deleted meanwhile: look again.
        if (attempt < READ_ATTEMPTS) continue;
        throw new BackendError(`file cache: '${key}' kept changing while it was promoted`, { retryable: true });
      }
      try {
        await this.#publish(
          key,
          'persistent',
          files,
          found.manifest.inline ?? {},
          found.manifest.formats,
          found.manifest.createdAt,
          found.manifest.fence,
          found.manifest.commit,
        );
      } catch (error) {
        for (const path of files.values()) unlinkQuietly(path);
        // A newer temporary result was committed while this one was linked: promote that one.
        if (error instanceof Superseded && attempt < READ_ATTEMPTS) continue;
        if (error instanceof Superseded) {
          throw new BackendError(`file cache: '${key}' kept changing while it was promoted`, { retryable: true });
        }
        throw error;
      }
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
    for (const key of this.#keys(area)) {
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
    for (const shardDir of this.#shardDirs(area)) {
      for (const [key, found] of this.#keysIn(shardDir)) {
        const read = found.manifest ? readOrUnreadable(this.#layout.manifestPath(shardDir, key), key, area) : undefined;
        // A manifest this cache cannot read (damaged, written by a newer armlib, or unreadable for
        // now): the key is left alone, files included, rather than its data taken for orphans.
        if (read === 'unreadable') continue;
        let manifest = read;
        if (manifest !== undefined && manifest.createdAt < olderThan) {
          if (await this.#remove(area, key, manifest.commit)) swept++;
          manifest = undefined;
        } else if (manifest !== undefined) {
          // A crash between a commit and the removal of the key's result in the other area leaves
          // both: the older commit goes now.
          const rival = this.#find(key, otherArea(area));
          if (rival !== undefined) {
            if (compareCommitIds(rival.manifest.commit, manifest.commit) > 0) {
              if (await this.#remove(area, key, manifest.commit)) manifest = undefined;
            } else await this.#remove(rival.area, key, rival.manifest.commit);
          }
        }
        collectOrphans(shardDir, found.entries, manifest?.commit);
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
    const keys = this.#keys(area)
      .filter((k) => after === undefined || k > after)
      .sort(compareStrings);
    const items: ResultManifest[] = [];
    let index = 0;
    for (; index < keys.length && items.length < limit; index++) {
      const key = keys[index] as string;
      // A damaged manifest is skipped (it reads as no result), not a failure of the whole listing.
      const manifest = readOrUnreadable(this.#layout.manifestPath(this.#layout.shardDir(area, key), key), key, area);
      if (manifest !== undefined && manifest !== 'unreadable') items.push(publicManifest(manifest));
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
    checkLayoutVersion(this.#layout, this.#durable);
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
      const shardDir = this.#existingShardDir(a, key);
      const manifest =
        shardDir === undefined ? undefined : readManifest(this.#layout.manifestPath(shardDir, key), key, a);
      if (shardDir !== undefined && manifest !== undefined) return { area: a, shardDir, manifest };
    }
    return undefined;
  }

  /**
   * The shard directory of a key if it exists, the area and the shard checked not to be symlinks
   * (on every call: one may be planted after the cache opened). The files in it are opened with
   * O_NOFOLLOW.
   */
  #existingShardDir(area: CacheArea, key: string): string | undefined {
    if (dirState(this.#layout.areaDir(area)) === 'missing') return undefined;
    const shardDir = this.#layout.shardDir(area, key);
    return dirState(shardDir) === 'missing' ? undefined : shardDir;
  }

  /** Creates the shard directory of a key (and its area) as needed, each checked not to be a symlink. */
  async #ensureShardDir(area: CacheArea, key: string): Promise<string> {
    const shardDir = this.#layout.shardDir(area, key);
    for (const dir of [this.#layout.areaDir(area), shardDir]) {
      if (ensureDir(dir) && this.#durable) await syncParent(dir);
    }
    return shardDir;
  }

  /** The data file of one format of a found result. */
  #formatPath(found: Found, format: string): string {
    return this.#layout.dataPath(found.shardDir, found.manifest.key, found.manifest.commit, format);
  }

  #checkStaging(): void {
    this.#assertOpen();
    ensureDir(this.#layout.staging);
  }

  /**
   * Moves complete staged files in as the result of `key` in `area`: one rename per format to its
   * data file name, then one rename of the manifest naming the commit (the commit point). Then the
   * key's earlier result goes, from both areas; a crash before that leaves the old files as garbage.
   * `promoting` is the commit of the other area's result a promotion copied: the publication
   * happens only while that result is still there (else {@link Superseded}).
   */
  async #publish(
    key: string,
    area: CacheArea,
    files: ReadonlyMap<string, string>,
    inline: Readonly<Record<string, string>>,
    formats: Readonly<Record<string, FormatInfo>>,
    createdAt: number,
    fence?: number,
    promoting?: string,
  ): Promise<ResultManifest> {
    this.#assertOpen();
    assertCacheArea(area);
    const other = otherArea(area);
    // This commit must order after the key's result in the other area, which it replaces. Files
    // are moved in under the commit id, so with files it is chosen first; a result kept whole in
    // its manifest chooses it from the read the fence check makes anyway (one lookup fewer).
    let commit: string | undefined;
    const shardDir = await this.#ensureShardDir(area, key);
    if (files.size > 0) {
      commit = commitAfter(this.#find(key, other)?.manifest);
      this.#moveIn(files, shardDir, key, commit);
    }
    const manifestPath = this.#layout.manifestPath(shardDir, key);
    let previous: StoredManifest | undefined;
    let stored: StoredManifest;
    try {
      if (this.#durable && files.size > 0) await syncDir(shardDir);
      previous = readQuietly(manifestPath, key, area);
      // The fence check runs right before the manifest rename, with no await in between (unless
      // durable, where the manifest file is fsynced first): a holder that stalled past its lease
      // finds the result of the later claim and publishes nothing.
      const rivalBefore =
        fence !== undefined || commit === undefined || promoting !== undefined
          ? this.#find(key, other)?.manifest
          : undefined;
      // A promotion publishes only while the result it copied is still the other area's: a commit
      // made meanwhile must not be replaced by this older result.
      if (promoting !== undefined && rivalBefore?.commit !== promoting) throw new Superseded();
      if (fence !== undefined && fencedOff(fence, previous, rivalBefore)) {
        throw new LeaseLostError(key, `commit of '${key}' refused: a later claim already published its result`);
      }
      commit ??= commitAfter(rivalBefore);
      stored = {
        key,
        area,
        createdAt,
        commit,
        formats: copyFormats(formats),
        ...(Object.keys(inline).length === 0 ? {} : { inline }),
        ...(fence === undefined ? {} : { fence }),
      };
      await writeManifest(manifestPath, this.#layout.tempManifestPath(shardDir, key, commit), stored, this.#durable);
    } catch (error) {
      // Unpublished files are garbage at once (unless the manifest rename happened before a later step failed).
      if (commit !== undefined && !namesCommit(manifestPath, key, area, commit)) {
        this.#removeFiles(shardDir, key, commit, files.keys());
      }
      throw error;
    }
    // The result this one replaced goes (no manifest names it any more, none ever will again).
    if (previous !== undefined && previous.commit !== commit) {
      this.#removeFiles(shardDir, key, previous.commit, fileFormats(previous));
    }
    // A concurrent commit of the key in this area may have renamed its manifest over ours: then
    // ours is superseded for good and its files are garbage.
    const current = readQuietly(manifestPath, key, area);
    if (current?.commit !== commit) {
      this.#removeFiles(shardDir, key, commit, files.keys());
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

  /** Renames staged files into the shard directory under `commit`; all or none (back to staging). */
  #moveIn(files: ReadonlyMap<string, string>, shardDir: string, key: string, commit: string): void {
    const moved: [string, string][] = [];
    try {
      for (const [format, from] of files) {
        const to = this.#layout.dataPath(shardDir, key, commit, format);
        fs.renameSync(from, to);
        moved.push([from, to]);
      }
    } catch (error) {
      // Back to staging, so that the staged result can still be committed again or aborted.
      for (const [from, to] of moved) {
        try {
          fs.renameSync(to, from);
        } catch {
          // Left as an orphan: a sweep removes it after an hour.
        }
      }
      throw fsError(error, `committing '${key}'`);
    }
  }

  /** Unlinks the data files of one commit (those still there). */
  #removeFiles(shardDir: string, key: string, commit: string, formats: Iterable<string>): void {
    for (const format of formats) unlinkQuietly(this.#layout.dataPath(shardDir, key, commit, format));
  }

  /**
   * Removes the result of `key` in `area` (only if its commit is still `commit`, when given):
   * the manifest first (the result is gone from then on), then its files. False when there was none.
   */
  async #remove(area: CacheArea, key: string, commit?: string): Promise<boolean> {
    const shardDir = this.#existingShardDir(area, key);
    if (shardDir === undefined) return false;
    const manifestPath = this.#layout.manifestPath(shardDir, key);
    const read = readOrUnreadable(manifestPath, key, area);
    // A manifest that cannot be read still goes when the key's result is deleted outright
    // (delete, clear): its data files are then orphans, which a later sweep removes.
    if (read === 'unreadable' && commit !== undefined) return false;
    const manifest = read === 'unreadable' ? undefined : read;
    if (read === undefined || (commit !== undefined && manifest?.commit !== commit)) return false;
    try {
      fs.unlinkSync(manifestPath);
    } catch (error) {
      if (isMissing(error)) return false; // a concurrent delete got there first
      throw fsError(error, `deleting '${key}'`);
    }
    if (this.#durable) await syncDir(shardDir);
    if (manifest !== undefined) this.#removeFiles(shardDir, key, manifest.commit, fileFormats(manifest));
    return true;
  }

  /** The shard directories of `area`, each checked not to be a symlink. */
  #shardDirs(area: CacheArea): string[] {
    const areaDir = this.#layout.areaDir(area);
    if (dirState(areaDir) === 'missing') return [];
    const dirs: string[] = [];
    for (const shard of readDir(areaDir)) {
      if (!SHARD_PATTERN.test(shard.name)) continue;
      const shardDir = this.#layout.inside(join(areaDir, shard.name));
      if (dirState(shardDir) === 'dir') dirs.push(shardDir);
    }
    return dirs;
  }

  /**
   * The keys with names in one shard directory (some with no manifest, only leftovers of a
   * crash), refusing a symlink planted under any name of the cache.
   */
  #keysIn(shardDir: string): Map<string, KeyEntries> {
    const keys = new Map<string, KeyEntries>();
    for (const dirent of readDir(shardDir)) {
      const entry = parseShardEntry(dirent.name);
      if (entry === undefined) continue;
      if (dirent.isSymbolicLink()) {
        throw new BackendError(
          `file cache: refusing to follow the symlink at ${join(shardDir, dirent.name)} (nothing is read or written outside the cache directory)`,
        );
      }
      let found = keys.get(entry.key);
      if (found === undefined) {
        found = { manifest: false, entries: [] };
        keys.set(entry.key, found);
      }
      if (entry.kind === 'manifest') found.manifest = true;
      else found.entries.push({ name: dirent.name, entry });
    }
    return keys;
  }

  /** The keys with a manifest in `area`. */
  #keys(area: CacheArea): string[] {
    const keys: string[] = [];
    for (const shardDir of this.#shardDirs(area)) {
      for (const [key, found] of this.#keysIn(shardDir)) if (found.manifest) keys.push(key);
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

/** A body over the bytes of an inline format, for the requested range. */
function inlineBody(bytes: Buffer, area: CacheArea, info: FormatInfo, options: CacheGetOptions): CachedBody {
  if (bytes.byteLength !== info.size) {
    throw new BackendError(
      `file cache: stored size ${String(bytes.byteLength)} differs from the manifest's ${String(info.size)}`,
    );
  }
  const range = sliceRange(bytes.byteLength, options.range);
  const slice = bytes.subarray(range.start, range.start + range.length);
  return {
    body: Readable.from(range.length === 0 ? [] : [slice], { objectMode: false }),
    size: range.length,
    totalSize: bytes.byteLength,
    contentType: info.contentType,
    ...(info.contentEncoding === undefined ? {} : { contentEncoding: info.contentEncoding }),
    area,
  };
}

/** Inline formats as the manifest stores them. */
function toBase64(inline: ReadonlyMap<string, Buffer>): Record<string, string> {
  const encoded: Record<string, string> = {};
  for (const [format, bytes] of inline) encoded[format] = bytes.toString('base64');
  return encoded;
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

/**
 * The manifest, or undefined when it is missing or unreadable (it is about to be replaced or
 * removed). A symlink in its place is still refused.
 */
function readQuietly(path: string, key: string, area: CacheArea): StoredManifest | undefined {
  const read = readOrUnreadable(path, key, area);
  return read === 'unreadable' ? undefined : read;
}

/**
 * The manifest, undefined when there is none, or 'unreadable' when there is one this cache cannot
 * read or parse. A symlink in its place is still refused.
 */
function readOrUnreadable(path: string, key: string, area: CacheArea): StoredManifest | undefined | 'unreadable' {
  try {
    return readManifest(path, key, area);
  } catch (error) {
    if (isSymlinkRefusal(error)) throw error;
    return 'unreadable';
  }
}

/** True when the manifest at `path` names `commit` (false when it cannot be read at all). */
function namesCommit(path: string, key: string, area: CacheArea, commit: string): boolean {
  try {
    return readManifest(path, key, area)?.commit === commit;
  } catch {
    return false;
  }
}

/** Hard-links `from` to `to`, copying where the file system has no hard links; true when it copied. */
function linkOrCopy(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to);
    return false;
  } catch (error) {
    const code = errnoOf(error);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EMLINK') throw error;
    // copyFile follows symlinks, link does not: refuse one planted in place of a format file.
    if (fs.lstatSync(from).isSymbolicLink()) {
      throw new BackendError(`file cache: refusing to follow the symlink at ${from}`, { cause: error });
    }
    fs.copyFileSync(from, to, fs.constants.COPYFILE_EXCL);
    return true;
  }
}

/** True when the key's current result, in either area, was committed with a fence above `fence`. */
function fencedOff(fence: number, sameArea: StoredManifest | undefined, rival: StoredManifest | undefined): boolean {
  return (sameArea?.fence ?? Number.NEGATIVE_INFINITY) > fence || (rival?.fence ?? Number.NEGATIVE_INFINITY) > fence;
}

/** A promotion found a newer result in the area it promotes from (see #publish). */
class Superseded extends Error {}

/** A new commit id, ordered after the key's result in the other area (which the commit replaces). */
function commitAfter(replaced: StoredManifest | undefined): string {
  return newId(replaced === undefined ? 0 : (idTime(replaced.commit) ?? 0) + 1);
}

/** Orders commit ids by creation time, then by their random part (an arbitrary but shared tie-break). */
function compareCommitIds(a: string, b: string): number {
  const byTime = (idTime(a) ?? 0) - (idTime(b) ?? 0);
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

/** Code-unit order, independent of locale (as the memory cache lists). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function otherArea(area: CacheArea): CacheArea {
  return area === 'persistent' ? 'temporary' : 'persistent';
}
