import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';

import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError, chunksOf, ConflictError, InvalidRequestError, ManualClock } from '@armlib/core';

import { S3CacheManager } from '../src/index.js';
import type { S3CacheManagerOptions } from '../src/index.js';
import { injectFault, recordCommands } from './harness/faults.js';
import { s3TestEnv } from './harness/s3-env.js';

async function collect(body: Readable | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (body === undefined) return Buffer.alloc(0);
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function* bytes(text: string | Buffer): AsyncGenerator<Uint8Array> {
  yield typeof text === 'string' ? Buffer.from(text) : text;
}

async function* chunked(data: Buffer, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  yield* chunksOf(data, size);
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('@armlib/s3 S3CacheManager', function () {
  this.timeout(60_000);
  const opened: { cache: S3CacheManager; release: () => Promise<void> }[] = [];

  /** A cache on a fresh prefix (closed after the test), and the raw client and where it writes. */
  async function open(
    extra: Partial<S3CacheManagerOptions> = {},
  ): Promise<{ cache: S3CacheManager; client: S3Client; bucket: string; prefix: string; clock: ManualClock }> {
    const env = await s3TestEnv();
    const prefix = env.newPrefix();
    const clock = new ManualClock(1_000_000);
    const client = extra.client ?? env.client;
    const cache = new S3CacheManager({ bucket: env.bucket, prefix, client, ...extra }, clock);
    opened.push({ cache, release: () => env.release(prefix) });
    return { cache, client, bucket: env.bucket, prefix, clock };
  }

  /**
   * A client of its own (for middleware). `maxAttempts: 1` turns SDK retries off so that injected
   * errors surface at once (only for tests that delete nothing: s3rver's DeleteObjects needs retries).
   */
  async function ownClient(maxAttempts = 3): Promise<S3Client> {
    const env = await s3TestEnv();
    return new S3Client({ ...env.clientConfig, maxAttempts });
  }

  async function put(
    cache: S3CacheManager,
    key: string,
    formats: Record<string, string | Buffer>,
    area: 'temporary' | 'persistent' = 'temporary',
  ): Promise<void> {
    const staged = await cache.stage(key);
    for (const [format, data] of Object.entries(formats)) {
      await staged.write(format, bytes(data), { contentType: format === 'json' ? 'application/json' : 'text/csv' });
    }
    await staged.commit(area);
  }

  async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((c) => c.Key ?? '').sort();
  }

  afterEach(async function () {
    for (const { cache, release } of opened.splice(0)) {
      await cache.close();
      await release();
    }
  });

  describe('layout and the manifest-last commit', function () {
    it('stores data under <prefix><area>/<key>/<commitId>/<format> and the manifest at <prefix><area>/<key>/manifest.json', async function () {
      const { cache, client, bucket, prefix } = await open();
      await put(cache, 'report-1', { csv: 'a,b\n', json: '[]' });
      // The staged objects are deleted in the background after the commit; close() waits for that.
      await cache.close();
      const keys = await listKeys(client, bucket, prefix);
      expect(keys).to.have.length(3);
      expect(keys).to.include(`${prefix}temporary/report-1/manifest.json`);
      const data = keys.filter((k) => !k.endsWith('manifest.json'));
      for (const k of data)
        expect(k).to.match(new RegExp(`^${prefix}temporary/report-1/c[0-9a-z]+-[0-9a-f]{16}/(csv|json)$`));
      // Staged objects are gone after the commit.
      expect(keys.filter((k) => k.startsWith(`${prefix}staging/`))).to.deep.equal([]);
    });

    it('writes the manifest after every data object and before any clean-up', async function () {
      const client = await ownClient();
      const seen = recordCommands(client);
      const { cache, prefix } = await open({ client });
      await put(cache, 'ordered', { csv: 'old' }, 'persistent');
      seen.length = 0;
      await put(cache, 'ordered', { csv: 'x', json: '{}' });
      const manifestPut = seen.indexOf(`PutObjectCommand ${prefix}temporary/ordered/manifest.json`);
      expect(manifestPut, seen.join('\n')).to.be.greaterThan(-1);
      // Small formats are written in place by the commit (no staging object, no copy).
      const dataWrites = seen
        .map((c, i) => (c.startsWith(`PutObjectCommand ${prefix}temporary/ordered/c`) ? i : -1))
        .filter((i) => i >= 0);
      expect(dataWrites, seen.join('\n')).to.have.length(2);
      for (const i of dataWrites) expect(i).to.be.lessThan(manifestPut);
      const deletes = seen.map((s, i) => (s.startsWith('DeleteObjectsCommand') ? i : -1)).filter((i) => i >= 0);
      expect(deletes).to.not.deep.equal([]);
      for (const i of deletes) expect(i).to.be.greaterThan(manifestPut);
      client.destroy();
    });

    it('shows nothing for data objects without a manifest (a crash before the commit point)', async function () {
      const { cache, client, clock, bucket, prefix } = await open();
      // What a process killed between copying and writing the manifest leaves behind.
      const orphan = `${prefix}temporary/crashed/c0-0000000000000000/csv`;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: orphan, Body: 'half', ContentType: 'text/csv' }));
      expect(await cache.head('crashed')).to.equal(undefined);
      expect(await cache.get('crashed', 'csv')).to.equal(undefined);
      expect(await cache.url('crashed', 'csv', { expiresInSec: 60 })).to.equal(undefined);
      expect((await cache.list('temporary', { limit: 10 })).items).to.deep.equal([]);
      expect(await cache.promote('crashed')).to.equal(false);
      expect(await cache.delete('crashed')).to.equal(0);
      // clear() counts results only, and removes such leftovers once older than orphanGraceMs
      // (24 h by default, S3's LastModified being the real time): before, a commit may be in flight.
      expect(await cache.clear('temporary')).to.equal(0);
      expect(await listKeys(client, bucket, `${prefix}temporary/`)).to.deep.equal([orphan]);
      await clock.set(Date.now() + 25 * 3_600_000);
      expect(await cache.clear('temporary')).to.equal(0);
      expect(await listKeys(client, bucket, `${prefix}temporary/`)).to.deep.equal([]);
    });

    it('keeps serving the earlier result when a replacement crashed before its manifest', async function () {
      const { cache, client, bucket, prefix } = await open();
      await put(cache, 'stable', { csv: 'committed' });
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `${prefix}temporary/stable/c1-1111111111111111/csv`,
          Body: 'torn',
        }),
      );
      expect((await collect((await cache.get('stable', 'csv'))?.body)).toString()).to.equal('committed');
      expect((await cache.head('stable'))?.formats['csv']?.size).to.equal(9);
    });

    it('treats a manifest whose data vanished as absent (e.g. expired by a lifecycle rule)', async function () {
      const { cache, client, bucket, prefix } = await open();
      await put(cache, 'expired', { csv: 'gone soon' });
      const data = (await listKeys(client, bucket, `${prefix}temporary/expired/`)).filter(
        (k) => !k.endsWith('manifest.json'),
      );
      for (const Key of data) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      expect(await cache.get('expired', 'csv')).to.equal(undefined);
    });

    it('reads the manifest again when the commit it read is replaced before its data is fetched', async function () {
      const { cache, bucket, prefix } = await open();
      await put(cache, 'swap', { csv: 'first' });
      // The reader's first data GET is held until another process has replaced the result (and
      // deleted the data of the commit the reader found): that GET then meets a 404.
      const readerClient = await ownClient();
      const seen = recordCommands(readerClient);
      let replaced = false;
      readerClient.middlewareStack.add(
        (next) => async (args) => {
          const key = (args.input as { Key?: unknown }).Key;
          if (!replaced && typeof key === 'string' && key.startsWith(`${prefix}temporary/swap/c`)) {
            replaced = true;
            const writer = new S3CacheManager({ bucket, prefix, client: (await s3TestEnv()).client });
            await put(writer, 'swap', { csv: 'second' });
            await writer.close(); // waits for the clean-up that deletes the first commit's data
          }
          return next(args);
        },
        { step: 'initialize', name: 'replaceBeforeDataRead' },
      );
      const reader = new S3CacheManager({ bucket, prefix, client: readerClient });
      const body = await reader.get('swap', 'csv');
      expect((await collect(body?.body)).toString()).to.equal('second');
      expect(replaced).to.equal(true);
      // Manifests read twice (both areas each time), the data GET twice (404, then the new commit).
      expect(seen.filter((c) => c.endsWith('/swap/manifest.json'))).to.have.length(4);
      await reader.close();
      readerClient.destroy();
    });

    it('has removed the other area’s manifest when a commit returns, so a later commit of the key stays', async function () {
      const client = await ownClient();
      const { cache, prefix } = await open({ client });
      let returned = false;
      const returnedAtDelete: boolean[] = [];
      client.middlewareStack.add(
        (next) => async (args) => {
          const keys = (args.input as { Delete?: { Objects?: { Key?: string }[] } }).Delete?.Objects ?? [];
          if (keys.some((o) => o.Key === `${prefix}temporary/k/manifest.json`)) {
            // Let whatever is already settled run (no I/O): a commit that returned has by now.
            for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
            returnedAtDelete.push(returned);
          }
          return next(args);
        },
        { step: 'initialize', name: 'watchOtherManifestDelete' },
      );
      await put(cache, 'k', { json: '"v1"' }, 'temporary');
      await put(cache, 'k', { json: '"v2"' }, 'persistent').then(() => (returned = true));
      // Not in the background: a delete still in flight after the commit returned could remove
      // the manifest of a later commit of the key.
      expect(returnedAtDelete).to.deep.equal([false]);
      await put(cache, 'k', { json: '"v3"' }, 'temporary');
      await cache.close();
      const reader = new S3CacheManager({
        bucket: (await s3TestEnv()).bucket,
        prefix,
        client: (await s3TestEnv()).client,
      });
      expect((await reader.head('k'))?.area).to.equal('temporary');
      expect(await reader.head('k', 'persistent')).to.equal(undefined);
      expect((await collect((await reader.get('k', 'json'))?.body)).toString()).to.equal('"v3"');
      await reader.close();
      client.destroy();
    });

    it('serves the promoted result to a read that found the temporary one just before the promotion', async function () {
      const { cache, bucket, prefix } = await open();
      await put(cache, 'moving', { csv: 'kept' });
      const readerClient = await ownClient();
      let promoted = false;
      readerClient.middlewareStack.add(
        (next) => async (args) => {
          const key = (args.input as { Key?: unknown }).Key;
          if (!promoted && typeof key === 'string' && key.startsWith(`${prefix}temporary/moving/c`)) {
            promoted = await cache.promote('moving');
          }
          return next(args);
        },
        { step: 'initialize', name: 'promoteBeforeDataRead' },
      );
      const reader = new S3CacheManager({ bucket, prefix, client: readerClient });
      const body = await reader.get('moving', 'csv');
      expect(promoted).to.equal(true);
      expect(body?.area).to.equal('persistent');
      expect((await collect(body?.body)).toString()).to.equal('kept');
      await reader.close();
      readerClient.destroy();
    });

    it('keeps a commit made while a promotion copied the older result, and promotes that one', async function () {
      const { cache, bucket, prefix } = await open();
      const first = await cache.stage('race');
      await first.write('json', bytes('"v1"'), { contentType: 'application/json' });
      await first.commit('temporary', { fence: 1 });
      const promoterClient = await ownClient();
      let committed = false;
      promoterClient.middlewareStack.add(
        (next) => async (args) => {
          const key = (args.input as { Key?: unknown }).Key;
          if (!committed && key === `${prefix}persistent/race/manifest.json`) {
            committed = true;
            const newer = await cache.stage('race');
            await newer.write('json', bytes('"v2"'), { contentType: 'application/json' });
            await newer.commit('temporary', { fence: 2 });
          }
          return next(args);
        },
        { step: 'initialize', name: 'commitBeforePromotedManifest' },
      );
      const promoter = new S3CacheManager({ bucket, prefix, client: promoterClient });
      expect(await promoter.promote('race')).to.equal(true);
      await promoter.close();
      promoterClient.destroy();
      expect(committed).to.equal(true);
      const head = await cache.head('race');
      expect(head?.fence).to.equal(2);
      expect((await collect((await cache.get('race', 'json'))?.body)).toString()).to.equal('"v2"');
    });

    it('refuses at the write a content type or coding no HTTP header can carry, and still commits the other formats', async function () {
      const { cache } = await open();
      const staged = await cache.stage('headers');
      await staged.write('good', bytes('precious'), { contentType: 'text/plain' });
      for (const [field, options] of [
        ['contentType', { contentType: 'text/plain\r\nX-Evil: 1' }],
        ['contentType', { contentType: 'text/pla\u00efn' }],
        ['contentType', { contentType: `text/${'x'.repeat(100_000)}` }],
        ['contentEncoding', { contentType: 'text/plain', contentEncoding: 'gzip\r\nX-Evil: 1' }],
        ['contentEncoding', { contentType: 'text/plain', contentEncoding: 'gz\u0000ip' }],
      ] as const) {
        const error = await rejectionOf(staged.write('bad', bytes('x'), options));
        expect(InvalidRequestError.is(error), String(error)).to.equal(true);
        expect((error as InvalidRequestError).field).to.equal(field);
      }
      await staged.commit('persistent');
      expect((await collect((await cache.get('headers', 'good'))?.body)).toString()).to.equal('precious');
      expect(await cache.get('headers', 'bad')).to.equal(undefined);
    });

    it('refuses writes and commits after a commit, and cleans staged objects on abort', async function () {
      const { cache, client, bucket, prefix } = await open();
      const staged = await cache.stage('sealed');
      await staged.write('csv', bytes('x'), { contentType: 'text/csv' });
      await staged.commit('temporary');
      expect(
        ConflictError.is(await rejectionOf(staged.write('csv', bytes('y'), { contentType: 'text/csv' }))),
      ).to.equal(true);
      expect(ConflictError.is(await rejectionOf(staged.commit('persistent')))).to.equal(true);
      // Over 1 MiB, formats stream into staging objects (smaller ones stay in memory until the commit).
      const large = Buffer.alloc(1024 * 1024 + 1, 'n');
      const dropped = await cache.stage('dropped');
      await dropped.write('csv', bytes(large), { contentType: 'text/csv' });
      await dropped.write('csv', bytes(large), { contentType: 'text/csv' });
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.have.length(1);
      await dropped.abort();
      await dropped.abort();
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.deep.equal([]);
      expect(await cache.head('dropped')).to.equal(undefined);
    });
  });

  describe('streaming, ranges, content type and encoding', function () {
    it('uploads a large format in parts and serves exact ranges of it', async function () {
      const client = await ownClient();
      const seen = recordCommands(client);
      const { cache } = await open({ client, partSizeBytes: 5 * 1024 * 1024, queueSize: 2 });
      const data = randomBytes(11 * 1024 * 1024 + 7);
      const staged = await cache.stage('big');
      const info = await staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
      expect(info.size).to.equal(data.byteLength);
      await staged.commit('persistent');
      expect(seen.filter((s) => s.startsWith('UploadPartCommand'))).to.have.length(3);
      expect(seen.filter((s) => s.startsWith('CompleteMultipartUploadCommand'))).to.have.length(1);
      // Streamed into staging, then copied into place server side by the commit.
      expect(seen.filter((s) => s.startsWith('CopyObjectCommand'))).to.have.length(1);
      const whole = await cache.get('big', 'bin');
      expect(whole?.size).to.equal(data.byteLength);
      expect(whole?.totalSize).to.equal(data.byteLength);
      expect(whole?.area).to.equal('persistent');
      const read = await collect(whole?.body);
      expect(createHash('sha256').update(read).digest('hex')).to.equal(createHash('sha256').update(data).digest('hex'));
      for (const [start, end] of [
        [0, 0],
        [5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 3],
        [data.byteLength - 10, data.byteLength - 1],
        [100, data.byteLength + 1000],
      ] as const) {
        const part = await cache.get('big', 'bin', { range: { start, end } });
        const last = Math.min(end, data.byteLength - 1);
        expect(part?.size).to.equal(last - start + 1);
        expect(part?.totalSize).to.equal(data.byteLength);
        expect((await collect(part?.body)).equals(data.subarray(start, last + 1))).to.equal(true);
      }
      const tail = await cache.get('big', 'bin', { range: { start: data.byteLength - 5 } });
      expect((await collect(tail?.body)).equals(data.subarray(-5))).to.equal(true);
      expect(
        InvalidRequestError.is(await rejectionOf(cache.get('big', 'bin', { range: { start: data.byteLength } }))),
      ).to.equal(true);
      expect(
        InvalidRequestError.is(await rejectionOf(cache.get('big', 'bin', { range: { start: 5, end: 2 } }))),
      ).to.equal(true);
      client.destroy();
    });

    it('copies each chunk of a large format: the producer may reuse its buffer', async function () {
      const { cache } = await open({ partSizeBytes: 5 * 1024 * 1024, queueSize: 2 });
      const chunk = Buffer.alloc(64 * 1024);
      const written = createHash('sha256');
      // 11 MiB + 3 bytes through one buffer, restamped before every chunk (three parts, the last short).
      async function* reused(): AsyncGenerator<Uint8Array> {
        const total = 11 * 1024 * 1024 + 3;
        for (let sent = 0, n = 0; sent < total; sent += chunk.byteLength, n++) {
          chunk.fill(n % 251);
          const out = chunk.subarray(0, Math.min(chunk.byteLength, total - sent));
          written.update(out);
          yield out;
        }
      }
      const staged = await cache.stage('reused');
      await staged.write('bin', reused(), { contentType: 'application/octet-stream' });
      await staged.commit('temporary');
      const read = await collect((await cache.get('reused', 'bin'))?.body);
      expect(read.byteLength).to.equal(11 * 1024 * 1024 + 3);
      expect(createHash('sha256').update(read).digest('hex')).to.equal(written.digest('hex'));
    });

    it('keeps at most queueSize parts in flight, and sends data of exactly one part as one PutObject', async function () {
      const client = await ownClient();
      const seen = recordCommands(client);
      let inFlight = 0;
      let mostInFlight = 0;
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName !== 'UploadPartCommand') return next(args);
          mostInFlight = Math.max(mostInFlight, ++inFlight);
          try {
            return await next(args);
          } finally {
            inFlight--;
          }
        },
        { step: 'initialize', name: 'countPartsInFlight' },
      );
      const part = 5 * 1024 * 1024;
      const { cache } = await open({ client, partSizeBytes: part, queueSize: 2 });
      const count = (name: string): number => seen.filter((s) => s.startsWith(name)).length;
      for (const [size, parts] of [
        [part, 0],
        [2 * part, 2],
        [5 * part + 1, 6],
      ] as const) {
        const before = { put: count('PutObjectCommand'), parts: count('UploadPartCommand') };
        const data = randomBytes(size);
        const staged = await cache.stage(`sized-${String(size)}`);
        await staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
        expect(count('UploadPartCommand') - before.parts, `parts for ${String(size)} bytes`).to.equal(parts);
        expect(count('PutObjectCommand') - before.put, `PutObjects for ${String(size)} bytes`).to.equal(
          parts === 0 ? 1 : 0,
        );
        await staged.commit('temporary');
        const read = await collect((await cache.get(`sized-${String(size)}`, 'bin'))?.body);
        expect(read.equals(data), `${String(size)} bytes read back`).to.equal(true);
      }
      expect(count('CreateMultipartUploadCommand')).to.equal(2);
      expect(mostInFlight).to.be.within(1, 2);
      client.destroy();
    });

    it('frees its part buffers as soon as the object is stored, in one PutObject or in parts', async function () {
      const client = await ownClient();
      const bodies: Buffer[] = [];
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { Body?: unknown };
          const sendsPart = context.commandName === 'UploadPartCommand' || context.commandName === 'PutObjectCommand';
          if (sendsPart && Buffer.isBuffer(input.Body)) bodies.push(input.Body);
          return next(args);
        },
        { step: 'initialize', name: 'keepPartBodies' },
      );
      const part = 5 * 1024 * 1024;
      const { cache } = await open({ client, partSizeBytes: part, queueSize: 2 });
      for (const size of [part, 3 * part + 1]) {
        bodies.length = 0;
        const data = randomBytes(size);
        const staged = await cache.stage(`freed-${String(size)}`);
        await staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
        // A detached ArrayBuffer: its memory went back when the write returned, not at a later GC.
        expect(bodies.length, `bodies sent for ${String(size)} bytes`).to.equal(size === part ? 1 : 4);
        for (const body of bodies) expect(body.buffer.byteLength, `a part buffer of ${String(size)} bytes`).to.equal(0);
        await staged.commit('temporary');
        const read = await collect((await cache.get(`freed-${String(size)}`, 'bin'))?.body);
        expect(read.equals(data), `${String(size)} bytes read back`).to.equal(true);
      }
      client.destroy();
    });

    it('creates multipart uploads for CRC32 part checksums when the client computes checksums', async function () {
      const env = await s3TestEnv();
      const client = new S3Client({ ...env.clientConfig, requestChecksumCalculation: 'WHEN_SUPPORTED' });
      const algorithms: unknown[] = [];
      client.middlewareStack.add(
        (next, context) => (args) => {
          if (context.commandName === 'CreateMultipartUploadCommand') {
            algorithms.push((args.input as { ChecksumAlgorithm?: unknown }).ChecksumAlgorithm);
          }
          return next(args);
        },
        { step: 'initialize', name: 'recordChecksumAlgorithm' },
      );
      const { cache } = await open({ client, partSizeBytes: 5 * 1024 * 1024, queueSize: 2 });
      const data = randomBytes(6 * 1024 * 1024);
      const staged = await cache.stage('checksummed');
      await staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
      await staged.commit('temporary');
      expect(algorithms).to.deep.equal(['CRC32']);
      expect((await collect((await cache.get('checksummed', 'bin'))?.body)).equals(data)).to.equal(true);
      client.destroy();
    });

    it('aborts the multipart upload when a part fails, and the source error passes through as it is', async function () {
      const client = await ownClient(1);
      const seen = recordCommands(client);
      let failParts = true;
      injectFault(client, 'UploadPartCommand', { status: 500, code: 'InternalError' }, () => failParts);
      const { cache, bucket, prefix } = await open({ client, partSizeBytes: 5 * 1024 * 1024, queueSize: 2 });
      const staged = await cache.stage('broken');
      const data = randomBytes(11 * 1024 * 1024);
      const error = await rejectionOf(staged.write('bin', chunked(data), { contentType: 'application/octet-stream' }));
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      expect(seen.filter((s) => s.startsWith('AbortMultipartUploadCommand'))).to.have.length(1);
      expect(seen.filter((s) => s.startsWith('CompleteMultipartUploadCommand'))).to.deep.equal([]);
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.deep.equal([]);
      // A producer failing after two parts went out: its own error, and the upload is aborted too.
      failParts = false;
      const boom = new Error('producer broke');
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield* chunksOf(data);
        throw boom;
      }
      expect(await rejectionOf(staged.write('bin', failing(), { contentType: 'application/octet-stream' }))).to.equal(
        boom,
      );
      expect(seen.filter((s) => s.startsWith('AbortMultipartUploadCommand'))).to.have.length(2);
      expect(seen.filter((s) => s.startsWith('CompleteMultipartUploadCommand'))).to.deep.equal([]);
      await staged.abort();
      client.destroy();
    });

    it('aborts the upload when its completion fails, and reports a failed start as a BackendError', async function () {
      const client = await ownClient(1);
      const seen = recordCommands(client);
      let failing = 'CompleteMultipartUploadCommand';
      injectFault(client, '*', { status: 503, code: 'SlowDown' }, () => seen.at(-1)?.startsWith(failing) === true);
      const { cache, bucket, prefix } = await open({ client, partSizeBytes: 5 * 1024 * 1024, queueSize: 2 });
      const staged = await cache.stage('unfinished');
      const data = randomBytes(6 * 1024 * 1024);
      const write = (): Promise<unknown> =>
        staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
      const completion = await rejectionOf(write());
      expect(BackendError.is(completion) && completion.retryable, String(completion)).to.equal(true);
      expect(String(completion)).to.contain('completion of the multipart upload');
      expect(seen.filter((s) => s.startsWith('UploadPartCommand'))).to.have.length(2);
      expect(seen.filter((s) => s.startsWith('AbortMultipartUploadCommand'))).to.have.length(1);
      failing = 'CreateMultipartUploadCommand';
      const start = await rejectionOf(write());
      expect(BackendError.is(start) && start.retryable, String(start)).to.equal(true);
      expect(String(start)).to.contain('start of the multipart upload');
      // Nothing was created, so there is nothing to abort.
      expect(seen.filter((s) => s.startsWith('AbortMultipartUploadCommand'))).to.have.length(1);
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.deep.equal([]);
      // The staged result is intact: the same write goes through once S3 answers again.
      failing = 'none';
      await write();
      await staged.commit('temporary');
      expect((await collect((await cache.get('unfinished', 'bin'))?.body)).equals(data)).to.equal(true);
      client.destroy();
    });

    it('gzips a large format on its way into a multipart upload and reads it back whole and by range', async function () {
      const { cache, client, bucket, prefix } = await open({
        gzip: true,
        partSizeBytes: 5 * 1024 * 1024,
        queueSize: 2,
      });
      const seen = recordCommands(client);
      // Random bytes do not compress: the gzip stream stays above two parts.
      const data = randomBytes(11 * 1024 * 1024);
      const staged = await cache.stage('zipped-big');
      const info = await staged.write('bin', chunked(data), { contentType: 'application/octet-stream' });
      expect(info.size).to.equal(data.byteLength);
      expect(seen.filter((s) => s.startsWith('UploadPartCommand'))).to.have.length(3);
      await staged.commit('persistent');
      const key = (await listKeys(client, bucket, `${prefix}persistent/zipped-big/`)).find((k) => k.endsWith('/bin'));
      const raw = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      expect(raw.ContentEncoding).to.equal('gzip');
      const stored = Buffer.from(
        await (raw.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      expect(gunzipSync(stored).equals(data)).to.equal(true);
      expect((await collect((await cache.get('zipped-big', 'bin'))?.body)).equals(data)).to.equal(true);
      const start = 5 * 1024 * 1024 - 10;
      const part = await cache.get('zipped-big', 'bin', { range: { start, end: start + 99 } });
      expect((await collect(part?.body)).equals(data.subarray(start, start + 100))).to.equal(true);
      // A producer failing after a part went out through gzip: its own error, and the upload is aborted.
      const boom = new Error('producer broke behind gzip');
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield* chunksOf(data.subarray(0, 7 * 1024 * 1024), 64 * 1024);
        throw boom;
      }
      const again = await cache.stage('zipped-broken');
      const aborts = seen.filter((s) => s.startsWith('AbortMultipartUploadCommand')).length;
      expect(await rejectionOf(again.write('bin', failing(), { contentType: 'application/octet-stream' }))).to.equal(
        boom,
      );
      expect(seen.filter((s) => s.startsWith('AbortMultipartUploadCommand')).length).to.equal(aborts + 1);
      await again.abort();
    });

    it('stores Content-Type and the caller’s Content-Encoding on the object', async function () {
      const { cache, client, bucket, prefix } = await open();
      const zipped = gzipSync(Buffer.from('{"a":1}'));
      const staged = await cache.stage('typed');
      await staged.write('csv', bytes('x,y\n'), { contentType: 'text/csv; charset=utf-8' });
      await staged.write('json', bytes(zipped), { contentType: 'application/json', contentEncoding: 'gzip' });
      await staged.commit('temporary');
      const objects = (await listKeys(client, bucket, `${prefix}temporary/typed/`)).filter(
        (k) => !k.endsWith('manifest.json'),
      );
      const heads = await Promise.all(
        objects.map((Key) => client.send(new HeadObjectCommand({ Bucket: bucket, Key }))),
      );
      expect(heads.map((h) => h.ContentType).sort()).to.deep.equal(['application/json', 'text/csv; charset=utf-8']);
      expect(heads.map((h) => h.ContentEncoding ?? '-').sort()).to.deep.equal(['-', 'gzip']);
      // Pre-encoded data is returned as stored, with its encoding.
      const json = await cache.get('typed', 'json');
      expect(json?.contentEncoding).to.equal('gzip');
      expect(json?.size).to.equal(zipped.byteLength);
      expect(gunzipSync(await collect(json?.body)).toString()).to.equal('{"a":1}');
      expect((await cache.head('typed'))?.formats['json']).to.deep.equal({
        contentType: 'application/json',
        contentEncoding: 'gzip',
        size: zipped.byteLength,
      });
    });

    // 20,000 lines (190 kB) stay in memory until the commit; 150,000 lines (1.6 MB) stream through gzip into staging.
    for (const lines of [20_000, 150_000]) {
      it(`with gzip on, stores Content-Encoding gzip and returns the original bytes, ranges included (${String(lines)} lines)`, async function () {
        const { cache, client, bucket, prefix } = await open({ gzip: true });
        const text = 'id,value\n' + Array.from({ length: lines }, (_, i) => `${String(i)},${String(i * 7)}\n`).join('');
        const staged = await cache.stage('zipped');
        const info = await staged.write('csv', chunked(Buffer.from(text), 4096), { contentType: 'text/csv' });
        expect(info).to.deep.equal({ contentType: 'text/csv', size: Buffer.byteLength(text) });
        await staged.commit('temporary');
        const [objectKey] = (await listKeys(client, bucket, `${prefix}temporary/zipped/`)).filter(
          (k) => !k.endsWith('manifest.json'),
        );
        const raw = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
        expect(raw.ContentEncoding).to.equal('gzip');
        expect(raw.ContentType).to.equal('text/csv');
        const stored = Buffer.from((await raw.Body?.transformToByteArray()) ?? []);
        expect(stored.byteLength).to.be.lessThan(Buffer.byteLength(text) / 2);
        expect(gunzipSync(stored).toString()).to.equal(text);

        const whole = await cache.get('zipped', 'csv');
        expect(whole?.contentEncoding).to.equal(undefined);
        expect(whole?.size).to.equal(Buffer.byteLength(text));
        expect((await collect(whole?.body)).toString()).to.equal(text);
        const part = await cache.get('zipped', 'csv', { range: { start: 100_000, end: 100_049 } });
        expect(part?.size).to.equal(50);
        expect(part?.totalSize).to.equal(Buffer.byteLength(text));
        expect((await collect(part?.body)).toString()).to.equal(text.slice(100_000, 100_050));
      });
    }
  });

  describe('presigned URLs', function () {
    it('downloads a format through its URL with plain fetch, with its bytes and Content-Type', async function () {
      const { cache } = await open();
      const csv = 'city,population\nOslo,709000\n';
      await put(cache, 'linked', { csv });
      const url = await cache.url('linked', 'csv', { expiresInSec: 300 });
      expect(url).to.be.a('string');
      const response = await fetch(url ?? '');
      expect(response.status).to.equal(200);
      expect(response.headers.get('content-type')).to.equal('text/csv');
      expect(await response.text()).to.equal(csv);
      expect(await cache.url('linked', 'json', { expiresInSec: 300 })).to.equal(undefined);
      expect(InvalidRequestError.is(await rejectionOf(cache.url('linked', 'csv', { expiresInSec: 0 })))).to.equal(true);
      expect(
        InvalidRequestError.is(await rejectionOf(cache.url('linked', 'csv', { expiresInSec: 8 * 24 * 3600 }))),
      ).to.equal(true);
      // The URL names that commit: once the result is deleted, it no longer serves it.
      await cache.delete('linked');
      expect((await fetch(url ?? '')).status).to.equal(404);
    });

    it('serves a gzipped format that HTTP clients decode', async function () {
      const { cache } = await open({ gzip: true });
      const json = JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ i })));
      await put(cache, 'linked-gz', { json });
      const response = await fetch((await cache.url('linked-gz', 'json', { expiresInSec: 60 })) ?? '');
      expect(response.headers.get('content-encoding')).to.equal('gzip');
      expect(response.headers.get('content-type')).to.equal('application/json');
      expect(await response.text()).to.equal(json);
    });
  });

  describe('errors', function () {
    it('turns 403 into a BackendError that is not retryable, keeping the cause', async function () {
      const client = await ownClient(1);
      let failing = true;
      injectFault(client, '*', { status: 403, code: 'AccessDenied' }, () => failing);
      const { cache } = await open({ client });
      const error = await rejectionOf(cache.head('secret'));
      expect(BackendError.is(error), String(error)).to.equal(true);
      expect((error as BackendError).retryable).to.equal(false);
      expect((error as BackendError).message).to.include('AccessDenied');
      expect(((error as BackendError).cause as { name?: string }).name).to.equal('AccessDenied');
      const staged = await cache.stage('secret');
      await staged.write('csv', bytes('x'), { contentType: 'text/csv' });
      const commit = await rejectionOf(staged.commit('temporary'));
      expect(BackendError.is(commit) && !commit.retryable, String(commit)).to.equal(true);
      failing = false;
      expect(await cache.head('secret')).to.equal(undefined);
      client.destroy();
    });

    it('turns 503 SlowDown and 500 into retryable BackendErrors', async function () {
      const client = await ownClient(1);
      let reply: { status: number; code: string } | undefined = { status: 503, code: 'SlowDown' };
      injectFault(client, '*', { status: 503, code: 'SlowDown' }, () => reply?.code === 'SlowDown');
      injectFault(client, '*', { status: 500, code: 'InternalError' }, () => reply?.code === 'InternalError');
      const { cache } = await open({ client });
      const slow = await rejectionOf(cache.get('busy', 'csv'));
      expect(BackendError.is(slow) && slow.retryable, String(slow)).to.equal(true);
      reply = { status: 500, code: 'InternalError' };
      const staged = await cache.stage('busy');
      await staged.write('csv', bytes('x'), { contentType: 'text/csv' });
      const internal = await rejectionOf(staged.commit('temporary'));
      expect(BackendError.is(internal) && internal.retryable, String(internal)).to.equal(true);
      expect(BackendError.is(await rejectionOf(cache.head('busy')))).to.equal(true);
      // A format large enough to stream into staging fails at its write.
      const streamed = await rejectionOf(
        staged.write('bin', bytes(Buffer.alloc(2 * 1024 * 1024)), { contentType: 'application/octet-stream' }),
      );
      expect(BackendError.is(streamed) && streamed.retryable, String(streamed)).to.equal(true);
      // A commit that failed before its manifest leaves the staging open: once S3 recovers it goes through.
      reply = undefined;
      await staged.commit('temporary');
      expect((await cache.head('busy'))?.area).to.equal('temporary');
      client.destroy();
    });

    it('reports a missing bucket as a BackendError, not as an absent result', async function () {
      const { cache } = await open({ bucket: 'armlib-no-such-bucket' });
      const error = await rejectionOf(cache.head('anything'));
      expect(BackendError.is(error), String(error)).to.equal(true);
      expect((error as BackendError).message).to.include('NoSuchBucket');
    });

    it('refuses calls after close with ClosedError', async function () {
      const { cache } = await open();
      await cache.close();
      expect(await rejectionOf(cache.head('k'))).to.have.property('code', 'CLOSED');
      expect(await rejectionOf(cache.stage('k'))).to.have.property('code', 'CLOSED');
    });
  });

  describe('provisioning', function () {
    it('ensureBucket creates a missing bucket and is idempotent', async function () {
      const env = await s3TestEnv();
      // On a real account the run does not create buckets: the existing test bucket takes the idempotent path.
      const bucket = env.real ? env.bucket : `armlib-ensure-${String(Date.now() % 1_000_000)}`;
      const cache = new S3CacheManager({ bucket, prefix: env.newPrefix(), client: env.client });
      await cache.ensureBucket();
      await cache.ensureBucket();
      await put(cache, 'k', { csv: 'in the new bucket' });
      expect((await collect((await cache.get('k', 'csv'))?.body)).toString()).to.equal('in the new bucket');
      await cache.clear('temporary');
      await cache.close();
    });
  });
});
