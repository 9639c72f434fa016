import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

import { normalizeRequest, REQUEST_EVENT_NAMES } from '@armlib/core';
import type {
  BatchRequest,
  ClaimOptions,
  Job,
  Lease,
  ManagerEvents,
  NewQueueEntry,
  QueueManager,
  RequestManager,
  ResultBody,
} from '@armlib/core';

import type { Deferred, TestEnv } from './context.js';

/** A request of the suite, keyed explicitly so that tests read clearly. */
export function req(key: string, extra: Partial<BatchRequest> = {}): BatchRequest {
  return { uri: '/conformance/report', key, ...extra };
}

/** A queue entry for SPI-level tests. */
export function entry(
  key: string,
  extra: Partial<BatchRequest> = {},
  options: { maxAttempts?: number; pendingExpiresAt?: number } = {},
): NewQueueEntry {
  const request = normalizeRequest(req(key, extra));
  return {
    key,
    request,
    maxAttempts: options.maxAttempts ?? 3,
    ...(options.pendingExpiresAt === undefined ? {} : { pendingExpiresAt: options.pendingExpiresAt }),
  };
}

/** One recorded event. */
export interface LoggedEvent {
  readonly name: keyof ManagerEvents;
  readonly payload: ManagerEvents[keyof ManagerEvents];
  /** Manual-clock time of the event. */
  readonly at: number;
}

/** Records every transition event of one or more managers. */
export class EventLog {
  readonly entries: LoggedEvent[] = [];

  constructor(env: TestEnv, ...managers: RequestManager[]) {
    for (const manager of managers) {
      for (const name of REQUEST_EVENT_NAMES) {
        manager.events.on(name, (payload) => {
          this.entries.push({ name, payload, at: env.clock.now() });
        });
      }
    }
  }

  /** Payloads of one event, optionally for one key. */
  of<K extends keyof ManagerEvents>(name: K, key?: string): ManagerEvents[K][] {
    return this.entries
      .filter((e) => e.name === name && (key === undefined || keyOfPayload(e.payload) === key))
      .map((e) => e.payload as ManagerEvents[K]);
  }

  /** Times at which one event happened for a key. */
  timesOf(name: keyof ManagerEvents, key?: string): number[] {
    return this.entries
      .filter((e) => e.name === name && (key === undefined || keyOfPayload(e.payload) === key))
      .map((e) => e.at);
  }

  /** Names of every event for a key, in order. */
  namesFor(key: string): string[] {
    return this.entries.filter((e) => keyOfPayload(e.payload) === key).map((e) => e.name);
  }
}

function keyOfPayload(payload: unknown): string | undefined {
  return typeof payload === 'object' && payload !== null && 'key' in payload ? String(payload.key) : undefined;
}

/** Resolves with the first payload of `name` that concerns `key`. */
export function nextEvent<K extends keyof ManagerEvents>(
  manager: RequestManager,
  name: K,
  key?: string,
): Promise<ManagerEvents[K]> {
  return new Promise((resolve) => {
    const listener = (payload: ManagerEvents[K]): void => {
      if (key !== undefined && keyOfPayload(payload) !== key) return;
      manager.events.off(name, listener);
      resolve(payload);
    };
    manager.events.on(name, listener);
  });
}

/** Reads a whole stream into one buffer. */
export async function collect(stream: Readable | AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(toBuffer(chunk));
  return Buffer.concat(chunks);
}

/** The body of a read result as text, or undefined when there was none. */
export async function readText(result: ResultBody | undefined): Promise<string | undefined> {
  if (result === undefined) return undefined;
  return (await collect(result.body)).toString('utf8');
}

/** Converts a stream chunk to a Buffer. */
export function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new TypeError(`unexpected stream chunk of type ${typeof chunk}`);
}

/** SHA-256 of a stream, with the largest chunk seen and the byte count. */
export async function hashStream(
  stream: Readable | AsyncIterable<unknown>,
): Promise<{ sha256: string; bytes: number; maxChunk: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let maxChunk = 0;
  for await (const chunk of stream) {
    const buf = toBuffer(chunk);
    hash.update(buf);
    bytes += buf.length;
    maxChunk = Math.max(maxChunk, buf.length);
  }
  return { sha256: hash.digest('hex'), bytes, maxChunk };
}

/**
 * A deterministic pseudo-random byte stream of `total` bytes in `chunkBytes` chunks, generated
 * lazily (so memory does not hold the whole result), with its SHA-256 available once consumed.
 */
export function generatedBytes(
  total: number,
  chunkBytes = 64 * 1024,
): { chunks: AsyncIterable<Uint8Array>; sha256: () => string; produced: () => number } {
  const hash = createHash('sha256');
  let produced = 0;
  let digest: string | undefined;
  let state = 0x9e3779b9;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    while (produced < total) {
      const size = Math.min(chunkBytes, total - produced);
      const buf = Buffer.allocUnsafe(size);
      for (let i = 0; i < size; i += 4) {
        // xorshift32: cheap, deterministic, not compressible to nothing.
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        const rest = Math.min(4, size - i);
        for (let j = 0; j < rest; j++) buf[i + j] = (state >>> (8 * j)) & 0xff;
      }
      hash.update(buf);
      produced += size;
      yield buf;
      await Promise.resolve();
    }
  }
  return {
    chunks: chunks(),
    sha256: () => (digest ??= hash.digest('hex')),
    produced: () => produced,
  };
}

