import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

import { S3CacheManager } from '../../src/index.js';

/**
 * Where the tests store objects. By default an in-process s3rver on a random loopback port with a
 * temporary directory; with `ARMLIB_TEST_REAL_AWS=1` real S3,
 * using the default credential chain, `AWS_REGION` and the bucket `ARMLIB_TEST_S3_BUCKET`.
 *
 * Isolation: one bucket per test process, and one fresh key prefix per {@link S3TestEnv.newPrefix}
 * call (every conformance factory call and every own test takes one).
 */
export interface S3TestEnv {
  readonly bucket: string;
  /** Client settings for a new client (its own connection pool, as another process would have). */
  readonly clientConfig: S3ClientConfig;
  /** A client shared by the tests (never destroyed by a cache: passed as `client`). */
  readonly client: S3Client;
  readonly real: boolean;
  /** A fresh, unused key prefix. */
  newPrefix(): string;
  /** Removes what a test stored under `prefix` (real S3 only: s3rver's directory goes as a whole). */
  release(prefix: string): Promise<void>;
}

let started: Promise<S3TestEnv> | undefined;
let stop: (() => Promise<void>) | undefined;
let counter = 0;
const runId = `${Date.now().toString(36)}-${process.pid.toString(36)}`;

/** The shared test environment, started on first use and stopped after the whole run. */
export function s3TestEnv(): Promise<S3TestEnv> {
  started ??= start();
  return started;
}

// A root-level hook: runs once after every test file of the run.
after(async function () {
  this.timeout(30_000);
  if (stop !== undefined) await stop();
});

async function start(): Promise<S3TestEnv> {
  return process.env['ARMLIB_TEST_REAL_AWS'] === '1' ? startReal() : startS3rver();
}

async function startS3rver(): Promise<S3TestEnv> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'armlib-s3rver-'));
  const bucket = 'armlib-test';
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const clientConfig: S3ClientConfig = {
    endpoint: `http://127.0.0.1:${String(port)}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // s3rver stores aws-chunked framing of streamed PutObject bodies as data: never send it.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  const client = new S3Client(clientConfig);
  stop = async () => {
    client.destroy();
    server.httpServer?.closeAllConnections();
    await server.close();
    await rm(directory, { recursive: true, force: true });
  };
  return {
    bucket,
    clientConfig,
    client,
    real: false,
    newPrefix: () => `t${String(++counter)}/`,
    release: () => Promise.resolve(),
  };
}

async function startReal(): Promise<S3TestEnv> {
  const bucket = process.env['ARMLIB_TEST_S3_BUCKET'];
  if (bucket === undefined || bucket === '') {
    throw new Error('ARMLIB_TEST_REAL_AWS=1 needs ARMLIB_TEST_S3_BUCKET (an existing bucket the tests may write to)');
  }
  const clientConfig: S3ClientConfig = {};
  const client = new S3Client(clientConfig);
  stop = () => {
    client.destroy();
    return Promise.resolve();
  };
  return {
    bucket,
    clientConfig,
    client,
    real: true,
    newPrefix: () => `armlib-test/${runId}/t${String(++counter)}/`,
    release: async (prefix) => {
      // Both areas through a cache: manifests and data. Staging leftovers (none after commit or abort) expire by lifecycle rule.
      const cache = new S3CacheManager({ bucket, prefix, client });
      await cache.clear('persistent');
      await cache.clear('temporary');
      await cache.close();
    },
  };
}
