import { performance } from 'node:perf_hooks';

import { deferred, latencySummary } from './stats.js';

/**
 * A system whose request lifecycle is measured: submit → claim → write a result → complete →
 * status read. armlib and the bare baseline both implement it, so one driver measures both.
 */
export interface LifecycleSystem {
  /** Submits request number `index`. */
  submit(index: number): Promise<void>;
  /** Registers the callback told about each completion, with the request's index. */
  onCompleted(callback: (key: string, index: number) => void): void;
  /** Reads a status; true when it says completed. */
  isCompleted(key: string): Promise<boolean>;
  /** Starts the worker(s). */
  start(): void;
  close(): Promise<void>;
}

/** How hard and how long to drive a system. */
export interface DriveOptions {
  /** Lifecycles to run at most. */
  readonly count: number;
  /** Stop submitting after this much time, ms (in-flight requests still finish). */
  readonly maxMs: number;
  /** Requests submitted together (concurrent `submit` calls). */
  readonly batch: number;
  /** Cap on submitted-but-not-finished requests, so the queue stays fed but bounded. */
  readonly window: number;
}

/** What one drive measured. */
export interface ThroughputResult {
  readonly lifecycles: number;
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Submit call to completion event, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Status reads that did not say completed (should be 0). */
  readonly badReads: number;
}

/**
 * Keeps `window` requests in flight, submitting in batches, until `count` have been submitted or
 * `maxMs` has passed, then waits for the rest; every completion is followed by a status read.
 */
export async function drive(system: LifecycleSystem, options: DriveOptions): Promise<ThroughputResult> {
  const submittedAt = new Float64Array(options.count);
  const latencies = new Float64Array(options.count);
  let submitted = 0;
  let observed = 0;
  let finished = 0;
  let badReads = 0;
  let failure: Error | undefined;
  let producing = true;
  let space = deferred();
  const allDone = deferred();

  const finish = (ok: boolean): void => {
    if (!ok) badReads++;
    finished++;
    if (submitted - finished <= options.window / 2) space.resolve();
    if (!producing && finished === submitted) allDone.resolve();
  };
  system.onCompleted((key, index) => {
    latencies[observed++] = performance.now() - (submittedAt[index] ?? Number.NaN);
    system.isCompleted(key).then(finish, (error: unknown) => {
      failure ??= error instanceof Error ? error : new Error(String(error));
      finish(false);
    });
  });

  system.start();
  const start = performance.now();
  const deadline = start + options.maxMs;
  while (submitted < options.count && performance.now() < deadline && failure === undefined) {
    if (submitted - finished >= options.window) {
      space = deferred();
      await space.promise;
      continue;
    }
    const n = Math.min(options.batch, options.count - submitted);
    const batch: Promise<void>[] = [];
    for (let j = 0; j < n; j++) {
      const index = submitted++;
      submittedAt[index] = performance.now();
      batch.push(system.submit(index));
    }
    await Promise.all(batch);
  }
  producing = false;
  if (finished === submitted) allDone.resolve();
  await untilDoneOrStalled(allDone.promise, () => finished);
  const elapsedMs = performance.now() - start;
  if (failure !== undefined) throw failure;
  return {
    lifecycles: finished,
    elapsedMs,
    perSecond: (finished * 1000) / elapsedMs,
    ...latencySummary(latencies, observed),
    badReads,
  };
}

/** Time without a single completion after which a drive is declared stuck, ms. */
const STALL_MS = 30_000;

/** Waits for `done`, but fails when `progress()` stops moving for {@link STALL_MS}. */
async function untilDoneOrStalled(done: Promise<void>, progress: () => number): Promise<void> {
  let last = progress();
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_resolve, reject) => {
    timer = setInterval(() => {
      const now = progress();
      if (now === last)
        reject(new Error(`no lifecycle finished for ${String(STALL_MS / 1000)} s (stuck at ${String(now)})`));
      last = now;
    }, STALL_MS);
  });
  try {
    await Promise.race([done, stalled]);
  } finally {
    clearInterval(timer);
  }
}
