import { performance } from 'node:perf_hooks';

import { buildRequestManager, DEFAULT_SETTINGS, ManualClock } from '@armlib/core';
import type { CacheManager, GroupPolicies, ManagerSettings, QueueManager, RequestManager } from '@armlib/core';

import type { AdapterInstance, ConformanceCapabilities, ConformanceOptions } from './types.js';

/** Capabilities with the suite's defaults applied (adapter-derived ones are read per instance). */
export interface ResolvedCapabilities extends ConformanceCapabilities {
  propertyRuns: number;
  propertyConcurrency: number;
  largeResultBytes: number;
}

/** {@link ConformanceOptions} with defaults applied; every group function accepts either. */
export interface ConformanceContext extends ConformanceOptions {
  readonly capabilities: ResolvedCapabilities;
}

/** Applies the suite's defaults to the options. Idempotent. */
export function resolveContext(options: ConformanceOptions): ConformanceContext {
  const caps = options.capabilities ?? {};
  const concurrency = caps.propertyConcurrency ?? 1;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new Error(`propertyConcurrency must be an integer >= 1, got ${String(concurrency)}`);
  }
  return {
    ...options,
    capabilities: {
      ...caps,
      propertyRuns: caps.propertyRuns ?? 1000,
      propertyConcurrency: concurrency,
      largeResultBytes: caps.largeResultBytes ?? 8 * 1024 * 1024,
    },
  };
}

/** Manager settings and group policies of one test. */
export interface ManagerSetup {
  settings?: Partial<ManagerSettings>;
  groups?: GroupPolicies;
}

/** A promise with its resolve/reject exposed, for handlers the test holds open. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
  readonly settled: boolean;
}

/** Creates a {@link Deferred}. */
export function defer<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  let settled = false;
  const promise = new Promise<T>((res, rej) => {
    resolve = (v) => {
      settled = true;
      res(v);
    };
    reject = (e) => {
      settled = true;
      rej(e instanceof Error ? e : new Error(String(e)));
    };
  });
  return {
    promise,
    resolve,
    reject,
    get settled() {
      return settled;
    },
  };
}

/** Options of {@link TestEnv.drive} and {@link TestEnv.until}. */
export interface DriveOptions {
  /** Clock step between checks, ms of the manual clock (0: only let I/O and promise jobs run). */
  stepMs?: number;
  /** Give up after the clock moved this far, ms. */
  maxMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
  /** Give up after this much real time, ms (default 30 s): a bound for remote backends, never a sleep. */
  wallMs?: number;
}

const WALL_LIMIT_MS = 30_000;

/** Durations of the suite's managers, before scaling by the adapter's clock granularity. */
const TEST_SETTINGS: Partial<ManagerSettings> = {
  leaseMs: 3_000,
  pollMs: 100,
  sweepMs: 250,
  retryBaseMs: 200,
  retryMaxMs: 2_000,
  pendingTtlMs: 3_600_000,
  finishedRetentionMs: 24 * 3_600_000,
};
const DURATION_SETTINGS = [
  'leaseMs',
  'pollMs',
  'sweepMs',
  'retryBaseMs',
  'retryMaxMs',
  'pendingTtlMs',
  'finishedRetentionMs',
  'targetWaitMs',
  'defaultEstimatedMs',
] as const;

/**
 * One test's world: a fresh manual clock, a fresh adapter instance, the managers built over it,
 * and the open handlers to release. {@link TestEnv.close} tears all of it down.
 */
export class TestEnv {
  readonly clock: ManualClock;
  readonly instance: AdapterInstance;
  /** Multiplier applied to every duration so that it is well above the adapter's clock granularity. */
  readonly scale: number;
  readonly #managers: RequestManager[] = [];
  readonly #peers: { queue: QueueManager; cache: CacheManager }[] = [];
  readonly #deferreds: Deferred<unknown>[] = [];
  #adaptersOwned = false;
  #settings: ManagerSettings = { ...DEFAULT_SETTINGS };

