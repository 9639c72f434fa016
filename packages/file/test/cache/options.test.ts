import * as fs from 'node:fs';
import { join, resolve } from 'node:path';

import { expect } from 'chai';

import { ConfigError, ManualClock } from '@armlib/core';

import { checkFileCacheOptions, FileCacheManager } from '../../src/cache/file-cache-manager.js';
import type { FileCacheManagerOptions } from '../../src/cache/file-cache-manager.js';
import { childOutcome } from '../child-outcome.js';
import { put, tempDir } from './support.js';
import type { TempDir } from './support.js';

describe('file cache: options', function () {
  let tmp: TempDir;

  beforeEach(async function () {
    tmp = await tempDir();
  });

  afterEach(async function () {
    await tmp.remove();
  });

  it('accepts valid options and no options', function () {
    expect(checkFileCacheOptions(undefined)).to.deep.equal([]);
    expect(checkFileCacheOptions({})).to.deep.equal([]);
    expect(
      checkFileCacheOptions({
        dir: './x',
        durability: 'full',
        urlPrefix: '/files/',
        inlineMaxBytes: 0,
        region: undefined,
      }),
    ).to.deep.equal([]);
  });

  it('refuses an unknown option name (a misspelt durability would go unnoticed)', function () {
    const issues = checkFileCacheOptions({ dir: './x', durabilty: 'full', region: 'eu-west-1' });
    expect(issues.map((issue) => issue.path)).to.deep.equal(['/durabilty', '/region']);
    expect(issues[0]?.message).to.equal('unknown option (expected one of dir, durability, urlPrefix, inlineMaxBytes)');
  });

  it('names every bad option by its path', function () {
    const cases: [unknown, string[]][] = [
      [{ dir: '' }, ['/dir']],
      [{ dir: '   ' }, ['/dir']],
      [{ dir: 42 }, ['/dir']],
      [{ dir: 'var/a\0b' }, ['/dir']],
      [{ durability: 'fsync' }, ['/durability']],
      [{ urlPrefix: '/results' }, ['/urlPrefix']],
      [{ urlPrefix: 7 }, ['/urlPrefix']],
      [{ inlineMaxBytes: -1 }, ['/inlineMaxBytes']],
      [{ inlineMaxBytes: 1.5 }, ['/inlineMaxBytes']],
      [{ inlineMaxBytes: 65537 }, ['/inlineMaxBytes']],
      [{ inlineMaxBytes: '8192' }, ['/inlineMaxBytes']],
      [{ dir: null, durability: true, urlPrefix: null }, ['/dir', '/durability', '/urlPrefix']],
      ['./var', ['']],
      [['./var'], ['']],
    ];
    for (const [options, paths] of cases) {
      expect(
        checkFileCacheOptions(options).map((issue) => issue.path),
        JSON.stringify(options),
      ).to.deep.equal(paths);
    }
  });

  it('refuses options it cannot read with a ConfigError naming the field, without touching the disk', function () {
    const dir = join(tmp.path, 'never-created');
    const pathsOf = (options: unknown): string[] => {
      try {
        new FileCacheManager(options as FileCacheManagerOptions, new ManualClock());
      } catch (error) {
        expect(ConfigError.is(error), String(error)).to.equal(true);
        return (error as ConfigError).issues.map((i) => i.path);
      }
      return [];
    };
    const throwing = Object.defineProperty({ dir }, 'urlPrefix', {
      enumerable: true,
      get: () => {
        throw new Error('boom');
      },
    });
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(pathsOf(throwing)).to.deep.equal(['/urlPrefix']);
    expect(pathsOf(revoked)).to.deep.equal(['']);
    expect(
      pathsOf(
        new Proxy(
          { dir },
          {
            get: () => {
              throw new Error('trap');
            },
          },
        ),
      ),
    ).to.deep.equal(['/dir', '/durability', '/urlPrefix', '/inlineMaxBytes']);
    expect(pathsOf({ dir, inlineMaxBytes: 10n })).to.deep.equal(['/inlineMaxBytes']);
    expect(pathsOf(null)).to.deep.equal([]);
    expect(pathsOf('x')).to.deep.equal(['']);
    expect(fs.existsSync(dir)).to.equal(false);
  });

  it('checkFileCacheOptions returns options it cannot read as issues naming the field, never throwing', function () {
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const [issue, ...others] = checkFileCacheOptions(
      Object.defineProperty({ dir: 'c' }, 'urlPrefix', { enumerable: true, get: boom }),
    );
    expect(others).to.deep.equal([]);
    expect(issue).to.include({ path: '/urlPrefix', message: 'cannot be read: boom' });
    expect((issue?.cause as Error | undefined)?.message).to.equal('boom');
    expect(checkFileCacheOptions(revoked).map((i) => i.path)).to.deep.equal(['']);
    expect(checkFileCacheOptions(new Proxy({}, { ownKeys: boom })).map((i) => i.path)).to.deep.equal(['']);
    expect(checkFileCacheOptions(new Proxy({ dir: 'c' }, { get: boom })).map((i) => i.path)).to.deep.equal([
      '/dir',
      '/durability',
      '/urlPrefix',
      '/inlineMaxBytes',
    ]);
  });

  it('throws a ConfigError with the same issues from the constructor, without touching the disk', function () {
    const dir = join(tmp.path, 'never-created');
    let thrown: unknown;
    try {
      new FileCacheManager({ dir, durability: 'sometimes' as 'full' }, new ManualClock());
    } catch (error) {
      thrown = error;
    }
    expect(ConfigError.is(thrown), String(thrown)).to.equal(true);
    expect((thrown as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/durability']);
    // A valid instance does not create its directory until it is used either.
    const cache = new FileCacheManager({ dir }, new ManualClock());
    expect(fs.existsSync(dir)).to.equal(false);
    expect(cache.dir).to.equal(resolve(dir));
  });

  it('resolves a relative dir against the working directory, defaulting to ./var/armlib', async function () {
    expect(new FileCacheManager().dir).to.equal(resolve('var/armlib'));
    const cwd = process.cwd();
    process.chdir(tmp.path);
    try {
      const cache = new FileCacheManager({ dir: 'relative/cache' }, new ManualClock());
      await put(cache, 'k', 'temporary', { csv: 'x' });
      await cache.close();
      expect(fs.existsSync(join(tmp.path, 'relative', 'cache', 'temporary'))).to.equal(true);
    } finally {
      process.chdir(cwd);
    }
  });

  it('creates a deep chain of missing directories on first use', async function () {
    const levels = Array.from({ length: 10 }, (_, i) => `d${String(i)}`);
    const dir = join(tmp.path, ...levels);
    const cache = new FileCacheManager({ dir }, new ManualClock());
    await put(cache, 'k', 'temporary', { csv: 'x' });
    await cache.close();
    expect(fs.existsSync(join(dir, 'temporary'))).to.equal(true);
  });

  // Node 20's recursive mkdir loops for ever (blocking the event loop) when mkdir answers ENOENT
  // under an existing parent, as under /proc: run in a child, killed and failing if it hangs.
  it('reports a dir it cannot create (under /proc) as a ConfigError on /dir naming it, without hanging', function () {
    const outcome = childOutcome(`
      const cache = new file.FileCacheManager({ dir: '/proc/armlib-test/x' });
      try {
        await cache.head('k');
      } finally {
        await cache.close();
      }
    `);
    expect(outcome.name, JSON.stringify(outcome)).to.equal('ConfigError');
    expect(outcome.issues?.map((issue) => issue.path)).to.deep.equal(['/dir']);
    expect(outcome.issues?.[0]?.message).to.include('/proc/armlib-test');
  });

  it('routes URLs under urlPrefix and reports its capabilities', async function () {
    const cache = new FileCacheManager({ dir: tmp.path, urlPrefix: '/files/' }, new ManualClock());
    expect(cache.capabilities).to.deep.equal({ signedUrls: false, sharedAcrossProcesses: true });
    await put(cache, 'k', 'temporary', { csv: 'x' });
    expect(await cache.url('k', 'csv', { expiresInSec: 60 })).to.equal('/files/k/csv');
    expect(await cache.url('k', 'json', { expiresInSec: 60 })).to.equal(undefined);
    await cache.close();
  });
});
