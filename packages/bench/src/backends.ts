import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { bullmqSystem, redisAvailable, startRedis } from './bullmq-system.js';
import { drive } from './drive.js';
import { measureDynamoCost } from './dynamo-cost.js';
import type { DynamoCostResult } from './dynamo-cost.js';
import type { DriveOptions, LifecycleSystem, ThroughputResult } from './drive.js';
import { fileProcessesSystem } from './file-processes.js';
import { FILE_BENCH_DURABILITY, FILE_BENCH_PARENT, fileSystem, removeDirs } from './file-system.js';
import type { FileStreamingResult } from './file-streaming.js';
import type { S3StreamingResult } from './s3-streaming.js';
import { collectGarbage } from './stats.js';

/** One lifecycle row of a backend. */
export type BackendRow = ThroughputResult & { readonly system: string; readonly concurrency: number };

/** What the backend section of the bench measured. */
export interface BackendResults {
  readonly lifecycle: BackendRow[];
  /** Why the BullMQ rows are missing, when they are. */
  readonly bullmqSkipped?: string;
  readonly fileStreaming?: FileStreamingResult;
  /**
   * The same streaming in a process started with {@link SMALL_YOUNG_GENERATION}: what the peak is
   * once V8 collects consumed chunks sooner (see docs/file-backend.md, *Memory while streaming*).
   */
  readonly fileStreamingSmallYoung?: FileStreamingResult;
  readonly s3Streaming?: S3StreamingResult;
  /** The S3 streaming in a process started with {@link SMALL_YOUNG_GENERATION}. */
  readonly s3StreamingSmallYoung?: S3StreamingResult;
  readonly dynamoCost?: DynamoCostResult;
  readonly errors: string[];
}

/**
 * Worker processes of the multi-process file rows: one, so that the rows use two processes as
 * BullMQ's do (its node process and redis-server), at each of the rows' concurrencies.
 */
export const FILE_WORKER_PROCESSES = 1;
/** Name of the single-process file rows. */
export const FILE_SYSTEM = `armlib file (${FILE_BENCH_DURABILITY})`;
/** Name of the multi-process file row, before its durability. */
export const FILE_PROCESSES_SYSTEM = `armlib file, ${String(FILE_WORKER_PROCESSES)} worker process`;

/** Concurrencies of the backend lifecycle rows. */
export const BACKEND_CONCURRENCIES = [10, 100] as const;

async function measure(system: LifecycleSystem, options: DriveOptions): Promise<ThroughputResult> {
  try {
    return await drive(system, options);
  } finally {
    await system.close();
    collectGarbage();
  }
}

/**
 * The node option of the second file streaming row: a young generation of 1 MiB semi-spaces
 * instead of up to 16 MiB, so that V8 frees the buffers a stream has consumed after a few MiB
 * of them rather than 32 MiB.
 */
export const SMALL_YOUNG_GENERATION = '--max-semi-space-size=1';

/** Runs one streaming measurement in a fresh node process (with `nodeOptions` too) and parses its JSON line. */
async function inChild<T>(kind: 'file' | 's3', bytes: number, nodeOptions: readonly string[] = []): Promise<T> {
  const script = fileURLToPath(new URL('./streaming-child.js', import.meta.url));
  return new Promise<T>((resolve, reject) => {
    const args = ['--expose-gc', '--openssl-legacy-provider', ...nodeOptions, script, kind, String(bytes)];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`${kind} streaming child exited with code ${String(code)}`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as T);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  });
}

/**
 * The file backend's lifecycle (durability `normal`) in one process and with the jobs in worker
 * processes, BullMQ's on a local redis-server with
 * `appendfsync everysec` when one is installed, and streaming through the file and S3 caches.
 */
