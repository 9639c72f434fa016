import { randomBytes } from 'node:crypto';
import { pipeline, Readable, Transform } from 'node:stream';

import { expect } from 'chai';

import { BackendError, chunksOf } from '@armlib/core';

import type { S3CacheManager } from '../src/index.js';
import { replaceBodies } from './harness/faults.js';
import type { CommandInput } from './harness/faults.js';
import { collect, rejectionOf, useCaches } from './harness/fixture.js';

function isData(input: CommandInput): boolean {
  return typeof input['Key'] === 'string' && !input['Key'].endsWith('/manifest.json');
}

/** `body`'s first chunk, then `error`, as a body does when its connection drops. */
function failingAfterFirstChunk(body: Readable, error: Error): Readable {
  async function* firstThenFail(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of body) {
        yield chunk as Buffer;
        throw error;
      }
    } finally {
      body.destroy();
    }
  }
  return Readable.from(firstThenFail(), { objectMode: false });
}

async function commitBinary(cache: S3CacheManager, key: string, data: Buffer): Promise<void> {
  const staged = await cache.stage(key);
  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield* chunksOf(data, 64 * 1024);
  }
  await staged.write('bin', chunks(), { contentType: 'application/octet-stream' });
  await staged.commit('temporary');
}

describe('@armlib/s3 S3CacheManager bodies', function () {
  this.timeout(60_000);
  const { open, ownClient } = useCaches();

  it('stops downloading a gzipped format once the range asked for has been read', async function () {
    const client = await ownClient();
    let received = 0;
    replaceBodies(client, isData, (body) => {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback): void {
          received += chunk.byteLength;
          callback(null, chunk);
        },
      });
      return pipeline(body, counter, () => {
        // Ended or destroyed by the reader: nothing to report.
      });
    });
    const { cache } = await open({ client, gzip: true });
    // Random bytes do not compress: the stored object is as large as the data.
    const data = randomBytes(4 * 1024 * 1024);
    await commitBinary(cache, 'big', data);
    const part = await cache.get('big', 'bin', { range: { start: 100, end: 199 } });
    expect((await collect(part?.body)).equals(data.subarray(100, 200))).to.equal(true);
    expect(received).to.be.greaterThan(0);
    expect(received).to.be.lessThan(1024 * 1024);
  });

  for (const gzip of [false, true]) {
    it(`reports a body cut off while it streams as a retryable BackendError with its cause (gzip ${String(gzip)})`, async function () {
      const client = await ownClient();
      let cut = false;
      const reset = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
      replaceBodies(
        client,
        (input) => cut && isData(input),
        (body) => failingAfterFirstChunk(body, reset),
      );
      const { cache } = await open({ client, gzip });
      const data = randomBytes(300 * 1024);
      await commitBinary(cache, 'cut', data);
      cut = true;
      const got = await cache.get('cut', 'bin');
      const error = await rejectionOf(collect(got?.body));
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      expect((error as BackendError).cause).to.equal(reset);
      cut = false;
      expect((await collect((await cache.get('cut', 'bin'))?.body)).equals(data)).to.equal(true);
    });
  }

  it('reports undecodable gzip and a body shorter than its manifest says as BackendErrors', async function () {
    const client = await ownClient();
    let replacement: Buffer | undefined;
    replaceBodies(
      client,
      (input) => replacement !== undefined && isData(input),
      (body) => {
        body.destroy();
        return Readable.from([replacement as Buffer], { objectMode: false });
      },
    );
    const zipped = await open({ client, gzip: true });
    const plain = await open({ client });
    const data = randomBytes(10_000);
    await commitBinary(zipped.cache, 'k', data);
    await commitBinary(plain.cache, 'k', data);
    replacement = Buffer.from('this is not gzip');
    const undecodable = await rejectionOf(collect((await zipped.cache.get('k', 'bin'))?.body));
    expect(BackendError.is(undecodable), String(undecodable)).to.equal(true);
    expect(((undecodable as BackendError).cause as { code?: unknown }).code).to.equal('Z_DATA_ERROR');
    replacement = data.subarray(0, 5_000);
    const short = await rejectionOf(collect((await plain.cache.get('k', 'bin'))?.body));
    expect(BackendError.is(short), String(short)).to.equal(true);
    expect(String(short)).to.include('5000 of 10000 bytes');
  });
});
