// Streaming a large result through the file cache (put + get) against a plain file copy of the
// same size, with the peak RSS of the process over the whole run.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

import { FileCacheManager } from '@armlib/file';

import { peakRssBytes } from './peak-rss.js';
import { collectGarbage } from './stats.js';

/** Options of {@link measureFileStreaming}. */
export interface FileStreamingOptions {
  /** Bytes streamed each way (and copied). */
  readonly bytes: number;
  /** Directory to work in (a fresh subdirectory is made and removed); best on the disk the cache uses. */
  readonly dir: string;
  /** Durability of the cache under test. Default `normal` (the copy does not fsync either). */
  readonly durability?: 'normal' | 'full';
  /** Size of the chunks the producer yields. Default 64 KiB, as a Node stream hands them out. */
  readonly chunkBytes?: number;
}

/** What {@link measureFileStreaming} measured. */
export interface FileStreamingResult {
  readonly bytes: number;
  readonly durability: 'normal' | 'full';
  /** stage → write (generated chunk by chunk) → commit. */
  readonly putMs: number;
  /** get → the whole body consumed. */
  readonly getMs: number;
  /** `bytes` over put + get, MiB/s. */
  readonly putGetMiBps: number;
  /** read stream → write stream of a file of `bytes` (Node's default 64 KiB chunks): the plain copy. */
  readonly copyMs: number;
  readonly copyMiBps: number;
  /** putGetMiBps / copyMiBps (goal: at least 0.8). */
  readonly ratio: number;
  /** fs.copyFile of the same file (in the kernel, no bytes through user space), for reference. */
  readonly copyFileMs: number;
  readonly copyFileMiBps: number;
  /**
   * Peak RSS of the process up to the end of put + get, MiB (goal: at most 100 MB): the kernel's
   * high-water mark (see {@link peakRssBytes}), so no short peak between samples is missed.
   */
  readonly peakRssMiB: number;
  /** Highest RSS sampled during put, MiB (the rest of the peak is get's). */
  readonly putPeakRssMiB: number;
  /**
   * RSS just before put + get (after a GC when node runs with --expose-gc), MiB: what the process
   * held before the cache moved any byte (code of node, armlib and whatever else it loaded).
   */
  readonly baselineRssMiB: number;
  /** Highest RSS seen during the plain copies (and the writing of their source), MiB. */
  readonly copyPeakRssMiB: number;
}

const MiB = 1024 * 1024;
const SAMPLE_MS = 10;

/**
 * Streams `bytes` of generated data (never held whole) into the file cache and back out, then
 * copies a file of `bytes` with a read stream piped into a write stream, the fair "plain file
 * copy" (both sides move the bytes through user space once each way; fs.copyFile is timed too,
 * for reference). The cache's peak is the kernel's high-water mark of the process at the end of
 * get; RSS is also sampled every 10 ms and at every 64th chunk (for the put peak and the copies).
 * Run it in a fresh process for a meaningful peak: RSS includes everything loaded before, and
 * consumed chunks that V8 has not collected yet (it frees young buffers once 32 MiB of them have
 * piled up, twice its largest semi-space, whatever the result's size).
 */
export async function measureFileStreaming(options: FileStreamingOptions): Promise<FileStreamingResult> {
  const { bytes } = options;
  const durability = options.durability ?? 'normal';
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError('bytes must be a positive integer');
  const work = join(options.dir, `armlib-streaming-${randomBytes(6).toString('hex')}`);
  await mkdir(work, { recursive: true });
  const copyRss = new RssSampler();
  const rss = new RssSampler();
  const cache = new FileCacheManager({ dir: join(work, 'cache'), durability });
  try {
    // The cache first, so that its baseline is the fresh process's and not what the copies left.
    collectGarbage();
    const baselineRssMiB = process.memoryUsage.rss() / MiB;
    rss.start();
    const key = 'bench-streaming';
    let started = performance.now();
    const staged = await cache.stage(key);
    await staged.write('bin', generate(bytes, chunkBytes, rss, false), { contentType: 'application/octet-stream' });
    await staged.commit('persistent');
    const putMs = performance.now() - started;
    const putPeakRssMiB = rss.peak / MiB;

    started = performance.now();
    const body = await cache.get(key, 'bin');
    if (body === undefined) throw new Error('the streamed result is missing');
    let read = 0;
    let chunks = 0;
    for await (const chunk of body.body as AsyncIterable<Buffer>) {
      read += chunk.byteLength;
      if (++chunks % 64 === 0) rss.sample();
    }
    const getMs = performance.now() - started;
    const peakRssMiB = Math.max(rss.stop(), peakRssBytes() ?? 0) / MiB;
    if (read !== bytes) throw new Error(`read ${String(read)} bytes back, expected ${String(bytes)}`);
    await cache.delete(key);

    // Then the plain copies. Their source is written untimed, the same way, and flushed (the
    // cache's file was deleted, which drops its dirty pages), so that no phase pays for another's.
    copyRss.start();
    const source = join(work, 'source.bin');
    const target = join(work, 'target.bin');
    await pipeline(generate(bytes, chunkBytes, copyRss, true), createWriteStream(source));
    await flush(source);
    started = performance.now();
    await pipeline(createReadStream(source), createWriteStream(target));
    const copyMs = performance.now() - started;
    await flush(target);
    await rm(target);
    started = performance.now();
    await copyFile(source, target);
    const copyFileMs = performance.now() - started;
    await flush(target);
    await rm(target);
    await rm(source);
    const copyPeakRssMiB = copyRss.stop() / MiB;

    const putGetMiBps = bytes / MiB / ((putMs + getMs) / 1000);
    const copyMiBps = bytes / MiB / (copyMs / 1000);
    return {
      bytes,
      durability,
      putMs,
      getMs,
      putGetMiBps,
      copyMs,
      copyMiBps,
      ratio: putGetMiBps / copyMiBps,
      copyFileMs,
      copyFileMiBps: bytes / MiB / (copyFileMs / 1000),
      peakRssMiB,
      putPeakRssMiB,
      baselineRssMiB,
      copyPeakRssMiB,
    };
  } finally {
    copyRss.stop();
    rss.stop();
    await cache.close();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * `total` bytes in chunks of `chunkBytes`, each made when asked for: one buffer restamped for a
 * consumer that copies or writes a chunk before asking for the next (the cache), a fresh copy
 * for one that may queue it (a write stream).
 */
async function* generate(total: number, chunkBytes: number, rss: RssSampler, fresh: boolean): AsyncGenerator<Buffer> {
  const template = randomBytes(chunkBytes);
  let index = 0;
  for (let sent = 0; sent < total; sent += chunkBytes) {
    const size = Math.min(chunkBytes, total - sent);
    template.writeUInt32LE(index++ >>> 0, 0);
    if (index % 64 === 0) rss.sample();
    const chunk = size === chunkBytes ? template : template.subarray(0, size);
    yield fresh ? Buffer.from(chunk) : chunk;
  }
}

/** Writes a file's dirty pages out (untimed), so that they do not slow down the next phase. */
async function flush(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Keeps the highest RSS seen, from a timer and from explicit samples. */
class RssSampler {
  #peak = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  start(): void {
    this.sample();
    this.#timer = setInterval(() => {
      this.sample();
    }, SAMPLE_MS);
  }

  /** The highest RSS sampled so far, bytes. */
  get peak(): number {
    return this.#peak;
  }

  sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.#peak) this.#peak = rss;
  }

  /** Stops sampling and returns the peak, bytes. */
  stop(): number {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.sample();
    return this.#peak;
  }
}
