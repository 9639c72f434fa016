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
  cacheGetOptions,
  cacheListOptions,
  cacheUrlExpiry,
  checkOlderThan,
  encodeKeyCursor,
  ClosedError,
  ConfigError,
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

import { DatabaseIdentity } from '../database-identity.js';
import { makeDirectories } from '../make-directories.js';
import {
  CREATE_FLAGS,
  dirState,
  ensureDir,
  errnoOf,
  fsError,
  isMissing,
  READ_FLAGS,
  syncDir,
  syncFile,
  syncParent,
  unlinkQuietly,
} from './fs-util.js';
import { collectOrphans, collectStaging, STALE_COMMIT_MS } from './garbage.js';
import { CacheLayout, idTime, newId, parseShardEntry, SHARD_PATTERN } from './layout.js';
import type { ShardEntry } from './layout.js';
import { checkLayoutVersion } from './layout-version.js';
import { migrateFlatLayout } from './migrate-flat.js';
import { CACHE_DB_FILE, openCacheDatabase } from './open-cache-database.js';
import { resolveFileCacheOptions } from './options.js';
import { fileFormats, publicManifest } from './result-row.js';
import type { StoredResult } from './result-row.js';
import { CLEAN_UP_CHUNK, ResultStore, Superseded } from './result-store.js';
import type { CleanUpChunk, CleanUpCursor, Lookup } from './result-store.js';
import type { FileCacheManagerOptions, ResolvedFileCacheOptions } from './options.js';
import { FileStagedResult } from './staged-result.js';
import type { StagingHost } from './staged-result.js';

export { checkFileCacheOptions, FILE_CACHE_DEFAULTS } from './options.js';
export type { FileCacheManagerOptions } from './options.js';

/** Largest chunk a read stream hands out (the SPI promises bounded chunks). */
const READ_CHUNK_BYTES = 64 * 1024;
/** Reads retried when a concurrent commit or delete removed the files a row named. */
const READ_ATTEMPTS = 8;
const CURSOR_TAG = 'file1';

interface Found {
  readonly area: CacheArea;
  readonly shardDir: string;
  readonly result: StoredResult;
}

/** The names of one key found in a shard directory. */
interface KeyEntries {
  readonly entries: { readonly name: string; readonly entry: ShardEntry }[];
}

