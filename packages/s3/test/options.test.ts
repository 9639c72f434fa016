import { constants } from 'node:buffer';

import { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { ConfigError } from '@armlib/core';

import { checkS3CacheOptions, S3_CACHE_DEFAULTS, S3CacheManager } from '../src/index.js';
import type { S3CacheManagerOptions } from '../src/index.js';

function paths(options: unknown): string[] {
  return checkS3CacheOptions(options).map((i) => i.path);
}

describe('@armlib/s3 options', function () {
  it('accepts a bucket alone, and every documented field', function () {
    expect(checkS3CacheOptions({ bucket: 'my-bucket' })).to.deep.equal([]);
    expect(
      checkS3CacheOptions({
        bucket: 'my.bucket-1',
        prefix: 'armlib/',
        region: 'eu-west-1',
        endpoint: 'http://127.0.0.1:4568',
        forcePathStyle: true,
        clientConfig: { maxAttempts: 5 },
        gzip: true,
        partSizeBytes: 8 * 1024 * 1024,
        queueSize: 2,
        orphanGraceMs: 3_600_000,
      }),
    ).to.deep.equal([]);
    expect(checkS3CacheOptions({ bucket: 'b-b', client: new S3Client({ region: 'us-east-1' }) })).to.deep.equal([]);
  });

  it("refuses a prefix with '.' or '..' segments, control characters or unpaired surrogates", function () {
    for (const prefix of ['tenantA/../', '../x/', 'a/./b/', '..', 'a\u0000b/', 'a\nb/', '\ud800/', 'x\udc00/']) {
      expect(paths({ bucket: 'ok-bucket', prefix }), JSON.stringify(prefix)).to.deep.equal(['/prefix']);
    }
    for (const prefix of ['', 'armlib/', 'a..b/', '.hidden/', 'tenant-\u00e9/', '\ud83d\ude00/']) {
      expect(paths({ bucket: 'ok-bucket', prefix }), JSON.stringify(prefix)).to.deep.equal([]);
    }
  });

  it('names every bad field by its path', function () {
    expect(paths(undefined)).to.deep.equal(['']);
    expect(paths([])).to.deep.equal(['']);
    expect(paths({})).to.deep.equal(['/bucket']);
    expect(paths({ bucket: 'Upper_Case' })).to.deep.equal(['/bucket']);
    expect(paths({ bucket: 'ab' })).to.deep.equal(['/bucket']);
    expect(
      paths({
        bucket: 'ok-bucket',
        prefix: '/abs',
        region: '',
        endpoint: 'not a url',
        forcePathStyle: 'yes',
        gzip: 1,
        partSizeBytes: 1024,
        queueSize: 0,
        clientConfig: 'x',
      }),
    ).to.deep.equal([
      '/prefix',
      '/region',
      '/endpoint',
      '/forcePathStyle',
      '/gzip',
      '/partSizeBytes',
      '/queueSize',
      '/clientConfig',
    ]);
    const issue = checkS3CacheOptions({ bucket: 'ok-bucket', partSizeBytes: 1024 })[0];
    expect(issue?.message).to.include('5 MiB');
    // A part is held in one buffer: no larger than node's largest (4 GiB on Node 20) nor S3's 5 GiB.
    const largest = Math.min(5 * 2 ** 30, constants.MAX_LENGTH);
    expect(checkS3CacheOptions({ bucket: 'ok-bucket', partSizeBytes: largest })).to.deep.equal([]);
    expect(checkS3CacheOptions({ bucket: 'ok-bucket', partSizeBytes: largest + 1 })[0]?.path).to.equal(
      '/partSizeBytes',
    );
  });

  it('takes orphanGraceMs as an integer of at least 1 h, 24 h by default', function () {
    expect(S3_CACHE_DEFAULTS.orphanGraceMs).to.equal(24 * 3_600_000);
    for (const good of [3_600_000, 24 * 3_600_000, 365 * 24 * 3_600_000]) {
      expect(checkS3CacheOptions({ bucket: 'ok-bucket', orphanGraceMs: good })).to.deep.equal([]);
    }
    for (const bad of [3_599_999, 0, -1, 5_400_000.5, Number.NaN, Number.POSITIVE_INFINITY, '24h', null]) {
      const issues = checkS3CacheOptions({ bucket: 'ok-bucket', orphanGraceMs: bad });
      expect(
        issues.map((i) => i.path),
        String(bad),
      ).to.deep.equal(['/orphanGraceMs']);
      expect(issues[0]?.message).to.include('1 h');
    }
    let caught: unknown;
    try {
      new S3CacheManager({ bucket: 'ok-bucket', orphanGraceMs: 60_000 });
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.is(caught)).to.equal(true);
    expect((caught as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/orphanGraceMs']);
  });

  it('refuses a client together with client settings, naming both paths', function () {
    const client = new S3Client({ region: 'us-east-1' });
    const issues = checkS3CacheOptions({
      bucket: 'ok-bucket',
      client,
      clientConfig: { region: 'us-east-1' },
      endpoint: 'http://x',
    });
    expect(issues.map((i) => i.path)).to.deep.equal(['/endpoint', '/clientConfig']);
    for (const issue of issues) expect(issue.message).to.include('/client');
    expect(paths({ bucket: 'ok-bucket', client: { not: 'a client' } })).to.deep.equal(['/client']);
    client.destroy();
  });

  it('names an unknown option (a typo is not silently dropped); one given as undefined is left out', function () {
    const issues = checkS3CacheOptions({ bucket: 'ok-bucket', keyPrefx: 'armlib/', gzip: undefined, other: undefined });
    expect(issues.map((i) => i.path)).to.deep.equal(['/keyPrefx']);
    expect(issues[0]?.message).to.match(
      /^unknown option \(expected one of bucket, prefix, .*queueSize, orphanGraceMs\)$/,
    );
    let caught: unknown;
    try {
      new S3CacheManager({ bucket: 'ok-bucket', keyPrefx: 'armlib/' } as S3CacheManagerOptions);
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.is(caught)).to.equal(true);
    expect((caught as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/keyPrefx']);
  });

  it('refuses options it cannot read with a ConfigError naming the field, never the raw error', function () {
    const pathsOf = (options: unknown): string[] => {
      try {
        new S3CacheManager(options as S3CacheManagerOptions);
      } catch (error) {
        expect(ConfigError.is(error), String(error)).to.equal(true);
        return (error as ConfigError).issues.map((i) => i.path);
      }
      return [];
    };
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(pathsOf(Object.defineProperty({}, 'bucket', { enumerable: true, get: boom }))).to.deep.equal(['/bucket']);
    expect(pathsOf(revoked)).to.deep.equal(['']);
    expect(pathsOf(new Proxy({ bucket: 'ok-bucket' }, { ownKeys: boom }))).to.deep.equal(['']);
    expect(pathsOf({ bucket: 'ok-bucket', clientConfig: revoked })).to.deep.equal(['/clientConfig']);
    expect(
      pathsOf({
        bucket: 'ok-bucket',
        clientConfig: {
          get requestHandler() {
            return boom();
          },
        },
      }),
    ).to.deep.equal(['/clientConfig']);
    expect(pathsOf({ bucket: 'ok-bucket', client: revoked })).to.deep.equal(['/client']);
    expect(pathsOf({ bucket: 'ok-bucket', prefix: revoked })).to.deep.equal(['/prefix']);
    expect(pathsOf(null)).to.deep.equal(['']);
  });

  it('checkS3CacheOptions returns options it cannot read as issues naming the field, never throwing', function () {
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const [issue, ...others] = checkS3CacheOptions(
      Object.defineProperty({ bucket: 'ok-bucket' }, 'prefix', { enumerable: true, get: boom }),
    );
    expect(others).to.deep.equal([]);
    expect(issue).to.include({ path: '/prefix', message: 'cannot be read: boom' });
    expect((issue?.cause as Error | undefined)?.message).to.equal('boom');
    expect(checkS3CacheOptions(revoked).map((i) => i.path)).to.deep.equal(['']);
    expect(checkS3CacheOptions(new Proxy({}, { ownKeys: boom })).map((i) => i.path)).to.deep.equal(['']);
    expect(checkS3CacheOptions(new Proxy({ bucket: 'ok-bucket' }, { get: boom })).map((i) => i.path)).to.include(
      '/bucket',
    );
  });

  it('throws a ConfigError from the constructor, before any I/O', function () {
    let caught: unknown;
    try {
      new S3CacheManager({ bucket: 'x', queueSize: 100 });
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.is(caught)).to.equal(true);
    expect((caught as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/bucket', '/queueSize']);
  });
});
