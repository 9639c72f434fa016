import type { Readable } from 'node:stream';

import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

import { ManualClock } from '@armlib/core';
import type { CacheArea, CommitOptions, ResultManifest } from '@armlib/core';

import { S3CacheManager } from '../../src/index.js';
import type { S3CacheManagerOptions } from '../../src/index.js';
import { s3TestEnv } from './s3-env.js';

/** A cache on a fresh prefix, with what a test needs to look behind it. */
export interface OpenedCache {
  readonly cache: S3CacheManager;
  /** The client the cache uses. */
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly clock: ManualClock;
  /** Another cache over the same bucket and prefix with a client of its own, as another process would open it. */
  readonly peer: (options?: { client?: S3Client; clock?: ManualClock }) => S3CacheManager;
}

/**
 * Caches for the tests of one `describe`: each `open()` takes a fresh prefix; after each test the
 * caches opened are closed (waiting for their background clean-up), then the clients.
 */
export function useCaches(): {
  readonly open: (extra?: Partial<S3CacheManagerOptions>) => Promise<OpenedCache>;
  readonly ownClient: (maxAttempts?: number) => Promise<S3Client>;
} {
  const caches: S3CacheManager[] = [];
  const clients: S3Client[] = [];
  const prefixes: string[] = [];

  /**
   * A client of its own (for middleware). `maxAttempts: 1` turns SDK retries off so that injected
   * errors surface at once.
   */
  async function ownClient(maxAttempts = 3): Promise<S3Client> {
    const env = await s3TestEnv();
    const client = new S3Client({ ...env.clientConfig, maxAttempts });
    clients.push(client);
    return client;
  }

  async function open(extra: Partial<S3CacheManagerOptions> = {}): Promise<OpenedCache> {
    const env = await s3TestEnv();
    const prefix = env.newPrefix();
    prefixes.push(prefix);
    const clock = new ManualClock(1_000_000);
    const client = extra.client ?? env.client;
    const cache = new S3CacheManager({ bucket: env.bucket, prefix, client, ...extra }, clock);
    caches.push(cache);
    const peer = (options: { client?: S3Client; clock?: ManualClock } = {}): S3CacheManager => {
      const other = new S3CacheManager(
        { bucket: env.bucket, prefix, client: options.client ?? env.client },
        options.clock ?? clock,
      );
      caches.push(other);
      return other;
    };
    return { cache, client, bucket: env.bucket, prefix, clock, peer };
  }

  afterEach(async function () {
    const env = await s3TestEnv();
    for (const cache of caches.splice(0)) await cache.close();
    for (const client of clients.splice(0)) client.destroy();
    for (const prefix of prefixes.splice(0)) await env.release(prefix);
  });

  return { open, ownClient };
}

export async function collect(body: Readable | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (body === undefined) return Buffer.alloc(0);
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function* bytes(data: string | Buffer): AsyncGenerator<Uint8Array> {
  yield typeof data === 'string' ? Buffer.from(data) : data;
}

export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Stages `formats` (text/plain) for `key` and commits them. */
export async function commitText(
  cache: S3CacheManager,
  key: string,
  formats: Record<string, string | Buffer>,
  area: CacheArea = 'temporary',
  options?: CommitOptions,
): Promise<ResultManifest> {
  const staged = await cache.stage(key);
  for (const [format, data] of Object.entries(formats)) {
    await staged.write(format, bytes(data), { contentType: 'text/plain' });
  }
  return staged.commit(area, options);
}

/** The text of `format` of `key`, or undefined when the cache has none. */
export async function readText(cache: S3CacheManager, key: string, format: string): Promise<string | undefined> {
  const body = await cache.get(key, format);
  return body === undefined ? undefined : (await collect(body.body)).toString();
}

/** Every object key under `prefix`, sorted. */
export async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: prefix,
        ...(token === undefined ? {} : { ContinuationToken: token }),
      }),
    );
    for (const c of out.Contents ?? []) if (c.Key !== undefined) keys.push(c.Key);
    token = out.IsTruncated === true ? out.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys.sort();
}

/** A meeting point of `parties` callers: each call resolves once all of them have called. */
export function barrier(parties: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return () => {
    if (++arrived >= parties) open();
    return opened;
  };
}

/** Lets what is already settled run (promise callbacks, no I/O) for a few turns of the event loop. */
export async function settleTurns(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
