import { performance } from 'node:perf_hooks';

import {
  buildRequestManager,
  MemoryCacheManager,
  MemoryQueueManager,
  normalizeRequest,
  SystemClock,
} from '@armlib/core';

import { collectGarbage } from './stats.js';

/** Options of {@link measureStatusReads}. */
export interface StatusReadOptions {
  /** Pending requests to fill the queue with. */
  readonly pending: number;
  /** Status reads to time at most (split into rounds, after a warm-up round). */
  readonly reads: number;
  /** Time budget for the reads of one measurement, ms. */
  readonly maxMs: number;
}

/** What {@link measureStatusReads} measured. */
export interface StatusReadResult {
  readonly pending: number;
  readonly fillMs: number;
  /** heapUsed after a full GC, before the fill and after it (NaN without `--expose-gc`). */
  readonly heapBeforeBytes: number;
  readonly heapAfterBytes: number;
  readonly reads: number;
  /** `status(key)` (with position and ETA) through the request manager, µs per read (median round). */
  readonly statusUs: number;
  /** The queue SPI's `position(key)` alone, µs per read (median round). */
  readonly positionUs: number;
  /**
   * `status(key)` of the same {@link HOT_KEYS} keys over and over, spread evenly across the queue,
   * µs per read (median round): every queue size reads as many distinct requests, so the records
   * read stay in cache alike and what is left is the cost of the queue's size to the read itself
   * (its index and position), not the latency of main memory.
   */
  readonly hotStatusUs: number;
}

/** Distinct keys read by the `hotStatusUs` measurement at every queue size. */
export const HOT_KEYS = 1_000;

/**
 * A stride near the golden ratio of the queue length and coprime with it: consecutive reads land far
 * apart (no position is favoured, and objects allocated in order are not read in order), and every
 * key is visited once per pass.
 */
function spreadStride(n: number): number {
  let stride = Math.max(1, Math.floor(n * 0.6180339887));
  while (gcd(stride, n) !== 1) stride++;
  return stride;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Fills fresh memory adapters with `pending` requests through the queue SPI (`enqueue`, the
 * fast path), then times `status(key)` reads of keys spread across the whole queue.
 */
export async function measureStatusReads(options: StatusReadOptions): Promise<StatusReadResult> {
  const clock = new SystemClock();
  const queue = new MemoryQueueManager({}, clock);
  const cache = new MemoryCacheManager({}, clock);
  const rm = buildRequestManager({ queue, cache, clock, settings: { maxQueueLength: 0, maxPendingPerOwner: 0 } });
  const keyAt = (i: number): string => `status-${String(i)}`;
  try {
    const measuredHeap = collectGarbage();
    const heapBeforeBytes = measuredHeap ? process.memoryUsage().heapUsed : Number.NaN;
    const fillStart = performance.now();
    for (let i = 0; i < options.pending; i++) {
      const request = normalizeRequest({ uri: '/bench/status', key: keyAt(i), group: `g${String(i % 4)}` });
      await queue.enqueue({ key: request.key, request, maxAttempts: 3 }, { limits: {} });
    }
    const fillMs = performance.now() - fillStart;
    collectGarbage();
    const heapAfterBytes = measuredHeap ? process.memoryUsage().heapUsed : Number.NaN;

    const stride = spreadStride(options.pending);
    const spread = (j: number): string => keyAt((j * stride) % options.pending);
    const statusTiming = await timeReads(options, async (j) => {
      const status = await rm.status(spread(j));
      if (status.state !== 'pending' || status.position === undefined) {
        throw new Error(`status of ${status.key} is ${status.state} without a position`);
      }
    });
    const positionTiming = await timeReads(options, async (j) => {
      if ((await queue.position(spread(j))) === undefined) throw new Error(`no position for ${spread(j)}`);
    });
    const hot = Math.min(HOT_KEYS, options.pending);
    const hotStride = Math.floor(options.pending / hot);
    const hotTiming = await timeReads(options, async (j) => {
      const status = await rm.status(keyAt((j % hot) * hotStride));
      if (status.position === undefined) throw new Error(`status of ${status.key} has no position`);
    });
    return {
      pending: options.pending,
      fillMs,
      heapBeforeBytes,
      heapAfterBytes,
      reads: statusTiming.reads,
      statusUs: statusTiming.usPerRead,
      positionUs: positionTiming.usPerRead,
      hotStatusUs: hotTiming.usPerRead,
    };
  } finally {
    await rm.close();
  }
}

/** Timed rounds per measurement; the median round is reported, which shrugs off GC pauses and JIT hiccups. */
const ROUNDS = 5;

/** Warms the read path up, then times {@link ROUNDS} rounds of reads and returns the median µs per read. */
async function timeReads(
  options: StatusReadOptions,
  read: (j: number) => Promise<void>,
): Promise<{ reads: number; usPerRead: number }> {
  let j = 0;
  await readFor(Math.max(1, Math.floor(options.reads / ROUNDS)), options.maxMs / (ROUNDS + 1));
  const rounds: number[] = [];
  let reads = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = performance.now();
    const n = await readFor(Math.max(1, Math.floor(options.reads / ROUNDS)), options.maxMs / (ROUNDS + 1));
    rounds.push(((performance.now() - start) * 1000) / n);
    reads += n;
  }
  rounds.sort((a, b) => a - b);
  return { reads, usPerRead: rounds[Math.floor(ROUNDS / 2)] ?? Number.NaN };

  async function readFor(max: number, ms: number): Promise<number> {
    const deadline = performance.now() + ms;
    let n = 0;
    while (n < max) {
      await read(j++);
      n++;
      // Checking the clock on every read would weigh on sub-µs reads.
      if ((n & 255) === 0 && performance.now() > deadline) break;
    }
    return n;
  }
}
