import type { CacheArea, FormatInfo } from '../model.js';
import type { NormalizedRequest } from '../request.js';
import type { CacheManager, CacheWriteOptions, ResultManifest, StagedResult } from './cache.js';
import type {
  ClaimOptions,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  Lease,
  NewQueueEntry,
  QueueManager,
  QueueRecord,
} from './queue.js';

/**
 * Where an in-process adapter offers the synchronous variants of its hot calls (internal: not
 * part of the SPI). Every SPI call of the memory adapters is synchronous inside, and wrapping
 * each in a promise and an await costs more than the work itself on the lifecycle path; the
 * manager and its workers call these instead when both adapters offer them. Other adapters are
 * untouched: they implement the promise-based SPI only.
 */
export const SYNC_OPS: unique symbol = Symbol('armlib.syncOps');

/**
 * Synchronous twins of the queue calls a lifecycle makes. Each throws what the async call would
 * reject with. `lookup` applies due transitions like any SPI call; the peeks that follow it in
 * the same synchronous step (`rank`, `slots`, `busy`, `avgMs`) read the state as it left it.
 */
export interface SyncQueueOps {
  /** The adapter these belong to: a wrapper (a Proxy, say) around it does not get the fast path. */
  readonly owner: QueueManager;
  enqueue(entry: NewQueueEntry, options: EnqueueOptions): EnqueueResult;
  /** `get(key)`. Also sets {@link SyncQueueOps.now} to the time of the read. */
  lookup(key: string): QueueRecord | undefined;
  /** The live record of `key` (not a finished one), applying due transitions like `lookup`. */
  live(key: string): LiveView | undefined;
  /** The finished record of `key` as of the last call (what `lookup` returns for a key not live). */
  finished(key: string): QueueRecord | undefined;
  /** How long until the pending live record of `key` may be claimed (0 when it may be now), as of the last call. */
  waitMs(key: string): number;
  /** Time of the last `lookup`, `enqueue` or `claim`, epoch ms of the adapter's clock. */
  readonly now: number;
  /** `position(key)` as of the last call. */
  rank(key: string): number | undefined;
  /** `capacity().slots` as of the last call. */
  slots(): number;
  /** `capacity().busy` as of the last call (a counter the queue keeps: read on every status read). */
  busy(): number;
  /** `uriStats(uri)[0]?.avgMs` as of the last call. */
  avgMs(uri: string): number | undefined;
  /** `isPaused()`. */
  paused(): boolean;
  claim(options: ClaimOptions): Lease | undefined;
  complete(key: string, token: string, options: CompleteOptions): QueueRecord;
}

/**
 * A live (pending or running) record as the queue holds it, for status reads. When
 * `plainPending`, the record is pending with only a fresh submit's fields (no run history,
 * progress, message, cancel request or error) and the other fields describe it, so that its
 * status is built without touching the record itself (at a million records, every object touched
 * is a likely cache miss).
 */
export interface LiveView {
  readonly record: QueueRecord;
  readonly key: string;
  readonly plainPending: boolean;
  readonly request: NormalizedRequest;
  /** `request.uri` and `request.estimatedMs`. */
  readonly uri: string;
  readonly estimatedMs: number | undefined;
  readonly attempts: number;
  /** `submittedAt` as whole seconds since the epoch and milliseconds within the second. */
  readonly submittedSecond: number;
  readonly submittedMilli: number;
}

/** A staged result that can also be written and committed synchronously (bytes already in memory). */
export interface SyncStagedResult extends StagedResult {
  /** `write` of bytes already in memory (copied, as `write` copies each chunk). */
  writeBytes(format: string, bytes: Uint8Array, options: CacheWriteOptions): FormatInfo;
  /** `commit(area, { fence })`. */
  commitNow(area: CacheArea, fence?: number): ResultManifest;
}

/** Synchronous twins of the cache calls a lifecycle makes. */
export interface SyncCacheOps {
  /** The adapter these belong to (see {@link SyncQueueOps.owner}). */
  readonly owner: CacheManager;
  head(key: string): ResultManifest | undefined;
  stage(key: string): SyncStagedResult;
  promote(key: string): boolean;
}

/** The adapter's synchronous twins when it offers them itself (not through a wrapper). */
export function syncQueueOps(queue: QueueManager): SyncQueueOps | undefined {
  const ops = (queue as { [SYNC_OPS]?: SyncQueueOps })[SYNC_OPS];
  return ops?.owner === queue ? ops : undefined;
}

/** The adapter's synchronous twins when it offers them itself (not through a wrapper). */
export function syncCacheOps(cache: CacheManager): SyncCacheOps | undefined {
  const ops = (cache as { [SYNC_OPS]?: SyncCacheOps })[SYNC_OPS];
  return ops?.owner === cache ? ops : undefined;
}
