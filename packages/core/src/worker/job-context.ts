import type { Clock } from '../clock.js';
import { assertValidContentType, contentTypeFor } from '../content-type.js';
import { AbortedError, ClosedError, ConflictError, InvalidRequestError, LeaseLostError } from '../errors.js';
import type { AbortReason } from '../errors.js';
import { assertValidFormat, showValue } from '../keys.js';
import type { CacheArea } from '../model.js';
import type { Job, WriteData } from '../manager/types.js';
import type { NormalizedRequest } from '../request.js';
import type { CacheManager, CacheWriteOptions, ResultManifest, StagedResult } from '../spi/cache.js';
import type { SyncCacheOps, SyncStagedResult } from '../spi/sync.js';
import { errorText, optionsArgument, readOption } from '../util/arguments.js';
import { toByteChunks } from '../util/streams.js';

/** Callbacks from a job to the worker that runs it. */
export interface JobHost {
  readonly cache: CacheManager;
  readonly clock: Clock;
  /** The cache's synchronous twins, when the adapters offer them (see SyncCacheOps). */
  readonly syncCache: SyncCacheOps | undefined;
  /** Sends progress now (fenced); the worker throttles and folds it into heartbeats. */
  reportProgress(job: JobContext, percent: number, message: string | undefined): Promise<void>;
}

/**
 * One claimed request as its handler sees it. Owns the staged result: every `write` streams into
 * it, and the worker commits it (all formats at once) or discards it when the handler is done.
 */
export class JobContext implements Job {
  readonly key: string;
  readonly request: NormalizedRequest;
  readonly attempt: number;
  readonly token: string;
  readonly startedAt: number;
  /** Lease expiry as last confirmed by the queue. */
  leaseExpiresAt: number;
  /** Progress not yet sent to the queue. */
  unsentProgress: { percent: number; message: string | undefined } | undefined;
  lastProgressSentAt = Number.NEGATIVE_INFINITY;
  /** A heartbeat found the lease lost after the handler returned (the signal is not aborted then). */
  leaseLostAfterReturn = false;
  /** Heartbeats sent for this job and not answered yet. */
  beatsInFlight = 0;

  // Created on first use of `signal`: most handlers never look at it, and a controller is not free.
  #controller: AbortController | undefined;
  #abortReason: AbortReason | undefined;
  readonly #host: JobHost;
  #staged: Promise<StagedResult> | undefined;
  /** The staged result once `#staged` settled: later writes and the commit skip an await. */
  #stagedResult: StagedResult | undefined;
  /** The staged result when the cache stages synchronously (then it is staged at first use, at once). */
  #syncStaged: SyncStagedResult | undefined;
  /** Writes in progress, in start order (nearly always zero or one: an array is cheaper than a Set). */
  readonly #writes: Promise<unknown>[] = [];
  /**
   * Formats whose last write failed, with the error: the run fails with the first of them unless a
   * later write of the format succeeds (a handler that awaited the write and tried again).
   */
  #failedWrites: Map<string, unknown> | undefined;
  #closed = false;
  /**
   * The handler has returned (or thrown): writes and progress started from now on are refused,
   * while the writes it left running are still waited for, and still count, until {@link close}.
   */
  #returned = false;
  /** Rejects when the job is aborted (created on first need): ends a wait for writes. */
  #halted: Promise<never> | undefined;
  #halt: ((error: AbortedError) => void) | undefined;
  /** Stream sources of writes in progress: an abort stops them producing. */
  #sources: Set<StoppableSource> | undefined;