  /**
   * @param context - the suite's options with defaults applied.
   * @param clock - the manual clock the instance was built with.
   * @param instance - what the factory returned.
   */
  constructor(
    readonly context: ConformanceContext,
    clock: ManualClock,
    instance: AdapterInstance,
  ) {
    this.clock = clock;
    this.instance = instance;
    const granularity = context.capabilities.clockGranularityMs ?? instance.queue.capabilities.clockGranularityMs;
    this.scale = Math.max(1, Math.ceil(granularity / 10));
  }

  /** The queue adapter under test. */
  get queue(): QueueManager {
    return this.instance.queue;
  }

  /** The cache adapter under test. */
  get cache(): CacheManager {
    return this.instance.cache;
  }

  /** Whether positions are exact for this adapter. */
  get exactPosition(): boolean {
    return this.context.capabilities.exactPosition ?? this.queue.capabilities.exactPosition;
  }

  /** Whether `capacity().busy` counts running leases for this adapter. */
  get reportsBusy(): boolean {
    return this.context.capabilities.reportsBusy ?? this.queue.capabilities.reportsBusy ?? false;
  }

  /** Settings of the last manager built (scaled). */
  get settings(): ManagerSettings {
    return this.#settings;
  }

  /** Steps the clock's readings back by `ms` (see {@link SteppingClock}). */
  stepClockBack(ms: number): void {
    if (!(this.clock instanceof SteppingClock))
      throw new Error('this environment was built with a clock that cannot step back');
    this.clock.stepBack(ms);
  }

  /** A duration scaled to the adapter's clock granularity. */
  t(ms: number): number {
    return ms * this.scale;
  }

  /** Builds a manager over this instance's adapters (which it then owns and closes). */
  manager(setup: ManagerSetup = {}): RequestManager {
    const settings = this.#resolveSettings(setup);
    const groups = this.#scaleGroups(setup.groups ?? {});
    const manager =
      this.#managers.length === 0
        ? buildRequestManager({ queue: this.queue, cache: this.cache, clock: this.clock, settings, groups })
        : buildRequestManager({
            queue: shield(this.queue),
            cache: shield(this.cache),
            clock: this.clock,
            settings,
            groups,
          });
    this.#adaptersOwned = true;
    this.#managers.push(manager);
    return manager;
  }

  /**
   * A manager as another process would run it: over `peer()` when the adapter has one, else over
   * the same adapter objects (shielded from its `close`).
   */
  async otherProcess(
    setup: ManagerSetup = {},
    parts?: { queue: QueueManager; cache: CacheManager },
  ): Promise<RequestManager> {
    const adapters = parts ?? (await this.peerAdapters());
    const manager = buildRequestManager({
      queue: adapters.queue,
      cache: adapters.cache,
      clock: this.clock,
      settings: this.#resolveSettings(setup),
      groups: this.#scaleGroups(setup.groups ?? {}),
    });
    this.#managers.push(manager);
    return manager;
  }

  /** Adapters over the same storage: a real peer when available, else this instance's behind a close-shield. */
  async peerAdapters(): Promise<{ queue: QueueManager; cache: CacheManager; real: boolean }> {
    if (this.instance.peer === undefined) {
      return { queue: shield(this.queue), cache: shield(this.cache), real: false };
    }
    const peer = await this.instance.peer();
    this.#peers.push(peer);
    return { queue: shield(peer.queue), cache: shield(peer.cache), real: true };
  }

  /** A deferred that {@link close} resolves, so a held handler never outlives its test. */
  defer<T = void>(): Deferred<T> {
    const d = defer<T>();
    this.#deferreds.push(d);
    return d;
  }

  /** Moves the clock in steps until `promise` settles; returns its value. */
  async drive<T>(promise: Promise<T>, options: DriveOptions = {}): Promise<T> {
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    // Keeps an early rejection from being reported as unhandled while the loop runs.
    watched.catch(() => undefined);
    await this.#loop(() => done, options);
    return watched;
  }

