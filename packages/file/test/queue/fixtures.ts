import type { ClaimOptions, EnqueueOptions, NewQueueEntry, NormalizedRequest } from '@armlib/core';

/** Start time of every test's ManualClock. */
export const T0 = Date.UTC(2026, 0, 1);
export const NO_LIMITS: EnqueueOptions = { limits: {} };
export const LEASE_MS = 1_000;

/** A normalized request for `key`. */
export function request(key: string, extra: Partial<NormalizedRequest> = {}): NormalizedRequest {
  return { uri: '/reports/sales', key, group: 'default', priority: 0, ...extra };
}

/** An entry to enqueue for `key`. */
export function entry(
  key: string,
  extra: Partial<NormalizedRequest> = {},
  more: Partial<NewQueueEntry> = {},
): NewQueueEntry {
  return { key, request: request(key, extra), maxAttempts: 3, ...more };
}

/** Claim options with defaults. */
export function claimOptions(extra: Partial<ClaimOptions> = {}): ClaimOptions {
  return { workerId: 'w1', leaseMs: LEASE_MS, policies: {}, ...extra };
}
