import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import type { BucketLocationConstraint } from '@aws-sdk/client-s3';
import { inject, injectable } from 'inversify';

import {
  assertCacheArea,
  assertStillHeld,
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
  CacheWriteOptions,
  Clock,
  ResolvedRange,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import { mapLimit } from './concurrency.js';
import { openBody } from './download.js';
import type { RangeBody } from './download.js';
import { isNotFound, isRetryable, toBackendError } from './errors.js';
import { idTime, newId, S3Layout } from './layout.js';
import {
  compareResults,
  decodeManifest,
  encodeManifest,
  orderAfter,
  orderOf,
  publicManifest,
  sourceOf,
} from './manifest.js';
import type { StoredFormat, StoredManifest } from './manifest.js';
import { resolveS3CacheOptions } from './options.js';
import type { ResolvedS3CacheOptions, S3CacheManagerOptions } from './options.js';
import { S3StagedResult } from './staged-result.js';
import type { StagedFormat, StagingHost } from './staged-result.js';
import { DELETE_BATCH, S3Store } from './store.js';
import type { ListedObject, RefusedDelete } from './store.js';
import { stageFormat } from './upload.js';
import type { InlineFormat, UploadedFormat } from './upload.js';

/**
 * Formats up to this size stay in memory until the commit writes them in place (one PutObject
 * instead of upload + copy + delete); larger ones stream through a staging object.
 */
const INLINE_MAX_BYTES = 1024 * 1024;
/** Calls in flight for copies and manifest reads of one operation. */
const PARALLEL_CALLS = 8;
/** Manifest re-reads when a result's data vanished under a reader (replaced concurrently). */
const MAX_READ_ATTEMPTS = 3;
/** CopyObject's limit: larger formats would need a multipart copy. */
const MAX_COPY_BYTES = 5 * 1024 * 1024 * 1024;
/** SigV4 presigned URLs live at most 7 days. */
const MAX_URL_SECONDS = 7 * 24 * 3600;
/** Reads of a manifest that does not parse (torn by a concurrent rewrite on an emulator). */
const MAX_MANIFEST_READS = 5;
const MANIFEST_REREAD_MS = 5;
const CURSOR_TAG = 's3c1';
/** Sorts after every character of a key folder name, so `StartAfter: <folder>~` skips the whole folder. */
const AFTER_FOLDER = '~';

/**
 * The S3 {@link CacheManager}: results shared by every host using the bucket.
 *
 * Layout (under `prefix`): `<area>/<key>/manifest.json` is the commit point, written last and read
 * first; `<area>/<key>/<commitId>/<format>` holds the data of the commit it names;
 * `staging/<stageId>/<n>/<format>` holds formats over 1 MiB being written, streamed in with
 * multipart uploads and copied into the area on commit (smaller ones wait in memory and are put in
 * place by the commit). A reader that finds a commit's data gone (replaced
 * concurrently) reads the manifest again. Formats are stored with their Content-Type (and
 * Content-Encoding); with `gzip` they are compressed on write and decoded again by `get`.
 *
 * A manifest this cache cannot read (damaged, or written by a newer armlib) makes `head`, `get`,
 * `url`, `promote` and commits of its key fail with a {@link BackendError}; `list` and `sweep`
 * skip the key, and `delete` and `clear` remove the manifest (its data is left, once the manifest
 * is gone, to the orphan collection of `sweep` and `clear`, since nothing says which objects it names).
 *
 * Orphans: data no manifest names (a commit that crashed before its manifest, a failed background
 * delete) is collected by `sweep` and `clear` once older than `orphanGraceMs`, never earlier: it
 * may be a commit in flight, whose manifest comes last. A commit that could not write
 * its manifest within its deadline (a quarter of `orphanGraceMs`, at most 6 h, after its first data
 * write) gives up, so that none of it can still be published then.
 */
@injectable()
export class S3CacheManager implements CacheManager {
  /** Presigned URLs; every process and host using the bucket sees the same results. */
  readonly capabilities: CacheCapabilities = Object.freeze({ signedUrls: true, sharedAcrossProcesses: true });

  readonly #options: ResolvedS3CacheOptions;
  readonly #clock: Clock;
  readonly #store: S3Store;
  readonly #layout: S3Layout;
  readonly #staging: StagingHost;
  /** Clean-up running after a commit returned. */
  readonly #background = new Set<Promise<void>>();
  /**
   * Every call in flight that sends requests, as settled versions: close() waits for them. Reads
   * only when the cache owns the client (a read cut off by the client's destruction would fail
   * with a socket error); the application's client stays open, and its reads may have no timeout.
   */
  readonly #operations = new Set<Promise<void>>();
  /** Bodies `get` handed out that are still streaming, when the cache owns the client: close() cuts them. */
  readonly #bodies = new Set<RangeBody>();
  /** Staged results neither committed nor aborted: close() aborts them. */
  readonly #staged = new Set<S3StagedResult>();
  /** One per upload in flight: close() stops them. */
  readonly #uploads = new Set<AbortController>();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(
    @inject(TOKENS.CacheOptions) options: S3CacheManagerOptions,
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    this.#options = resolveS3CacheOptions(options);
    this.#clock = clock;
    this.#store = new S3Store(this.#options.client, this.#options.bucket);
    this.#layout = new S3Layout(this.#options.prefix);
    this.#staging = {
      assertOpen: () => {
        this.#assertOpen();
      },
      isClosed: () => this.#closed,
      track: (work) => this.#track(work),
      ended: (staged) => this.#staged.delete(staged),
      stagedKey: (stageId, seq, format) => this.#layout.staged(stageId, seq, format),
      upload: (objectKey, data, options) => this.#upload(objectKey, data, options),
      publish: (key, area, formats, published, fence, stillHeld) =>
        this.#publish(key, area, formats, published, fence, stillHeld),
      discard: (keys) => this.#discard(keys),
    };
  }

  /** The bucket this cache uses. */
  get bucket(): string {
    return this.#options.bucket;
  }

  /** The key prefix of every object of this cache. */
  get prefix(): string {
    return this.#options.prefix;
  }

  /**
   * Creates the bucket unless it exists (idempotent; a provisioning step, never called implicitly).
   * Outside us-east-1 the bucket is created in the client's region.
   */
  async ensureBucket(): Promise<void> {
    return this.#trackRead(() => this.#ensureBucket());
  }

  async #ensureBucket(): Promise<void> {
    const { client, bucket } = this.#options;
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }));
      return;
    } catch (error) {
      if (!isNotFound(error) && !isNamed(error, 'NoSuchBucket')) throw toBackendError(error, `HeadBucket ${bucket}`);
    }
    try {
      const region = await client.config.region();
      await client.send(
        new CreateBucketCommand({
          Bucket: bucket,
          ...(region === 'us-east-1'
            ? {}
            : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } }),
        }),
      );
    } catch (error) {
      if (isNamed(error, 'BucketAlreadyOwnedByYou')) return;
      throw toBackendError(error, `CreateBucket ${bucket}`);
    }
  }

  async stage(key: string): Promise<StagedResult> {
    this.#assertOpen();
    assertValidKey(key);
    const staged = new S3StagedResult(key, newId('s'), this.#staging);
    this.#staged.add(staged);
    return staged;
  }

  async head(key: string, area?: CacheArea): Promise<ResultManifest | undefined> {
    return this.#trackRead(async () => {
      assertValidKey(key);
      const found = await this.#find(key, area === undefined ? undefined : assertCacheArea(area));
      return found === undefined ? undefined : publicManifest(found);
    });
  }

  /**
   * Streams one format (see {@link CacheManager.get}). The body streams from the S3 response: the
   * caller must read it to its end or destroy it, which frees the connection. See {@link close}
   * for what a close does to a body still streaming.
   */
  async get(key: string, format: string, options: CacheGetOptions = {}): Promise<CachedBody | undefined> {
    return this.#trackRead(() => this.#get(key, format, options));
  }

  async #get(key: string, format: string, options: CacheGetOptions): Promise<CachedBody | undefined> {
    assertValidKey(key);
    assertValidFormat(format);
    const { range: requested } = cacheGetOptions(options);
    let tried: string | undefined;
    for (let attempt = 0; attempt < MAX_READ_ATTEMPTS; attempt++) {
      const manifest = await this.#find(key);
      const stored = manifest === undefined ? undefined : formatOf(manifest, format);
      // The same commit in the same area twice: its data is really gone (expired, or a crashed
      // clean-up), so absent. (A promotion that moved the result meanwhile names its own copies.)
      const attemptId = manifest === undefined ? undefined : `${manifest.area}/${manifest.commitId}`;
      if (manifest === undefined || stored === undefined || attemptId === tried) return undefined;
      tried = attemptId;
      const range = sliceRange(stored.info.size, requested);
      const body = await this.#open(manifest, format, stored, range);
      if (body !== undefined) {
        return {
          body,
          size: range.length,
          totalSize: stored.info.size,
          contentType: stored.info.contentType,
          ...(stored.info.contentEncoding === undefined ? {} : { contentEncoding: stored.info.contentEncoding }),
          area: manifest.area,
        };
      }
    }
    return undefined;
  }

  async url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined> {
    return this.#trackRead(() => this.#url(key, format, options));
  }

  async #url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined> {
    assertValidKey(key);
    assertValidFormat(format);
    const expires = cacheUrlExpiry(options);
    if (!Number.isInteger(expires) || expires > MAX_URL_SECONDS) {
      throw new InvalidRequestError(
        'expiresInSec',
        `must be an integer from 1 to ${MAX_URL_SECONDS} (7 days, the SigV4 limit), got ${String(expires)}`,
      );
    }
    const manifest = await this.#find(key);
    if (manifest === undefined || formatOf(manifest, format) === undefined) return undefined;
    // The URL names this commit's object: it stops working once the result is replaced or deleted.
    return this.#store.presignGet(this.#layout.data(manifest.area, key, manifest.commitId, format), expires);
  }

  /**
   * Moves the temporary result of `key` to the persistent area (see {@link CacheManager.promote}):
   * copies its data under a fresh commit id of its own (as a commit does), writes the persistent
   * manifest (keeping the result's `createdAt`, fence and order, and naming the temporary commit
   * as `promotedFrom`), then removes the temporary result. Two promotions of one result thus never
   * write the same objects: a delete, clear or sweep that removes one's result deletes only that
   * one's copies, and a manifest written after it names its own, whole. A promotion that finds the
   * result already promoted by another writes nothing and removes its copies; one whose manifest
   * a concurrent promotion replaced leaves its copies to the orphan collection, as a losing
   * commit does. A temporary commit found after the manifest write is promoted instead when it is
   * newer; an older one (which read the key before this result landed) removes itself as it
   * settles, and the promotion stands.
   */
  async promote(key: string): Promise<boolean> {
    return this.#track(async () => {
      assertValidKey(key);
      for (let attempt = 1; ; attempt++) {
        const outcome = await this.#promoteOnce(key);
        if (outcome !== 'superseded') return outcome;
        // A newer temporary result was committed while this one was copied: promote that one.
        if (attempt >= MAX_READ_ATTEMPTS) {
          throw new BackendError(`temporary result '${key}' kept changing while it was promoted`, { retryable: true });
        }
      }
    });
  }

  /**
   * One try of {@link promote}; 'superseded' when the temporary result changed under it, false
   * when there is none or a newer result was committed to the persistent area meanwhile.
   */
  async #promoteOnce(key: string): Promise<boolean | 'superseded'> {
    const temporary = await this.#read('temporary', key);
    if (temporary === undefined) return false;
    const promoted: StoredManifest = {
      ...temporary,
      area: 'persistent',
      // Sorts after its source: an armlib from before `promotedFrom` breaks ties on the commit id,
      // and must not take the promotion for older than the result it copied.
      commitId: newId('c', idTime(temporary.commitId) + 1),
      promotedFrom: temporary.commitId,
      // The result keeps its rank: a commit made after it still replaces it, one made before does not.
      order: orderOf(temporary),
    };
    const targets = this.#dataKeys(promoted);
    try {
      return await this.#promoteCopying(temporary, promoted, targets);
    } catch (error) {
      // The copies made so far go, unless this promotion published them before a later step failed
      // (nobody else writes under its commit id).
      await this.#discardUnlessNamed('persistent', key, promoted.commitId, targets);
      throw error;
    }
  }

  /** Copies `temporary` to `targets` and publishes them as `promoted` (see {@link #promoteOnce}). */
  async #promoteCopying(
    temporary: StoredManifest,
    promoted: StoredManifest,
    targets: readonly string[],
  ): Promise<boolean | 'superseded'> {
    const { key, commitId } = temporary;
    const started = this.#clock.now();
    const copied = await mapLimit(Object.keys(temporary.formats), PARALLEL_CALLS, (format, index) =>
      this.#store.copy(this.#layout.data('temporary', key, commitId, format), targets[index] as string),
    );
    // Both areas, right before the persistent manifest names the copies (read side by side: no
    // round trip more than one read): a commit made meanwhile in either is newer than the result
    // copied, and must not be replaced by it.
    const [now, previous] = await Promise.all([this.#read('temporary', key), this.#read('persistent', key)]);
    if (now?.commitId !== commitId) {
      // Promoted, replaced or deleted by someone else while we copied: no manifest names these copies.
      await this.#discard(targets);
      if (now !== undefined) return 'superseded';
      // Gone: promoted already when the persistent manifest (read alongside) holds it.
      return previous !== undefined && sourceOf(previous) === commitId;
    }
    if (previous !== undefined && sourceOf(previous) === commitId) {
      // A concurrent promotion of the same result published it: its manifest stays (writing this
      // one would only make its copies garbage), these copies go, and the temporary result, read
      // just now, goes as that promotion would remove it: first, so that the delete follows that
      // read by one round trip only (these copies go after, or through #promoteOnce on a failure).
      await this.#removeResults([this.#resultOf('temporary', temporary)]);
      await this.#discard(targets);
      return true;
    }
    if (previous !== undefined && compareResults(previous, temporary) > 0) {
      // A newer result was committed to the persistent area: the temporary one is superseded (that
      // commit's settling removes it), so nothing is promoted.
      await this.#discard(targets);
      return false;
    }
    if (copied.includes(false)) {
      throw new BackendError(`temporary result '${key}' has lost data objects; it cannot be promoted`, {
        retryable: false,
      });
    }
    // The copies go with the error, through #promoteOnce.
    await this.#checkDeadline(`promotion of '${key}'`, started, []);
    await this.#store.putText(this.#layout.manifest('persistent', key), encodeManifest(promoted), 'application/json');
    // The persistent manifest no longer names the previous result (a different one, read right
    // before the write): its data is garbage. Nobody writes a manifest naming it again.
    if (previous !== undefined) await this.#discard(this.#dataKeys(previous));
    // Once more after the write (S3 has no conditional writes to make the two one step): a commit
    // that landed in the temporary area meanwhile is newer, so it stays and this promotion is undone.
    const after = await this.#read('temporary', key);
    if (after === undefined) {
      // Gone: a concurrent promotion of the same result removed it (having written its manifest
      // before or after this one), a persistent commit that replaced this one since settled and
      // removed it, or a delete.
      const published = await this.#read('persistent', key);
      if (published?.commitId === promoted.commitId) return true;
      // This manifest was replaced or deleted: nothing names these copies.
      await this.#discard(targets);
      return published !== undefined && sourceOf(published) === commitId;
    }
    if (after.commitId !== commitId) {
      // A result committed there since is not ours to remove. An older one (a commit that read
      // the key before this promotion's result landed) stays behind it: its own settling finds this
      // manifest newer and removes itself, so undoing this one too would leave the key empty.
      if (compareResults(after, promoted) <= 0) {
        // The result copied is replaced there: nothing names its data any more.
        await this.#discard(this.#dataKeys(temporary));
        return true;
      }
      // A newer one stays instead. Only this promotion's copies go with its manifest: nobody else
      // writes under its commit id.
      const published = await this.#read('persistent', key);
      if (published?.commitId === promoted.commitId)
        await this.#removeResults([this.#resultOf('persistent', promoted)]);
      else await this.#discard(targets);
      return 'superseded';
    }
    await this.#removeResults([this.#resultOf('temporary', temporary)]);
    return true;
  }

  /**
   * Deletes the result of `key` from one or both areas (see {@link CacheManager.delete}): each
   * manifest as read right before, then the data it names. No other writer names that data again
   * (commits and promotions each write under a fresh commit id), so a manifest written after the
   * delete names data of its own.
   */
  async delete(key: string, area?: CacheArea): Promise<number> {
    return this.#track(async () => {
      assertValidKey(key);
      let deleted = 0;
      for (const a of area === undefined ? CACHE_AREAS : [assertCacheArea(area)]) {
        // Read right before the delete: a result committed since its read is removed only if it
        // landed within that one round trip (S3 has no conditional delete to close it).
        const found = await this.#readOrUnreadable(a, key);
        if (found === undefined) continue;
        // A manifest that cannot be read goes alone: which objects it names is unknown, so they
        // are left to clear() and to sweep(), which collects them as orphans once old enough.
        const result =
          found instanceof Unreadable
            ? { manifest: this.#layout.manifest(a, key), data: [] }
            : this.#resultOf(a, found);
        deleted += await this.#removeResults([result]);
      }
      return deleted;
    });
  }

  /**
   * Deletes the results of `area` and its leftovers, and returns how many results (manifests)
   * went. One ListObjectsV2 pass, one GET per manifest listed (eight at a time), DeleteObjects in
   * batches of up to 1000: each listed manifest goes, as read then (a manifest that went since the
   * listing is not counted), and after it the data objects it names.
   *
   * A commit writes its manifest last, so data that no manifest read names may be a commit in
   * flight whose manifest comes later: it goes only once S3's LastModified is older than
   * `orphanGraceMs` by the manager's clock (no commit writes its manifest that long after its data:
   * see {@link sweep}), and after the key's manifest(s) are read again, as `sweep` collects
   * orphans. Younger unnamed objects, whatever their names, stay for a later clear (or sweep, or
   * the bucket's lifecycle rule): deleting them could leave a manifest written after the listing
   * naming data that is gone. So a commit that lands while the clear runs (a new result, or one
   * replacing a result the clear removes) keeps its data and stands afterwards, whole: it committed
   * after the clear began. A manifest this cache cannot read goes, and its folder's data counts as
   * unnamed (which objects it names is unknown; it may be a newer armlib's commit in flight).
   *
   * A key folder is cleared once the listing has shown all of it, its manifest first: a folder's
   * data sorts before its manifest, so a folder the page ends with waits for the next page (as in
   * `sweep`). A clear that fails or is stopped part way thus leaves each key whole or gone, never a
   * manifest whose data was deleted. Stops between pages when the cache is closed.
   */
  async clear(area: CacheArea): Promise<number> {
    return this.#track(async () => {
      assertCacheArea(area);
      let cleared = 0;
      // Objects with other names belong to no manifest this cache reads: they go once old, whatever the page.
      await this.#forEachPage(area, true, async (folders, strays) => {
        cleared += await this.#clearFolders(area, folders, strays);
      });
      return cleared;
    });
  }

  /**
   * Clears complete key folders (see {@link clear}): their manifests as read now go first (one
   * that went since the listing is not counted), then the data those name, the old data nothing
   * names and `strays`. Returns how many manifests went; a refused delete is an error.
   */
  async #clearFolders(area: CacheArea, folders: readonly ListedFolder[], strays: readonly string[]): Promise<number> {
    const read = await this.#readFolders(area, folders);
    const results = read.flatMap(({ folder, manifest }): StoredResult[] => {
      if (manifest === undefined) return [];
      return manifest instanceof Unreadable
        ? [{ manifest: this.#layout.manifest(area, folder.key), data: [] }]
        : [this.#resultOf(area, manifest)];
    });
    await this.#store.deleteAllOrThrow(results.map((r) => r.manifest));
    // Read again once the manifests are gone: a commit (or promotion) that named old data since stays whole.
    const orphans = await this.#orphansOf(area, read);
    await this.#store.deleteAllOrThrow([...results.flatMap((r) => r.data), ...orphans, ...strays]);
    return results.length;
  }

  /**
   * Deletes the results of `area` committed before `olderThan` and returns how many went. It also
   * collects the area's orphaned data (not counted): data objects of commits that their key's
   * manifest does not name (a commit that crashed before its manifest, a replaced result whose
   * background delete failed, the data of a manifest `delete` could not read), once S3's
   * LastModified is older than `orphanGraceMs` by the manager's clock. A commit gives up rather
   * than write its manifest later than its deadline (a quarter of the grace period, at most 6 h)
   * after its first data write, so such data can never become a result's. Objects whose
   * names this layout does not make, staging, and keys whose manifest cannot be read (a newer
   * armlib's) are left alone.
   *
   * One ListObjectsV2 pass over the area (1000 objects a page), one GET per manifest listed (its
   * `createdAt`), then only where there is something to collect: the manifest(s) read again right
   * before the data goes, and DeleteObjects in batches of up to 1000.
   */
  async sweep(area: CacheArea, olderThan: number): Promise<number> {
    return this.#track(async () => {
      assertCacheArea(area);
      checkOlderThan(olderThan);
      const state: SweepState = { swept: 0, orphans: [], refused: [] };
      await this.#forEachPage(area, false, async (folders) => {
        await this.#sweepFolders(area, olderThan, folders, state);
        await this.#collect(state, DELETE_BATCH);
      });
      await this.#collect(state, 1);
      if (state.refused.length > 0) throw refusalError(state.refused);
      return state.swept;
    });
  }

  /**
   * One ListObjectsV2 pass over `area` (no delimiter), handing `handle` each page's complete key
   * folders (see {@link #foldersOf}) and, with `withStrays`, its old objects of other names. The
   * page's last folder may go on in the next page: it is handed on with the rest of it. Ages count
   * from before each listing: whatever was written before it, a manifest included, is in it. Stops
   * between pages when the cache is closed (what is left is for next time).
   */
  async #forEachPage(
    area: CacheArea,
    withStrays: boolean,
    handle: (folders: ListedFolder[], strays: string[]) => Promise<void>,
  ): Promise<void> {
    let carried: ListedFolder | undefined;
    let token: string | undefined;
    do {
      if (token !== undefined) this.#assertOpen();
      const listedAt = this.#clock.now();
      const page = await this.#store.list(this.#layout.area(area), token === undefined ? {} : { token });
      const strays: string[] = [];
      const folders = this.#foldersOf(area, page.listed, listedAt, carried, withStrays ? strays : undefined);
      token = page.next;
      carried = token === undefined ? undefined : folders.pop();
      await handle(folders, strays);
    } while (token !== undefined);
  }

  /**
   * The key folders of a page of a non-delimited listing of `area`, in listing order (`carried`,
   * a folder the previous page ended with, first): whether its manifest is listed, and its data
   * objects older than the grace period as of `listedAt`. Objects with other names are ignored,
   * or, with `strays`, added to it when older than the grace period.
   */
  #foldersOf(
    area: CacheArea,
    listed: readonly ListedObject[],
    listedAt: number,
    carried: ListedFolder | undefined,
    strays?: string[],
  ): ListedFolder[] {
    const folders = new Map<string, ListedFolder>();
    if (carried !== undefined) folders.set(carried.key, carried);
    const grace = this.#options.orphanGraceMs;
    for (const { key: objectKey, lastModified } of listed) {
      // NaN (no LastModified) is never old.
      const old = listedAt - lastModified > grace;
      const object = this.#layout.parse(area, objectKey);
      if (object.kind === 'other') {
        if (old) strays?.push(objectKey);
        continue;
      }
      let folder = folders.get(object.key);
      if (folder === undefined) {
        folder = { key: object.key, manifest: false, old: [] };
        folders.set(object.key, folder);
      }
      if (object.kind === 'manifest') folder.manifest = true;
      else if (old) folder.old.push({ objectKey, commitId: object.commitId });
    }
    return [...folders.values()];
  }

  /**
   * Reads the manifests `folders` list (eight at a time): each folder with its manifest as read
   * now (undefined when none was listed, or it went since) and its old data that manifest does
   * not name (all of it when the manifest cannot be read: which objects it names is unknown).
   */
  async #readFolders(area: CacheArea, folders: readonly ListedFolder[]): Promise<ReadFolder[]> {
    const read = await mapLimit(folders, PARALLEL_CALLS, (f) =>
      f.manifest ? this.#readOrUnreadable(area, f.key) : Promise.resolve(undefined),
    );
    return folders.map((folder, i) => {
      const manifest = read[i];
      const named = manifest instanceof Unreadable ? undefined : manifest?.commitId;
      // A folder whose old data all belongs to the commit its manifest names costs nothing more.
      return { folder, manifest, suspects: folder.old.filter((o) => o.commitId !== named) };
    });
  }

  /** Of the suspects of `folders`, the objects no manifest names by reads made now ({@link #unnamed}). */
  async #orphansOf(area: CacheArea, folders: readonly ReadFolder[]): Promise<string[]> {
    const suspects = folders.filter((f) => f.suspects.length > 0);
    const orphans = await mapLimit(suspects, PARALLEL_CALLS, (f) => this.#unnamed(area, f.folder.key, f.suspects));
    return orphans.flat();
  }

  /**
   * Sweeps complete key folders: reads the manifests listed (eight at a time), deletes the due
   * results ({@link #sweepDue}), and queues in `state` the old data the key's manifest does not
   * name ({@link #unnamed}). A manifest this cache cannot read leaves its key alone, data
   * included (it may be a newer armlib's result).
   */
  async #sweepFolders(
    area: CacheArea,
    olderThan: number,
    folders: readonly ListedFolder[],
    state: SweepState,
  ): Promise<void> {
    const read = (await this.#readFolders(area, folders)).filter((f) => !(f.manifest instanceof Unreadable));
    const due = read.flatMap(({ manifest: m }) =>
      m !== undefined && !(m instanceof Unreadable) && m.createdAt < olderThan ? [m] : [],
    );
    const outcome = await this.#sweepDue(area, due);
    state.swept += outcome.swept;
    state.refused.push(...outcome.refused);
    state.orphans.push(...(await this.#orphansOf(area, read)));
  }

  /**
   * Of `old` data in the folder of `key`, those no manifest names, by reads made after the
   * listing and right before the delete. In the persistent area the temporary manifest is read
   * first: a promotion made by an armlib before `promotedFrom` existed copies a temporary commit
   * under that commit's id, possibly over copies a failed promotion left (whose listed age is then
   * stale), and until it has written the persistent manifest the temporary one names that commit.
   * (Promotions now copy under fresh commit ids, young until their manifest is written.) Nothing
   * when a manifest cannot be read.
   */
  async #unnamed(area: CacheArea, key: string, old: readonly OldData[]): Promise<string[]> {
    const named = new Set<string>();
    const reads = area === 'persistent' ? (['temporary', 'persistent'] as const) : ([area] as const);
    for (const a of reads) {
      const manifest = await this.#readOrUnreadable(a, key);
      if (manifest instanceof Unreadable) return [];
      if (manifest !== undefined) named.add(manifest.commitId);
    }
    return old.filter((o) => !named.has(o.commitId)).map((o) => o.objectKey);
  }

  /** Deletes the queued orphans in batches of up to 1000, while at least `atLeast` are queued. */
  async #collect(state: SweepState, atLeast: number): Promise<void> {
    while (state.orphans.length >= Math.max(1, atLeast)) {
      const batch = state.orphans.splice(0, DELETE_BATCH);
      state.refused.push(...(await this.#store.deleteAll(batch)));
    }
  }

  /**
   * Deletes the results `due` read, a few at a time, each read again right before its delete: a
   * commit that replaced one since (a fresh result) stays. The data of the deleted ones goes at
   * the end, in one call. Returns how many went, and the manifests S3 refused to delete.
   */
  async #sweepDue(
    area: CacheArea,
    due: readonly StoredManifest[],
  ): Promise<{ swept: number; refused: RefusedDelete[] }> {
    let swept = 0;
    const garbage: string[] = [];
    const refused: RefusedDelete[] = [];
    for (let at = 0; at < due.length; at += PARALLEL_CALLS) {
      const batch = due.slice(at, at + PARALLEL_CALLS);
      const now = await Promise.all(batch.map((m) => this.#readOrUnreadable(area, m.key)));
      const unchanged = batch.filter((m, i) => sameCommit(now[i], m));
      const outcome = await this.#deleteManifests(unchanged.map((m) => this.#resultOf(area, m)));
      swept += outcome.gone.length;
      garbage.push(...outcome.gone.flatMap((r) => r.data));
      refused.push(...outcome.refused);
    }
    await this.#discard(garbage);
    return { swept, refused };
  }

  async list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    return this.#trackRead(() => this.#list(area, options));
  }

  async #list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    assertCacheArea(area);
    const { limit, after } = cacheListOptions(CURSOR_TAG, options);
    const items: ResultManifest[] = [];
    let startAfter = after === undefined ? undefined : `${this.#layout.keyFolder(area, after)}${AFTER_FOLDER}`;
    let token: string | undefined;
    for (;;) {
      const wanted = limit - items.length;
      const page = await this.#store.list(this.#layout.area(area), {
        delimiter: '/',
        maxKeys: Math.min(1000, wanted),
        ...(token === undefined ? {} : { token }),
        ...(token === undefined && startAfter !== undefined ? { startAfter } : {}),
      });
      // Emulators may ignore MaxKeys with a delimiter: never take more than the page still needs.
      const keys = this.#keysOf(area, page.folders);
      const taken = keys.slice(0, wanted);
      // Folders without a manifest (a commit being copied in, leftovers) are not results, nor
      // are manifests this cache cannot read (skipped rather than failing the whole listing).
      const manifests = await mapLimit(taken, PARALLEL_CALLS, (key) => this.#readOrUnreadable(area, key));
      for (const m of manifests) if (m !== undefined && !(m instanceof Unreadable)) items.push(publicManifest(m));
      const lastTaken = taken.at(-1);
      if (items.length >= limit || taken.length < keys.length) {
        const more = taken.length < keys.length || page.next !== undefined;
        return more && lastTaken !== undefined ? { items, cursor: encodeKeyCursor(CURSOR_TAG, lastTaken) } : { items };
      }
      if (page.next === undefined) return { items };
      token = page.next;
      startAfter = undefined;
    }
  }

  /**
   * Closes the cache: every call made afterwards, and every write or commit of a staged result,
   * fails with core's ClosedError. Writes in flight stop (their multipart uploads are aborted) and
   * fail with ClosedError; staged results neither committed nor aborted are aborted (their staged
   * objects deleted). A commit in flight that has not yet passed its last check before the
   * manifest write (fence and deadline) stops there with ClosedError and deletes its data; one
   * past it finishes (manifest and settling: never a half state). Resolves once every write,
   * commit, promotion, delete, clear and sweep in flight (clears and sweeps stop between listing
   * pages) and the background clean-up have settled.
   *
   * With a client the cache made, close() also waits for the reads in flight (`head`, `get` up to
   * its response headers, `url`, `list`, `ensureBucket`), which finish with the answer they would
   * have had, then destroys the client: no request the cache sent is still in flight then, so none
   * fails with a socket error. With a client of the application's (`client`), which close() leaves
   * open, reads in flight are not waited for (the cache sets no timeout on them, so one could stall
   * close() for ever): they go on, and finish as that client lets them.
   *
   * Bodies `get` handed out are not waited for (a caller may never read one). With a client the
   * cache made, each one still streaming is cut when the client is destroyed: its reader gets what
   * the body had already passed on, then core's ClosedError (at its first read when it was not
   * reading yet; a body read without an 'error' listener, e.g. piped, is destroyed and emits
   * 'close'). With a client of the application's they stream on to their end, as a file cache's
   * open files do.
   */
  async close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    this.#closed = true;
    const reason = new ClosedError('s3 cache manager was closed during the write');
    for (const upload of this.#uploads) upload.abort(reason);
    // A staged result being committed waits for its commit (and is aborted if it fails).
    await Promise.allSettled([...this.#staged].map((staged) => staged.abort()));
    // Operations may start clean-up as they settle: wait until nothing is left.
    while (this.#operations.size > 0 || this.#background.size > 0) {
      await Promise.allSettled([...this.#operations, ...this.#background]);
    }
    if (!this.#options.ownsClient) return;
    // Their connections go with the client: a ClosedError says why, rather than a socket error.
    const cut = new ClosedError('s3 cache manager was closed while the body streamed');
    for (const body of this.#bodies) body.cut(cut);
    this.#options.client.destroy();
  }

  /**
   * Runs a read: as an operation close() waits for when the cache owns the client (close destroys
   * it), else as it is (close leaves the application's client open, and a read on it may stall
   * for as long as that client lets it). ClosedError once closed, either way.
   */
  #trackRead<T>(work: () => Promise<T>): Promise<T> {
    if (this.#options.ownsClient) return this.#track(work);
    this.#assertOpen();
    return work();
  }

  /** Runs `work` as an operation close() waits for; ClosedError once closed. */
  #track<T>(work: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    const running = work();
    const settled = running.then(ignore, ignore);
    this.#operations.add(settled);
    void settled.then(() => this.#operations.delete(settled));
    return running;
  }

  /** Tracks clean-up that nobody awaits (it never rejects: see #discard), so that close() can. */
  #inBackground(work: Promise<void>): void {
    this.#background.add(work);
    void work.finally(() => this.#background.delete(work));
  }

  /** The committed manifest: persistent first, or only `area`. */
  async #find(key: string, area?: CacheArea): Promise<StoredManifest | undefined> {
    if (area !== undefined) return this.#read(area, key);
    // Both at once: one round trip instead of two for temporary and absent keys.
    const [persistent, temporary] = await Promise.all([this.#read('persistent', key), this.#read('temporary', key)]);
    return persistent ?? temporary;
  }

  /** The manifest at `key` in `area`; one this cache cannot read is an error. */
  async #read(area: CacheArea, key: string): Promise<StoredManifest | undefined> {
    const found = await this.#readOrUnreadable(area, key);
    if (found instanceof Unreadable) throw found.error;
    return found;
  }

  /** The manifest at `key` in `area`, undefined when there is none, or why it cannot be read. */
  async #readOrUnreadable(area: CacheArea, key: string): Promise<StoredManifest | Unreadable | undefined> {
    const objectKey = this.#layout.manifest(area, key);
    for (let attempt = 1; ; attempt++) {
      const text = await this.#store.getText(objectKey);
      if (text === undefined) return undefined;
      const decoded = decodeManifest(text, objectKey);
      if ('manifest' in decoded) {
        const { manifest } = decoded;
        if (manifest.key !== key) {
          return new Unreadable(
            new BackendError(`S3 manifest '${objectKey}' names key '${manifest.key}'`, { retryable: false }),
          );
        }
        // The folder is the truth: a manifest copied by hand between areas still reads right.
        return manifest.area === area ? manifest : { ...manifest, area };
      }
      // S3 replaces objects atomically, but emulators (s3rver) may serve a manifest being
      // rewritten half-written: text that is not JSON is read again a few times before it counts
      // as damaged. A manifest that parses but is not one this armlib reads will not change.
      if (!decoded.torn || attempt >= MAX_MANIFEST_READS) return new Unreadable(decoded.error);
      await delay(MANIFEST_REREAD_MS * attempt);
    }
  }

  /** Opens a format's data; undefined when the object is gone. */
  async #open(
    manifest: StoredManifest,
    format: string,
    stored: StoredFormat,
    range: ResolvedRange,
  ): Promise<Readable | undefined> {
    const objectKey = this.#layout.data(manifest.area, manifest.key, manifest.commitId, format);
    if (stored.storedEncoding === 'gzip') {
      // S3 ranges address the compressed bytes: decode from the start and cut the range out.
      const object = await this.#store.getStream(objectKey);
      if (object === undefined) return undefined;
      const size = stored.info.size;
      return this.#handOut(
        openBody(object.body, { objectKey, gunzip: true, start: range.start, end: range.end, size }),
      );
    }
    if (range.length === 0) {
      // Nothing to read, but the object must still be there.
      const object = await this.#store.getStream(objectKey);
      object?.body.destroy();
      return object === undefined ? undefined : Readable.from([]);
    }
    const whole = range.start === 0 && range.length === stored.info.size;
    const object = await this.#store.getStream(objectKey, whole ? undefined : range);
    if (object === undefined) return undefined;
    // s3rver answers `bytes=0-0` with the whole object (it reads end 0 as "no end"): the start is
    // right, so the surplus is cut off here. Fewer bytes than asked for is a real inconsistency.
    if (object.length < range.length) {
      object.body.destroy();
      throw new BackendError(
        `S3 object '${objectKey}' sent ${object.length} bytes where its manifest expects ${range.length}`,
        { retryable: false },
      );
    }
    return this.#handOut(
      openBody(object.body, { objectKey, gunzip: false, start: 0, end: range.length - 1, size: object.length }),
    );
  }

  /** Notes a body `get` hands out, for close() to cut while it streams (only a client the cache destroys cuts it). */
  #handOut(body: RangeBody): RangeBody {
    if (!this.#options.ownsClient) return body;
    this.#bodies.add(body);
    body.once('close', () => this.#bodies.delete(body));
    return body;
  }

  #upload(
    objectKey: string,
    data: AsyncIterable<Uint8Array>,
    options: CacheWriteOptions,
  ): Promise<InlineFormat | UploadedFormat> {
    const { client, bucket, gzip, partSizeBytes, queueSize } = this.#options;
    const stop = new AbortController();
    // The read of the data and every part request listen to it (a request's listener goes when its
    // socket closes, which may come after the next part started): no limit on a signal that lives
    // as long as one write.
    setMaxListeners(0, stop.signal);
    this.#uploads.add(stop);
    return stageFormat(
      {
        client,
        bucket,
        key: objectKey,
        contentType: options.contentType,
        ...(options.contentEncoding === undefined ? {} : { contentEncoding: options.contentEncoding }),
        gzip,
        partSizeBytes,
        queueSize,
        signal: stop.signal,
      },
      data,
      INLINE_MAX_BYTES,
    ).finally(() => this.#uploads.delete(stop));
  }

  /**
   * The commit: put the staged formats into `<area>/<key>/<commitId>/` (small ones from memory,
   * the others by server-side copy), write the manifest (the commit point), then settle which of
   * the key's two areas keeps a result (see {@link #settle}); the data no manifest names any more
   * and the staged objects go in the background.
   */
  async #publish(
    key: string,
    area: CacheArea,
    formats: ReadonlyMap<string, StagedFormat>,
    published: () => void,
    fence?: number,
    stillHeld?: () => boolean,
  ): Promise<ResultManifest> {
    this.#assertOpen();
    assertCacheArea(area);
    const entries = [...formats];
    let { manifest, previous } = await this.#writeCommit(key, area, entries, fence, stillHeld, true);
    published();
    // The staged objects are garbage once a manifest names their copies (data no manifest names is added by #settle).
    const garbage = entries.flatMap(([, s]) => (s.kind === 'uploaded' ? [s.objectKey] : []));
    try {
      if (await this.#settle(manifest, previous, garbage)) return publicManifest(manifest);
      // This commit and one to the other area overlapping it removed each other's manifest (see
      // #settle): the key has no result. Once more, with data of its own (the other commit may
      // have deleted this one's data), from the staged formats, which are still there.
      // Past its fence check once already: it finishes even if the cache was closed meanwhile.
      ({ manifest, previous } = await this.#writeCommit(key, area, entries, fence, stillHeld, false));
      if (await this.#settle(manifest, previous, garbage)) return publicManifest(manifest);
      throw new BackendError(
        `commit of '${key}' was undone twice by overlapping commits of the key to the other area; try again`,
        { retryable: true },
      );
    } finally {
      // Only garbage (data no manifest names): deleted in the background. close() waits for it.
      this.#inBackground(this.#discard(garbage));
    }
  }

  /**
   * Puts the data of a new commit of the staged `entries` in place and writes its manifest (see
   * {@link #publish}); returns it with the key's results the commit found. With `stopIfClosed`, a
   * cache closed meanwhile stops it before the fence check (its data goes; ClosedError).
   */
  async #writeCommit(
    key: string,
    area: CacheArea,
    entries: readonly [string, StagedFormat][],
    fence: number | undefined,
    stillHeld: (() => boolean) | undefined,
    stopIfClosed: boolean,
  ): Promise<{ manifest: StoredManifest; previous: Record<CacheArea, StoredManifest | undefined> }> {
    const commitId = newId('c');
    const targets = entries.map(([format]) => this.#layout.data(area, key, commitId, format));
    const started = this.#clock.now();
    const previous = await this.#putData(key, entries, targets);
    if (stopIfClosed && this.#closed) {
      await this.#discard(targets);
      throw new ClosedError(`s3 cache manager was closed before the commit of '${key}' wrote its manifest`);
    }
    // Fencing: a holder that stalled past its lease finds the later claim's result and publishes
    // nothing. The check and the manifest write are two requests (S3 emulators have no conditional
    // writes), so a stall between them is still a window: see the package README.
    if (fence !== undefined && CACHE_AREAS.some((a) => (previous[a]?.fence ?? Number.NEGATIVE_INFINITY) > fence)) {
      await this.#discard(targets);
      throw new LeaseLostError(key, `commit of '${key}' refused: a later claim already published its result`);
    }
    const manifest: StoredManifest = {
      key,
      area,
      createdAt: this.#clock.now(),
      commitId,
      formats: Object.fromEntries(entries.map(([format, staged]) => [format, staged.stored])),
      ...(fence === undefined ? {} : { fence }),
      order: orderAfter(
        commitId,
        CACHE_AREAS.map((a) => previous[a]),
      ),
    };
    await this.#checkDeadline(`commit of '${key}'`, started, targets);
    // The committing worker's lease, asked last, right before the manifest (the commit point):
    // its data was uploaded for as long as it took (see CommitOptions.stillHeld).
    try {
      assertStillHeld(key, stillHeld);
    } catch (error) {
      await this.#discard(targets);
      throw error;
    }
    await this.#putManifest(manifest, targets);
    return { manifest, previous };
  }

  /**
   * Puts the formats of a commit to `targets` while the key's current results are read (one
   * round trip less per commit). On failure the targets go, once every write has settled: one
   * still in flight could land after the delete.
   */
  async #putData(
    key: string,
    entries: readonly [string, StagedFormat][],
    targets: readonly string[],
  ): Promise<Record<CacheArea, StoredManifest | undefined>> {
    const reads = Promise.all([this.#readForCommit('persistent', key), this.#readForCommit('temporary', key)]);
    const copies = mapLimit(entries, PARALLEL_CALLS, async ([format, staged], index) => {
      if (staged.stored.storedSize > MAX_COPY_BYTES) {
        throw new BackendError(
          `format '${format}' of '${key}' is ${staged.stored.storedSize} bytes stored; the S3 cache commits formats of at most 5 GiB`,
          { retryable: false },
        );
      }
      const target = targets[index] as string;
      if (staged.kind === 'inline') {
        const { contentType, contentEncoding } = staged.stored.info;
        const encoding = staged.stored.storedEncoding ?? contentEncoding;
        await this.#store.putBytes(target, staged.body, contentType, encoding);
        return;
      }
      if (!(await this.#store.copy(staged.objectKey, target))) {
        throw new BackendError(`staged format '${format}' of '${key}' is gone (deleted or expired before the commit)`, {
          retryable: false,
        });
      }
    });
    const [read, copied] = await Promise.allSettled([reads, copies]);
    if (read.status === 'rejected' || copied.status === 'rejected') {
      await this.#discard(targets);
      throw copied.status === 'rejected' ? copied.reason : (read as PromiseRejectedResult).reason;
    }
    const [persistent, temporary] = read.value;
    return { persistent, temporary };
  }

  /**
   * A current result as a commit sees it. A manifest it cannot read refuses the commit rather
   * than being replaced: it may carry a fence this commit cannot check (a newer armlib's result
   * during a rolling upgrade), and its data would be left where nothing ever collects it.
   */
  async #readForCommit(area: CacheArea, key: string): Promise<StoredManifest | undefined> {
    const found = await this.#readOrUnreadable(area, key);
    if (!(found instanceof Unreadable)) return found;
    throw new BackendError(
      `commit of '${key}' refused: the ${area} result's manifest cannot be read (${found.error.message}); ` +
        `delete('${key}') removes it`,
      { retryable: false, cause: found.error },
    );
  }

  /**
   * The commit deadline: a commit (or promotion) whose first data write began more than
   * `commitDeadlineMs` ago by the manager's clock deletes `targets` and fails with a retryable
   * {@link BackendError} instead of writing its manifest. A `sweep` deletes data its manifest does
   * not name once it is `orphanGraceMs` old; since no manifest is written later than this after its
   * data, such data can never become a result's. Checked right before the manifest PUT.
   */
  async #checkDeadline(what: string, started: number, targets: readonly string[]): Promise<void> {
    const took = this.#clock.now() - started;
    if (took <= this.#options.commitDeadlineMs) return;
    await this.#discard(targets);
    throw new BackendError(
      `${what} gave up after ${String(took)} ms between its first data write and its manifest ` +
        `(deadline ${String(this.#options.commitDeadlineMs)} ms, a quarter of orphanGraceMs at most 6 h): ` +
        `a sweep may collect data that old; try again`,
      { retryable: true },
    );
  }

  /**
   * Writes the manifest of a commit. A PUT that failed on the way back may still have landed:
   * the manifest is read again, and the commit stands if it names it; otherwise the data goes
   * and the error is reported (the staged result stays open, so the commit can be retried).
   */
  async #putManifest(manifest: StoredManifest, targets: readonly string[]): Promise<void> {
    const objectKey = this.#layout.manifest(manifest.area, manifest.key);
    try {
      await this.#store.putText(objectKey, encodeManifest(manifest), 'application/json');
    } catch (error) {
      let landed: boolean;
      try {
        landed = sameCommit(await this.#readOrUnreadable(manifest.area, manifest.key), manifest);
      } catch {
        // Unknown whether it landed: the data stays (garbage at worst) rather than a result losing it.
        throw error;
      }
      if (landed) return;
      await this.#discard(targets);
      throw error;
    }
  }

  /**
   * A key has one result, in one area: after a commit, the other area's manifest is read, and of
   * the two the newer one stays ({@link compareResults}, which both committers of two concurrent
   * commits apply alike, so one result remains, never neither). The loser's manifest is deleted
   * only as read one round trip before; the other area's earlier result is normally the loser.
   * Adds the data no manifest names any more to `garbage`. A failure to delete the other area's
   * manifest is reported: the old result would still show.
   *
   * False when this commit's manifest was deleted and nothing newer stands (see {@link #stands},
   * and {@link #outlived} for a persistent commit that yielded to a temporary result being
   * promoted): the commit must be made again.
   */
  async #settle(
    manifest: StoredManifest,
    previous: Record<CacheArea, StoredManifest | undefined>,
    garbage: string[],
  ): Promise<boolean> {
    const { key, area, commitId } = manifest;
    const other: CacheArea = area === 'persistent' ? 'temporary' : 'persistent';
    // This commit's write replaced the result of its own area.
    const here = previous[area];
    if (here !== undefined && here.commitId !== commitId) garbage.push(...this.#dataKeys(here));
    const replaced = previous[other];
    const rival = await this.#readOrUnreadable(other, key);
    // A result the other area no longer shows (replaced or deleted since) is garbage.
    if (replaced !== undefined && !sameCommit(rival, replaced)) garbage.push(...this.#dataKeys(replaced));
    // Nothing there, a manifest of a newer armlib (left to itself), or this very commit promoted.
    if (rival === undefined || rival instanceof Unreadable || sourceOf(rival) === sourceOf(manifest)) return true;
    if (compareResults(manifest, rival) > 0) {
      // Its data joins the background clean-up: one round trip less before the commit returns.
      const { gone, refused } = await this.#deleteManifests([this.#resultOf(other, rival)]);
      garbage.push(...gone.flatMap((r) => r.data));
      if (refused.length > 0) throw refusalError(refused);
      return this.#stands(manifest, garbage);
    }
    // A newer commit of the key landed in the other area meanwhile: this one is superseded at once.
    const mine = await this.#readOrUnreadable(area, key);
    if (!sameCommit(mine, manifest)) {
      garbage.push(...this.#dataKeys(manifest));
      return true;
    }
    await this.#removeResults([this.#resultOf(area, manifest)]);
    // A temporary rival may be moving here: a promotion whose manifest this commit replaced.
    if (other === 'persistent') return true;
    return this.#outlived(manifest);
  }

  /**
   * After a persistent commit removed itself for a newer temporary result (`#settle`): a
   * promotion of that rival may have written its manifest before this commit's, which replaced
   * it, and then removed the temporary result; the key then has no result. The temporary area is
   * read again (one GET, only on this rare branch); when the rival is gone, the persistent one too
   * (one GET more). False when neither shows a result at least as new as this commit: it is made
   * again (its data went with its manifest).
   */
  async #outlived(manifest: StoredManifest): Promise<boolean> {
    const { key } = manifest;
    // The rival, or another result since (a newer commit, or a newer armlib's manifest).
    if ((await this.#readOrUnreadable('temporary', key)) !== undefined) return true;
    const theirs = await this.#readOrUnreadable('persistent', key);
    return theirs instanceof Unreadable || (theirs !== undefined && compareResults(theirs, manifest) >= 0);
  }

  /**
   * After a commit deleted the other area's result (`#settle`): S3 deletes by key, so a commit to
   * the other area that landed within that round trip lost its manifest instead, and having read
   * this commit's manifest, it may have deleted it (and its data) as the older one: then the key
   * has no result. Of two such commits, the one whose delete went last sees both deletes here. This
   * commit's manifest is read again (one GET, only when the other area had a result to delete);
   * when gone, the other area too (one GET more). False when neither shows a result at least as
   * new: this commit's data is then garbage, and the commit is made again.
   */
  async #stands(manifest: StoredManifest, garbage: string[]): Promise<boolean> {
    const { key, area } = manifest;
    // This commit, or a later one of the same area.
    if ((await this.#readOrUnreadable(area, key)) !== undefined) return true;
    const other: CacheArea = area === 'persistent' ? 'temporary' : 'persistent';
    const theirs = await this.#readOrUnreadable(other, key);
    if (theirs instanceof Unreadable || (theirs !== undefined && compareResults(theirs, manifest) > 0)) return true;
    garbage.push(...this.#dataKeys(manifest));
    return false;
  }

  /**
   * Deletes the manifests of `results` first, then the data of those that went: a manifest S3
   * refused keeps its data, so it still reads whole. Refusals are an error once the others are
   * done. Returns how many manifests went.
   */
  async #removeResults(results: readonly StoredResult[]): Promise<number> {
    const { gone, refused } = await this.#deleteManifests(results);
    await this.#discard(gone.flatMap((r) => r.data));
    if (refused.length > 0) throw refusalError(refused);
    return gone.length;
  }

  /** One DeleteObjects per 1000 manifests; which went and which S3 refused. */
  async #deleteManifests(
    results: readonly StoredResult[],
  ): Promise<{ gone: StoredResult[]; refused: RefusedDelete[] }> {
    if (results.length === 0) return { gone: [], refused: [] };
    const refused = await this.#store.deleteAll(results.map((r) => r.manifest));
    const kept = new Set(refused.map((r) => r.key));
    return { gone: results.filter((r) => !kept.has(r.manifest)), refused };
  }

  /**
   * Deletes `keys` unless the manifest at `key` in `area` names `commitId` (kept when that cannot
   * be read): the data of a commit or promotion that may have published before it failed.
   */
  async #discardUnlessNamed(area: CacheArea, key: string, commitId: string, keys: readonly string[]): Promise<void> {
    let found: StoredManifest | Unreadable | undefined;
    try {
      found = await this.#readOrUnreadable(area, key);
    } catch {
      return;
    }
    if (found instanceof Unreadable || found?.commitId !== commitId) await this.#discard(keys);
  }

  /** Best-effort deletion of objects nothing points at (`sweep`, `clear` and the lifecycle rule catch leftovers). */
  async #discard(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    try {
      await this.#store.deleteAll(keys);
    } catch {
      // Unreferenced objects: harmless if they stay (sweep collects them as orphans).
    }
  }

  /** The objects of a result in `area` (the folder, not the manifest's own field, is the truth). */
  #resultOf(area: CacheArea, manifest: StoredManifest): StoredResult {
    return {
      manifest: this.#layout.manifest(area, manifest.key),
      data: this.#dataKeys({ ...manifest, area }),
    };
  }

  #dataKeys(manifest: StoredManifest): string[] {
    return Object.keys(manifest.formats).map((format) =>
      this.#layout.data(manifest.area, manifest.key, manifest.commitId, format),
    );
  }

  #keysOf(area: CacheArea, folders: readonly string[]): string[] {
    return folders.map((f) => this.#layout.keyOfFolder(area, f)).filter((k): k is string => k !== undefined);
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('s3 cache manager is closed');
  }
}

/** A manifest object at a key that this cache cannot read: damaged, another key's, or a newer armlib's. */
class Unreadable {
  readonly error: BackendError;
  constructor(error: BackendError) {
    this.error = error;
  }
}

/** A key folder as a listing shows it (see S3CacheManager's #foldersOf). */
interface ListedFolder {
  readonly key: string;
  /** Whether the listing showed its manifest. */
  manifest: boolean;
  /** Its data objects older than the grace period. */
  readonly old: OldData[];
}

/** A listed key folder with its manifest as read after the listing (see S3CacheManager's #readFolders). */
interface ReadFolder {
  readonly folder: ListedFolder;
  readonly manifest: StoredManifest | Unreadable | undefined;
  /** Its old data that `manifest` does not name. */
  readonly suspects: readonly OldData[];
}

/** A data object older than the grace period, and the commit it belongs to. */
interface OldData {
  readonly objectKey: string;
  readonly commitId: string;
}

/** What a sweep has done so far. */
interface SweepState {
  swept: number;
  /** Orphaned data objects waiting for a DeleteObjects. */
  readonly orphans: string[];
  /** Manifests and orphans S3 refused to delete, reported once the sweep is done. */
  readonly refused: RefusedDelete[];
}

/** A result's manifest object and the data objects it names. */
interface StoredResult {
  readonly manifest: string;
  readonly data: readonly string[];
}

/** True when `found` is a readable manifest of the same commit as `manifest`. */
function sameCommit(found: StoredManifest | Unreadable | undefined, manifest: StoredManifest): boolean {
  return found !== undefined && !(found instanceof Unreadable) && found.commitId === manifest.commitId;
}

function refusalError(refused: readonly RefusedDelete[]): BackendError {
  const first = refused[0] as RefusedDelete;
  const more = refused.length > 1 ? ` and ${String(refused.length - 1)} more object(s)` : '';
  return new BackendError(`S3 refused to delete '${first.key}' (${first.code})${more}`, {
    retryable: refused.every((r) => isRetryable({ name: r.code })),
  });
}

function ignore(): void {
  // Its own caller hears of the outcome.
}

function formatOf(manifest: StoredManifest, format: string): StoredFormat | undefined {
  return Object.hasOwn(manifest.formats, format) ? manifest.formats[format] : undefined;
}

function isNamed(error: unknown, name: string): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === name;
}
