/**
 * A worker host of the four-workers test: one process with its own RequestManager over a
 * DynamoQueueManager on the shared table (client built from `clientConfig`, as a deployed host
 * would) and the file cache on the shared directory. It reports every claim, fenced call and
 * handler start/end to the test over IPC, and takes a few commands (submit, probe, open, stop).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { AbortedError, buildRequestManager, SystemClock } from '@armlib/core';
import type { Job, RequestManager, Worker } from '@armlib/core';
import { FileCacheManager } from '@armlib/file';

import { DynamoQueueManager } from '../../../src/index.js';
import { hostQueueOptions } from '../support/host-options.js';
import { CHILD_CONFIG_ENV, takeoverMarker, URI } from '../support/protocol.js';
import type {
  ChildCommand,
  ChildConfig,
  ChildMessage,
  JobReport,
  ProbeReply,
  SubmitReply,
} from '../support/protocol.js';
import { retryingBackend } from '../support/retry.js';
import { TracingQueue } from '../support/tracing-queue.js';

/** Longest a stalled first attempt blocks its process when the takeover never comes. */
const STALL_LIMIT_MS = 60_000;
/** Longest a handler waits for its signal or its gate (the test's own deadlines are shorter). */
const WAIT_LIMIT_MS = 60_000;

const raw = process.env[CHILD_CONFIG_ENV];
if (raw === undefined) throw new Error(`${CHILD_CONFIG_ENV} is not set`);
const config = JSON.parse(raw) as ChildConfig;

function send(message: ChildMessage, then?: () => void): void {
  // The test may already be gone (it kills children in its after hooks): nothing to tell then.
  if (process.connected) process.send?.(message, undefined, {}, () => then?.());
}

function report(job: Job, fields: Omit<JobReport, 'source' | 'pid' | 'key' | 'attempt'>): void {
  send({
    type: 'job',
    report: { source: config.name, pid: process.pid, key: job.key, attempt: job.attempt, ...fields },
  });
}

function describe(error: unknown): string {
  if (typeof error !== 'object' || error === null) return String(error);
  const e = error as { name?: unknown; code?: unknown };
  return `${typeof e.name === 'string' ? e.name : 'Error'}${typeof e.code === 'string' ? `/${e.code}` : ''}`;
}

function abortReason(signal: AbortSignal): string | undefined {
  if (!signal.aborted) return undefined;
  const reason: unknown = signal.reason;
  return AbortedError.is(reason) ? reason.reason : describe(reason);
}

/** Resolves true when the signal aborts, false after `limitMs` (a bound, never a synchronisation). */
function abortedWithin(signal: AbortSignal, limitMs: number): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(false);
    }, limitMs);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

const opened = new Set<string>();
const gateWaiters = new Map<string, () => void>();