/**
 * The file {@link CacheManager}: results under one root directory, shared by every process on
 * the host that opens it (a web server and its workers).
 *
 * Layout (see {@link CacheLayout}): writes stream into `<dir>/staging/<stage id>@<format>`, or stay
 * in memory when small; a commit renames each file to `<dir>/<area>/<shard>/<key>@<commit id>@<format>`
 * and then, in one SQLite transaction, writes the key's row in `<dir>/cache.sqlite` (naming the
 * commit, holding the small formats) and deletes its row in the other area. That transaction is
 * the commit point: readers read the row and open the files it names, so they see the old result
 * or the new one, all formats or none, whatever crashes in between. The replaced commits' files go
 * right after.
 *
 * What a crash leaves is garbage, never read: staging entries untouched for 24 hours are removed
 * when a cache opens and by `sweep`; data files no row names are removed by a `sweep` of their
 * area an hour after their commit id's time (younger ones may belong to a commit in flight in
 * another process).
 *
 * Several processes may commit one key at once: SQLite's write lock orders their transactions,
 * and the last one's result is the key's one result. A fenced commit is checked against the
 * key's rows inside its transaction.
 *
 * Nothing is read or written outside `dir`: keys and formats are validated, every path is checked
 * to lie inside the root, directories are checked with lstat on every call, files are opened with
 * O_NOFOLLOW and the database files must not be symlinks, so a symlink planted inside the root is
 * refused with a {@link BackendError} (a sweep skips it, and sweeps the rest).
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
  /** Commits, promotions and deletions under way: close() lets them finish before it closes the database. */
  readonly #inFlight = new Set<Promise<void>>();
  #store: ResultStore | undefined;
  /** The open database file is still the one at its path (see {@link DatabaseIdentity}); set with #store. */
  #identity: DatabaseIdentity | undefined;
  /** close() was called: nothing new starts (what is under way finishes). */
  #closing = false;
  /** The database is closed. */
  #closed = false;
  #closeDone: Promise<void> | undefined;

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
      publish: (key, area, files, inline, formats, fence, stillHeld) =>
        this.#track(this.#publish(key, area, files, inline, formats, this.#clock.now(), fence, undefined, stillHeld)),
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
    const store = this.#prepare();
    const found = this.#find(store, key, only);
    return found === undefined ? undefined : publicManifest(found.result);
  }

  /**
   * Streams one format (or a range of it) from a file opened before this returns, so a concurrent
   * replacement or deletion of the result does not cut the stream short. The caller must consume
   * or destroy the body: that closes the file.
   */
  async get(key: string, format: string, given?: CacheGetOptions): Promise<CachedBody | undefined> {
    this.#assertOpen();
    assertValidKey(key);
    assertValidFormat(format);
    const options = cacheGetOptions(given);
    const store = this.#prepare();
    for (let attempt = 1; ; attempt++) {
      const found = this.#find(store, key);
      const info = found === undefined ? undefined : formatOf(found.result, format);
      if (found === undefined || info === undefined) return undefined;
      const inline = found.result.inline?.get(format);
      if (inline !== undefined) return inlineBody(inline, found.area, info, options);
      // The files are gone when a concurrent commit, promote or delete removed them after we read
      // the row: read the row again.
      let handle: FileHandle | undefined;
      let missing: unknown;
      // The directories on the way are checked (a symlink may be planted after the cache opened).
      this.#existingShardDir(found.area, key);
      try {
        handle = await open(this.#formatPath(found, format), READ_FLAGS);
      } catch (error) {
        if (!isMissing(error)) throw fsError(error, `opening ${format} of '${key}'`);
        missing = error;
      }
      if (handle === undefined) {
        // Files go only after their row is replaced or deleted: a row still naming this commit
        // means the file was lost (damage), which no retry mends.
        if (this.#names(store, found.area, key, found.result.commit)) throw missingFile(key, format, missing);
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
    cacheUrlExpiry(options);
    const store = this.#prepare();
    const found = this.#find(store, key);
    if (found === undefined || formatOf(found.result, format) === undefined) return undefined;
    return `${this.#options.urlPrefix}${key}/${format}`;
  }

  async promote(key: string): Promise<boolean> {
    this.#assertOpen();
    assertValidKey(key);
    const store = this.#prepare();
    return this.#track(this.#promote(store, key));
  }

  async #promote(store: ResultStore, key: string): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const found = this.#find(store, key, 'temporary');
      if (found === undefined) return false;
      // Hard links: the temporary result stays readable until the persistent one is published.
      // (A promotion under way when close() is called finishes: no check that the cache is open.)
      this.#assertNotClosed();
      ensureDir(this.#layout.staging);
      const id = newId();
      const files = new Map<string, string>();
      let complete = true;
      const linked = fileFormats(found.result);
      if (linked.length > 0) this.#existingShardDir(found.area, key);
      let linking: string | undefined;
      try {
        for (const format of linked) {
          linking = format;
          const to = this.#layout.stagingPath(id, format);
          // A hard link shares the data the commit synced; a copy is new data, synced like a write.
          const copied = await linkOrCopy(this.#formatPath(found, format), to);
          files.set(format, to);
          if (copied && this.#durable) await syncFile(to);
        }
      } catch (error) {
        for (const path of files.values()) unlinkQuietly(path);
        if (!isMissing(error)) throw fsError(error, `promoting '${key}'`);
        // As in get: a row still naming this commit means a lost file, not a concurrent change.
        if (linking !== undefined && this.#names(store, found.area, key, found.result.commit)) {
          throw missingFile(key, linking, error);
        }
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
          found.result.inline ?? new Map<string, Buffer>(),
          found.result.formats,
          found.result.createdAt,
          found.result.fence,
          found.result.commit,
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
    const areas = area === undefined ? CACHE_AREAS : [assertCacheArea(area)];
    const store = this.#prepare();
    return this.#track(this.#delete(store, key, areas));
  }

  async #delete(store: ResultStore, key: string, areas: readonly CacheArea[]): Promise<number> {
    // The key's directories are checked first (a symlink planted there is refused), as they
    // hold the files to remove.
    for (const a of areas) this.#existingShardDir(a, key);
    // One transaction for every area: see ResultStore.removeKey. The files go once it committed.
    const { count, results } = await store.removeKey(key, areas);
    for (const result of results) this.#removeFiles(result, fileFormats(result));
    return count;
  }

  async clear(area: CacheArea): Promise<number> {
    this.#assertOpen();
    assertCacheArea(area);
    const store = this.#prepare();
    dirState(this.#layout.areaDir(area));
    return this.#track(this.#inChunks(() => store.clearSome(area, CLEAN_UP_CHUNK.rows)));
  }

  async sweep(area: CacheArea, olderThan: number): Promise<number> {
    this.#assertOpen();
    assertCacheArea(area);
    const store = this.#prepare();
    // Compared at every sweep, whatever the interval: a process whose only call is the request
    // manager's periodic sweep reports a removed directory on its error event.
    this.#identity?.checkNow(this.#clock.now());
    checkOlderThan(olderThan);
    collectStaging(this.#layout.staging);
    return this.#track(this.#sweep(store, area, olderThan));
  }

  async #sweep(store: ResultStore, area: CacheArea, olderThan: number): Promise<number> {
    const shardDirs = this.#shardDirs(area);
    const swept = await this.#inChunks((after) => store.sweepSome(area, olderThan, after, CLEAN_UP_CHUNK.rows));
    // What crashes left: data files no row names (a commit that died before its transaction).
    for (const shardDir of shardDirs) {
      for (const [key, found] of this.#keysIn(shardDir)) {
        const current = store.findFiles(area, key);
        // A row this cache cannot read: the key is left alone, files included, rather than its
        // data taken for orphans.
        if (current instanceof BackendError) continue;
        collectOrphans(shardDir, found.entries, current?.commit);
      }
    }
    return swept;
  }

  /**
   * Runs a clean-up of an area one chunk (one transaction) at a time, in key order, removing each
   * chunk's files once it committed, as a delete does: a result is whole until its row goes.
   * Between chunks, other writers and readers go on: a result committed meanwhile may go too (and
   * is counted), or stay when a sweep has passed its key. Returns how many rows went.
   */
  async #inChunks(chunk: (after: CleanUpCursor | undefined) => Promise<CleanUpChunk>): Promise<number> {
    let count = 0;
    let after: CleanUpCursor | undefined;
    do {
      const done = await chunk(after);
      count += done.count;
      for (const result of done.removed) this.#removeFiles(result, result.files);
      after = done.next;
    } while (after !== undefined);
    return count;
  }

  async list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    this.#assertOpen();
    assertCacheArea(area);
    const store = this.#prepare();
    const { limit, after } = cacheListOptions(CURSOR_TAG, options);
    dirState(this.#layout.areaDir(area));
    // A row this cache cannot read is skipped (it reads as no result), not a failure of the whole listing.
    const page = store.list(area, after ?? '', limit);
    const items = page.items.map(publicManifest);
    const last = items.at(-1);
    return page.more && last !== undefined ? { items, cursor: encodeKeyCursor(CURSOR_TAG, last.key) } : { items };
  }

  /**
   * Refuses new calls at once, discards staged writes never committed, and lets the commits,
   * promotions and deletions (delete, clear, sweep) already under way finish (they succeed or
   * fail on their own account, not with a ClosedError), then closes the database.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#closeDone ??= this.#close();
    return this.#closeDone;
  }

  async #close(): Promise<void> {
    // Staged writes never committed are discarded now rather than left for garbage collection
    // (an abort waits for a commit under way).
    for (const staged of [...this.#open]) await staged.abort();
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    this.#closed = true;
    this.#store?.close();
  }

  /** Tracks a commit, promotion or deletion under way until it settles, for close(). */
  #track<T>(operation: Promise<T>): Promise<T> {
    const settled = operation.then(ignore, ignore);
    this.#inFlight.add(settled);
    void settled.then(() => this.#inFlight.delete(settled));
    return operation;
  }

  /**
   * Checks that the cache is open and, the first time, sets up and checks the directory (migrating
   * a directory of the previous layout) and opens the database.
   */
  #prepare(): ResultStore {
    this.#assertOpen();
    if (this.#store !== undefined) {
      // Once per interval, a clock read and a comparison otherwise (see DatabaseIdentity).
      this.#identity?.check(this.#clock.now());
      return this.#store;
    }
    const root = this.#layout.root;
    try {
      // Not Node's recursive mkdir: it loops for ever on an ENOENT under an existing parent (/proc).
      makeDirectories(root, 0o755);
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
    const layout = checkLayoutVersion(this.#layout, this.#durable);
    ensureDir(this.#layout.staging);
    for (const area of CACHE_AREAS) ensureDir(this.#layout.areaDir(area));
    const dbPath = this.#layout.inside(join(root, CACHE_DB_FILE));
    const store = new ResultStore(openCacheDatabase(dbPath, this.#durable));
    let identity: DatabaseIdentity;
    try {
      identity = new DatabaseIdentity(dbPath, 'file cache', this.#clock.now());
      if (layout !== 'current') migrateFlatLayout(this.#layout, store, this.#durable);
      collectStaging(this.#layout.staging);
    } catch (error) {
      store.close();
      throw error;
    }
    this.#store = store;
    this.#identity = identity;
    return store;
  }

  #assertOpen(): void {
    if (this.#closing) throw new ClosedError('file cache manager is closed');
  }

  /** For the steps of an operation under way, which close() waits for: only a closed database stops them. */
  #assertNotClosed(): void {
    if (this.#closed) throw new ClosedError('file cache manager is closed');
  }

  /**
   * The committed result of a key (persistent first, or only `area`). A row this cache cannot read
   * fails with the {@link BackendError} saying why, until the key is deleted. Reads the database
   * only: the key's directories are checked where its files are opened.
   */
  #find(store: ResultStore, key: string, area?: CacheArea): Found | undefined {
    const result: Lookup = area === undefined ? store.findAny(key) : store.find(area, key);
    if (result instanceof BackendError) throw result;
    return result === undefined
      ? undefined
      : { area: result.area, shardDir: this.#layout.shardDir(result.area, key), result };
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
    return this.#layout.dataPath(found.shardDir, found.result.key, found.result.commit, format);
  }

  #checkStaging(): void {
    this.#assertOpen();
    ensureDir(this.#layout.staging);
  }

  /**
   * Publishes complete staged files and small formats as the result of `key` in `area`: one
   * rename per file to its data file name (synced with its directory when durable), then the
   * transaction of {@link ResultStore.publish}, the commit point. Then the replaced results' files
   * go; a crash before that leaves them as garbage. `promoting` is the commit of the temporary
   * result a promotion copied: the publication happens only while that result is still there
   * (else {@link Superseded}).
   */
  async #publish(
    key: string,
    area: CacheArea,
    files: ReadonlyMap<string, string>,
    inline: ReadonlyMap<string, Buffer>,
    formats: Readonly<Record<string, FormatInfo>>,
    createdAt: number,
    fence?: number,
    promoting?: string,
    stillHeld?: () => boolean,
  ): Promise<ResultManifest> {
    // Called from a commit or promotion that has prepared the store (and that close() waits for).
    this.#assertNotClosed();
    const store = this.#store ?? this.#prepare();
    // Before the files move: a commit into a removed database fails with them still staged.
    this.#identity?.check(this.#clock.now());
    assertCacheArea(area);
    const commit = newId();
    let shardDir: string | undefined;
    if (files.size > 0) {
      shardDir = await this.#ensureShardDir(area, key);
      this.#moveIn(files, shardDir, key, commit);
    }
    const stored: StoredResult = {
      key,
      area,
      createdAt,
      commit,
      formats: copyFormats(formats),
      ...(inline.size === 0 ? {} : { inline }),
      ...(fence === undefined ? {} : { fence }),
    };
    let replaced: StoredResult[];
    try {
      // The files and their names reach the disk before the row that names them.
      if (this.#durable && shardDir !== undefined) await syncDir(shardDir);
      this.#assertNotClosed();
      // Mirrors the sweep's orphan rule (files older than STALE_COMMIT_MS by their commit id): a
      // commit stalled that long (a suspended VM, a stopped process) gives up instead of writing a
      // row that names files a sweep may have removed. Half the grace leaves a margin for clocks.
      const deadline = shardDir === undefined ? undefined : (idTime(commit) ?? Date.now()) + STALE_COMMIT_MS / 2;
      replaced = await store.publish(stored, fence, promoting, deadline, stillHeld);
    } catch (error) {
      // Unpublished files go back to staging (unless the transaction committed after all, and only
      // its report failed): the staged result stays open, and a retried commit needs them there.
      if (shardDir !== undefined && !this.#names(store, area, key, commit)) {
        const dir = shardDir;
        this.#moveBack([...files].map(([format, from]) => [from, this.#layout.dataPath(dir, key, commit, format)]));
      }
      throw error;
    }
    for (const old of replaced) this.#removeFiles(old, fileFormats(old));
    return publicManifest(stored);
  }

  /** True when the row of `key` in `area` names `commit` (false when it cannot be read at all). */
  #names(store: ResultStore, area: CacheArea, key: string, commit: string): boolean {
    try {
      const found = store.find(area, key);
      return found !== undefined && !(found instanceof BackendError) && found.commit === commit;
    } catch {
      return false;
    }
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
      this.#moveBack(moved);
      throw fsError(error, `committing '${key}'`);
    }
  }

  /** Renames moved-in files (`[staged path, data path]` pairs) back to staging; one that cannot go back goes. */
  #moveBack(moved: readonly (readonly [string, string])[]): void {
    for (const [from, to] of moved) {
      try {
        fs.renameSync(to, from);
      } catch {
        // Not back in staging (gone, or the staging directory is): it must not stay an orphan.
        unlinkQuietly(to);
      }
    }
  }

  /**
   * Unlinks the data files of a result no row names any more (those still there). Never throws:
   * the result is gone already, and what stays is garbage for a later sweep; a shard directory
   * replaced by a symlink is not entered.
   */
  #removeFiles(result: Pick<StoredResult, 'area' | 'key' | 'commit'>, formats: readonly string[]): void {
    if (formats.length === 0) return;
    let shardDir: string | undefined;
    try {
      shardDir = this.#existingShardDir(result.area, result.key);
    } catch {
      return;
    }
    if (shardDir === undefined) return;
    for (const format of formats) unlinkQuietly(this.#layout.dataPath(shardDir, result.key, result.commit, format));
  }

  /**
   * The shard directories of `area`: real directories only (the types are lstat's, so a symlink is
   * never one). Anything else under a shard's name (a symlink or a file planted there) is skipped,
   * never entered: one odd entry must not stop the sweep of the whole area. The area directory
   * itself is checked, and refused when it is a symlink.
   */
  #shardDirs(area: CacheArea): string[] {
    const areaDir = this.#layout.areaDir(area);
    if (dirState(areaDir) === 'missing') return [];
    const dirs: string[] = [];
    for (const shard of readDir(areaDir)) {
      if (!SHARD_PATTERN.test(shard.name) || !shard.isDirectory()) continue;
      dirs.push(this.#layout.inside(join(areaDir, shard.name)));
    }
    return dirs;
  }

  /**
   * The keys with data files in one shard directory: regular files only. A symlink, a FIFO or a
   * directory planted under a name of the cache is skipped, left as it is (never followed, never
   * opened), as is a shard directory replaced since it was listed. A manifest file left by the
   * migration from the `flat-1` layout (a crash between its steps) is never read again: it goes at once.
   */
  #keysIn(shardDir: string): Map<string, KeyEntries> {
    const keys = new Map<string, KeyEntries>();
    if (!isRealDir(shardDir)) return keys;
    for (const dirent of readDir(shardDir)) {
      const entry = parseShardEntry(dirent.name);
      if (entry === undefined || !dirent.isFile()) continue;
      if (entry.kind === 'manifest') {
        unlinkQuietly(join(shardDir, dirent.name));
        continue;
      }
      let found = keys.get(entry.key);
      if (found === undefined) {
        found = { entries: [] };
        keys.set(entry.key, found);
      }
      found.entries.push({ name: dirent.name, entry });
    }
    return keys;
  }

  /** A body stream over one format, for the requested range. */
  async #body(handle: FileHandle, area: CacheArea, info: FormatInfo, options: CacheGetOptions): Promise<CachedBody> {
    const totalSize = (await handle.stat()).size;
    if (totalSize !== info.size) {
      throw new BackendError(
        `file cache: stored size ${String(totalSize)} differs from the recorded ${String(info.size)}`,
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

/**
 * The data file of a format is missing while the key's row still names its commit: damage (lost
 * in a crash before it reached the disk, or removed by hand), not retryable; the key reads so
 * until it is committed again or deleted.
 */
function missingFile(key: string, format: string, cause: unknown): BackendError {
  return new BackendError(
    `file cache: the data file of ${format} of '${key}' is missing (damaged): commit the key again or delete it`,
    { retryable: false, cause },
  );
}

/** A body over the bytes of an inline format, for the requested range. */
function inlineBody(bytes: Buffer, area: CacheArea, info: FormatInfo, options: CacheGetOptions): CachedBody {
  if (bytes.byteLength !== info.size) {
    throw new BackendError(
      `file cache: stored size ${String(bytes.byteLength)} differs from the recorded ${String(info.size)}`,
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

function formatOf(result: StoredResult, format: string): FormatInfo | undefined {
  return Object.hasOwn(result.formats, format) ? result.formats[format] : undefined;
}

function copyFormats(formats: Readonly<Record<string, FormatInfo>>): Record<string, FormatInfo> {
  const copy: Record<string, FormatInfo> = {};
  for (const name of Object.keys(formats)) {
    const info = formats[name];
    if (info !== undefined) copy[name] = { ...info };
  }
  return copy;
}

/** Hard-links `from` to `to`, copying where the file system has no hard links; true when it copied. */
async function linkOrCopy(from: string, to: string): Promise<boolean> {
  try {
    fs.linkSync(from, to);
    return false;
  } catch (error) {
    const code = errnoOf(error);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EMLINK') throw error;
    await copyRegularFile(from, to);
    return true;
  }
}

/**
 * Copies the regular file at `from` to a new file `to`, through descriptors: what is read is
 * what was checked. A link copies whatever is at the name, but a copy reads it: O_NOFOLLOW
 * refuses a symlink planted there (copyFile would follow it out of the root), and O_NONBLOCK with
 * the fstat refuses a FIFO, whose open and reads would wait for a writer for ever, or a device.
 * Removes `to` when it fails.
 */
async function copyRegularFile(from: string, to: string): Promise<void> {
  const source = await open(from, READ_FLAGS);
  try {
    if (!(await source.stat()).isFile()) {
      throw new BackendError(`file cache: refusing to copy ${from}: it is not a regular file`);
    }
    const target = await open(to, CREATE_FLAGS, 0o644);
    let closing = false;
    try {
      const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await source.read(buffer, 0, buffer.byteLength, null);
        if (bytesRead === 0) break;
        let written = 0;
        while (written < bytesRead) {
          written += (await target.write(buffer, written, bytesRead - written)).bytesWritten;
        }
      }
      closing = true;
      await target.close();
    } catch (error) {
      if (!closing) await target.close().catch(() => undefined);
      unlinkQuietly(to);
      throw error;
    }
  } finally {
    await source.close().catch(() => undefined);
  }
}

/** True when `path` is a directory, not a symlink to one (false for anything else, or an error). */
function isRealDir(path: string): boolean {
  try {
    return dirState(path) === 'dir';
  } catch {
    return false;
  }
}

function readDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw fsError(error, `listing ${dir}`);
  }
}

function ignore(): void {
  // The operation's own caller hears of its outcome.
}
