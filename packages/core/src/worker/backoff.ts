/**
 * Retry delay after `attempt` failed runs (1-based): exponential with "equal jitter", so the
 * delay lies in [d/2, d] with d = min(maxMs, baseMs * 2^(attempt-1)). Half the delay is fixed so
 * retries never bunch at zero; the other half spreads workers that failed together.
 */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
