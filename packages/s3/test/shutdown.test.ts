import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable, Writable } from 'node:stream';

import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError, chunksOf, ClosedError, ManualClock } from '@armlib/core';

import { S3CacheManager } from '../src/index.js';
import { newId } from '../src/layout.js';
import { encodeManifest } from '../src/manifest.js';
import { failCalls, holdOnce, recordCommands, smallPages } from './harness/faults.js';
import { listenOnLoopback, notFound } from './harness/stand-in-server.js';
import type { CommandInput } from './harness/faults.js';
import {
  bytes,
  collect,
  commitText,
  listKeys,
  readText,
  rejectionOf,
  settleTurns,
  useCaches,
} from './harness/fixture.js';

const MiB = 1024 * 1024;

async function* chunked(data: Buffer): AsyncGenerator<Uint8Array> {
  yield* chunksOf(data, 64 * 1024);
}

function keyOf(input: CommandInput): string {
  return typeof input['Key'] === 'string' ? input['Key'] : '';
}

const STAND_IN_BUCKET = 'armlib-close';

/** An S3 stand-in (see {@link standIn}) and the means to steer it. */
interface StandIn {
  readonly url: string;
  /** Resolves once the persistent manifest of `k` was asked for. */
  readonly manifestAsked: Promise<void>;
  /** Sends the answer to that request (held until then with `holdManifest`). */
  readonly answer: () => void;
  readonly close: () => Promise<void>;
}

/**
 * An S3 stand-in holding one persistent result `k` with one format `csv` of 2 KiB: the manifest
 * is answered at once, or with `holdManifest` only once `answer()` is called (a slow S3: the
 * request is on the wire meanwhile); the data gets its headers and first KiB, and never the rest.
 * Everything else is a 404. s3rver cannot be slowed down like this, and a cache only destroys a
 * client it made itself, so the tests of close() with its own client talk to this.
 */
async function standIn(holdManifest: boolean): Promise<StandIn> {
  const commitId = newId('c');
  const manifest = encodeManifest({
    key: 'k',
    area: 'persistent',
    createdAt: 1_000_000,
    commitId,
    formats: { csv: { info: { size: 2048, contentType: 'text/csv' }, storedSize: 2048 } },
  });
  let asked!: () => void;
  const manifestAsked = new Promise<void>((resolve) => (asked = resolve));
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === `/${STAND_IN_BUCKET}/persistent/k/manifest.json`) {
      asked();
      void (holdManifest ? answered : Promise.resolve()).then(() =>
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(manifest),
      );
    } else if (path === `/${STAND_IN_BUCKET}/persistent/k/${commitId}/csv`) {
      res.writeHead(200, { 'Content-Type': 'text/csv', 'Content-Length': '2048' });
      res.write(Buffer.alloc(1024, 'x'));
    } else {
      notFound(res);
    }
  });
  return { ...(await listenOnLoopback(server, answer)), manifestAsked, answer };
}

/**
 * A cache on `url` that makes (and so destroys) its own client. One SDK attempt: a request cut
 * off by the client's destruction fails visibly instead of being sent again on a new connection.
 */