  constructor(
    host: JobHost,
    key: string,
    request: NormalizedRequest,
    attempt: number,
    token: string,
    leaseExpiresAt: number,
  ) {
    this.#host = host;
    this.key = key;
    this.request = request;
    this.attempt = attempt;
    this.token = token;
    this.leaseExpiresAt = leaseExpiresAt;
    this.startedAt = host.clock.now();
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#abortReason !== undefined) this.#controller.abort(new AbortedError(this.key, this.#abortReason));
    }
    return this.#controller.signal;
  }

  /** True once the handler has returned: the job is being finished (committed or failed). */
  get finishing(): boolean {
    return this.#closed;
  }

  /** The failure of a write that no later write of its format made good, if any. */
  get writeFailure(): { error: unknown } | undefined {
    const failed = this.#failedWrites;
    if (failed === undefined) return undefined;
    for (const error of failed.values()) return { error };
    return undefined;
  }

  /** Why the job was aborted, if it was. */
  get abortReason(): AbortReason | undefined {
    return this.#abortReason;
  }

  /** True once aborted for any reason. */
  get aborted(): boolean {
    return this.#abortReason !== undefined;
  }

  /** Aborts the handler's signal (first reason wins). */
  abort(reason: AbortReason): void {
    if (this.#abortReason !== undefined) return;
    this.#abortReason = reason;
    const error = new AbortedError(this.key, reason);
    this.#controller?.abort(error);
    // Whatever is still being written goes unread: the output of an aborted job is discarded.
    this.#halt?.(error);
    const sources = this.#sources;
    if (sources !== undefined) for (const source of sources) source.stop(error);
  }

  /**
   * `work`, cut short by an abort of the job: a call to the backend that hangs cannot hold the
   * handler past the point where its signal told it to stop. An abort for a lost lease rejects
   * with {@link LeaseLostError}, as a refused heartbeat would.
   */
  async untilHalted<T>(work: Promise<T>): Promise<T> {
    work.catch(ignore);
    try {
      return await Promise.race([work, this.#haltedPromise()]);
    } catch (error) {
      if (AbortedError.is(error) && error.reason === 'lease-lost')
        throw new LeaseLostError(this.key, undefined, { cause: error });
      throw error;
    }
  }

  /** See {@link #halted}. */
  #haltedPromise(): Promise<never> {
    if (this.#halted === undefined) {
      const reason = this.#abortReason;
      this.#halted =
        reason === undefined
          ? new Promise<never>((_, reject) => (this.#halt = reject))
          : Promise.reject(new AbortedError(this.key, reason));
      // Only ever raced against: never an unhandled rejection of its own.
      this.#halted.catch(ignore);
    }
    return this.#halted;
  }

  async progress(percent: number, message?: string): Promise<void> {
    this.#assertUsable('progress');
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw new InvalidRequestError('percent', `progress must be a number from 0 to 100, got ${String(percent)}`);
    }
    if (message !== undefined && typeof message !== 'string') {
      throw new InvalidRequestError('message', 'progress message must be a string');
    }
    await this.#host.reportProgress(this, percent, message?.slice(0, 1000));
  }

  write(format: string, data: WriteData, options?: { contentType?: string }): Promise<void> {
    // Not async: bytes in memory written to a cache that takes them at once need no promise of
    // their own (the settled one is shared), and a failure is a rejection as from an async method.
    let writeOptions: CacheWriteOptions;
    let iterate: StreamMethod | undefined;
    try {
      this.#assertUsable('write');
      assertValidFormat(format, 'format');
      iterate = streamMethod(data);
      // `?? null` also catches a null from untyped callers, which means "the default" as before.
      const contentType = contentTypeOption(options) ?? null;
      if (contentType !== null) assertValidContentType(contentType);
      writeOptions = contentType === null ? defaultWriteOptions(format) : { contentType };
      const syncCache = this.#host.syncCache;
      if (syncCache !== undefined && (typeof data === 'string' || data instanceof Uint8Array)) {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
        this.#stageNow(syncCache).writeBytes(format, bytes, writeOptions);
        this.#failedWrites?.delete(format);
        return WRITTEN;
      }
    } catch (error) {
      return this.#failed(format, error);
    }
    const written = this.#write(format, data, writeOptions, iterate);
    // A handler that does not await its write must not bring the process down when it fails: the
    // failure is kept, and fails the run (see writeFailure), whether or not anyone awaited it.
    written.catch(ignore);
    return written;
  }

  /**
   * A write that failed before it started: noted for its format (unless the handler had returned:
   * a late write refused is the late writer's error, not the result's), rejected, never unhandled.
   */
  #failed(format: unknown, error: unknown): Promise<void> {
    if (!this.#returned && this.#abortReason === undefined && typeof format === 'string') {
      (this.#failedWrites ??= new Map()).set(format, error);
    }
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what was thrown
    const rejection = Promise.reject(error);
    rejection.catch(ignore);
    return rejection;
  }

  async #write(
    format: string,
    data: WriteData,
    writeOptions: CacheWriteOptions,
    iterate: StreamMethod | undefined,
  ): Promise<void> {
    const staged = this.#stagedResult;
    // A stream is read through a source that an abort stops (bytes in memory need none).
    let source: StoppableSource | undefined;
    let chunks: AsyncIterable<Uint8Array>;
    if (iterate === undefined) chunks = toByteChunks(data);
    else {
      source = new StoppableSource(data as object, iterate);
      (this.#sources ??= new Set()).add(source);
      chunks = toByteChunks(source as AsyncIterable<Uint8Array>);
    }
    // Once staging exists, write straight to it: one async layer less on every later write.
    const pending =
      staged === undefined
        ? this.#stage().then((s) => s.write(format, chunks, writeOptions))
        : staged.write(format, chunks, writeOptions);
    const writes = this.#writes;
    writes.push(pending);
    try {
      await pending;
      this.#failedWrites?.delete(format);
    } catch (error) {
      if (!this.#closed && this.#abortReason === undefined) (this.#failedWrites ??= new Map()).set(format, error);
      throw error;
    } finally {
      const i = writes.indexOf(pending);
      if (i === writes.length - 1) void writes.pop();
      else if (i >= 0) void writes.splice(i, 1);
      if (source !== undefined) this.#sources?.delete(source);
    }
  }

  /** The handler returned: no new writes or progress (the ones in flight go on). */
  markReturned(): void {
    this.#returned = true;
  }

  /** No more writes or progress, and the writes in flight no longer count: the job is being finished. */
  close(): void {
    this.#returned = true;
    this.#closed = true;
  }

  /**
   * Waits for writes the handler did not await; throws the first failure. Returns at once when
   * the job is aborted (a cancel, a lost lease, a shutdown): its output is discarded anyway, and a
   * write whose source never ends must not hold the job's slot for ever.
   */
  async settleWrites(): Promise<void> {
    if (this.#writes.length === 0) return;
    const results = await Promise.race([Promise.allSettled([...this.#writes]), this.#haltedPromise().catch(ignore)]);
    if (results === undefined) return;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** True while a write the handler did not await is still in progress. */
  get writing(): boolean {
    return this.#writes.length > 0;
  }

  /** {@link commit} through the cache's synchronous twins; throws what `commit` would reject with. */
  commitNow(syncCache: SyncCacheOps, area: CacheArea): ResultManifest {
    return this.#stageNow(syncCache).commitNow(area, this.startedAt);
  }

  /** Publishes every written format (the commit point). */
  commit(area: CacheArea): Promise<ResultManifest> {
    // Not async: returning the adapter's promise from an async function would cost two more ticks.
    // The fence orders this commit after those of earlier claims of the key; stillHeld is asked
    // at the commit point, which may come a stall later than the worker's last look at its lease
    // (see CommitOptions).
    const options = { fence: this.startedAt, stillHeld: () => this.#stillHeld() };
    const staged = this.#stagedResult;
    if (staged !== undefined) return staged.commit(area, options);
    return this.#stage().then((s) => s.commit(area, options));
  }

  /** Whether the lease is unexpired by this process's clock and no heartbeat found it lost. */
  #stillHeld(): boolean {
    return (
      this.#host.clock.now() < this.leaseExpiresAt && this.#abortReason !== 'lease-lost' && !this.leaseLostAfterReturn
    );
  }

  /** Throws the staged output away. Never throws. */
  async discard(): Promise<void> {
    if (this.#staged === undefined) return;
    try {
      const staged = await this.#staged;
      await staged.abort();
    } catch {
      // Staging that failed or was already aborted holds nothing visible.
    }
  }

  #stage(): Promise<StagedResult> {
    if (this.#staged !== undefined) return this.#staged;
    const syncCache = this.#host.syncCache;
    if (syncCache === undefined) {
      this.#staged = this.#host.cache.stage(this.key).then((staged) => (this.#stagedResult = staged));
      return this.#staged;
    }
    try {
      return Promise.resolve(this.#stageNow(syncCache));
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what staging threw
      return Promise.reject(error);
    }
  }

  /** Stages at once through the cache's synchronous twins (one staged result per job, whichever way it came). */
  #stageNow(syncCache: SyncCacheOps): SyncStagedResult {
    let staged = this.#syncStaged;
    if (staged === undefined) {
      staged = syncCache.stage(this.key);
      this.#syncStaged = staged;
      this.#stagedResult = staged;
      this.#staged = Promise.resolve(staged);
    }
    return staged;
  }

  #assertUsable(what: 'write' | 'progress'): void {
    // Progress may still come from a write the handler left running (a stream reporting as it is
    // read); a new write may not.
    if (this.#closed || (this.#returned && (what === 'write' || this.#writes.length === 0))) {
      throw new ConflictError(`job '${this.key}' already finished: ${what}() after the handler returned`);
    }
    const reason = this.abortReason;
    if (reason === 'lease-lost') throw new LeaseLostError(this.key);
    if (reason === 'cancelled') throw new ConflictError(`request '${this.key}' was cancelled: ${what}() refused`);
    if (reason === 'shutdown') throw new ClosedError(`worker is stopping: ${what}() on '${this.key}' refused`);
  }
}

function ignore(): void {
  // The rejection is also handed to the caller, and kept by the job.
}

/** What a synchronous write returns: settled, shared (it carries nothing). */
const WRITTEN: Promise<void> = Promise.resolve();

// A mime lookup per write is costly and jobs use a handful of formats: remember the (frozen)
// write options of each (bounded).
const defaultOptions = new Map<string, CacheWriteOptions>();
const DEFAULT_OPTIONS_MEMO = 256;

function defaultWriteOptions(format: string): CacheWriteOptions {
  let options = defaultOptions.get(format);
  if (options === undefined) {
    if (defaultOptions.size >= DEFAULT_OPTIONS_MEMO) defaultOptions.clear();
    options = Object.freeze({ contentType: contentTypeFor(format) });
    defaultOptions.set(format, options);
  }
  return options;
}

/** The `Symbol.asyncIterator` method of a stream written, read once (see {@link streamMethod}). */
type StreamMethod = (this: object) => unknown;

/**
 * Checks what a handler writes: bytes in memory (undefined), or a stream, whose
 * `Symbol.asyncIterator` method is returned. The method is read once, here: a getter or proxy
 * asked again could answer differently. Anything else, a source that cannot even be read (a
 * proxy whose trap throws) included, is the handler's mistake, the same on every attempt:
 * {@link InvalidRequestError} naming `data`, which fails the run without a retry.
 */
function streamMethod(data: unknown): StreamMethod | undefined {
  let method: unknown;
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) return undefined;
    if (typeof data === 'object' && data !== null)
      method = (data as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
  } catch (error) {
    throw unreadable('the data written', error);
  }
  if (typeof method !== 'function') {
    throw new InvalidRequestError(
      'data',
      'write() takes a string, a Uint8Array, a Readable or an AsyncIterable of bytes',
    );
  }
  return method as StreamMethod;
}

/** The `contentType` of write()'s options, which must be an object when given (read once). */
function contentTypeOption(options: unknown): unknown {
  return readOption(optionsArgument(options as { contentType?: unknown } | undefined, 'options'), 'contentType');
}

/** A stream written whose shape (not its producer) failed: a getter or proxy trap threw when read. */
function unreadable(what: string, error: unknown): InvalidRequestError {
  return new InvalidRequestError('data', `${what} cannot be read: ${errorText(error)}`, { cause: error });
}

/**
 * An iterator's answer, checked and copied (each field read once); the error to reject with when
 * it is a primitive (a `next()` that resolves to `5`) or a result whose fields cannot be read:
 * InvalidRequestError naming `data`, where `for await` would throw a TypeError that the run would
 * retry as a handler error.
 */
function iteratorResult(result: unknown): IteratorResult<unknown> | InvalidRequestError {
  if (Object(result) !== result) {
    return new InvalidRequestError(
      'data',
      `the stream's iterator answered ${showValue(result)}, expected an iterator result ({ done, value })`,
    );
  }
  try {
    const { done, value } = result as { done?: unknown; value?: unknown };
    return { done: Boolean(done), value } as IteratorResult<unknown>;
  } catch (error) {
    return unreadable("the stream's iterator result", error);
  }
}

/**
 * The source of a stream write, read through a job: once the job is aborted, a read in progress
 * ends at once (with the job's AbortedError) and the source is told to stop producing, so that the
 * cache's staged write ends and lets go of what it holds even when the source would never end.
 *
 * What the source's own methods (`Symbol.asyncIterator`, `next`, `return`) throw or reject with is
 * the producer's failure and is passed on as it is, as a handler's own error would be (retried
 * unless typed otherwise). What they hand back is checked: an iterator that is not an object or
 * has no `next` method, a result that is not an object, are the handler's mistake
 * ({@link InvalidRequestError} naming `data`, not retried).
 */
class StoppableSource implements AsyncIterable<unknown> {
  readonly #source: object;
  readonly #iterate: StreamMethod;
  #iterator: object | undefined;
  /** The source iterator's `return` method, if it has one (read once). */
  #return: ((this: object, value?: unknown) => unknown) | undefined;
  #stopped: AbortedError | undefined;
  /**
   * Ends the read in progress. One reference, replaced per read (not a race against one promise
   * that lives as long as the job: that would keep a reaction per chunk, growing with the stream).
   */
  #rejectRead: ((error: AbortedError) => void) | undefined;

  constructor(source: object, iterate: StreamMethod) {
    this.#source = source;
    this.#iterate = iterate;
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    const iterator = this.#iterate.call(this.#source);
    if (Object(iterator) !== iterator) {
      throw new InvalidRequestError(
        'data',
        `the stream's Symbol.asyncIterator method returned ${showValue(iterator)}, expected an iterator`,
      );
    }
    let next: unknown;
    let returnMethod: unknown;
    try {
      next = (iterator as { next?: unknown }).next;
      returnMethod = (iterator as { return?: unknown }).return;
    } catch (error) {
      throw unreadable("the stream's iterator", error);
    }
    if (typeof next !== 'function') {
      throw new InvalidRequestError('data', "the stream's iterator has no next() method");
    }
    const source = iterator as object;
    this.#iterator = source;
    // Only ever called to stop the source: one that is not a function is taken as none.
    const stop = typeof returnMethod === 'function' ? (returnMethod as (value?: unknown) => unknown) : undefined;
    this.#return = stop;
    return {
      next: () => {
        const stopped = this.#stopped;
        if (stopped !== undefined) return Promise.reject(stopped);
        return new Promise<IteratorResult<unknown>>((resolve, reject) => {
          this.#rejectRead = reject;
          // Promise.resolve: one tick, not the two of adopting a thenable, and a source whose
          // next() returns a plain result still works (one whose next() throws rejects this promise).
          Promise.resolve((next as () => unknown).call(source)).then((result) => {
            const checked = iteratorResult(result);
            if (checked instanceof InvalidRequestError) reject(checked);
            else resolve(checked);
          }, reject);
        });
      },
      return: async (value?: unknown) => {
        if (stop !== undefined) await stop.call(source, value);
        return { done: true, value };
      },
    };
  }

  /** Ends the read in progress with `error`, and tells the source to stop: a Readable is destroyed, any other iterator asked to return. */
  stop(error: AbortedError): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = error;
    this.#rejectRead?.(error);
    const source = this.#source;
    // A Readable's iterator waits for the read in progress before it returns: destroy it instead.
    try {
      if (isDestroyable(source)) {
        source.destroy();
        return;
      }
      const iterator = this.#iterator;
      if (iterator !== undefined && this.#return !== undefined) {
        Promise.resolve(this.#return.call(iterator)).catch(ignore);
      }
    } catch {
      // A source that cannot be read or whose return() throws has nothing more to stop.
    }
  }
}

/** A Readable, or any stream with Node's destroy() (checked by shape: streams of other copies of Node's classes too). */
function isDestroyable(source: object): source is { destroy(): unknown } {
  return typeof (source as { destroy?: unknown }).destroy === 'function';
}
