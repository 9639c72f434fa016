import { setTimeout as delay } from 'node:timers/promises';

/** Options of {@link pollUntil}. */
export interface PollOptions {
  /** What is awaited, for the timeout message. */
  readonly what: string;
  /** Give up after this long, ms (default 60 s: generous, CI machines are loaded). */
  readonly timeoutMs?: number;
  /** Time between two probes, ms (default 50). */
  readonly intervalMs?: number;
  /** Adds the last observed state to the timeout message. */
  readonly describe?: () => string;
}

/**
 * Calls `probe` until it returns something other than `undefined`/`false`, with a deadline: for
 * tests whose state is changed by other processes (a shared directory, table or bucket), where
 * no injectable clock can be moved and the state itself is all there is to wait for. Within one
 * process, move a `ManualClock` instead.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: PollOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const detail = options.describe === undefined ? '' : `: ${options.describe()}`;
      throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${options.what}${detail}`);
    }
    await delay(intervalMs);
  }
}
