import { inject, injectable } from 'inversify';

import type { Clock, TimerHandle } from '../clock.js';
import { assertManagerSettings, groupPolicyIssues } from '../config/validate.js';
import { ClosedError, InvalidRequestError } from '../errors.js';
import { assertValidFormat, assertValidKey, GROUP_PATTERN, printable, showValue } from '../keys.js';
import type { BatchRequest, RequestStatus, ResultBody } from '../model.js';
import { QUEUE_STATES } from '../model.js';
import type { QueueState } from '../model.js';
import { isValidOwner, normalizeRequest } from '../request.js';
import type { NormalizedRequest } from '../request.js';
import { withDefaults } from '../settings.js';
import type { GroupPolicies, ManagerSettings } from '../settings.js';
import type { CacheManager, ResultManifest } from '../spi/cache.js';
import type {
  EnqueueOptions,
  GroupPolicy,
  QueueManager,
  QueueRecord,
  QueueLimits,
  SweepOptions,
  SweepResult,
} from '../spi/queue.js';
import { syncCacheOps, syncQueueOps } from '../spi/sync.js';
import type { LiveView, SyncCacheOps, SyncQueueOps } from '../spi/sync.js';
import { TOKENS } from '../tokens.js';
import { TypedEmitter } from '../util/emitter.js';
import { WorkerRuntime } from '../worker/worker-runtime.js';
import type { KeyedEvent, WorkerHost } from '../worker/worker-runtime.js';
import { computeMetrics } from './metrics.js';
import { completedStatus, iso, queuedStatus, recordStatus } from './status.js';
import type {
  Handler,
  ListQuery,
  ManagerEvents,
  Metrics,
  RequestManager,
  SubmitOptions,
  WaitOptions,
  Worker,
  WorkerOptions,
} from './types.js';
import { waitForTerminal } from './wait.js';
import { cannotRead, optionsArgument, readOption } from '../util/arguments.js';

const MAX_LIST_LIMIT = 1000;

/** Both adapters' synchronous twins (see SyncQueueOps). */
export interface ManagerSyncOps {
  readonly queue: SyncQueueOps;
  readonly cache: SyncCacheOps;
}
const DEFAULT_URL_EXPIRY_SEC = 3600;
/** Sweep options whose `retainUntil` is the manager's retention as of the moment it is read. */
function retentionOnDemand(manager: { retainUntil(): number | undefined }): SweepOptions {
  return Object.defineProperty({}, 'retainUntil', {
    enumerable: true,
    get: () => manager.retainUntil(),
  });
}

/**
 * An event in a key's line of held events (see DefaultRequestManager#holdEvents): told once
 * `done`, after those before it; `emit` undefined when there is nothing to tell.
 */
interface HeldEvent {
  emit: (() => void) | undefined;
  done: boolean;
  /** The attempt a held `claimed` tells of. */
  readonly claimed?: number;
}

/** The place in line of a submit in progress: done once it has set its event, or has none. */
interface SubmitPlace extends HeldEvent {
  readonly key: string;
  /** The attempt of its status, read as running: that attempt's claim came before the read. */
  running?: number;
}

/** A held event; a `claimed` one keeps its attempt (see afterItsClaim). */
function heldEvent<K extends KeyedEvent>(name: K, payload: ManagerEvents[K], emit: () => void): HeldEvent {
  if (name !== 'claimed') return { emit, done: true };
  return { emit, done: true, claimed: (payload as ManagerEvents['claimed']).attempt };
}

/**
 * Moves a submit's event, whose status was read running at `attempt`, after the held `claimed` of
 * that attempt (or an earlier one): the claim came between the submit taking its place and its
 * read, and a listener must not see the request running before it is told of the claim.
 */
function afterItsClaim(line: HeldEvent[], place: SubmitPlace, attempt: number): void {
  const from = line.indexOf(place);
  let to = from;
  for (let i = from + 1; i < line.length; i++) {
    const claimed = line[i]?.claimed;
    if (claimed !== undefined && claimed <= attempt) to = i;
  }
  if (to === from) return;
  line.splice(from, 1);
  line.splice(to, 0, place);
}

/** A cache lookup that failed (see list). */
const FAILED_HEAD: unique symbol = Symbol('failed head');
/** How long a read of the pause flag serves status reads, ms. */
const PAUSE_READ_MS = 1000;
/**
 * Parts of a report told in one go at most, by a sweep or by the takes after a call: the loop
 * never yields to the event loop, and other processes may keep adding transitions. What is left
 * goes at the next take or sweep.
 */
const MAX_PARTS = 16;

/**
 * The request manager: armlib's behaviour (§3 of the spec) written once over the two SPIs.
 * Adapters only store; dedupe, status, ETA, retries, cancellation and events live here.
 */
@injectable()
export class DefaultRequestManager implements RequestManager, WorkerHost {
  readonly events = new TypedEmitter<ManagerEvents>();
  readonly settings: Readonly<ManagerSettings>;
  readonly #groups: GroupPolicies;
  readonly #workers = new Set<WorkerRuntime>();
  /** How to end each waitFor still waiting (see trackWait). */
  readonly #waits = new Set<() => void>();
  #sweepTimer: TimerHandle | undefined;
  #closed: Promise<void> | undefined;
  /** Events held per key, in order, while submits of the key prepare their own (see #holdEvents). */
  readonly #held = new Map<string, HeldEvent[]>();
  /** Enqueue options without a group cap, with and without an owner quota (built on first use). */
  #plainEnqueueOptions: EnqueueOptions | undefined;
  #ownerEnqueueOptions: EnqueueOptions | undefined;
  /** The adapters' synchronous twins, when both offer them (the memory adapters); see SyncQueueOps. */
  readonly sync: ManagerSyncOps | undefined;
  /** The queue's pause flag as last read (at `#pauseReadAt`): a paused queue serves nobody, so no ETA. */
  #paused = false;
  #pauseReadAt = Number.NEGATIVE_INFINITY;
  #pauseRead: Promise<boolean> | undefined;
  /** Options of `takeTransitions`, whose retention is read from the clock when an adapter asks. */
  readonly #takeOptions: SweepOptions = retentionOnDemand(this);
  /** Bumped by every note of the flag, so that a read begun before a pause cannot undo it. */
  #pauseEpoch = 0;