/** Bytes of a string as an async iterable, for cache SPI writes. */
export async function* bytesOf(text: string): AsyncGenerator<Uint8Array> {
  await Promise.resolve();
  yield Buffer.from(text, 'utf8');
}

/**
 * A handler whose jobs wait on a per-key gate the test opens, recording who started when and the
 * most that ran at once (overall and per group).
 */
export class GatedHandler {
  readonly started: string[] = [];
  readonly jobs = new Map<string, Job>();
  readonly startTimes = new Map<string, number[]>();
  readonly running = new Set<string>();
  maxRunning = 0;
  readonly maxRunningByGroup = new Map<string, number>();
  readonly #gates = new Map<string, Deferred<void>>();

  constructor(
    private readonly env: TestEnv,
    private readonly body: (job: Job) => Promise<void> = () => Promise.resolve(),
  ) {}

  /** The handler to pass to `process`. */
  readonly handler = async (job: Job): Promise<void> => {
    this.started.push(job.key);
    this.jobs.set(job.key, job);
    this.startTimes.set(job.key, [...(this.startTimes.get(job.key) ?? []), this.env.clock.now()]);
    this.running.add(job.key);
    this.maxRunning = Math.max(this.maxRunning, this.running.size);
    const group = job.request.group ?? 'default';
    const inGroup = [...this.running].filter((k) => (this.jobs.get(k)?.request.group ?? 'default') === group).length;
    this.maxRunningByGroup.set(group, Math.max(this.maxRunningByGroup.get(group) ?? 0, inGroup));
    try {
      await this.gate(job.key).promise;
      await this.body(job);
    } finally {
      this.running.delete(job.key);
      this.#gates.delete(job.key);
    }
  };

  /** The gate of a key (created on first use). */
  gate(key: string): Deferred<void> {
    let gate = this.#gates.get(key);
    if (gate === undefined) {
      gate = this.env.defer();
      this.#gates.set(key, gate);
    }
    return gate;
  }

  /** Lets the job of `key` go on. */
  open(key: string): void {
    this.gate(key).resolve();
  }

  /** Waits (moving the clock by `stepMs`) until `count` jobs have started. */
  async waitStarted(count: number, stepMs = 0, maxMs?: number): Promise<void> {
    await this.env.until(() => this.started.length >= count, {
      stepMs,
      ...(maxMs === undefined ? {} : { maxMs }),
      what: `${String(count)} started jobs (have ${String(this.started.length)}: ${this.started.join(', ')})`,
    });
  }
}

/** Moves the clock (by `stepMs`) until every key reports a terminal state. */
export async function untilTerminal(
  env: TestEnv,
  manager: RequestManager,
  keys: readonly string[],
  stepMs = 0,
  maxMs?: number,
  wallMs?: number,
): Promise<void> {
  const terminal = new Set(['completed', 'failed', 'cancelled', 'expired']);
  await env.until(
    async () => {
      for (const key of keys) if (!terminal.has((await manager.status(key)).state)) return false;
      return true;
    },
    {
      stepMs,
      ...(maxMs === undefined ? {} : { maxMs }),
      ...(wallMs === undefined ? {} : { wallMs }),
      what: `terminal states of ${keys.join(', ')}`,
    },
  );
}

/**
 * Runs requests to completion with a temporary worker that writes `csv` (the key's text) and
 * stops it afterwards.
 */
export async function completeWithWorker(
  env: TestEnv,
  manager: RequestManager,
  requests: readonly BatchRequest[],
): Promise<string[]> {
  const keys: string[] = [];
  for (const r of requests) keys.push((await manager.submit(r)).key);
  const worker = manager.process(async (job) => {
    await job.write('csv', `result of ${job.key}`);
  });
  await untilTerminal(env, manager, keys, env.settings.pollMs);
  await env.drive(worker.stop(), { stepMs: env.settings.pollMs, what: 'worker.stop()' });
  return keys;
}

/** Commits a result straight through the cache SPI. */
export async function putResult(
  env: TestEnv,
  key: string,
  area: 'persistent' | 'temporary',
  formats: Record<string, string> = { csv: `cached ${key}` },
): Promise<void> {
  const staged = await env.cache.stage(key);
  for (const [format, text] of Object.entries(formats)) {
    await staged.write(format, bytesOf(text), { contentType: format === 'json' ? 'application/json' : 'text/csv' });
  }
  await staged.commit(area);
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to be rejected, but it resolved');
}

/**
 * The adapter's `claimMany`, bound, for the tests of it; skips the test (reported as skipped) when
 * the adapter has none: it is optional, and a worker then claims one request at a time.
 */
export function claimManyOf(
  test: Mocha.Context,
  queue: QueueManager,
): (options: ClaimOptions, max: number) => Promise<Lease[]> {
  const claimMany = queue.claimMany?.bind(queue);
  // Skipped for an adapter without the optional claimMany: the test is about that method. Every
  // adapter in this repository has it, so the suites here run it.
  if (claimMany === undefined) test.skip();
  return claimMany;
}
