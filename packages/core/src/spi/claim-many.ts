import { InvalidRequestError } from '../errors.js';

/** The largest `max` a queue's `claimMany` accepts: the worker runtime's highest concurrency. */
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
