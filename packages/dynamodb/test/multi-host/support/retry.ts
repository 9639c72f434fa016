import { setTimeout as delay } from 'node:timers/promises';

import { BackendError } from '@armlib/core';

import { debug } from './debug.js';

/**
 * Calls `call` again after a retryable BackendError, as a caller of armlib does (bounded, with
 * backoff). DynamoDB Local answers InternalServerError ("waiting for a lock") under bursts of
 * concurrent writes to one partition, which real DynamoDB does not; armlib reports it as
 * retryable, and this is the retry.
 */
export async function retryingBackend<T>(what: string, call: () => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!BackendError.is(error) || !error.retryable || attempt >= attempts) throw error;
      debug(`retrying ${what} after ${error.message}`);
      await delay(50 * 2 ** attempt);
    }
  }
}