  constructor(
    @inject(TOKENS.QueueManager) readonly queue: QueueManager,
    @inject(TOKENS.CacheManager) readonly cache: CacheManager,
    @inject(TOKENS.Clock) readonly clock: Clock,
    @inject(TOKENS.Settings) settings: Partial<ManagerSettings>,
    @inject(TOKENS.GroupPolicies) groups: GroupPolicies,
  ) {
    assertManagerSettings(settings);
    this.settings = Object.freeze(withDefaults(settings));
    const syncQueue = syncQueueOps(queue);
    const syncCache = syncCacheOps(cache);
    this.sync = syncQueue !== undefined && syncCache !== undefined ? { queue: syncQueue, cache: syncCache } : undefined;
    this.#groups = {};
    for (const [name, policy] of Object.entries(groups)) this.configureGroup(name, policy);
    this.#scheduleSweep();
  }

  submit(input: BatchRequest, options?: SubmitOptions): Promise<RequestStatus> {
    const sync = this.sync;
    if (sync === undefined) return this.#submitAsync(input, options);
    // Not async: with synchronous adapters the whole submit is one step, settled at once.
    try {
      return Promise.resolve(this.#submitSync(sync, input, options));
    } catch (error) {
      return rejected(error);
    }
  }

  /** {@link submit} over the synchronous twins: the same steps as {@link #submitAsync}, without a tick between them. */
  #submitSync(sync: ManagerSyncOps, input: BatchRequest, options: SubmitOptions | undefined): RequestStatus {
    this.#assertOpen();
    const request = normalizeRequest(input);
    const { key } = request;
    if (!forced(options)) {
      const manifest = sync.cache.head(key);
      if (manifest !== undefined) {
        let found = manifest;
        if (request.sticky === true && manifest.area === 'temporary' && sync.cache.promote(key)) {
          found = { ...manifest, area: 'persistent' };
        }
        const record = sync.queue.lookup(key);
        // The lookup may have ended a forced rebuild of the key (expired): that is told first.
        this.#reportTransitions(undefined);
        const status = isLive(record)
          ? this.#liveStatusSync(sync.queue, record)
          : completedStatus(record, found, request);
        this.events.emit('deduplicated', { key, status });
        return status;
      }
    }
    const { pendingTtlMs, maxAttempts } = this.settings;
    const result = sync.queue.enqueue(
      pendingTtlMs > 0
        ? { key, request, maxAttempts, pendingExpiresAt: this.clock.now() + pendingTtlMs }
        : { key, request, maxAttempts },
      this.#enqueueOptions(request.group, request.owner),
    );
    // The enqueue may have ended an earlier entry of the key (expired): that is told first.
    this.#reportTransitions(undefined);
    const record = result.record;
    const status = isLive(record)
      ? this.#liveStatusSync(sync.queue, record)
      : this.#settledStatus(key, record, undefined);
    if (result.outcome === 'created') this.#wakeWorkers();
    const event = result.outcome === 'created' ? 'submitted' : 'deduplicated';
    if (this.events.listenerCount(event) > 0) this.events.emit(event, { key, status });
    return status;
  }