function gate(key: string, signal: AbortSignal): Promise<void> {
  if (opened.has(key)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      gateWaiters.delete(key);
      resolve();
    };
    const timer = setTimeout(done, WAIT_LIMIT_MS);
    gateWaiters.set(key, done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function resultLine(job: Job): string {
  return `${job.key},${String(job.attempt)},${config.name},${String(process.pid)}\n`;
}

/**
 * First attempt of a stall request: blocks the event loop (no heartbeat can run) until the test
 * has seen another worker take the request over, then lets the overdue heartbeat find the lease
 * gone and tries to write anyway.
 */
async function stall(job: Job): Promise<void> {
  const marker = join(config.markerDir, takeoverMarker(job.key));
  const deadline = Date.now() + STALL_LIMIT_MS;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(marker) && Date.now() < deadline) Atomics.wait(cell, 0, 0, 20);
  const aborted = await abortedWithin(job.signal, WAIT_LIMIT_MS);
  let writeError = 'none';
  try {
    await job.write('csv', `stale ${resultLine(job)}`);
  } catch (error) {
    writeError = describe(error);
  }
  report(job, { phase: 'end', aborted, ...reasonOf(job), writeError });
}

/** A job held until its signal aborts (the test cancels it from another process). */
async function hold(job: Job): Promise<void> {
  let heartbeatsAtAbort = -1;
  // Read at the abort itself: the worker aborts right after the heartbeat that saw the cancel.
  job.signal.addEventListener(
    'abort',
    () => {
      heartbeatsAtAbort = traced.heartbeatsStarted(job.key);
    },
    { once: true },
  );
  if (job.signal.aborted) heartbeatsAtAbort = traced.heartbeatsStarted(job.key);
  const aborted = await abortedWithin(job.signal, WAIT_LIMIT_MS);
  let writeError = 'none';
  try {
    await job.write('csv', `cancelled? ${resultLine(job)}`);
  } catch (error) {
    writeError = describe(error);
  }
  report(job, { phase: 'end', aborted, ...reasonOf(job), writeError, heartbeatsAtAbort });
}

function reasonOf(job: Job): { reason?: string } {
  const reason = abortReason(job.signal);
  return reason === undefined ? {} : { reason };
}

async function handle(job: Job): Promise<void> {
  report(job, { phase: 'start' });
  const uri = job.request.uri;
  if (uri === URI.stall && job.attempt === 1) return stall(job);
  if (uri === URI.hold) return hold(job);
  if (uri === URI.gate) await gate(job.key, job.signal);
  await job.write('csv', resultLine(job));
  report(job, { phase: 'end', aborted: job.signal.aborted, ...reasonOf(job) });
}

const clock = new SystemClock();
const dynamo = new DynamoQueueManager(hostQueueOptions(config.endpoint, config.region, config.tableName), clock);
const traced = new TracingQueue(dynamo, (event) => {
  send({ type: 'trace', event: { ...event, source: config.name, pid: process.pid } });
});
const manager: RequestManager = buildRequestManager({
  queue: traced,
  cache: new FileCacheManager({ dir: config.cacheDir }, clock),
  clock,
  settings: {
    leaseMs: config.leaseMs,
    pollMs: config.pollMs,
    sweepMs: config.sweepMs,
    maxAttempts: config.maxAttempts,
    retryBaseMs: 100,
    retryMaxMs: 1_000,
  },
});
manager.events.on('error', ({ error, context }) => {
  // Kept on stderr: the test prints the tail when something fails.
  process.stderr.write(
    `${config.name}: ${context}: ${describe(error)} ${error instanceof Error ? error.message : ''}\n`,
  );
});
const worker: Worker = manager.process(handle, {
  concurrency: config.concurrency,
  leaseMs: config.leaseMs,
  pollMs: config.pollMs,
});

async function submit(requests: ChildCommand & { cmd: 'submit' }): Promise<SubmitReply[]> {
  return Promise.all(
    requests.requests.map(async (request): Promise<SubmitReply> => {
      try {
        const status = await retryingBackend('submit', () => manager.submit(request));
        return { key: status.key, state: status.state };
      } catch (error) {
        return {
          key: request.key ?? request.uri,
          error: `${describe(error)}: ${error instanceof Error ? error.message : ''}`,
        };
      }
    }),
  );
}

async function run(command: ChildCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'submit':
      return submit(command);
    case 'probe': {
      const reply: ProbeReply = {
        claimCalls: traced.claimCalls,
        heartbeatsStarted: command.key === undefined ? 0 : traced.heartbeatsStarted(command.key),
        paused: await traced.isPaused(),
      };
      return reply;
    }
    case 'open': {
      opened.add(command.key);
      gateWaiters.get(command.key)?.();
      return true;
    }
    case 'stop': {
      await worker.stop({ graceMs: 0 });
      await manager.close();
      return true;
    }
  }
}

process.on('message', (command: ChildCommand) => {
  run(command).then(
    (value) => {
      // After a stop, the channel closes once the reply is out, and the process ends.
      send(
        { type: 'reply', id: command.id, ok: true, value },
        command.cmd === 'stop'
          ? () => {
              process.disconnect();
            }
          : undefined,
      );
    },
    (error: unknown) => {
      send({
        type: 'reply',
        id: command.id,
        ok: false,
        error: `${describe(error)}: ${error instanceof Error ? error.message : ''}`,
      });
    },
  );
});
// The test died or let go: a worker must not outlive it.
process.on('disconnect', () => {
  process.exit(0);
});

send({ type: 'ready', pid: process.pid });