function cacheOn(url: string): S3CacheManager {
  return new S3CacheManager(
    {
      bucket: STAND_IN_BUCKET,
      region: 'us-east-1',
      endpoint: url,
      forcePathStyle: true,
      clientConfig: { credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' }, maxAttempts: 1 },
    },
    new ManualClock(),
  );
}

describe('@armlib/s3 S3CacheManager clear over listing pages, and close with work in flight', function () {
  this.timeout(120_000);
  const { open, ownClient } = useCaches();

  describe('clear', function () {
    /** Results committed for the tests below: each key folder spans several one-object pages. */
    const RESULTS: Record<string, Record<string, string>> = {
      k1: { csv: 'k1 csv', txt: 'k1 txt' },
      k2: { csv: 'k2 csv' },
      k3: { csv: 'k3 csv', txt: 'k3 txt', xml: 'k3 xml' },
    };

    it('leaves every key whole or gone when a DeleteObjects fails part way', async function () {
      const client = await ownClient();
      smallPages(client, 1);
      // The DeleteObjects calls to let through before the one that fails (-1: none fails).
      let before = -1;
      failCalls(client, 'DeleteObjectsCommand', { status: 503, code: 'SlowDown' }, () => before-- === 0);
      const { cache } = await open({ client });
      let partial = 0;
      for (let n = 0; ; n++) {
        before = -1;
        await cache.clear('temporary');
        // Fresh results: their commits delete nothing, so every DeleteObjects below is the clear's.
        for (const [key, formats] of Object.entries(RESULTS)) await commitText(cache, key, formats);
        before = n;
        const outcome = await cache.clear('temporary').catch((error: unknown) => error);
        if (typeof outcome === 'number') {
          // The (n+1)-th call never came: the clear went through.
          expect(outcome).to.equal(3);
          for (const key of Object.keys(RESULTS)) expect(await cache.head(key), key).to.equal(undefined);
          expect(n, 'the clear needs several DeleteObjects').to.be.greaterThan(2);
          break;
        }
        expect(BackendError.is(outcome) && outcome.retryable, String(outcome)).to.equal(true);
        let gone = 0;
        for (const [key, formats] of Object.entries(RESULTS)) {
          const manifest = await cache.head(key);
          for (const [format, text] of Object.entries(formats)) {
            expect(
              await readText(cache, key, format),
              `${key}/${format} after failing DeleteObjects #${String(n + 1)}`,
            ).to.equal(manifest === undefined ? undefined : text);
          }
          if (manifest === undefined) gone++;
        }
        if (gone > 0 && gone < 3) partial++;
      }
      // Some failures came after the clear had removed some keys and before it removed the others.
      expect(partial).to.be.greaterThan(0);
    });

    it('removes every object of the area over several pages and counts the results', async function () {
      const client = await ownClient();
      smallPages(client, 2);
      const { cache, clock, bucket, prefix, peer } = await open({ client });
      const area = `${prefix}temporary/`;
      // (No key that is another's prefix: s3rver lists 'a/…' before 'a-b/…', and then skips the latter.)
      await commitText(cache, 'a', { csv: 'a', txt: 'a', xml: 'a' });
      await commitText(cache, 'b', { csv: 'b' });
      await commitText(cache, 'c', { csv: 'c', txt: 'c' });
      await commitText(cache, 'p', { csv: 'p' }, 'persistent');
      // Leftovers: a commit that crashed before its manifest, and an object of someone else.
      const leftovers = [`${area}z/${newId('c')}/csv`, `${area}stray`];
      for (const key of leftovers) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' }));
      }
      expect(await listKeys(client, bucket, area)).to.have.length(11);
      const seen = recordCommands(client);
      expect(await cache.clear('temporary')).to.equal(3);
      expect(seen.filter((c) => c === 'ListObjectsV2Command')).to.have.length(6);
      // The leftovers are fresh: a commit in flight may still write a manifest naming them.
      expect(await listKeys(client, bucket, area)).to.deep.equal(leftovers.sort());
      expect(await readText(peer(), 'p', 'csv')).to.equal('p');
      // Older than orphanGraceMs (24 h by default; S3's LastModified is the real time): they go.
      await clock.set(Date.now() + 25 * 3_600_000);
      expect(await cache.clear('temporary')).to.equal(0);
      expect(await listKeys(client, bucket, area)).to.deep.equal([]);
    });
  });

  describe('close', function () {
    it('stops a multipart write in flight: it fails with ClosedError, its upload is aborted, and nothing is left', async function () {
      const client = await ownClient();
      const seen = recordCommands(client);
      const held = holdOnce(client, (command, input) => command === 'UploadPartCommand' && input['PartNumber'] === 2);
      const { cache, bucket, prefix, peer } = await open({ client, partSizeBytes: 5 * MiB, queueSize: 2 });
      // Another staged result, written (one 2 MiB staged object) but not committed yet.
      const waiting = await cache.stage('waiting');
      await waiting.write('bin', bytes(randomBytes(2 * MiB)), { contentType: 'application/octet-stream' });
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.have.length(1);

      const staged = await cache.stage('big');
      const write = staged.write('bin', chunked(randomBytes(14 * MiB)), {
        contentType: 'application/octet-stream',
      });
      const failed = rejectionOf(write);
      await held.reached;
      const closing = cache.close();
      held.release();
      expect(ClosedError.is(await failed), String(await failed)).to.equal(true);
      await closing;

      expect(seen.filter((c) => c.startsWith('AbortMultipartUploadCommand'))).to.have.length(1);
      expect(seen.filter((c) => c.startsWith('CompleteMultipartUploadCommand'))).to.deep.equal([]);
      // Both staged results were aborted: staging is empty.
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.deep.equal([]);
      // A commit after close: ClosedError, and no manifest.
      expect(ClosedError.is(await rejectionOf(waiting.commit('temporary')))).to.equal(true);
      expect(ClosedError.is(await rejectionOf(staged.write('csv', bytes('x'), { contentType: 'text/csv' })))).to.equal(
        true,
      );
      expect(await listKeys(client, bucket, prefix)).to.deep.equal([]);
      expect(await peer().head('waiting')).to.equal(undefined);
    });

    it('stops a write whose stream source stalls, and destroys the stream (review finding)', async function () {
      const { cache } = await open({});
      let asks = 0;
      let stalled: () => void = () => undefined;
      const waiting = new Promise<void>((resolve) => {
        stalled = resolve;
      });
      // One chunk, then nothing more and no end (a stalled upstream socket, say).
      const source = new Readable({
        read() {
          asks++;
          if (asks === 1) this.push(Buffer.from('first chunk'));
          else stalled();
        },
      });
      const staged = await cache.stage('stalled');
      const failed = rejectionOf(staged.write('bin', source, { contentType: 'application/octet-stream' }));
      await waiting;
      await cache.close();
      expect(ClosedError.is(await failed), String(await failed)).to.equal(true);
      expect(source.destroyed, 'the source stream is destroyed').to.equal(true);
    });

    it('takes async-iterable sources whose next() answers synchronously, and refuses one that breaks the protocol', async function () {
      this.timeout(20_000);
      const { cache } = await open({});
      const options = { contentType: 'application/octet-stream' };
      const chunks = [Buffer.from('abc'), Buffer.from('def')];
      // next() returns plain results, not promises: accepted, as for await accepts them.
      const plain: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => {
          let i = 0;
          return {
            next: () => (i < chunks.length ? { done: false, value: chunks[i++] } : { done: true, value: undefined }),
          } as unknown as AsyncIterator<Uint8Array>;
        },
      };
      const staged = await cache.stage('plain-next');
      await staged.write('bin', plain, options);
      await staged.commit('temporary');
      expect((await cache.head('plain-next'))?.formats['bin']?.size).to.equal(6);
      // A result that is not an object fails the write (it used to leave it pending for ever).
      const broken: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve(42) }) as unknown as AsyncIterator<Uint8Array>,
      };
      const other = await cache.stage('broken-next');
      const failure = await rejectionOf(other.write('bin', broken, options));
      expect(failure, String(failure)).to.be.instanceOf(Error);
      await other.abort();
      await cache.close();
    });

    it('stops writes whose async-generator sources stall, before and past the inline size', async function () {
      // A stalled read that close() did not cut short would hang here: fail fast instead.
      this.timeout(20_000);
      const { cache, bucket, prefix, peer, client } = await open({});
      const stalls: Promise<void>[] = [];
      /** Yields `sizes`, then waits forever: return() queues behind that wait, so only a cut ends it. */
      function stalling(sizes: readonly number[]): AsyncGenerator<Uint8Array> {
        let stalled: () => void = () => undefined;
        stalls.push(
          new Promise<void>((resolve) => {
            stalled = resolve;
          }),
        );
        return (async function* () {
          for (const size of sizes) yield randomBytes(size);
          stalled();
          await new Promise<never>(() => undefined);
        })();
      }
      const small = await cache.stage('stalled-small');
      const large = await cache.stage('stalled-large');
      const failures = [
        rejectionOf(small.write('bin', stalling([1024]), { contentType: 'application/octet-stream' })),
        // Past the 1 MiB kept in memory: the upload itself is reading when the source stalls.
        rejectionOf(large.write('bin', stalling([MiB, MiB]), { contentType: 'application/octet-stream' })),
      ];
      await Promise.all(stalls);
      await cache.close();
      for (const failed of failures) expect(ClosedError.is(await failed), String(await failed)).to.equal(true);
      expect(await listKeys(client, bucket, prefix)).to.deep.equal([]);
      expect(await peer().head('stalled-large')).to.equal(undefined);
    });

    it('stops a commit still writing its data: ClosedError, and none of it is left', async function () {
      const client = await ownClient();
      const { cache, bucket, prefix, peer } = await open({ client });
      const area = `${prefix}temporary/`;
      // Held at its data PUT: not yet past the fence check when close() comes.
      const early = await cache.stage('early');
      await early.write('csv', bytes('early'), { contentType: 'text/csv' });
      const heldData = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).startsWith(`${area}early/c`),
      );
      const stopped = rejectionOf(early.commit('temporary'));
      await heldData.reached;
      const closing = cache.close();
      heldData.release();
      expect(ClosedError.is(await stopped), String(await stopped)).to.equal(true);
      await closing;
      expect(await listKeys(client, bucket, prefix)).to.deep.equal([]);
      expect(await peer().head('early')).to.equal(undefined);
    });

    it('lets a commit past its fence check finish, and resolves once it has', async function () {
      const client = await ownClient();
      // Held at its manifest PUT: past the fence check, so it finishes and close() waits for it.
      const { cache, peer } = await open({ client });
      const late = await cache.stage('late');
      await late.write('csv', bytes('late'), { contentType: 'text/csv' });
      const heldManifest = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith('late/manifest.json'),
      );
      const order: string[] = [];
      const committed = late.commit('temporary').then((manifest) => {
        order.push('committed');
        return manifest;
      });
      await heldManifest.reached;
      const closed = cache.close().then(() => order.push('closed'));
      heldManifest.release();
      expect((await committed).formats).to.have.keys('csv');
      await closed;
      expect(order).to.deep.equal(['committed', 'closed']);
      expect(await readText(peer(), 'late', 'csv')).to.equal('late');
    });

    it('lets a read in flight finish before it destroys its own client, and refuses reads made meanwhile', async function () {
      const server = await standIn(true);
      const cache = cacheOn(server.url);
      try {
        const order: string[] = [];
        const reading = cache.head('k').then((manifest) => {
          order.push('read');
          return manifest;
        });
        // The request is on the wire, its answer not yet sent.
        await server.manifestAsked;
        const closing = cache.close().then(() => order.push('closed'));
        expect(ClosedError.is(await rejectionOf(cache.head('k')))).to.equal(true);
        expect(ClosedError.is(await rejectionOf(cache.list('persistent', { limit: 10 })))).to.equal(true);
        server.answer();
        // It used to fail with a socket error: close() destroyed the client under it.
        expect((await reading)?.area).to.equal('persistent');
        await closing;
        expect(order).to.deep.equal(['read', 'closed']);
      } finally {
        await cache.close();
        await server.close();
      }
    });

    it('does not wait for a body handed out; with its own client, the body then fails with ClosedError', async function () {
      const server = await standIn(false);
      const cache = cacheOn(server.url);
      try {
        // Headers and 1 KiB of 2 KiB came; the rest never will.
        const got = await cache.get('k', 'csv');
        expect(got?.size).to.equal(2048);
        await cache.close();
        const failure = await rejectionOf(collect(got?.body));
        expect(ClosedError.is(failure), String(failure)).to.equal(true);
      } finally {
        await cache.close();
        await server.close();
      }
    });

    // Review finding: a body read without an 'error' listener was left waiting for a read that
    // never came (the cut was kept for the next _read, which a flowing stream had already made).
    it('ends a body piped or read with data listeners alone with close when it cuts it', async function () {
      const server = await standIn(false);
      const cache = cacheOn(server.url);
      try {
        const piped = (await cache.get('k', 'csv'))?.body;
        const read = (await cache.get('k', 'csv'))?.body;
        if (piped === undefined || read === undefined) throw new Error('no body');
        // Each has passed on the first KiB of 2 KiB (the rest never comes) to its reader.
        let firstPiped!: () => void;
        const pipedFirst = new Promise<void>((resolve) => (firstPiped = resolve));
        let sunk = 0;
        piped.pipe(
          new Writable({
            write(chunk: Buffer, _encoding, callback) {
              sunk += chunk.length;
              if (sunk >= 1024) firstPiped();
              callback();
            },
          }),
        );
        let firstRead!: () => void;
        const readFirst = new Promise<void>((resolve) => (firstRead = resolve));
        let got = 0;
        read.on('data', (chunk: Buffer) => {
          got += chunk.length;
          if (got >= 1024) firstRead();
        });
        await Promise.all([pipedFirst, readFirst]);
        // Not events.once: it listens for 'error' too.
        const closed = Promise.all(
          [piped, read].map(
            (body) =>
              new Promise<void>((resolve) =>
                body.on('close', () => {
                  resolve();
                }),
              ),
          ),
        );
        await cache.close();
        // Destroyed by the close itself: no 'error' event, which nobody listens to.
        expect([piped.destroyed, read.destroyed]).to.deep.equal([true, true]);
        await closed;
        expect([sunk, got]).to.deep.equal([1024, 1024]);
      } finally {
        await cache.close();
        await server.close();
      }
    });

    // Review finding: close() waited for reads on the application's client, where the cache sets
    // no timeout, so a stalled read stalled close() as long.
    it('does not wait for reads in flight on the application’s client, and refuses calls made after', async function () {
      const server = await standIn(true);
      const client = new S3Client({
        region: 'us-east-1',
        endpoint: server.url,
        forcePathStyle: true,
        credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' },
        maxAttempts: 1,
      });
      const cache = new S3CacheManager({ bucket: STAND_IN_BUCKET, client }, new ManualClock());
      try {
        const reading = cache.head('k');
        // The request is on the wire, its answer held.
        await server.manifestAsked;
        let closed = false;
        const closing = cache.close().then(() => (closed = true));
        // Nothing to wait for: close() resolves on promise callbacks alone, the read still held.
        await settleTurns();
        expect(closed).to.equal(true);
        expect(ClosedError.is(await rejectionOf(cache.head('k')))).to.equal(true);
        expect(ClosedError.is(await rejectionOf(cache.get('k', 'csv')))).to.equal(true);
        server.answer();
        // The client stays open: the read finishes with its answer.
        expect((await reading)?.area).to.equal('persistent');
        await closing;
      } finally {
        server.answer();
        await cache.close();
        client.destroy();
        await server.close();
      }
    });

    it('leaves a body handed out streaming when the client is the application’s', async function () {
      const { cache } = await open();
      await commitText(cache, 'k', { txt: Buffer.alloc(256 * 1024, 'y') });
      const got = await cache.get('k', 'txt');
      await cache.close();
      expect(await collect(got?.body)).to.deep.equal(Buffer.alloc(256 * 1024, 'y'));
    });
  });
});
