import { setTimeout as delay } from 'node:timers/promises';

/** Options of {@link pollUntil}. */
export interface PollOptions {
  /** Give up after this long (generous: CI machines are loaded). */
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
  /** What is awaited, for the timeout message. */
  readonly what: string;
  /** Called on timeout to add the last observed state to the message. */
  readonly describe?: () => string;
}

/**
 * Calls `probe` until it returns something other than `undefined`/`false`, with a deadline.
 * Other processes change the state, so there is nothing to await but the state itself.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: PollOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 25;
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
