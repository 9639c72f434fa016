// Streams one large result through the S3 cache and back (issue #4: 200 MB with peak RSS ≤ 100 MB).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { S3Client } from '@aws-sdk/client-s3';

import { S3CacheManager } from '@armlib/s3';

import { peakRssBytes } from './peak-rss.js';

/** What {@link measureS3Streaming} reports. */
export interface S3StreamingResult {
  /** Bytes streamed each way. */
  bytes: number;
  /** stage().write() of the whole stream plus commit(), ms. */
  putMs: number;
  /** get() plus reading the whole body, ms. */
  getMs: number;
  putMiBps: number;
  getMiBps: number;
  /**
   * Peak resident set size of this process up to the end of the get, MiB: the kernel's high-water
   * mark (see {@link peakRssBytes}). s3rver runs in a child process: it is the server.
   */
  peakRssMiB: number;
  /** Highest RSS sampled during the put, MiB (the rest of the peak is the get's). */
  putPeakRssMiB: number;
  /**
   * RSS just before the first byte moved (after a GC when node runs with --expose-gc), MiB: node,
   * the AWS SDK and armlib's code. The streaming's own memory is what the peak adds to it.
   */
  baselineRssMiB: number;
}

const CHUNK_BYTES = 64 * 1024;
const BUCKET = 'armlib-bench';
const MIB = 1024 * 1024;
/** RSS sampling period; the stream loops sample too, so short peaks between ticks are seen. */
const SAMPLE_MS = 10;

/**
 * Starts its own s3rver (a child process, as S3 is another machine, on a random loopback port, in
 * a temporary directory removed afterwards), streams `bytes` of generated data chunk by chunk
 * through `stage().write()` + `commit()` and back through `get()`, checks the bytes (sha256), and
 * reports the times and the peak RSS of this process. The data is never held whole: the put holds
 * its part buffers (part size × (queue size + 1): 5 MiB × 3 here, reused), the get the response
 * stream's chunks until V8 collects them.
 */
export async function measureS3Streaming(options: { bytes: number }): Promise<S3StreamingResult> {
  const { bytes } = options;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError('bytes must be a positive integer');
  const directory = await mkdtemp(join(tmpdir(), 'armlib-bench-s3-'));
  let server: ChildProcess | undefined;
  let client: S3Client | undefined;
  let cache: S3CacheManager | undefined;
  try {
    const started = await startS3rver(directory);
    server = started.child;
    client = new S3Client({
      endpoint: `http://127.0.0.1:${String(started.port)}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    cache = new S3CacheManager({ bucket: BUCKET, prefix: 'bench/', client, partSizeBytes: 5 * MIB, queueSize: 2 });
    await cache.ensureBucket();
    return await stream(cache, bytes);
  } finally {
    await cache?.delete('bench-large').catch(() => 0);
    await cache?.close();
    client?.destroy();
    if (server !== undefined && server.exitCode === null) {
      const exited = once(server, 'exit');
      server.kill();
      await exited;
    }
    await rm(directory, { recursive: true, force: true });
  }
}

/** Runs s3rver's CLI on port 0 and reads the port it printed. */
async function startS3rver(directory: string): Promise<{ child: ChildProcess; port: number }> {
  const bin = join(dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const child = spawn(
    process.execPath,
    // s3rver encrypts listing tokens with DES, which OpenSSL 3 keeps in its legacy provider.
    ['--openssl-legacy-provider', bin, '-d', directory, '-a', '127.0.0.1', '-p', '0', '--silent'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  // Piped above (spawn's typing knows it): never null.
  const stdout = child.stdout;
  for await (const chunk of stdout as AsyncIterable<Buffer>) {
    output += chunk.toString('utf8');
    const match = /listening on [^:\s]+:(\d+)/.exec(output);
    if (match?.[1] !== undefined) {
      stdout.resume();
      return { child, port: Number(match[1]) };
    }
  }
  throw new Error(`s3rver exited before listening: ${output}`);
}

async function stream(cache: S3CacheManager, bytes: number): Promise<S3StreamingResult> {
  (globalThis as { gc?: () => void }).gc?.();
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  const sampler = setInterval(sample, SAMPLE_MS);
  try {
    const written = createHash('sha256');
    const putStart = performance.now();
    const staged = await cache.stage('bench-large');
    await staged.write('bin', generate(bytes, written, sample), { contentType: 'application/octet-stream' });
    await staged.commit('temporary');
    const putMs = performance.now() - putStart;
    sample();
    const putPeak = peak;

    const getStart = performance.now();
    const found = await cache.get('bench-large', 'bin');
    if (found === undefined) throw new Error('the committed result is not readable');
    const read = createHash('sha256');
    let readBytes = 0;
    for await (const chunk of found.body as AsyncIterable<Buffer>) {
      read.update(chunk);
      readBytes += chunk.byteLength;
      sample();
    }
    const getMs = performance.now() - getStart;
    if (readBytes !== bytes || read.digest('hex') !== written.digest('hex')) {
      throw new Error(`read back ${String(readBytes)} bytes that differ from the ${String(bytes)} written`);
    }
    sample();
    return {
      bytes,
      putMs,
      getMs,
      putMiBps: bytes / MIB / (putMs / 1000),
      getMiBps: bytes / MIB / (getMs / 1000),
      peakRssMiB: Math.max(peak, peakRssBytes() ?? 0) / MIB,
      putPeakRssMiB: putPeak / MIB,
      baselineRssMiB: baseline / MIB,
    };
  } finally {
    clearInterval(sampler);
  }
}

/**
 * `total` bytes of cheap, non-repeating data in 64 KiB chunks, hashed as they go out. One buffer
 * is restamped for every chunk: `write` copies each chunk before asking for the next (the SPI's
 * contract), so a producer may reuse its buffer, and the garbage measured is the cache's own.
 */
async function* generate(
  total: number,
  hash: ReturnType<typeof createHash>,
  sample: () => void,
): AsyncGenerator<Uint8Array> {
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let offset = 0;
  for (let n = 0; offset < total; n++) {
    const size = Math.min(CHUNK_BYTES, total - offset);
    const chunk = buffer.subarray(0, size);
    // A counter per 4 bytes: every chunk differs, and nothing compresses it away.
    for (let i = 0; i + 4 <= size; i += 4) chunk.writeUInt32LE((n * CHUNK_BYTES + i) >>> 0, i);
    chunk.fill(0, size - (size % 4));
    hash.update(chunk);
    offset += size;
    sample();
    yield chunk;
  }
}
