import type { Readable } from 'node:stream';

import type { CacheArea, FormatInfo } from '../model.js';

/** The committed description of a result: the commit point of a cache write. */
export interface ResultManifest {
  readonly key: string;
  readonly area: CacheArea;
  /** Commit time, epoch ms. */
  readonly createdAt: number;
  readonly formats: Readonly<Record<string, FormatInfo>>;
  /** The fence the result was committed with (see {@link CommitOptions.fence}), when it had one. */
  readonly fence?: number;
}

/** Options of {@link StagedResult.commit}. */
export interface CommitOptions {
  /**
   * Orders commits of one key by the claims that made them: the worker runtime passes the time
   * its claim started, so a later claim of the same key has a higher fence. A commit whose fence
   * is lower than that of the key's current result (in either area) is refused with
   * `LeaseLostError` and publishes nothing: a worker that stalled past its lease cannot replace
   * the result of the worker that took the request over. Absent: no check (and the result has
   * no fence, so any later commit may replace it).
   */
  readonly fence?: number;
  /**
   * Asked at the commit point, as late as the backend allows (inside the transaction that
   * publishes, right before an object store's manifest write): `false` refuses the commit with
   * `LeaseLostError` and publishes nothing. The worker runtime passes whether its lease is still
   * unexpired by its clock: a worker whose process stalled between its last lease check and its
   * commit landing (a blocked event loop, a stopped VM) must not publish once another worker may
   * have claimed the request, before that worker has a result of its own for the fence to meet.
   * Absent: no check.
   */
  readonly stillHeld?: () => boolean;
}

/** Options of {@link StagedResult.write}. */
export interface CacheWriteOptions {
  readonly contentType: string;
  readonly contentEncoding?: string;
}

/**
 * A result being written. Formats written here are invisible until `commit`, which publishes
 * all of them at once (and removes any earlier result of the key from both areas); `abort`
 * discards them.
 */
export interface StagedResult {
  readonly key: string;
  /** Streams one format into staging (a second write of a format replaces the first). */
  write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo>;
  /** Formats written so far. */
  formats(): Readonly<Record<string, FormatInfo>>;
  /**
   * Publishes every written format atomically in `area`, unless `options.fence` is lower than the
   * fence of the key's current result (then it throws `LeaseLostError` and publishes nothing).
   */
  commit(area: CacheArea, options?: CommitOptions): Promise<ResultManifest>;
  /**
   * Discards the staged formats. Safe to call more than once. During a `commit` it waits for the
   * commit to finish: a commit that publishes wins, one that fails is then discarded.
   */
  abort(): Promise<void>;
}

/** An inclusive byte range; `end` absent means to the end. */
export interface ByteRange {
  readonly start: number;
  readonly end?: number;
}

/** A stored format, streamed. */
export interface CachedBody {
  readonly body: Readable;
  /** Bytes in `body`. */
  readonly size: number;
  /** Size of the whole stored object. */
  readonly totalSize: number;
  readonly contentType: string;
  readonly contentEncoding?: string;
  readonly area: CacheArea;
}

/** Options of {@link CacheManager.get}. */
export interface CacheGetOptions {
  readonly range?: ByteRange;
}

/** Options of {@link CacheManager.url}. */
export interface CacheUrlOptions {
  readonly expiresInSec: number;
}

/** A page of manifests. */
export interface CacheListPage {
  readonly items: ResultManifest[];
  readonly cursor?: string;
}

/** What a cache backend can do. */
export interface CacheCapabilities {
  /** `url` returns a URL a client can fetch without armlib (presigned). */
  readonly signedUrls: boolean;
  /** Several processes can share this cache. */
  readonly sharedAcrossProcesses: boolean;
}

/**
 * The cache SPI: staged multi-format writes with an atomic commit, head, streaming get with
 * ranges, URLs, promotion, deletion, clearing and sweeping. Lookups by key check the persistent
 * area first. Memory use must not grow with result size (except in the memory adapter itself).
 */
export interface CacheManager {
  readonly capabilities: CacheCapabilities;
  /** Opens a staged write for `key`. */
  stage(key: string): Promise<StagedResult>;
  /** The committed manifest (persistent first, or only `area`), or undefined. */
  head(key: string, area?: CacheArea): Promise<ResultManifest | undefined>;
  /** Streams one format, or undefined when absent. */
  get(key: string, format: string, options?: CacheGetOptions): Promise<CachedBody | undefined>;
  /** A signed or routed URL to one format, or undefined when absent. */
  url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined>;
  /** Moves a temporary result to the persistent area. False when there was none. */
  promote(key: string): Promise<boolean>;
  /** Deletes the result of `key` from one or both areas. Returns how many results went. */
  delete(key: string, area?: CacheArea): Promise<number>;
  /** Deletes every result in `area`. Returns how many. */
  clear(area: CacheArea): Promise<number>;
  /** Deletes results in `area` committed before `olderThan` (epoch ms). Returns how many. */
  sweep(area: CacheArea, olderThan: number): Promise<number>;
  /** Lists committed results of an area. */
  list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage>;
  close(): Promise<void>;
}
