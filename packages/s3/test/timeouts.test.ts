import http from 'node:http';

import { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError, ConfigError, ManualClock } from '@armlib/core';

import { checkS3CacheOptions, S3_CACHE_DEFAULTS, S3CacheManager } from '../src/index.js';
import type { S3CacheManagerOptions } from '../src/index.js';
import { newId } from '../src/layout.js';
import { encodeManifest } from '../src/manifest.js';
import { clientConfigOf } from '../src/options.js';
import { collect, rejectionOf } from './harness/fixture.js';
import { listenOnLoopback, notFound } from './harness/stand-in-server.js';
import { silentServer, unacceptingServer } from '@armlib/conformance';

const BUCKET = 'armlib-timeouts';

/** Options of a cache on `endpoint`; one SDK attempt, so that a call fails after one timeout. */
function optionsOn(endpoint: string, extra: Partial<S3CacheManagerOptions> = {}): S3CacheManagerOptions {
  return {
    bucket: BUCKET,
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    clientConfig: { credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' }, maxAttempts: 1 },
    ...extra,
  };
}

function expectRetryableTimeout(failure: unknown): void {
  expect(BackendError.is(failure), String(failure)).to.equal(true);
  const error = failure as BackendError;
  expect(error.retryable).to.equal(true);
  expect(error.cause).to.be.instanceOf(Error).with.property('name', 'TimeoutError');
}

/**
 * An S3 stand-in holding one temporary result `k` with one format `csv` of `chunks` × 1 KiB: it
 * answers the manifest reads at once, then sends the data's headers and first chunk, and the other
 * chunks `everyMs` apart (never, when undefined).
 */
async function trickleServer(
  chunks: number,
  everyMs: number | undefined,
): Promise<{ url: string; close: () => Promise<void> }> {
  const chunk = Buffer.alloc(1024, 'x');
  const size = chunks * chunk.byteLength;
  const commitId = newId('c');
  const manifest = encodeManifest({
    key: 'k',
    area: 'temporary',
    createdAt: 1_000_000,
    commitId,
    formats: { csv: { info: { size, contentType: 'text/csv' }, storedSize: size } },
  });
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === `/${BUCKET}/temporary/k/manifest.json`) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(manifest);
    } else if (path === `/${BUCKET}/temporary/k/${commitId}/csv`) {
      res.writeHead(200, { 'Content-Type': 'text/csv', 'Content-Length': String(size) });
      res.write(chunk);
      if (everyMs === undefined) return;
      let sent = 1;
      const timer = setInterval(() => {
        res.write(chunk);
        if (++sent === chunks) {
          clearInterval(timer);
          timers.delete(timer);
          res.end();
        }
      }, everyMs);
      timers.add(timer);
    } else {
      notFound(res);
    }
  });
  return listenOnLoopback(server, () => {
    for (const timer of timers) clearInterval(timer);
  });
}

