import type { CacheManager, Clock, QueueManager } from '@armlib/core';

/** One adapter under test: a queue and a cache over fresh, isolated storage. */
export interface AdapterInstance {
  queue: QueueManager;
  cache: CacheManager;
  /**
   * Another instance over the SAME storage, as a second process would open it (shared backends
   * only). The suite closes what it returns; the storage itself is released by {@link close}.
   */
  peer?(): Promise<{ queue: QueueManager; cache: CacheManager }>;
  /** Releases the storage (temporary directory, table, bucket) after the adapters were closed. */
  close?(): Promise<void>;
}

/**
 * Builds a fresh, isolated {@link AdapterInstance} whose adapters read time from `env.clock`
 * (a `ManualClock` the suite moves). Called once per test.
 */
export type AdapterFactory = (env: { clock: Clock }) => Promise<AdapterInstance>;

/** What a backend legitimately cannot do; the suite adapts its checks to it. */
export interface ConformanceCapabilities {
  /** Positions are exact; defaults to `queue.capabilities.exactPosition`. */
  exactPosition?: boolean;
  /** Smallest time step the backend distinguishes, ms; defaults to `queue.capabilities.clockGranularityMs`. */
  clockGranularityMs?: number;
  /**
   * `capacity()` counts running leases in `busy`; defaults to `queue.capabilities.reportsBusy`
   * (absent: false, and `busy` is only checked to be a count when given).
   */
  reportsBusy?: boolean;
  /** Sequences run by the model-based queue test (default 1000; the cache model runs a fifth of it). */
  propertyRuns?: number;
  /**
   * Model-based sequences run side by side (default 1): the runs are split over this many
   * fast-check runs with consecutive seeds, each reporting its own seed and shrunk counterexample.
   * Only for a factory whose instances share nothing a sequence observes (each its own table,
   * bucket prefix or directory, and a harness that waits per clock): it lets a backend in another
   * process (DynamoDB Local) use a second core while this one waits on it.
   */
  propertyConcurrency?: number;
  /**
   * Real time allowed per model-based sequence, ms, for the queue and the cache model apart (a
   * backend is often slow for one only), `propertyConcurrency` taken into account: raises that
   * model test's timeout to its sequence count times this (never below the default,
   * `propertyRuns` × 200 ms and at least 60 s).
   */
  propertyRunMs?: { readonly queue?: number; readonly cache?: number };
  /** Size of the result streamed through the cache in the streaming test (default 8 MiB). */
  largeResultBytes?: number;
}

/** What {@link runConformance} and every group function take. */
export interface ConformanceOptions {
  /** Shown in the top-level `describe`, e.g. `memory`. */
  name: string;
  create: AdapterFactory;
  capabilities?: ConformanceCapabilities;
}