export async function runBackendBenches(options: {
  readonly drive: DriveOptions;
  readonly fileStreamBytes: number;
  readonly s3StreamBytes: number;
  readonly say: (line: string) => void;
}): Promise<BackendResults> {
  const { say } = options;
  const lifecycle: BackendRow[] = [];
  const errors: string[] = [];
  const payload = Buffer.from(`id,region,amount\n${'0123456789,EU,42.00\n'.repeat(60)}`.slice(0, 1024));
  // Every file run's directory stays until the last file run is done (see fileSystem).
  const leftovers: string[] = [];
  try {
    await measure(fileSystem(10, payload, 'warmup', FILE_BENCH_PARENT, leftovers), {
      ...options.drive,
      count: 2000,
      maxMs: 1000,
    });
    for (const concurrency of BACKEND_CONCURRENCIES) {
      say(`armlib file (durability ${FILE_BENCH_DURABILITY}), concurrency ${String(concurrency)}…`);
      const system = fileSystem(concurrency, payload, `f${String(concurrency)}`, FILE_BENCH_PARENT, leftovers);
      const result = await measure(system, options.drive);
      lifecycle.push({ system: FILE_SYSTEM, concurrency, ...result });
    }
    for (const concurrency of BACKEND_CONCURRENCIES) {
      say(
        `armlib file (durability ${FILE_BENCH_DURABILITY}), this process submitting, ${String(FILE_WORKER_PROCESSES)} worker process, concurrency ${String(concurrency)}…`,
      );
      const processes = await fileProcessesSystem(
        FILE_WORKER_PROCESSES,
        concurrency,
        payload,
        `fp${String(concurrency)}`,
        FILE_BENCH_PARENT,
        leftovers,
      );
      lifecycle.push({
        system: `${FILE_PROCESSES_SYSTEM} (${FILE_BENCH_DURABILITY})`,
        concurrency,
        ...(await measure(processes, options.drive)),
      });
    }
  } finally {
    removeDirs(leftovers);
  }
  let bullmqSkipped: string | undefined;
  if (redisAvailable()) {
    const redis = await startRedis();
    try {
      for (const concurrency of BACKEND_CONCURRENCIES) {
        say(`BullMQ on redis-server (appendfsync everysec), concurrency ${String(concurrency)}…`);
        const result = await measure(
          bullmqSystem(concurrency, payload, `b${String(concurrency)}`, redis),
          options.drive,
        );
        lifecycle.push({ system: 'BullMQ (redis everysec)', concurrency, ...result });
      }
    } finally {
      await redis.stop();
    }
  } else {
    bullmqSkipped = 'redis-server is not installed (apt-get install redis-server), so the BullMQ rows are skipped';
    say(`note: ${bullmqSkipped}`);
  }
  // Each of these is optional: a failure is recorded and the others still run.
  const attempt = async <T>(what: string, run: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await run();
    } catch (error) {
      errors.push(`${what}: ${String(error)}`);
      return undefined;
    }
  };
  say(`file cache: streaming ${String(options.fileStreamBytes / 2 ** 20)} MiB through put and get…`);
  const fileStreaming = await attempt('file streaming', () =>
    inChild<FileStreamingResult>('file', options.fileStreamBytes),
  );
  say(`file cache: the same with node ${SMALL_YOUNG_GENERATION}…`);
  const fileStreamingSmallYoung = await attempt(`file streaming (${SMALL_YOUNG_GENERATION})`, () =>
    inChild<FileStreamingResult>('file', options.fileStreamBytes, [SMALL_YOUNG_GENERATION]),
  );
  say(`S3 cache on s3rver: streaming ${String(options.s3StreamBytes / 2 ** 20)} MiB through put and get…`);
  const s3Streaming = await attempt('s3 streaming', () => inChild<S3StreamingResult>('s3', options.s3StreamBytes));
  say(`S3 cache: the same with node ${SMALL_YOUNG_GENERATION}…`);
  const s3StreamingSmallYoung = await attempt(`s3 streaming (${SMALL_YOUNG_GENERATION})`, () =>
    inChild<S3StreamingResult>('s3', options.s3StreamBytes, [SMALL_YOUNG_GENERATION]),
  );
  say('DynamoDB Local: requests and capacity units of one lifecycle…');
  const dynamoCost = await attempt('dynamodb cost', measureDynamoCost);
  return {
    lifecycle,
    ...(dynamoCost === undefined ? {} : { dynamoCost }),
    ...(bullmqSkipped === undefined ? {} : { bullmqSkipped }),
    ...(fileStreaming === undefined ? {} : { fileStreaming }),
    ...(fileStreamingSmallYoung === undefined ? {} : { fileStreamingSmallYoung }),
    ...(s3Streaming === undefined ? {} : { s3Streaming }),
    ...(s3StreamingSmallYoung === undefined ? {} : { s3StreamingSmallYoung }),
    errors,
  };
}
