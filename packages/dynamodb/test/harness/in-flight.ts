import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { ManualClock } from '@armlib/core';

/**
 * Requests in flight on every tracked client. The conformance suite drives a ManualClock in
 * steps that only let a couple of event-loop turns pass, which is enough for in-process backends
 * but not for a separate process (DynamoDB Local answers in milliseconds): a clock patched with
 * {@link settleWithRequests} also waits, between steps, for the tracked requests to answer — as
 * `advance` already does for promise jobs and local I/O. No time passes on the clock meanwhile.
 */
let inFlight = 0;
let waiters: (() => void)[] = [];
const IDLE_WAIT_LIMIT_MS = 10_000;
/** Clock step between waits for requests, ms of the manual clock. */
const CHUNK_MS = 50;

/** Counts the client's requests while they are in flight. */
export function trackInFlight(client: DynamoDBClient): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      inFlight++;
      try {
        return await next(args);
      } finally {
        inFlight--;
        if (inFlight === 0) {
          const w = waiters;
          waiters = [];
          for (const resolve of w) resolve();
        }
      }
    },
    { step: 'initialize', name: 'armlibInFlight', override: true },
  );
}

/** Resolves when no tracked request is in flight (or after a bounded wait, so a stuck request fails its test instead of hanging it). */
async function idle(): Promise<void> {
  for (let round = 0; round < 20 && inFlight > 0; round++) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, IDLE_WAIT_LIMIT_MS);
      waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Let continuations start their next request before checking again.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

const patched = new WeakSet<ManualClock>();

/** Makes `advance`/`tick` of the suite's clock also wait for tracked requests (idempotent). */
export function settleWithRequests(clock: ManualClock): void {
  if (patched.has(clock)) return;
  patched.add(clock);
  const advance = clock.advance.bind(clock);
  const tick = clock.tick.bind(clock);
  clock.advance = async (ms: number): Promise<void> => {
    // In chunks, so that a request a timer starts is answered before the clock passes the next
    // timers (a heartbeat must land before the lease it extends runs out).
    let left = Math.max(0, ms);
    if (clock.pendingTimers === 0) {
      // No timer to fire: nothing can start a request part-way.
      await idle();
      await advance(left);
      await idle();
      return;
    }
    do {
      const step = Math.min(left, CHUNK_MS);
      await idle();
      await advance(step);
      left -= step;
    } while (left > 0);
    await idle();
  };
  clock.tick = async (): Promise<void> => {
    await idle();
    await tick();
    await idle();
  };
}
