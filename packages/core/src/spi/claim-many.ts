import { InvalidRequestError } from '../errors.js';
import type { ClaimOptions, Lease, QueueManager } from './queue.js';

/** The largest `max` {@link QueueManager.claimMany} accepts: the worker runtime's highest concurrency. */
export const MAX_CLAIM_BATCH = 10_000;

/**
 * Throws {@link InvalidRequestError} (field `max`) unless `max` is an integer from 1 to
 * {@link MAX_CLAIM_BATCH}. Adapters call it first in `claimMany`.
 */
export function checkClaimMax(max: unknown): asserts max is number {
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1 || max > MAX_CLAIM_BATCH) {
    throw new InvalidRequestError(
      'max',
      `must be an integer from 1 to ${String(MAX_CLAIM_BATCH)}, got ${typeof max === 'number' ? String(max) : typeof max}`,
    );
  }
}

/**
 * `claimMany` for an adapter with no batch primitive: `claim` called up to `max` times in a row,
 * stopping at the first that finds nothing.
 *
 * A claim that throws after others succeeded ends the batch with the leases taken so far rather
 * than the error: thrown, those leases would be held by no one until they expire. The next claim
 * meets the error again if it lasts.
 */
export async function claimOneByOne(queue: QueueManager, options: ClaimOptions, max: number): Promise<Lease[]> {
  checkClaimMax(max);
  const leases: Lease[] = [];
  while (leases.length < max) {
    let lease: Lease | undefined;
    try {
      lease = await queue.claim(options);
    } catch (error) {
      if (leases.length === 0) throw error;
      break;
    }
    if (lease === undefined) break;
    leases.push(lease);
  }
  return leases;
}
