import { Readable } from 'node:stream';

import { inject, injectable } from 'inversify';

import { SystemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { BackendError, ClosedError, ConfigError, ConflictError, LeaseLostError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { assertValidFormat, assertValidKey, compareStrings } from '../keys.js';
import { CACHE_AREAS } from '../model.js';
import type { CacheArea, FormatInfo } from '../model.js';
import type {
  CacheCapabilities,
  CachedBody,
  CacheGetOptions,
  CacheListPage,
  CacheManager,
  CacheUrlOptions,
  CacheWriteOptions,
  CommitOptions,
  ResultManifest,
  StagedResult,
} from '../spi/cache.js';
import { SYNC_OPS } from '../spi/sync.js';
import type { SyncCacheOps, SyncStagedResult } from '../spi/sync.js';
import { TOKENS } from '../tokens.js';
import { readAdapterOptions } from '../util/arguments.js';
import { ByteLru } from '../util/byte-lru.js';
import {
  assertCacheArea,
  assertStillHeld,
  cacheGetOptions,
  cacheListOptions,
  cacheUrlExpiry,
  cacheWriteOptions,
  checkFence,
  checkOlderThan,
  commitFence,
  encodeKeyCursor,
} from '../util/cache-args.js';
import { chunksOf, isSyncIterable, readAll, readAllSync, sliceRange } from '../util/bytes.js';

/** Options of {@link MemoryCacheManager} (the `cache.options` of a config using the `memory` adapter). */
export interface MemoryCacheManagerOptions {
  /** Bytes of temporary results kept; least recently used results are evicted beyond it. Default 256 MiB. */
  maxTemporaryBytes?: number;
  /** Prefix of routed result URLs (the host serves them through RequestManager.read). Default '/results/'. */
  urlPrefix?: string;
}

/** Defaults of {@link MemoryCacheManagerOptions}. */
export const MEMORY_CACHE_DEFAULTS: Readonly<Required<MemoryCacheManagerOptions>> = Object.freeze({
  maxTemporaryBytes: 256 * 1024 * 1024,
  urlPrefix: '/results/',
});

// Bookkeeping charged per result and per format, so that many tiny (or empty) results are bounded too.
const RESULT_OVERHEAD_BYTES = 256;
const FORMAT_OVERHEAD_BYTES = 64;
const CURSOR_TAG = 'mem1';

interface StoredResult {
  readonly manifest: ResultManifest;
  /**
   * Bytes by format, as staged (the staged result never touches them again). A plain object, not
   * a Map: every kept result holds one, and a one-entry Map weighs several times more. Formats
   * such as `constructor` are valid names, so lookups go through `Object.hasOwn`.
   */
  readonly data: Readonly<Record<string, Buffer>>;
  /** Bytes charged against `maxTemporaryBytes`. */
  readonly charge: number;
}

/**
 * The in-memory {@link CacheManager}: fast, exact, one process only.
 *
 * Temporary results live in a byte-sized LRU (`maxTemporaryBytes`, data plus a small per-result and
 * per-format overhead); committing past the limit evicts the least recently read results, and a single
 * result bigger than the limit is refused at commit. Persistent results are never evicted: that area
 * is unbounded and holds whatever is committed or promoted to it. Routed URLs are
 * `${urlPrefix}${key}/${format}`, to be served by the host through `RequestManager.read`.
 *
 * Unknown option names are refused with `ConfigError` (a misspelt option would otherwise go
 * unnoticed). Switching `cache.adapter` by environment variable still works: the configuration then
 * drops the options written for the other adapter.
 */
@injectable()
export class MemoryCacheManager implements CacheManager {
  /** Routed URLs only; nothing is shared across processes. */
  readonly capabilities: CacheCapabilities = Object.freeze({ signedUrls: false, sharedAcrossProcesses: false });

  readonly #options: Readonly<Required<MemoryCacheManagerOptions>>;
  readonly #clock: Clock;
  readonly #persistent = new Map<string, StoredResult>();
  readonly #temporary: ByteLru<StoredResult>;
  /** Shared by every staged result of this cache: no closures per write. */
  readonly #staging: StagingHost;
  #closed = false;
  /** Synchronous twins of the lifecycle calls, for the request manager (internal, see SyncCacheOps). */
  readonly [SYNC_OPS]: SyncCacheOps;

  constructor(
    @inject(TOKENS.CacheOptions) options: MemoryCacheManagerOptions = {},
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    this.#options = resolveOptions(options);
    this.#clock = clock;
    this.#temporary = new ByteLru<StoredResult>(this.#options.maxTemporaryBytes);
    this.#staging = {
      assertOpen: () => {
        this.#assertOpen();
      },
      publish: (key, area, formats, fence) => this.#publish(key, area, formats, fence),
    };
    this[SYNC_OPS] = {
      owner: this,
      head: (key) => this.#find(key)?.manifest,
      stage: (key) => {
        this.#assertOpen();
        assertValidKey(key);
        return new MemoryStagedResult(key, this.#staging);
      },
      promote: (key) => this.#promote(key),
    };
  }

  stage(key: string): Promise<StagedResult> {
    try {
      this.#assertOpen();
      assertValidKey(key);
      return Promise.resolve(new MemoryStagedResult(key, this.#staging));
    } catch (error) {
      return rejected(error);
    }
  }

  head(key: string, area?: CacheArea): Promise<ResultManifest | undefined> {
    // On every submit and status read: no closure, no executor (see run()).
    try {
      return Promise.resolve(this.#find(key, area)?.manifest);
    } catch (error) {
      return rejected(error);
    }
  }

  get(key: string, format: string, options: CacheGetOptions = {}): Promise<CachedBody | undefined> {
    return run(() => {
      this.#assertOpen();
      assertValidFormat(format);
      const { range } = cacheGetOptions(options);
      const stored = this.#find(key);
      const data = stored !== undefined && Object.hasOwn(stored.data, format) ? stored.data[format] : undefined;
      const info = stored?.manifest.formats[format];
      if (stored === undefined || data === undefined || info === undefined) return undefined;
      const { start, end, length } = sliceRange(data.byteLength, range);
      return {
        body: Readable.from(chunksOf(data.subarray(start, end + 1)), { objectMode: false }),
        size: length,
        totalSize: data.byteLength,
        contentType: info.contentType,
        ...(info.contentEncoding === undefined ? {} : { contentEncoding: info.contentEncoding }),
        area: stored.manifest.area,
      };
    });
  }

  url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined> {
    return run(() => {
      this.#assertOpen();
      assertValidFormat(format);
      // Routed URLs do not expire, but a nonsensical expiry is still the caller's bug.
      cacheUrlExpiry(options);
      const stored = this.#find(key);
      if (stored === undefined || !Object.hasOwn(stored.data, format)) return undefined;
      return `${this.#options.urlPrefix}${key}/${format}`;
    });
  }

  promote(key: string): Promise<boolean> {
    return run(() => this.#promote(key));
  }

  #promote(key: string): boolean {
    this.#assertOpen();
    assertValidKey(key);
    const stored = this.#temporary.peek(key);
    if (stored === undefined) return false;
    const manifest = freezeManifest({ ...stored.manifest, area: 'persistent' });
    this.#persistent.set(key, { ...stored, manifest });
    this.#temporary.delete(key);
    return true;
  }

  delete(key: string, area?: CacheArea): Promise<number> {
    return run(() => {
      this.#assertOpen();
      assertValidKey(key);
      let deleted = 0;
      for (const a of areasOf(area)) if (this.#area(a).delete(key)) deleted++;
      return deleted;
    });
  }

  clear(area: CacheArea): Promise<number> {
    return run(() => {
      this.#assertOpen();
      const store = this.#area(assertCacheArea(area));
      const count = store.size;
      store.clear();
      return count;
    });
  }

  sweep(area: CacheArea, olderThan: number): Promise<number> {
    return run(() => {
      this.#assertOpen();
      const store = this.#area(assertCacheArea(area));
      checkOlderThan(olderThan);
      // Collected first, so nothing is deleted while iterating (ByteLru#entries does not count as a use).
      const doomed = [...store.entries()].filter(([, s]) => s.manifest.createdAt < olderThan).map(([k]) => k);
      for (const key of doomed) store.delete(key);
      return doomed.length;
    });
  }

  list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    return run(() => {
      this.#assertOpen();
      const store = this.#area(assertCacheArea(area));
      const { limit, after } = cacheListOptions(CURSOR_TAG, options);
      const keys = [...store.keys()].filter((k) => after === undefined || k > after).sort(compareStrings);
      const items: ResultManifest[] = [];
      for (const key of keys.slice(0, limit)) {
        const stored = peek(store, key);
        if (stored !== undefined) items.push(stored.manifest);
      }
      const last = items.at(-1);
      return keys.length > limit && last !== undefined
        ? { items, cursor: encodeKeyCursor(CURSOR_TAG, last.key) }
        : { items };
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#persistent.clear();
    this.#temporary.clear();
    return Promise.resolve();
  }

  /** Looks a key up (persistent first, or only `area`); a temporary hit counts as a use for the LRU. */
  #find(key: string, area?: CacheArea): StoredResult | undefined {
    this.#assertOpen();
    assertValidKey(key);
    if (area === undefined || assertCacheArea(area) === 'persistent') {
      const hit = this.#persistent.get(key);
      if (hit !== undefined || area !== undefined) return hit;
    }
    return this.#temporary.get(key);
  }

  /** The commit point: synchronous, so no reader ever sees the key in both areas or half-written. */
  #publish(key: string, area: CacheArea, staged: StagedFormats, fence?: number): ResultManifest {
    this.#assertOpen();
    assertCacheArea(area);
    if (fence !== undefined) {
      const current = (this.#persistent.get(key) ?? this.#temporary.peek(key))?.manifest.fence;
      if (current !== undefined && current > fence) {
        throw new LeaseLostError(key, `commit of '${key}' refused: a later claim already published its result`);
      }
    }
    const { infos, data } = staged;
    let bytes = 0;
    let count = 0;
    for (const format in data) {
      bytes += (data[format] as Buffer).byteLength;
      count++;
    }
    const max = this.#options.maxTemporaryBytes;
    if (area === 'temporary' && bytes > max) {
      throw new BackendError(
        `result '${key}' is ${bytes} bytes, more than the memory cache's maxTemporaryBytes (${max}); ` +
          'raise maxTemporaryBytes or commit it to the persistent area',
        { retryable: false },
      );
    }
    // The staged objects become the committed ones (nothing writes to them after a commit): the
    // infos (each frozen already) are frozen as the manifest's formats, the bytes kept as they are.
    const manifest: ResultManifest = Object.freeze(
      fence === undefined
        ? { key, area, createdAt: this.#clock.now(), formats: Object.freeze(infos) }
        : { key, area, createdAt: this.#clock.now(), formats: Object.freeze(infos), fence },
    );
    // The overhead is capped so that any result whose data fits is admitted (the LRU would not store it).
    const charge = Math.min(bytes + RESULT_OVERHEAD_BYTES + FORMAT_OVERHEAD_BYTES * count, max);
    // Setting a key replaces it in its own area; only the other area needs an explicit delete.
    if (area === 'persistent') this.#temporary.delete(key);
    else this.#persistent.delete(key);
    const stored: StoredResult = { manifest, data, charge };
    if (area === 'persistent') this.#persistent.set(key, stored);
    else this.#temporary.set(key, stored, charge);
    return manifest;
  }

  #area(area: CacheArea): Map<string, StoredResult> | ByteLru<StoredResult> {
    return area === 'persistent' ? this.#persistent : this.#temporary;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('memory cache manager is closed');
  }
}

type StagedState = 'open' | 'committed' | 'aborted';

/** The formats of a staged result: the same names in both records. */
interface StagedFormats {
  readonly infos: Record<string, FormatInfo>;
  readonly data: Record<string, Buffer>;
}

interface StagingHost {
  assertOpen(): void;
  publish(key: string, area: CacheArea, staged: StagedFormats, fence?: number): ResultManifest;
}

/**
 * Formats of one staged write, held in memory until commit. An over-size temporary commit leaves
 * it open, so the caller can still abort it or commit it to the persistent area.
 */
class MemoryStagedResult implements SyncStagedResult {
  readonly key: string;
  readonly #host: StagingHost;
  /** Staged formats; replaced (not emptied) by an abort, since a commit hands them over. */
  #formats: StagedFormats = { infos: {}, data: {} };
  #state: StagedState = 'open';
  #writing = 0;

  constructor(key: string, host: StagingHost) {
    this.key = key;
    this.#host = host;
  }

  write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    let info: Omit<FormatInfo, 'size'>;
    try {
      this.#assertWritable('write');
      assertValidFormat(format);
      info = cacheWriteOptions(options);
      // Chunks already in memory (what jobs write) are taken at once: no promise per chunk, no await.
      if (isSyncIterable(data)) return Promise.resolve({ ...this.#keep(format, info, readAllSync(data)) });
    } catch (error) {
      return rejected(error);
    }
    return this.#writeStream(format, info, data);
  }

  async #writeStream(
    format: string,
    info: Omit<FormatInfo, 'size'>,
    data: AsyncIterable<Uint8Array>,
  ): Promise<FormatInfo> {
    this.#writing++;
    let bytes: Buffer;
    try {
      bytes = await readAll(data);
    } finally {
      this.#writing--;
    }
    // An abort (or close) while the data streamed in must win over this write.
    this.#assertWritable('write');
    return { ...this.#keep(format, info, bytes) };
  }

  writeBytes(format: string, bytes: Uint8Array, options: CacheWriteOptions): FormatInfo {
    this.#assertWritable('write');
    assertValidFormat(format);
    const info = cacheWriteOptions(options);
    // Copied, as every write copies its chunks: the caller may reuse its buffer.
    const copy = Buffer.allocUnsafe(bytes.byteLength);
    copy.set(bytes);
    return this.#keep(format, info, copy);
  }

  /** Stages one format; returns its info (frozen: it is shared by the manifest, so callers copy it). */
  #keep(format: string, info: Omit<FormatInfo, 'size'>, bytes: Buffer): FormatInfo {
    const size = bytes.byteLength;
    const stored: FormatInfo =
      info.contentEncoding === undefined
        ? { contentType: info.contentType, size }
        : { contentType: info.contentType, contentEncoding: info.contentEncoding, size };
    // Plain assignment is safe: format names start with a letter or digit, so never `__proto__`.
    this.#formats.infos[format] = Object.freeze(stored);
    this.#formats.data[format] = bytes;
    return stored;
  }

  formats(): Readonly<Record<string, FormatInfo>> {
    return { ...this.#formats.infos };
  }

  commit(area: CacheArea, options?: CommitOptions): Promise<ResultManifest> {
    return run(() => {
      const fence = commitFence(options);
      // The commit point is now (a synchronous publish): the lease is asked here, last.
      this.#assertWritable('commit');
      assertStillHeld(this.key, options?.stillHeld);
      return this.commitNow(area, fence);
    });
  }

  commitNow(area: CacheArea, fence?: number): ResultManifest {
    this.#assertWritable('commit');
    checkFence(fence);
    if (this.#writing > 0) {
      throw new ConflictError(`cannot commit '${this.key}' while ${this.#writing} write(s) are still in progress`);
    }
    const manifest = this.#host.publish(this.key, area, this.#formats, fence);
    this.#state = 'committed';
    return manifest;
  }

  abort(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'aborted';
      this.#formats = { infos: {}, data: {} };
    }
    return Promise.resolve();
  }

  #assertWritable(operation: string): void {
    this.#host.assertOpen();
    if (this.#state !== 'open') {
      throw new ConflictError(`cannot ${operation} staged result '${this.key}': it was already ${this.#state}`);
    }
  }
}

function freezeManifest(manifest: ResultManifest): ResultManifest {
  const formats: Record<string, FormatInfo> = {};
  for (const name in manifest.formats) {
    const info = manifest.formats[name];
    if (info !== undefined) formats[name] = Object.isFrozen(info) ? info : Object.freeze({ ...info });
  }
  // The fence travels with the result (a promotion must not let a stale commit replace it).
  return Object.freeze({
    key: manifest.key,
    area: manifest.area,
    createdAt: manifest.createdAt,
    formats: Object.freeze(formats),
    ...(manifest.fence === undefined ? {} : { fence: manifest.fence }),
  });
}

function resolveOptions(given: unknown): Readonly<Required<MemoryCacheManagerOptions>> {
  const raw = readAdapterOptions(given, Object.keys(MEMORY_CACHE_DEFAULTS), 'invalid memory cache options');
  if (raw === undefined || raw === null) return MEMORY_CACHE_DEFAULTS;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('invalid memory cache options', [{ path: '', message: 'must be an object' }]);
  }
  const options = raw as Record<string, unknown>;
  const { maxTemporaryBytes, urlPrefix } = options;
  const issues: ConfigIssue[] = [];
  for (const name of Object.keys(options)) {
    // Undefined keeps the default, whatever the name.
    if (!Object.hasOwn(MEMORY_CACHE_DEFAULTS, name) && options[name] !== undefined) {
      issues.push({
        path: `/${name}`,
        message: `unknown option (expected one of ${Object.keys(MEMORY_CACHE_DEFAULTS).join(', ')})`,
      });
    }
  }
  if (maxTemporaryBytes !== undefined && !(Number.isSafeInteger(maxTemporaryBytes) && Number(maxTemporaryBytes) > 0)) {
    issues.push({
      path: '/maxTemporaryBytes',
      message: `must be a positive integer, got ${describe(maxTemporaryBytes)}`,
    });
  }
  if (urlPrefix !== undefined && (typeof urlPrefix !== 'string' || !urlPrefix.endsWith('/'))) {
    issues.push({ path: '/urlPrefix', message: `must be a string ending with '/', got ${describe(urlPrefix)}` });
  }
  if (issues.length > 0) throw new ConfigError('invalid memory cache options', issues);
  return Object.freeze({
    maxTemporaryBytes: (maxTemporaryBytes as number | undefined) ?? MEMORY_CACHE_DEFAULTS.maxTemporaryBytes,
    urlPrefix: (urlPrefix as string | undefined) ?? MEMORY_CACHE_DEFAULTS.urlPrefix,
  });
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return typeof value; // a bigint, a toJSON that throws
  }
}

function areasOf(area: CacheArea | undefined): readonly CacheArea[] {
  return area === undefined ? CACHE_AREAS : [assertCacheArea(area)];
}

function peek(store: Map<string, StoredResult> | ByteLru<StoredResult>, key: string): StoredResult | undefined {
  return store instanceof Map ? store.get(key) : store.peek(key);
}

/** Runs synchronous work as an async SPI call, so that every failure is a rejection, never a throw. */
function run<T>(fn: () => T): Promise<T> {
  // Cheaper than an executor-based `new Promise`; fn still runs synchronously, before run() returns.
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return rejected(error);
  }
}

/** A rejection with whatever was thrown (always an Error here: the adapter throws typed errors). */
function rejected<T>(error: unknown): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what was thrown, as an async method would
  return Promise.reject(error);
}
