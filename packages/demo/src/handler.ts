import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

import type { Handler, Job } from '@armlib/core';

import { csvLines, renderJson, requestedFormats, simulation } from './report.js';

/** Options of {@link createReportHandler}. */
export interface ReportHandlerOptions {
  /**
   * Multiplies every simulated delay (a report "takes" its `estimatedMs` times this).
   * 0 runs without any timer, so a test does not depend on timing.
   */
  readonly workScale: number;
  /** Progress steps per report (default 10). */
  readonly steps?: number;
}

/** Work assumed for a request without `estimatedMs`, ms. */
const DEFAULT_WORK_MS = 1000;

/**
 * The demo's worker handler: "computes" a report in steps, reporting progress after each and
 * stopping as soon as its signal aborts, then streams the requested formats into the result.
 *
 * Two params make it misbehave on purpose: `simulate=fail-once` throws a retryable error
 * part-way through the first attempt; `simulate=cancel-while-running` writes partial output,
 * then hangs at half-way until it is cancelled (its partial output must never become visible).
 */
export function createReportHandler(options: ReportHandlerOptions): Handler {
  const steps = options.steps ?? 10;
  return async (job: Job): Promise<void> => {
    const mode = simulation(job.request);
    const stepMs = ((job.request.estimatedMs ?? DEFAULT_WORK_MS) * options.workScale) / steps;
    const failAt = mode === 'fail-once' && job.attempt === 1 ? Math.ceil(steps * 0.4) : undefined;
    const hangAt = mode === 'cancel-while-running' ? Math.ceil(steps / 2) : undefined;

    for (let step = 1; step <= steps; step++) {
      await pause(stepMs, job.signal);
      if (step === failAt) throw new Error('stock database timed out (simulated; the retry will succeed)');
      await job.progress(Math.round((step * 100) / steps));
      if (step === hangAt) {
        await job.write('csv', `partial output of ${job.key}\n`);
        await job.progress(Math.round((step * 100) / steps), 'stuck: ledger locked');
        await untilAborted(job.signal);
      }
    }

    for (const format of requestedFormats(job.request)) {
      if (format === 'json') await job.write('json', renderJson(job.request));
      else await job.write(format, streamed(csvLines(job.request)));
    }
  };
}

/** Waits `ms` on a real timer, or not at all when `ms` is 0; rejects as soon as `signal` aborts. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  if (ms <= 0) return;
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    // Surface the worker's reason (cancelled, lease lost, shutdown) rather than a bare AbortError.
    signal.throwIfAborted();
    throw error;
  }
}

/** Resolves never; rejects with the signal's reason once it aborts. */
async function untilAborted(signal: AbortSignal): Promise<never> {
  signal.throwIfAborted();
  return new Promise<never>((_resolve, reject) => {
    signal.addEventListener(
      'abort',
      () => {
        reject(signal.reason as Error);
      },
      { once: true },
    );
  });
}

/** Streams lines one chunk at a time, as a real report generator would. */
function streamed(lines: readonly string[]): Readable {
  return Readable.from(lines.map((line) => Buffer.from(line, 'utf8')));
}