  async #submitAsync(input: BatchRequest, options: SubmitOptions | undefined): Promise<RequestStatus> {
    this.#assertOpen();
    const request = normalizeRequest(input);
    const { key } = request;
    // When the cache was read: a run of the key finishing after it is not replaced (see below).
    let checkedAt: number | undefined;
    if (!forced(options)) {
      checkedAt = this.clock.now();
      const manifest = await this.cache.head(key);
      if (manifest !== undefined) return this.#servedFromCache(request, manifest);
    }
    const { pendingTtlMs, maxAttempts } = this.settings;
    const entry =
      pendingTtlMs > 0
        ? { key, request, maxAttempts, pendingExpiresAt: this.clock.now() + pendingTtlMs }
        : { key, request, maxAttempts };
    const enqueueOptions = this.#enqueueOptions(request.group, request.owner);
    // From the enqueue until this submit has told of it, the key's later events in this process (a
    // worker polling here may claim and even finish the request meanwhile) wait, so that listeners
    // see `submitted` before `claimed`.
    const place = this.#holdEvents(key);
    try {
      let result = await this.queue.enqueue(
        entry,
        checkedAt === undefined ? enqueueOptions : { ...enqueueOptions, keepFinishedSince: checkedAt },
      );
      if (result.outcome === 'existing' && !isLive(result.record)) {
        // The key's last run finished after the cache was read: its result is most likely there now
        // (a worker commits the result before it completes the record), so it is served rather than
        // made again. Without a result (the run failed, or the result is already gone) it runs again.
        const late = await this.cache.head(key);
        if (late !== undefined) return await this.#servedFromCache(request, late);
        result = await this.queue.enqueue(entry, enqueueOptions);
      }
      // The enqueue may have ended an earlier entry of the key (expired): that is told first.
      this.#reportTransitions(place);
      // Status first: a worker woken in this process could claim the request before we read it.
      const record = result.record;
      const status = isLive(record)
        ? await this.#statusAfterWrite(record, 'submit', result.position)
        : this.#settledStatus(key, record, undefined);
      if (result.outcome === 'created') this.#wakeWorkers();
      const event = result.outcome === 'created' ? 'submitted' : 'deduplicated';
      // The payload is built only for someone to see it.
      if (this.events.listenerCount(event) > 0)
        this.#tellAt(place, status, () => this.events.emit(event, { key, status }));
      return status;
    } finally {
      this.#release(place);
    }
  }

  /**
   * Takes the place in line of the event of a submit of `key`: the key's events told through
   * {@link emitKeyed} from now on wait until the submit has told its own (see {@link #release}).
   * Each concurrent submit of the key takes its own place, so that its `deduplicated`, whose status
   * may be read while the request is still pending, is not told after a `claimed` that came later.
   */
  #holdEvents(key: string): SubmitPlace {
    const place: SubmitPlace = { key, emit: undefined, done: false };
    const line = this.#held.get(key);
    if (line === undefined) this.#held.set(key, [place]);
    else line.push(place);
    return place;
  }

  /** Sets the event of a submit, carrying `status`, to be told at its place in line (see #release). */
  #tellAt(place: SubmitPlace, status: RequestStatus, emit: () => void): void {
    place.emit = emit;
    if (status.state === 'running') place.running = status.attempts;
  }

  /** Ends a submit's place in line (telling its event, if it set one) and tells what no longer waits. */
  #release(place: SubmitPlace): void {
    place.done = true;
    const line = this.#held.get(place.key);
    if (line === undefined) return;
    if (place.running !== undefined) afterItsClaim(line, place, place.running);
    // One by one from the head: a listener told here may add to the line (a submit of its own).
    for (let head = line[0]; head?.done === true; head = line[0]) {
      line.shift();
      head.emit?.();
    }
    // A listener may have emptied the line and started a new one: only this one is dropped.
    if (line.length === 0 && this.#held.get(place.key) === line) this.#held.delete(place.key);
  }

  /**
   * Tells an event of one request: at once, or right after the submits of its key in progress in
   * this process have told of theirs (see {@link #holdEvents}), so that the events of a key keep
   * the order of its transitions.
   */
  emitKeyed<K extends KeyedEvent>(name: K, payload: ManagerEvents[K]): void {
    const line = this.#held.size === 0 ? undefined : this.#held.get(payload.key);
    if (line === undefined) this.events.emit(name, payload);
    else line.push(heldEvent(name, payload, () => this.events.emit(name, payload)));
  }

  /**
   * Tells an event of `place`'s key that happened before that submit's own: at once when no
   * earlier submit of the key is still in progress, else right before its place in line.
   */
  #emitBefore(place: SubmitPlace, emit: () => void): void {
    const line = this.#held.get(place.key);
    const at = line === undefined ? -1 : line.indexOf(place);
    if (line === undefined || at <= 0) emit();
    else line.splice(at, 0, { emit, done: true });
  }

  /** The status of a submit answered from the cache (promoting a temporary result for a sticky request). */
  async #servedFromCache(request: NormalizedRequest, manifest: ResultManifest): Promise<RequestStatus> {
    const { key } = request;
    const found =
      request.sticky === true && manifest.area === 'temporary' ? await this.#promoted(key, manifest) : manifest;
    // A live record (a forced rebuild) may be read as pending while a worker here claims it: the
    // claim is told after this submit's `deduplicated`, as for a submit that enqueues.
    const place = this.#holdEvents(key);
    try {
      const record = await this.queue.get(key);
      // The read may have ended a forced rebuild of the key (expired): that is told first.
      this.#reportTransitions(place);
      const status = isLive(record) ? await this.#liveStatus(record) : completedStatus(record, found, request);
      if (this.events.listenerCount('deduplicated') > 0) {
        this.#tellAt(place, status, () => this.events.emit('deduplicated', { key, status }));
      }
      return status;
    } finally {
      this.#release(place);
    }
  }

  /**
   * `manifest`, a temporary result, once a sticky submit asked to keep it. When there is no
   * temporary result left to promote, a concurrent sticky submit most likely promoted it since
   * `manifest` was read: the cache is read again, so that this submit does not report the stale
   * area (it keeps `manifest` when the result is gone altogether, cleared meanwhile).
   */
  async #promoted(key: string, manifest: ResultManifest): Promise<ResultManifest> {
    if (await this.cache.promote(key)) return { ...manifest, area: 'persistent' };
    return (await this.cache.head(key)) ?? manifest;
  }

  status(key: string): Promise<RequestStatus> {
    const sync = this.sync;
    if (sync === undefined) return this.#statusAsync(key);
    try {
      this.#assertOpen();
      assertValidKey(key);
      // The same reads as #statusAsync, in the same order, in one synchronous step.
      const queue = sync.queue;
      const live = queue.live(key);
      const record = live === undefined ? queue.finished(key) : undefined;
      const manifest = sync.cache.head(key);
      const status =
        live !== undefined ? this.#liveViewStatus(queue, live) : this.#settledStatus(key, record, manifest);
      // What the reads applied lazily (an expiry) is told now, not at the next sweep: nobody should
      // see a state (here, or in waitFor and metrics) whose event has not been told yet.
      this.#reportTransitions(undefined);
      return Promise.resolve(status);
    } catch (error) {
      return rejected(error);
    }
  }

  async #statusAsync(key: string): Promise<RequestStatus> {
    this.#assertOpen();
    assertValidKey(key);
    // Both calls start together (see settleLater for why not Promise.all).
    const recordRead = this.queue.get(key);
    const manifestRead = settleLater(this.cache.head(key));
    const record = await recordRead;
    const manifest = await manifestRead;
    const status = isLive(record) ? await this.#liveStatus(record) : this.#settledStatus(key, record, manifest);
    // As in status(): what the reads applied lazily is told before the caller sees it.
    this.#reportTransitions(undefined);
    return status;
  }

  async cancel(key: string): Promise<RequestStatus> {
    this.#assertOpen();
    assertValidKey(key);
    const retainUntil = this.retainUntil();
    const result = await this.queue.cancel(key, retainUntil === undefined ? {} : { retainUntil });
    // The cancel may have applied a lease that ran out (requeued) before its own transition.
    this.#reportTransitions(undefined);
    if (result.outcome === 'cancelled') this.emitKeyed('cancelled', { key, running: false });
    // Status before the abort: a local worker acknowledges the cancel as soon as its handler
    // returns, and the caller should see the request as its cancel left it (running, cancel
    // requested), not whichever of the two writes a slow backend happened to order first.
    let status: RequestStatus;
    try {
      status = await this.status(key);
    } catch (error) {
      // A cancel that was written stands: the running job must hear of it, and the caller gets
      // the record the cancel returned (the failure goes to the `error` event).
      if (result.outcome === 'requested') for (const worker of this.#workers) worker.notifyCancel(key);
      if (ClosedError.is(error) || result.record === undefined) throw error;
      this.events.emit('error', { error, context: `cancel '${key}': status after the write` });
      return recordStatus(result.record);
    }
    if (result.outcome === 'requested') for (const worker of this.#workers) worker.notifyCancel(key);
    return status;
  }

  async list(given?: ListQuery): Promise<{ items: RequestStatus[]; cursor?: string }> {
    this.#assertOpen();
    // Each field is read once, and what was checked is what the queue gets (see readOption).
    const query = optionsArgument(given, 'query');
    const limit: unknown = readOption(query, 'limit') ?? 100;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new InvalidRequestError('limit', `must be an integer from 1 to ${String(MAX_LIST_LIMIT)}`);
    }
    const states = listStates(readOption(query, 'state'));
    const group: unknown = readOption(query, 'group');
    if (group !== undefined && (typeof group !== 'string' || !GROUP_PATTERN.test(group))) {
      throw new InvalidRequestError('group', `${showValue(group)} is not a valid group name`);
    }
    const owner: unknown = readOption(query, 'owner');
    if (owner !== undefined && !isValidOwner(owner)) {
      throw new InvalidRequestError('owner', `${showValue(owner)} is not a valid owner (1-200 printable characters)`);
    }
    const cursor: unknown = readOption(query, 'cursor');
    if (cursor !== undefined && typeof cursor !== 'string') throw new InvalidRequestError('cursor', 'must be a string');
    const page = await this.queue.list({
      limit,
      ...(states === undefined ? {} : { states }),
      ...(group === undefined ? {} : { group }),
      ...(owner === undefined ? {} : { owner }),
      ...(cursor === undefined ? {} : { cursor }),
    });
    // Selected by the queue record's state, described as status() describes them: a settled
    // record's key is completed while the cache holds its result (a failed forced rebuild of a
    // cached key, …) and unknown once it is gone. A cache that cannot answer for one key (a
    // damaged manifest) leaves that item described by its record rather than failing the page.
    const items = await Promise.all(
      page.items.map(async (record) => {
        if (isLive(record)) return this.#statusOf(record.key, record, undefined);
        const manifest = await this.cache.head(record.key).catch((error: unknown): typeof FAILED_HEAD => {
          if (ClosedError.is(error)) throw error;
          return FAILED_HEAD;
        });
        return manifest === FAILED_HEAD ? recordStatus(record) : this.#statusOf(record.key, record, manifest);
      }),
    );
    this.#reportTransitions(undefined);
    return page.cursor === undefined ? { items } : { items, cursor: page.cursor };
  }

  async waitFor(key: string, given?: WaitOptions): Promise<RequestStatus> {
    this.#assertOpen();
    assertValidKey(key);
    const options = optionsArgument(given, 'options');
    const signal: unknown = readOption(options, 'signal');
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new InvalidRequestError('signal', `must be an AbortSignal, got ${showValue(signal)}`);
    }
    const timeoutMs: unknown = readOption(options, 'timeoutMs');
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
      throw new InvalidRequestError(
        'timeoutMs',
        `must be a number of milliseconds, 0 or more; got ${showValue(timeoutMs)}`,
      );
    }
    // The checked copy, not the caller's object: a getter asked again could answer differently.
    const checked: WaitOptions = {};
    if (signal !== undefined) checked.signal = signal;
    if (timeoutMs !== undefined) checked.timeoutMs = timeoutMs;
    return waitForTerminal(this, key, checked);
  }

  async read(key: string, format?: string): Promise<ResultBody | undefined> {
    this.#assertOpen();
    assertValidKey(key);
    const name = format ?? this.settings.defaultFormat;
    assertValidFormat(name);
    const found = await this.cache.get(key, name);
    if (found === undefined) return undefined;
    const body: ResultBody = { body: found.body, contentType: found.contentType, size: found.size };
    if (found.contentEncoding !== undefined) body.contentEncoding = found.contentEncoding;
    return body;
  }

  async resultUrl(key: string, format?: string, given?: { expiresInSec?: number }): Promise<string | undefined> {
    this.#assertOpen();
    const options = optionsArgument(given, 'options');
    assertValidKey(key);
    const name = format ?? this.settings.defaultFormat;
    assertValidFormat(name);
    const expiresInSec: unknown = readOption(options, 'expiresInSec') ?? DEFAULT_URL_EXPIRY_SEC;
    if (
      typeof expiresInSec !== 'number' ||
      !Number.isInteger(expiresInSec) ||
      expiresInSec < 1 ||
      expiresInSec > 7 * 24 * 3600
    ) {
      throw new InvalidRequestError('expiresInSec', 'must be an integer from 1 to 604800 (7 days)');
    }
    return this.cache.url(key, name, { expiresInSec });
  }

  process(handler: Handler, options?: WorkerOptions): Worker {
    this.#assertOpen();
    const worker = new WorkerRuntime(this, handler, options);
    this.#workers.add(worker);
    worker.start();
    return worker;
  }

  async pause(): Promise<void> {
    this.#assertOpen();
    await this.queue.setPaused(true);
    this.#notePaused(true);
  }

  async resume(): Promise<void> {
    this.#assertOpen();
    await this.queue.setPaused(false);
    this.#notePaused(false);
    this.#wakeWorkers();
  }

  #notePaused(paused: boolean): void {
    this.#paused = paused;
    this.#pauseReadAt = this.clock.now();
    this.#pauseEpoch++;
  }

  /**
   * The pause flag for an ETA, read again when older than {@link PAUSE_READ_MS} (another process
   * may have paused the queue): at most one read a second, however many statuses are read.
   */
  #pausedFresh(): Promise<boolean> | boolean {
    if (this.clock.now() - this.#pauseReadAt < PAUSE_READ_MS) return this.#paused;
    const epoch = this.#pauseEpoch;
    this.#pauseRead ??= this.queue.isPaused().then(
      (paused) => {
        this.#pauseRead = undefined;
        // A pause or resume of this process since the read began is newer than what it read.
        if (this.#pauseEpoch !== epoch) return this.#paused;
        this.#notePaused(paused);
        return paused;
      },
      (error: unknown) => {
        this.#pauseRead = undefined;
        throw error;
      },
    );
    return this.#pauseRead;
  }

  async clearTemporary(given?: { olderThan?: Date }): Promise<number> {
    this.#assertOpen();
    const olderThan = readOption(optionsArgument(given, 'options'), 'olderThan');
    if (olderThan === undefined) return this.cache.clear('temporary');
    return this.cache.sweep('temporary', dateMs(olderThan, 'olderThan'));
  }

  async clearAll(): Promise<void> {
    this.#assertOpen();
    await this.cache.clear('persistent');
    await this.cache.clear('temporary');
  }

  async prune(given?: { finishedBefore?: Date }): Promise<number> {
    this.#assertOpen();
    const finishedBefore = readOption(optionsArgument(given, 'options'), 'finishedBefore');
    const before = finishedBefore === undefined ? Number.MAX_SAFE_INTEGER : dateMs(finishedBefore, 'finishedBefore');
    const pruned = await this.queue.prune(before);
    this.#reportTransitions(undefined);
    return pruned;
  }

  async metrics(): Promise<Metrics> {
    this.#assertOpen();
    const metrics = await computeMetrics(this.queue, this.clock.now(), this.settings);
    this.#reportTransitions(undefined);
    return metrics;
  }

  configureGroup(group: string, policy: GroupPolicy): void {
    // After close there is no worker left for a policy to govern: refused, as every call then is.
    this.#assertOpen();
    if (typeof group !== 'string' || !GROUP_PATTERN.test(group)) {
      throw new InvalidRequestError('group', `${showValue(group)} is not a valid group name`);
    }
    // Typed as an object, but callers from plain JavaScript may pass anything.
    const given: unknown = policy;
    if (given === null || typeof given !== 'object' || Array.isArray(given)) {
      throw new InvalidRequestError(
        `groups.${group}`,
        `must be an object of minIntervalMs, maxConcurrent and maxQueueLength, got ${showValue(given)}`,
      );
    }
    // Each field is read once, into a copy that is checked and then kept: a getter asked again
    // could answer differently from what was checked.
    const copy = readPolicy(group, given);
    // The config file's rules: unknown fields (a typo) are refused, not dropped with the caps they meant.
    const issues = groupPolicyIssues(group, copy);
    if (issues.length > 0) {
      const field = (issues[0]?.path ?? '').slice(1).split('/').join('.');
      throw new InvalidRequestError(field, issues.map((issue) => issue.message).join('; '));
    }
    const checked: { -readonly [K in keyof GroupPolicy]: GroupPolicy[K] } = {};
    for (const field of ['minIntervalMs', 'maxConcurrent', 'maxQueueLength'] as const) {
      const value = copy[field] as GroupPolicy[typeof field];
      if (value !== undefined) checked[field] = value;
    }
    this.#groups[group] = checked;
    this.#wakeWorkers();
  }

  async sweep(): Promise<void> {
    const retainUntil = this.retainUntil();
    const options = retainUntil === undefined ? {} : { retainUntil };
    // A long report comes in parts: each sweep waits for the write lock, as the first did.
    // The workers are woken once, after the last part, so that none claims a request whose
    // requeue a later part tells.
    let requeued = false;
    try {
      for (let part = 1; ; part++) {
        const result = await this.queue.sweep(options);
        this.#emitSwept(result);
        if (result.requeued.length > 0) requeued = true;
        if (result.more !== true || part >= MAX_PARTS) break;
      }
    } finally {
      if (requeued) this.#wakeWorkers();
    }
  }

  /**
   * Tells the transitions the queue applied lazily at the call just made (see
   * `QueueManager.takeTransitions`), before that call's own events.
   */
  reportTransitions(): void {
    this.#reportTransitions(undefined);
  }

  /**
   * {@link reportTransitions}; the events of the key of `submitting` (a submit in progress, whose
   * enqueue applied them) go before that submit's own, see {@link #emitBefore}.
   */
  #reportTransitions(submitting: SubmitPlace | undefined): void {
    const queue = this.queue;
    if (queue.takeTransitions === undefined) return;
    // Runs on every submit and claim, and nearly always finds nothing: the retention is computed
    // only when the adapter reads it, i.e. when it has something to hand over.
    // Until there is none: an adapter may hand a long list over in parts, each read when told.
    // The workers are woken once, after the last part: a claim made in between would join a
    // write the next take must not wait for.
    let requeued = false;
    try {
      for (let part = 1, taken = queue.takeTransitions(this.#takeOptions); taken !== undefined; part++) {
        this.#emitSwept(taken, submitting);
        if (taken.requeued.length > 0) requeued = true;
        // An empty part ends it too (an adapter may answer one rather than undefined).
        const { failed, expired, cancelled } = taken;
        if (taken.requeued.length + failed.length + expired.length + cancelled.length === 0) break;
        if (part >= MAX_PARTS) break;
        taken = queue.takeTransitions(this.#takeOptions);
      }
    } finally {
      if (requeued) this.#wakeWorkers();
    }
  }

  /**
   * Tells what a sweep (or a take) applied. The events of the key of `submitting` go before that
   * submit's own: they happened before its enqueue. The caller wakes the workers for requeued
   * requests, once its last part is told.
   */
  #emitSwept(result: SweepResult, submitting?: SubmitPlace): void {
    const tell = <K extends KeyedEvent>(name: K, payload: ManagerEvents[K]): void => {
      if (payload.key === submitting?.key) this.#emitBefore(submitting, () => this.events.emit(name, payload));
      else this.emitKeyed(name, payload);
    };
    for (const r of result.requeued) tell('requeued', { key: r.key, reason: 'lease-expired' });
    for (const r of result.expired) tell('expired', { key: r.key });
    for (const r of result.cancelled) tell('cancelled', { key: r.key, running: true });
    for (const r of result.failed) {
      if (r.error !== undefined) tell('failed', { key: r.key, error: r.error, attempts: r.attempts });
    }
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  // WorkerHost
  groupPolicies(): Readonly<Record<string, GroupPolicy>> {
    return this.#groups;
  }

  retainUntil(): number | undefined {
    const ms = this.settings.finishedRetentionMs;
    return ms > 0 ? this.clock.now() + ms : undefined;
  }

  /**
   * Registers a waitFor in progress (see waitForTerminal): `end` rejects it with a `ClosedError`
   * and clears its timers, which close() does for every wait left. Returns the function that
   * unregisters it, once it settled.
   */
  trackWait(end: () => void): () => void {
    this.#waits.add(end);
    return () => {
      this.#waits.delete(end);
    };
  }

  detach(worker: WorkerRuntime): void {
    this.#workers.delete(worker);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  async #close(): Promise<void> {
    if (this.#sweepTimer !== undefined) this.clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    await Promise.all([...this.#workers].map((w) => w.stop({ graceMs: 0 })));
    await Promise.allSettled([this.queue.close(), this.cache.close()]);
    // A wait would otherwise settle only at its next poll (up to 5 s later, never on a manual
    // clock), its timer keeping the process alive meanwhile.
    for (const end of [...this.#waits]) end();
    this.#waits.clear();
    this.events.removeAllListeners();
  }

  #scheduleSweep(): void {
    if (this.#closed !== undefined) return;
    this.#sweepTimer = this.clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      this.sweep()
        .catch((error: unknown) => {
          if (!ClosedError.is(error)) this.events.emit('error', { error, context: 'sweep' });
        })
        .finally(() => {
          this.#scheduleSweep();
        });
    }, this.settings.sweepMs);
    this.#sweepTimer.unref?.();
  }

  #wakeWorkers(): void {
    // Runs on every submit: with no worker in this process, skip allocating a Set iterator.
    if (this.#workers.size === 0) return;
    for (const worker of this.#workers) worker.wake();
  }

  #enqueueOptions(group: string, owner: string | undefined): EnqueueOptions {
    const groupCap = this.#groups[group]?.maxQueueLength;
    // Settings are frozen, so the usual options (no group cap) are built once, not per submit.
    if (groupCap === undefined) {
      if (owner !== undefined && this.settings.maxPendingPerOwner > 0) {
        return (this.#ownerEnqueueOptions ??= Object.freeze({ limits: this.#limitsFor(undefined, true) }));
      }
      return (this.#plainEnqueueOptions ??= Object.freeze({ limits: this.#limitsFor(undefined, false) }));
    }
    return { limits: this.#limitsFor(groupCap, owner !== undefined) };
  }

  #limitsFor(groupCap: number | undefined, hasOwner: boolean): QueueLimits {
    const { maxQueueLength, maxPendingPerOwner } = this.settings;
    return Object.freeze({
      ...(maxQueueLength > 0 ? { maxQueueLength } : {}),
      ...(groupCap === undefined ? {} : { groupMaxQueueLength: groupCap }),
      ...(hasOwner && maxPendingPerOwner > 0 ? { maxPendingPerOwner } : {}),
    });
  }

  async #statusOf(
    key: string,
    record: QueueRecord | undefined,
    manifest: ResultManifest | undefined,
  ): Promise<RequestStatus> {
    // A live record (even a forced rebuild of a cached key) describes what happens now.
    return isLive(record) ? await this.#liveStatus(record) : this.#settledStatus(key, record, manifest);
  }

  /** Status of a key with no live record: from the cache when it has the result, else from the record. */
  #settledStatus(key: string, record: QueueRecord | undefined, manifest: ResultManifest | undefined): RequestStatus {
    if (manifest !== undefined) return completedStatus(record, manifest);
    if (record === undefined || record.state === 'completed') {
      // Completed but its result is gone (cleared): nothing to serve, so unknown (submit re-queues).
      return { key, state: 'unknown', attempts: 0 };
    }
    return recordStatus(record);
  }

  /**
   * {@link #liveStatus} of a record a write of this call has just made: the write stands whatever
   * the reads for position and ETA do, so a failed read (a throttled backend) must not fail the
   * call, or the caller would take a queued request for a refused one, and the manager would skip
   * its event and its wake. The status is then the record's own, without position or ETA (the
   * position the write stated, when it did), and the failure goes to the `error` event.
   */
  async #statusAfterWrite(record: QueueRecord, context: string, knownPosition?: number): Promise<RequestStatus> {
    try {
      return await this.#liveStatus(record, knownPosition);
    } catch (error) {
      if (ClosedError.is(error)) throw error;
      this.events.emit('error', { error, context: `${context} '${record.key}': status after the write` });
      return knownPosition !== undefined && record.state === 'pending'
        ? queuedStatus(record, knownPosition, undefined)
        : recordStatus(record);
    }
  }

  /** The status of a live record; `knownPosition`: its position as the call that returned it gave it. */
  async #liveStatus(record: QueueRecord, knownPosition?: number): Promise<RequestStatus> {
    const uri = record.request.uri;
    if (record.state === 'running') {
      // A running ETA needs neither the capacity nor a position: one call instead of three.
      const stats = await this.queue.uriStats(uri);
      return this.#runningStatus(record, stats[0]?.avgMs, this.clock.now());
    }
    const statsRead = this.queue.uriStats(uri);
    const capacityRead = settleLater(this.queue.capacity());
    const positionRead = knownPosition ?? settleLater(this.queue.position(record.key));
    const fresh = this.#pausedFresh();
    const pausedRead = typeof fresh === 'boolean' ? fresh : settleLater(fresh);
    const stats = await statsRead;
    const capacity = await capacityRead;
    const position = await positionRead;
    const paused = await pausedRead;
    // No longer pending when the position was read (claimed or finished meanwhile): no place in line.
    if (position === undefined) return recordStatus(record);
    if (paused) return queuedStatus(record, position, undefined);
    return this.#pendingStatus(record, position, stats[0]?.avgMs, capacity.slots, capacity.busy, this.clock.now());
  }

  /** {@link #liveStatus} over the synchronous twins, right after the call that returned `record`. */
  #liveStatusSync(queue: SyncQueueOps, record: QueueRecord): RequestStatus {
    const uri = record.request.uri;
    if (record.state === 'running') return this.#runningStatus(record, queue.avgMs(uri), queue.now);
    const position = queue.rank(record.key);
    if (position === undefined) return recordStatus(record);
    if (queue.paused()) return queuedStatus(record, position, undefined);
    return this.#pendingStatus(record, position, queue.avgMs(uri), queue.slots(), queue.busy(), queue.now);
  }

  /**
   * {@link #liveStatusSync} of a live record as the queue holds it: a plain pending one (every
   * request waiting in a long queue) is described from the view alone, without reading the record.
   */
  #liveViewStatus(queue: SyncQueueOps, live: LiveView): RequestStatus {
    if (live.plainPending && !queue.paused()) {
      const position = queue.rank(live.key);
      if (position !== undefined) {
        const durationMs = queue.avgMs(live.uri) ?? live.estimatedMs ?? this.settings.defaultEstimatedMs;
        const etaMs = pendingEtaMs(position, queue.slots(), queue.busy(), durationMs, queue.waitMs(live.key));
        // The same literal as queuedStatus builds for such a record.
        return {
          key: live.key,
          state: 'pending',
          request: live.request,
          attempts: live.attempts,
          submittedAt: iso(live.submittedSecond * 1000 + live.submittedMilli) ?? '',
          position,
          etaMs,
        };
      }
    }
    return this.#liveStatusSync(queue, live.record);
  }

  #runningStatus(record: QueueRecord, avgMs: number | undefined, now: number): RequestStatus {
    const status = recordStatus(record);
    const durationMs = avgMs ?? record.request.estimatedMs ?? this.settings.defaultEstimatedMs;
    status.position = 0;
    const elapsed = Math.max(0, now - (record.startedAt ?? now));
    const progress = record.progress ?? 0;
    // Progress reaches the queue with a delay, so extrapolating elapsed/progress would balloon between
    // updates; instead the expected run time (learned, or the time already spent if longer) is scaled.
    // Past its expected time without a word of progress, the job's end is not known: no ETA
    // rather than a 0 that stays for as long as the job runs on.
    if (progress <= 0 && elapsed >= durationMs) return status;
    const remaining =
      progress > 0 ? (Math.max(durationMs, elapsed) * (100 - Math.min(progress, 100))) / 100 : durationMs - elapsed;
    status.etaMs = Math.round(remaining);
    return status;
  }

  #pendingStatus(
    record: QueueRecord,
    position: number,
    avgMs: number | undefined,
    slots: number,
    busy: number | undefined,
    now: number,
  ): RequestStatus {
    const durationMs = avgMs ?? record.request.estimatedMs ?? this.settings.defaultEstimatedMs;
    const notBefore = Math.max(0, record.readyAt - now);
    return queuedStatus(record, position, pendingEtaMs(position, slots, busy ?? 0, durationMs, notBefore));
  }

  #assertOpen(): void {
    if (this.#closed !== undefined) throw new ClosedError();
  }
}

