import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Queue, Worker } from 'bullmq';

import type { LifecycleSystem } from './drive.js';

/** A redis-server the bench started, with append-only persistence flushed every second. */
export interface RedisServer {
  readonly port: number;
  stop(): Promise<void>;
}

/** Whether `redis-server` can be run here; the BullMQ row is skipped (with a note) when not. */
export function redisAvailable(): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/**
 * Starts `redis-server` on a free loopback port with `appendonly yes` and `appendfsync everysec`
 * (the durability BullMQ users typically run with), in a throw-away directory.
 */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'armlib-bench-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      reject(new Error('redis-server did not start within 10 s'));
    }, 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with code ${String(code)}`));
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.removeAllListeners('data');
        child.stdout?.resume();
        resolve();
      }
    });
  });
  return {
    port,
    async stop() {
      const exited = new Promise<void>((resolve) =>
        child.once('exit', () => {
          resolve();
        }),
      );
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The same lifecycle on BullMQ over a local Redis: `add` with a job id derived from the request
 * (BullMQ's own dedupe), a `Worker` whose processor returns the 1 KB csv (stored in Redis as the
 * job's return value), completion through the worker's `completed` event, then `getJobState`.
 */
export function bullmqSystem(
  concurrency: number,
  payload: Uint8Array,
  run: string,
  redis: RedisServer,
): LifecycleSystem {
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const name = `bench-${run}`;
  const queue = new Queue(name, { connection });
  const result = Buffer.from(payload).toString('utf8');
  let worker: Worker | undefined;
  let listener: ((key: string, index: number) => void) | undefined;
  return {
    async submit(index) {
      const params = JSON.stringify({ uri: '/bench/report', params: { run, i: String(index) } });
      const jobId = createHash('sha256').update(params).digest('hex').slice(0, 32);
      await queue.add('report', { i: index }, { jobId });
    },
    onCompleted(callback) {
      listener = callback;
    },
    async isCompleted(key) {
      return (await queue.getJobState(key)) === 'completed';
    },
    start() {
      worker = new Worker(name, () => Promise.resolve(result), { connection, concurrency });
      worker.on('completed', (job) => {
        const data = job.data as { i?: unknown };
        listener?.(job.id ?? '', typeof data.i === 'number' ? data.i : Number.NaN);
      });
    },
    async close() {
      await worker?.close();
      await queue.obliterate({ force: true });
      await queue.close();
    },
  };
}
