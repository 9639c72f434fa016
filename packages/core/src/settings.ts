import type { GroupPolicy } from './spi/queue.js';

/** Behaviour settings of a request manager (`manager` in the config). */
export interface ManagerSettings {
  /** Lease length for claimed requests, ms. Heartbeats run at about a third of it. */
  leaseMs: number;
  /** Claims per request before a failure is final (lease expiries count). */
  maxAttempts: number;
  /** First retry delay, ms: retry n waits between d/2 and d, d = min(retryMaxMs, retryBaseMs * 2^(n-1)) (equal jitter). */
  retryBaseMs: number;
  /** Cap on the retry delay, ms. */
  retryMaxMs: number;
  /** A request still waiting for its first claim this long after submit becomes `expired`, ms (0: never). Retries never expire. */
  pendingTtlMs: number;
  /** Finished records are dropped this long after finishing, ms (0: kept until pruned). */
  finishedRetentionMs: number;
  /** Format read when none is named. */
  defaultFormat: string;
  /** Cap on pending + running requests (0: none). */
  maxQueueLength: number;
  /** Cap on pending requests per owner (0: none). */
  maxPendingPerOwner: number;
  /** How often idle workers poll for work, ms (in-process submits wake them at once). */
  pollMs: number;
  /** How often the manager runs the queue sweep (lease expiry, pending expiry, retention), ms. */
  sweepMs: number;
  /** Target wait used by the scaling hint in metrics, ms. */
  targetWaitMs: number;
  /** Duration assumed for a uri with no history and no estimatedMs, ms. */
  defaultEstimatedMs: number;
}

/**
 * Bounds of `leaseMs`, in the `manager` settings and a worker's own options alike: the setting is
 * a worker's default, so a value a worker would refuse must not pass as a setting either.
 */
export const LEASE_MS_BOUNDS = Object.freeze({ min: 10, max: 24 * 3_600_000 });
/** Bounds of `pollMs`, in the `manager` settings and a worker's own options alike. */
export const POLL_MS_BOUNDS = Object.freeze({ min: 1, max: 3_600_000 });

/** Defaults applied to every missing setting. */
export const DEFAULT_SETTINGS: Readonly<ManagerSettings> = Object.freeze({
  leaseMs: 30_000,
  maxAttempts: 3,
  retryBaseMs: 1_000,
  retryMaxMs: 60_000,
  pendingTtlMs: 2 * 60 * 60 * 1000,
  finishedRetentionMs: 7 * 24 * 60 * 60 * 1000,
  defaultFormat: 'csv',
  maxQueueLength: 100_000,
  maxPendingPerOwner: 100,
  pollMs: 1_000,
  sweepMs: 5_000,
  targetWaitMs: 60_000,
  defaultEstimatedMs: 60_000,
});

/**
 * The defaults with `settings` over them. A setting given as `undefined` keeps its default (a
 * spread would put the `undefined` in, and validation does not see it).
 */
export function withDefaults(settings: Partial<ManagerSettings> | undefined): ManagerSettings {
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  // Typed as defined, but JavaScript callers and config objects can still hold an undefined.
  const given: Record<string, unknown> = { ...settings };
  for (const [name, value] of Object.entries(given)) if (value !== undefined) out[name] = value;
  return out as unknown as ManagerSettings;
}

/** Group policies by group name (`groups` in the config). */
export type GroupPolicies = Record<string, GroupPolicy>;
