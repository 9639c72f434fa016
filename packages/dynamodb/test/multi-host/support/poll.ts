import { setTimeout as delay } from 'node:timers/promises';

/** Options of {@link pollUntil}. */
export interface PollOptions {
  /** What is awaited, for the timeout message. */
  readonly what: string;
  /** Give up after this long: generous, CI machines are loaded. */
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
  /** Adds the last observed state to the timeout message. */
  readonly describe?: () => string;
}

/**
 * Calls `probe` until it returns something other than `undefined`/`false`, with a deadline.
 * Other processes change the state, so the state itself is all there is to wait for.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: PollOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 45_000;
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

const DEBUG = process.env['ARMLIB_TEST_DEBUG'] === '1';
const T0 = Date.now();

/** A progress line on stderr when ARMLIB_TEST_DEBUG=1 (the phases of long multi-process tests). */
export function debug(message: string): void {
  if (DEBUG) process.stderr.write(`[+${String(Date.now() - T0)} ms] ${message}\n`);
}
