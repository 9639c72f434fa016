import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { ManualClock } from '@armlib/core';

/**
 * The conformance suite drives a ManualClock in steps that only let a couple of event-loop turns
 * pass, which is enough for in-process backends but not for a separate process (DynamoDB Local
 * answers in milliseconds): a clock patched with {@link settleWithRequests} also waits, between
 * steps, for the requests of its own tables' clients to answer — as `advance` already does for
 * promise jobs and local I/O. No time passes on the clock meanwhile.
 *
 * Each clock waits only for its own {@link InFlight} trackers, so that sequences running side by
 * side (the model-based tests' `propertyConcurrency`) do not wait for each other's requests: a
 * shared count would rarely reach zero while another sequence is busy.
 */
const IDLE_WAIT_LIMIT_MS = 10_000;
/** Clock step between waits for requests, ms of the manual clock. */
const CHUNK_MS = 50;

/** Counts the requests in flight on the clients it tracks (one table's clients). */
export class InFlight {
  #count = 0;
  #waiters: (() => void)[] = [];

  /** Requests sent and not yet answered. */
  get count(): number {
    return this.#count;
  }

  /** Counts `client`'s requests while they are in flight. */
  track(client: DynamoDBClient): void {
    client.middlewareStack.add(
      (next) => async (args) => {
        this.#count++;
        try {
          return await next(args);
        } finally {
          if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake();
        }
      },
      { step: 'initialize', name: 'armlibInFlight', override: true },
    );
  }

  /** Resolves when no tracked request is in flight, or after `limitMs` of real time. */
  async drained(limitMs: number): Promise<void> {
    if (this.#count === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, limitMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** The trackers each patched clock waits for. */
const trackers = new WeakMap<ManualClock, Set<InFlight>>();

/** Resolves when none of `set`'s requests is in flight (or after a bounded wait, so a stuck request fails its test instead of hanging it). */
async function idle(set: ReadonlySet<InFlight>): Promise<void> {
  const busy = (): InFlight | undefined => [...set].find((t) => t.count > 0);
  for (let round = 0; round < 20; round++) {
    const tracker = busy();
    if (tracker === undefined) return;
    await tracker.drained(IDLE_WAIT_LIMIT_MS);
    // Let continuations start their next request before checking again.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Makes `advance`/`tick` of the suite's clock also wait for the requests `inFlight` tracks
 * (patches once per clock; a later call adds another tracker to wait for).
 */
export function settleWithRequests(clock: ManualClock, inFlight: InFlight): void {
  const known = trackers.get(clock);
  if (known !== undefined) {
    known.add(inFlight);
    return;
  }
  const set = new Set([inFlight]);
  trackers.set(clock, set);
  const advance = clock.advance.bind(clock);
  const tick = clock.tick.bind(clock);
  clock.advance = async (ms: number): Promise<void> => {
    // In chunks, so that a request a timer starts is answered before the clock passes the next
    // timers (a heartbeat must land before the lease it extends runs out).
    let left = Math.max(0, ms);
    if (clock.pendingTimers === 0) {
      // No timer to fire: nothing can start a request part-way.
      await idle(set);
      await advance(left);
      await idle(set);
      return;
    }
    do {
      const step = Math.min(left, CHUNK_MS);
      await idle(set);
      await advance(step);
      left -= step;
    } while (left > 0);
    await idle(set);
  };
  clock.tick = async (): Promise<void> => {
    await idle(set);
    await tick();
    await idle(set);
  };
}