  /** Moves the clock in steps until `predicate` holds. */
  async until(predicate: () => boolean | Promise<boolean>, options: DriveOptions = {}): Promise<void> {
    await this.#loop(predicate, options);
  }

  /** Closes managers (driving the clock so that grace periods run out), adapters, peers and the instance. */
  async close(): Promise<void> {
    for (const d of this.#deferreds) if (!d.settled) d.resolve(undefined);
    const errors: unknown[] = [];
    for (const manager of this.#managers.reverse()) {
      try {
        await this.drive(manager.close(), { stepMs: this.t(500), maxMs: this.t(600_000), what: 'manager.close()' });
      } catch (error) {
        errors.push(error);
      }
    }
    for (const peer of this.#peers) {
      await settleAll([peer.queue.close(), peer.cache.close()], errors);
    }
    if (!this.#adaptersOwned) await settleAll([this.queue.close(), this.cache.close()], errors);
    if (this.instance.close !== undefined) await settleAll([this.instance.close()], errors);
    if (errors.length > 0) throw errors[0];
  }

  async #loop(predicate: () => boolean | Promise<boolean>, options: DriveOptions): Promise<void> {
    const stepMs = options.stepMs ?? 0;
    const maxMs = options.maxMs ?? this.t(120_000);
    const startClock = this.clock.now();
    const startWall = performance.now();
    for (;;) {
      if (await predicate()) return;
      if (this.clock.now() - startClock > maxMs || performance.now() - startWall > (options.wallMs ?? WALL_LIMIT_MS)) {
        throw new Error(
          `timed out waiting for ${options.what ?? 'a condition'} (clock moved ${String(this.clock.now() - startClock)} ms)`,
        );
      }
      await this.clock.advance(stepMs);
    }
  }

  #resolveSettings(setup: ManagerSetup): ManagerSettings {
    const merged: ManagerSettings = { ...DEFAULT_SETTINGS, ...TEST_SETTINGS, ...setup.settings };
    for (const name of DURATION_SETTINGS) merged[name] = merged[name] * this.scale;
    this.#settings = merged;
    return merged;
  }

  #scaleGroups(groups: GroupPolicies): GroupPolicies {
    const out: GroupPolicies = {};
    for (const [name, policy] of Object.entries(groups)) {
      out[name] =
        policy.minIntervalMs === undefined ? policy : { ...policy, minIntervalMs: policy.minIntervalMs * this.scale };
    }
    return out;
  }
}

/**
 * Registers an `afterEach` that closes every environment opened by the test, and returns the
 * function that opens one (fresh clock, fresh instance).
 */
export function useEnv(context: ConformanceContext): () => Promise<TestEnv> {
  const open: TestEnv[] = [];
  afterEach(async function () {
    this.timeout(60_000);
    const envs = open.splice(0);
    for (const env of envs) await env.close();
  });
  return async () => {
    const clock = new SteppingClock();
    const instance = await context.create({ clock });
    const env = new TestEnv(context, clock, instance);
    open.push(env);
    return env;
  };
}

/**
 * A manual clock whose readings can also step back, as a wall clock does on an NTP step or when a
 * VM resumes (a `ManualClock` never goes back). Timers keep their due times on the clock's own
 * time line, which only moves forward.
 */
export class SteppingClock extends ManualClock {
  #back = 0;

  override now(): number {
    return super.now() - this.#back;
  }

  /** Makes every later reading `ms` lower. */
  stepBack(ms: number): void {
    this.#back += ms;
  }
}

/** The same adapter with `close` made a no-op, for a second manager that must not close shared adapters. */
export function shield<T extends { close(): Promise<void> }>(target: T): T {
  return new Proxy(target, {
    get(obj, prop) {
      if (prop === 'close') return () => Promise.resolve();
      const value: unknown = Reflect.get(obj, prop, obj);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
    },
  });
}

async function settleAll(promises: Promise<unknown>[], errors: unknown[]): Promise<void> {
  for (const r of await Promise.allSettled(promises)) if (r.status === 'rejected') errors.push(r.reason);
}
