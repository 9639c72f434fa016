import type { CacheArea } from '../model.js';
import type {
  CacheCapabilities,
  CachedBody,
  CacheGetOptions,
  CacheListPage,
  CacheManager,
  CacheUrlOptions,
  ResultManifest,
  StagedResult,
} from './cache.js';
import type {
  ActivityBucket,
  CancelOptions,
  CancelResult,
  ClaimOptions,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  QueueCapabilities,
  QueueCounts,
  QueueListPage,
  QueueListQuery,
  QueueManager,
  QueueRecord,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
  UriStats,
  WorkerCapacity,
} from './queue.js';

/**
 * A {@link QueueManager} that hands every call to another one. Extend it to decorate an adapter —
 * tracing, metrics, fault injection, a test's command log — and override only the calls you
 * watch; the rest keep forwarding when the SPI grows.
 *
 * The request manager takes its synchronous fast path only for the memory adapters it holds
 * directly, so a decorated memory adapter runs on the promise path like any other backend.
 *
 * A decorator overriding `position` sees every position the request manager reads: the position an
 * adapter states with its enqueue is dropped for it.
 *
 * It has no `claimMany`, so workers claim through the decorator's `claim`, one request at a time,
 * and a decorator watching `claim` sees every claim. One that does not watch claims may add
 * `claimMany(options, max) { return this.inner.claimMany?.(options, max) ?? ... }` to keep the
 * adapter's batch step (one transaction for the file queue).
 */
export class ForwardingQueueManager implements QueueManager {
  /** The adapter every call goes to. */
  protected readonly inner: QueueManager;

  /** @param inner - the adapter every call goes to. */
  constructor(inner: QueueManager) {
    this.inner = inner;
  }

  get capabilities(): QueueCapabilities {
    return this.inner.capabilities;
  }

  /**
   * Forwards the enqueue. A decorator that overrides {@link position} does not get the inner
   * adapter's {@link EnqueueResult.position}: the request manager then asks its `position`.
   */
  enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    const result = this.inner.enqueue(entry, options);
    if (this.position === ForwardingQueueManager.prototype.position) return result;
    return result.then(({ outcome, record }) => ({ outcome, record }));
  }

  get(key: string): Promise<QueueRecord | undefined> {
    return this.inner.get(key);
  }

  position(key: string): Promise<number | undefined> {
    return this.inner.position(key);
  }

  claim(options: ClaimOptions): Promise<Lease | undefined> {
    return this.inner.claim(options);
  }

  heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    return this.inner.heartbeat(key, token, options);
  }

  complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return this.inner.complete(key, token, options);
  }

  fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return this.inner.fail(key, token, options);
  }

  release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return this.inner.release(key, token, options);
  }

  acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return this.inner.acknowledgeCancel(key, token, options);
  }

  cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    return this.inner.cancel(key, options);
  }

  list(query: QueueListQuery): Promise<QueueListPage> {
    return this.inner.list(query);
  }

  counts(): Promise<QueueCounts> {
    return this.inner.counts();
  }

  sweep(options?: SweepOptions): Promise<SweepResult> {
    return this.inner.sweep(options);
  }

  takeTransitions(options?: SweepOptions): SweepResult | undefined {
    return this.inner.takeTransitions?.(options);
  }

  prune(finishedBefore: number): Promise<number> {
    return this.inner.prune(finishedBefore);
  }

  setPaused(paused: boolean): Promise<void> {
    return this.inner.setPaused(paused);
  }

  isPaused(): Promise<boolean> {
    return this.inner.isPaused();
  }

  activity(minutes: number): Promise<ActivityBucket[]> {
    return this.inner.activity(minutes);
  }

  uriStats(uri?: string): Promise<UriStats[]> {
    return this.inner.uriStats(uri);
  }

  reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void> {
    return this.inner.reportWorker(workerId, slots, ttlMs);
  }

  removeWorker(workerId: string): Promise<void> {
    return this.inner.removeWorker(workerId);
  }

  capacity(): Promise<WorkerCapacity> {
    return this.inner.capacity();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * A {@link CacheManager} that hands every call to another one; the cache twin of
 * {@link ForwardingQueueManager}.
 */
export class ForwardingCacheManager implements CacheManager {
  /** The adapter every call goes to. */
  protected readonly inner: CacheManager;

  /** @param inner - the adapter every call goes to. */
  constructor(inner: CacheManager) {
    this.inner = inner;
  }

  get capabilities(): CacheCapabilities {
    return this.inner.capabilities;
  }

  stage(key: string): Promise<StagedResult> {
    return this.inner.stage(key);
  }

  head(key: string, area?: CacheArea): Promise<ResultManifest | undefined> {
    return this.inner.head(key, area);
  }

  get(key: string, format: string, options?: CacheGetOptions): Promise<CachedBody | undefined> {
    return this.inner.get(key, format, options);
  }

  url(key: string, format: string, options: CacheUrlOptions): Promise<string | undefined> {
    return this.inner.url(key, format, options);
  }

  promote(key: string): Promise<boolean> {
    return this.inner.promote(key);
  }

  delete(key: string, area?: CacheArea): Promise<number> {
    return this.inner.delete(key, area);
  }

  clear(area: CacheArea): Promise<number> {
    return this.inner.clear(area);
  }

  sweep(area: CacheArea, olderThan: number): Promise<number> {
    return this.inner.sweep(area, olderThan);
  }

  list(area: CacheArea, options: { limit: number; cursor?: string }): Promise<CacheListPage> {
    return this.inner.list(area, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