describe('@armlib/s3 client timeouts', function () {
  // Without the timeouts these calls hang: fail in seconds, not at the suite's timeout.
  this.timeout(10_000);

  it('fails a call to a server that accepts and never answers with a retryable BackendError', async function () {
    const server = await silentServer();
    const cache = new S3CacheManager(optionsOn(server.url, { requestTimeoutMs: 200 }), new ManualClock());
    try {
      const started = Date.now();
      expectRetryableTimeout(await rejectionOf(cache.head('k')));
      // The connection was made: the request timeout gave up, after its time had passed.
      expect(server.accepted()).to.be.at.least(1);
      expect(Date.now() - started).to.be.at.least(150);
      expectRetryableTimeout(await rejectionOf(cache.get('k', 'csv')));
    } finally {
      await cache.close();
      await server.close();
    }
  });

  it('fails a call whose connection is never accepted with a retryable BackendError', async function () {
    const server = await unacceptingServer();
    const cache = new S3CacheManager(optionsOn(server.url, { connectTimeoutMs: 200 }), new ManualClock());
    try {
      expectRetryableTimeout(await rejectionOf(cache.head('k')));
    } finally {
      await cache.close();
      await server.close();
    }
  });

  it('fails the body of a get that stops arriving with a retryable BackendError', async function () {
    const server = await trickleServer(4, undefined);
    const cache = new S3CacheManager(optionsOn(server.url, { requestTimeoutMs: 200 }), new ManualClock());
    try {
      const got = await cache.get('k', 'csv');
      expect(got?.size).to.equal(4096);
      const failure = await rejectionOf(collect(got?.body));
      expect(BackendError.is(failure), String(failure)).to.equal(true);
      expect((failure as BackendError).retryable).to.equal(true);
      expect((failure as BackendError).cause).to.have.property('name', 'TimeoutError');
    } finally {
      await cache.close();
      await server.close();
    }
  });

  it('lets a body that keeps arriving run longer than requestTimeoutMs: it is an idle timeout', async function () {
    // 20 chunks 50 ms apart: about 1 s in all, never 300 ms without a byte.
    const server = await trickleServer(20, 50);
    const cache = new S3CacheManager(optionsOn(server.url, { requestTimeoutMs: 300 }), new ManualClock());
    try {
      const started = Date.now();
      const got = await cache.get('k', 'csv');
      expect(await collect(got?.body)).to.deep.equal(Buffer.alloc(20 * 1024, 'x'));
      expect(Date.now() - started).to.be.at.least(600);
    } finally {
      await cache.close();
      await server.close();
    }
  });

  it('gives the client it builds a connection and a request timeout, 3 s and 30 s by default', function () {
    expect(S3_CACHE_DEFAULTS).to.include({ connectTimeoutMs: 3000, requestTimeoutMs: 30_000 });
    expect(clientConfigOf({ bucket: BUCKET }).requestHandler).to.deep.equal({
      connectionTimeout: 3000,
      socketTimeout: 30_000,
    });
    const config = clientConfigOf({
      bucket: BUCKET,
      region: 'eu-west-1',
      connectTimeoutMs: 500,
      requestTimeoutMs: 2000,
      clientConfig: { maxAttempts: 2 },
    });
    expect(config).to.deep.include({ region: 'eu-west-1', maxAttempts: 2 });
    expect(config.requestHandler).to.deep.equal({ connectionTimeout: 500, socketTimeout: 2000 });
    // A request handler of the user's is used as given.
    const requestHandler = { httpsAgent: { maxSockets: 8 } };
    expect(clientConfigOf({ bucket: BUCKET, clientConfig: { requestHandler } }).requestHandler).to.equal(
      requestHandler,
    );
  });

  it('refuses a timeout that is not an integer from 10 to 3600000, naming its path', function () {
    for (const name of ['connectTimeoutMs', 'requestTimeoutMs'] as const) {
      for (const good of [10, 200, 3_600_000, undefined]) {
        expect(checkS3CacheOptions({ bucket: BUCKET, [name]: good }), `${name} ${String(good)}`).to.deep.equal([]);
      }
      for (const bad of [0, 9, -1, 3_600_001, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '200', null, true]) {
        const issues = checkS3CacheOptions({ bucket: BUCKET, [name]: bad });
        expect(
          issues.map((i) => i.path),
          `${name} ${String(bad)}`,
        ).to.deep.equal([`/${name}`]);
        expect(issues[0]?.message).to.include('from 10 to 3600000');
      }
    }
    let caught: unknown;
    try {
      new S3CacheManager({ bucket: BUCKET, requestTimeoutMs: 0 });
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.is(caught)).to.equal(true);
    expect((caught as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/requestTimeoutMs']);
  });

  it('refuses the timeouts together with a ready client, naming their paths', function () {
    const client = new S3Client({ region: 'us-east-1' });
    try {
      const issues = checkS3CacheOptions({ bucket: BUCKET, client, connectTimeoutMs: 1000, requestTimeoutMs: 1000 });
      expect(issues.map((i) => i.path)).to.deep.equal(['/connectTimeoutMs', '/requestTimeoutMs']);
      for (const issue of issues) expect(issue.message).to.include('/client');
    } finally {
      client.destroy();
    }
  });

  it('refuses the timeouts together with a request handler of the clientConfig, naming their paths', function () {
    const clientConfig = { requestHandler: { connectionTimeout: 100 } };
    const issues = checkS3CacheOptions({
      bucket: BUCKET,
      clientConfig,
      connectTimeoutMs: 1000,
      requestTimeoutMs: 1000,
    });
    expect(issues.map((i) => i.path)).to.deep.equal(['/connectTimeoutMs', '/requestTimeoutMs']);
    for (const issue of issues) expect(issue.message).to.include('/clientConfig/requestHandler');
    let caught: unknown;
    try {
      new S3CacheManager({ bucket: BUCKET, clientConfig, connectTimeoutMs: 1000 });
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.is(caught)).to.equal(true);
    expect((caught as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/connectTimeoutMs']);
    // Alone, either one is fine.
    expect(checkS3CacheOptions({ bucket: BUCKET, clientConfig })).to.deep.equal([]);
    expect(
      checkS3CacheOptions({ bucket: BUCKET, clientConfig: { maxAttempts: 2 }, requestTimeoutMs: 1000 }),
    ).to.deep.equal([]);
  });
});