/**
 * ETA of a pending request, ms: the expected wait for a slot, then its own run of `durationMs`.
 *
 * Model: `S = max(1, slots)` slots (none reported still means someone may serve), of which
 * `B = min(busy, S)` run a job and `F = S − B` are free. The requests at positions 1..F start now
 * (wait 0). A later one waits for the `(p − F)`-th slot release. What is left of a running job is
 * not known here (only its own status has its progress), so each is taken as started at a
 * uniformly random point of its run of `D = durationMs`: the `k`-th of the `B` releases then comes,
 * on average, at `k / (B + 1) · D` (the expected `k`-th smallest of `B` uniform times; their mean is
 * `D / 2`, a running job half done). The `F` jobs started now release at `D`. Each slot then frees
 * every `D`, so the releases repeat with a period of `D`, `S` per period:
 * release `r = p − F − 1` (0-based) of period `n = floor(r / S)`, index `k = r − n · S` in it,
 * comes at `n · D + (k < B ? (k + 1) / (B + 1) : 1) · D`.
 * `etaMs = max(notBefore, wait) + D`, `notBefore` the time left of a retry backoff.
 *
 * With `busy` 0 (or not reported) this is `floor((p − 1) / S) · D` for the wait, the whole-waves
 * model that assumes every slot free now. The wait grows with `p` and never jumps back.
 * Requests are taken as all lasting `D` (this request's duration), groups' fairness and caps are
 * not modelled, as for the position.
 */
