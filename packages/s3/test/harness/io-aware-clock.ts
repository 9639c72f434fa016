import { setTimeout as delay } from 'node:timers/promises';

import type { S3Client } from '@aws-sdk/client-s3';

import type { Clock } from '@armlib/core';

/** Counts the S3 requests in flight on the clients it watches. */
export class InFlightRequests {
  #count = 0;
  #waiters: (() => void)[] = [];

  /** Counts every request `client` sends from now on. */
  watch(client: S3Client): S3Client {
    client.middlewareStack.add(
      (next) => async (args) => {
        this.#count++;
        try {
          return await next(args);
        } finally {
          if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake();
        }
      },
      { step: 'initialize', name: 'armlibInFlight' },
    );
    return client;
  }

  /** Resolves once no request is in flight, or after `maxWaitMs` of real time. */
  async idle(maxWaitMs: number): Promise<void> {
    if (this.#count === 0) return;
    const ac = new AbortController();
    const idle = new Promise<void>((resolve) => this.#waiters.push(resolve));
    await Promise.race([idle, delay(maxWaitMs, undefined, { signal: ac.signal }).catch(() => undefined)]);
    ac.abort();
  }
}

/**
 * Makes the conformance suite's manual clock wait for the S3 requests in flight before it moves
 * time (at most `maxWaitMs` of real time per move).
 *
 * Why: the suite drives time in a tight loop (`clock.advance(pollMs)` until a condition holds)
 * whose only pauses are a few event-loop turns, which is enough for in-memory adapters and the
 * file system. An S3 request waits on another process or s3rver's file-system thread pool, so on
 * a busy machine the loop can run the clock past its limit (`maxMs`, e.g. 1200 polls) while one
 * commit is still on the wire: a timeout that says nothing about the adapter. Waiting here keeps
 * "time passes" and "the backend answered" in the order a real deployment sees them; the adapter
 * still reads time only from the clock, and every assertion of the suite is unchanged.
 */
export function waitForRequestsBeforeAdvance(clock: Clock, inFlight: InFlightRequests, maxWaitMs = 5_000): void {
  const manual = clock as Clock & { advance?: (ms: number) => Promise<void> };
  const advance = manual.advance?.bind(clock);
  if (advance === undefined) throw new Error('the conformance suite is expected to pass a ManualClock');
  manual.advance = async (ms: number): Promise<void> => {
    await inFlight.idle(maxWaitMs);
    await advance(ms);
  };
}
