import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { AbortedError } from '@armlib/core';
import type { Handler, Job } from '@armlib/core';

import { contentFor, specOf, split, staleContentFor } from './content.js';
import type { JobSpec } from './content.js';
import type { EventLog } from './event-log.js';
import { errorCode } from './logging-queue.js';

/** Longest a handler waits for a gate or an abort before giving up (the test fails then). */
const WAIT_LIMIT_MS = 90_000;
const WAIT_STEP_MS = 10;

/** Blocks the event loop (no timers, no heartbeats) as a hung or descheduled worker would. */
export function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Bounded wait for a condition another process (or this job's signal) makes true. */
async function waitFor(condition: () => boolean): Promise<boolean> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await delay(WAIT_STEP_MS);
  }
  return true;
}

/** The abort reason of a signal (`cancelled`, `lease-lost`, `shutdown`), or the reason's code. */
function abortReasonOf(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  return AbortedError.is(reason) ? reason.reason : errorCode(reason);
}

/** Streams `text` as `chunks` pieces with a real await between them, so the write is in flight for a while. */
async function* chunked(
  job: Job,
  log: EventLog,
  format: string,
  text: string,
  spec: JobSpec,
): AsyncGenerator<Uint8Array> {
  const parts = split(text, spec.chunks);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) await delay(spec.chunkDelayMs);
    // A job that lost its lease or was cancelled stops producing output.
    job.signal.throwIfAborted();
    log.write({ ev: 'chunk', key: job.key, format, chunk: i });
    yield Buffer.from(parts[i] ?? '', 'utf8');
  }
}

async function writeAll(job: Job, log: EventLog, spec: JobSpec): Promise<void> {
  for (const format of spec.formats) {
    await job.write(format, chunked(job, log, format, contentFor(job.key, format), spec));
  }
}

/** Tries an action a holder that lost its lease must be refused; logs what happened. */
async function tryAfterLoss(job: Job, log: EventLog, what: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
    log.write({ ev: `${what}-ok`, key: job.key, attempt: job.attempt });
  } catch (error) {
    log.write({ ev: `${what}-err`, key: job.key, attempt: job.attempt, code: errorCode(error) });
  }
}

/**
 * The handler every worker child runs. What it does comes from the request body (see
 * {@link JobSpec}); it logs `start`, `abort` (with the reason, when the signal fires) and `end`.
 */
export function makeHandler(log: EventLog, gateDir: string): Handler {
  return async (job) => {
    const spec = specOf(job.request.body);
    const { key, attempt } = job;
    log.write({ ev: 'start', key, attempt });
    job.signal.addEventListener('abort', () => {
      log.write({ ev: 'abort', key, attempt, reason: abortReasonOf(job.signal) });
    });
    try {
      await run(job, log, gateDir, spec);
      log.write({ ev: 'end', key, attempt, outcome: 'returned' });
    } catch (error) {
      log.write({ ev: 'end', key, attempt, outcome: 'threw', code: errorCode(error) });
      throw error;
    }
  };
}

async function run(job: Job, log: EventLog, gateDir: string, spec: JobSpec): Promise<void> {
  const { key, attempt } = job;
  switch (spec.op) {
    case 'work':
      await writeAll(job, log, spec);
      return;
    case 'gate': {
      const gate = path.join(gateDir, spec.gate ?? 'gate');
      if (!(await waitFor(() => existsSync(gate) || job.signal.aborted))) throw new Error(`gate ${gate} never opened`);
      job.signal.throwIfAborted();
      await writeAll(job, log, spec);
      return;
    }
    case 'stall':
      if (attempt > 1) return writeAll(job, log, spec);
      blockEventLoop(spec.stallMs ?? 0);
      log.write({ ev: 'stall-end', key, attempt });
      // A stale holder carries on as if nothing happened: this must never become visible.
      for (const format of spec.formats) {
        await tryAfterLoss(job, log, 'write', () => job.write(format, staleContentFor(key, format)));
      }
      return;
    case 'stall-observe':
      if (attempt > 1) return writeAll(job, log, spec);
      blockEventLoop(spec.stallMs ?? 0);
      log.write({ ev: 'stall-end', key, attempt });
      // The next heartbeat finds the lease gone and aborts the signal.
      if (!(await waitFor(() => job.signal.aborted))) {
        log.write({ ev: 'no-abort', key, attempt });
        return;
      }
      log.write({ ev: 'observed-abort', key, attempt, reason: abortReasonOf(job.signal) });
      await tryAfterLoss(job, log, 'write', () => job.write(spec.formats[0] ?? 'csv', staleContentFor(key, 'x')));
      await tryAfterLoss(job, log, 'progress', () => job.progress(50, 'stale'));
      return;
    case 'commit-stall':
      // The first attempt writes distinct content and is stalled inside its commit (see node.ts).
      if (attempt > 1) return writeAll(job, log, spec);
      for (const format of spec.formats) await job.write(format, staleContentFor(key, format));
      return;
    case 'until-abort':
      if (!(await waitFor(() => job.signal.aborted))) log.write({ ev: 'no-abort', key, attempt });
      return;
  }
}