function pendingEtaMs(position: number, slots: number, busy: number, durationMs: number, notBefore: number): number {
  const total = Math.max(1, slots);
  const running = Math.min(Math.max(0, busy), total);
  const free = total - running;
  let wait = 0;
  if (position > free) {
    const release = position - free - 1;
    const period = Math.floor(release / total);
    const k = release - period * total;
    wait = (period + (k < running ? (k + 1) / (running + 1) : 1)) * durationMs;
  }
  return Math.round(Math.max(notBefore, wait) + durationMs);
}

/**
 * Marks a promise that is awaited only after others as handled, so that its failure while an
 * earlier one is still awaited is not an unhandled rejection; awaiting it still throws. Started
 * together and awaited in turn, SPI calls cost about half of what Promise.all does (no result
 * array, no closures per item), and status reads run on every submit and poll.
 */
function settleLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}

/** A rejection with what a synchronous step threw, as an async method would reject. */
function rejected<T>(error: unknown): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what was thrown
  return Promise.reject(error);
}

function ignore(): void {
  // The rejection is observed where the promise is awaited.
}

function isLive(record: QueueRecord | undefined): record is QueueRecord & { state: 'pending' | 'running' } {
  return record !== undefined && (record.state === 'pending' || record.state === 'running');
}

/**
 * The time of a Date, read by Date's own method: anything without a date inside (a proxy of a
 * Date, an object made to pass `instanceof`) is refused, where asking it would throw a TypeError.
 */
