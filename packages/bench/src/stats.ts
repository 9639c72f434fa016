/** The value at quantile `q` (0..1) of ascending `sorted` samples (nearest rank), or NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** p50 and p99 of the first `n` samples (sorted in place). */
export function latencySummary(samples: Float64Array, n: number): { p50Ms: number; p99Ms: number } {
  const used = samples.subarray(0, n).sort();
  return { p50Ms: quantile(used, 0.5), p99Ms: quantile(used, 0.99) };
}

/** Runs a full garbage collection when node runs with `--expose-gc`; says whether it could. */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return false;
  gc();
  gc();
  return true;
}

/** A promise with its resolve function, for signalling between a producer and event handlers. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