function dateMs(value: unknown, field: string): number {
  let ms = Number.NaN;
  try {
    ms = getTime.call(value as Date);
  } catch {
    // Not a Date: refused below.
  }
  if (Number.isNaN(ms)) throw new InvalidRequestError(field, `must be a valid Date, got ${showValue(value)}`);
  return ms;
}

const getTime: (this: Date) => number = Object.getOwnPropertyDescriptor(Date.prototype, 'getTime')?.value as (
  this: Date,
) => number;

/** `options.force`, checked: a caller without types who wrote `force: 'yes'` is told, not ignored. */
function forced(options: SubmitOptions | undefined): boolean {
  if (options === undefined) return false;
  const force: unknown = readOption(optionsArgument(options, 'options'), 'force', 'options.force');
  if (force === undefined || typeof force === 'boolean') return force === true;
  throw new InvalidRequestError('options.force', `must be true or false, got ${showValue(force)}`);
}

/** The states of a list query, copied and checked index by index (a hole is refused as undefined). */
function listStates(state: ListQuery['state']): QueueState[] | undefined {
  if (state === undefined) return undefined;
  if (!Array.isArray(state)) return [checkedState(state, 'state')];
  const states: QueueState[] = [];
  // A plain loop, not forEach: forEach skips holes, which the queue would then refuse under its own name.
  for (let i = 0; i < state.length; i++) {
    const field = `state[${String(i)}]`;
    states.push(checkedState(readOption(state as readonly unknown[], i, field), field));
  }
  return states;
}

function checkedState(state: unknown, field: string): QueueState {
  if (!(QUEUE_STATES as readonly unknown[]).includes(state)) {
    throw new InvalidRequestError(field, `${showValue(state)} is not one of ${QUEUE_STATES.join(', ')}`);
  }
  return state as QueueState;
}

/**
 * A copy of a group policy's own fields, each read once; a field whose getter throws is refused by
 * its path (`groups.<group>.<field>`, as the checks of its value name it).
 */
function readPolicy(group: string, policy: object): Record<string, unknown> {
  let fields: string[];
  try {
    fields = Object.keys(policy);
  } catch (error) {
    throw cannotRead(`groups.${group}`, error);
  }
  const copy: Record<string, unknown> = {};
  for (const field of fields)
    copy[field] = readOption(policy as Record<string, unknown>, field, `groups.${group}.${printable(field)}`);
  return copy;
}
