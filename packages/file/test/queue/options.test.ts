import fs from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';
import { Container } from 'inversify';

import { ConfigError, loadConfig, ManualClock, TOKENS } from '@armlib/core';

import { checkFileQueueOptions, FileQueueManager } from '../../src/queue/file-queue-manager.js';
import type { FileQueueManagerOptions } from '../../src/queue/file-queue-manager.js';
import { childOutcome } from '../child-outcome.js';
import { entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

function configIssues(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (error) {
    if (ConfigError.is(error)) return [...error.issues];
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('FileQueueManager: options', function () {
  let dir: string;

  beforeEach(function () {
    dir = makeTempDir();
  });

  afterEach(function () {
    removeTempDir(dir);
  });

  it('accepts no options, empty options and valid ones', function () {
    expect(checkFileQueueOptions(undefined)).to.deep.equal([]);
    expect(checkFileQueueOptions(null)).to.deep.equal([]);
    expect(checkFileQueueOptions({})).to.deep.equal([]);
    expect(checkFileQueueOptions({ dir: 'x', durability: 'full', busyTimeoutMs: 0, statsCacheMs: 0 })).to.deep.equal(
      [],
    );
    expect(checkFileQueueOptions({ statsCacheMs: 3_600_000 })).to.deep.equal([]);
    // Undefined keeps the default, whatever the name.
    expect(checkFileQueueOptions({ durability: undefined, region: undefined })).to.deep.equal([]);
  });

  it('rejects unknown option names, naming each and the known ones', function () {
    const expected = 'unknown option (expected one of dir, durability, busyTimeoutMs, statsCacheMs)';
    expect(checkFileQueueOptions({ durability: 'normal', region: 'eu-west-1', maxFinishedBytes: 5 })).to.deep.equal([
      { path: '/region', message: expected },
      { path: '/maxFinishedBytes', message: expected },
    ]);
    const target = path.join(dir, 'never');
    const issues = configIssues(
      () => new FileQueueManager({ dir: target, busyTimeout: 100 } as FileQueueManagerOptions, new ManualClock(T0)),
    );
    expect(issues).to.deep.equal([{ path: '/busyTimeout', message: expected }]);
    expect(fs.existsSync(target)).to.equal(false);
  });

  it('still loads when an environment variable switches the queue to file from an adapter with options', async function () {
    const config = await loadConfig(
      { queue: { adapter: 'memory', options: { maxFinishedBytes: 1024 } }, cache: { adapter: 'memory' } },
      { env: { ARMLIB_QUEUE_ADAPTER: 'file', ARMLIB_DIR: dir } },
    );
    expect(config.queue).to.deep.equal({ adapter: 'file', options: { dir } });
    // Options written for the file queue are still checked, names included.
    const error: unknown = await loadConfig(
      { queue: { adapter: 'file', options: { dir, fsync: true } }, cache: { adapter: 'memory' } },
      { env: {} },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ConfigError.is(error), String(error)).to.equal(true);
    expect((error as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/queue/options/fsync']);
  });

  it('names every bad option by its path', function () {
    expect(checkFileQueueOptions('x').map((i) => i.path)).to.deep.equal(['']);
    expect(checkFileQueueOptions([]).map((i) => i.path)).to.deep.equal(['']);
    const cases: [unknown, string][] = [
      [{ dir: '' }, '/dir'],
      [{ dir: 5 }, '/dir'],
      [{ dir: 'a\0b' }, '/dir'],
      [{ dir: 'x'.repeat(5000) }, '/dir'],
      [{ durability: 'fsync' }, '/durability'],
      [{ durability: true }, '/durability'],
      [{ busyTimeoutMs: -1 }, '/busyTimeoutMs'],
      [{ busyTimeoutMs: 1.5 }, '/busyTimeoutMs'],
      [{ busyTimeoutMs: '100' }, '/busyTimeoutMs'],
      [{ busyTimeoutMs: 2 ** 31 }, '/busyTimeoutMs'],
      [{ statsCacheMs: -1 }, '/statsCacheMs'],
      [{ statsCacheMs: 0.5 }, '/statsCacheMs'],
      [{ statsCacheMs: '2000' }, '/statsCacheMs'],
      [{ statsCacheMs: 3_600_001 }, '/statsCacheMs'],
    ];
    for (const [options, where] of cases) {
      expect(
        checkFileQueueOptions(options).map((i) => i.path),
        JSON.stringify(options).slice(0, 60),
      ).to.deep.equal([where]);
    }
    expect(checkFileQueueOptions({ dir: '', durability: 'x', busyTimeoutMs: -2 }).map((i) => i.path)).to.deep.equal([
      '/dir',
      '/durability',
      '/busyTimeoutMs',
    ]);
  });

  it('checks without touching the disk', function () {
    const target = path.join(dir, 'not-yet');
    expect(checkFileQueueOptions({ dir: target })).to.deep.equal([]);
    expect(fs.existsSync(target)).to.equal(false);
  });

  it('throws ConfigError with the same issues from the constructor, creating nothing', function () {
    const target = path.join(dir, 'never');
    const issues = configIssues(
      () => new FileQueueManager({ dir: target, durability: 'x' as 'full' }, new ManualClock(T0)),
    );
    expect(issues.map((i) => i.path)).to.deep.equal(['/durability']);
    expect(fs.existsSync(target)).to.equal(false);
  });

  it('refuses options it cannot read with a ConfigError naming the field, creating nothing', function () {
    const target = path.join(dir, 'never');
    const make = (options: unknown) => () =>
      new FileQueueManager(options as FileQueueManagerOptions, new ManualClock(T0));
    const throwing = Object.defineProperty({ dir: target }, 'durability', {
      enumerable: true,
      get: () => {
        throw new Error('boom');
      },
    });
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(configIssues(make(throwing))[0]).to.include({ path: '/durability', message: 'cannot be read: boom' });
    expect(configIssues(make(revoked)).map((i) => i.path)).to.deep.equal(['']);
    const trap = new Proxy(
      { dir: target },
      {
        get: () => {
          throw new Error('trap');
        },
      },
    );
    expect(configIssues(make(trap)).map((i) => i.path)).to.deep.equal([
      '/dir',
      '/durability',
      '/busyTimeoutMs',
      '/statsCacheMs',
    ]);
    expect(configIssues(make({ dir: target, busyTimeoutMs: revoked })).map((i) => i.path)).to.deep.equal([
      '/busyTimeoutMs',
    ]);
    expect(configIssues(make(5)).map((i) => i.path)).to.deep.equal(['']);
    expect(fs.existsSync(target)).to.equal(false);
  });

  it('checkFileQueueOptions returns options it cannot read as issues naming the field, never throwing', function () {
    const boom = (): never => {
      throw new Error('boom');
    };
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const [issue, ...others] = checkFileQueueOptions(
      Object.defineProperty({ dir: 'q' }, 'durability', { enumerable: true, get: boom }),
    );
    expect(others).to.deep.equal([]);
    expect(issue).to.include({ path: '/durability', message: 'cannot be read: boom' });
    expect((issue?.cause as Error | undefined)?.message).to.equal('boom');
    expect(checkFileQueueOptions(revoked).map((i) => i.path)).to.deep.equal(['']);
    expect(checkFileQueueOptions(new Proxy({}, { ownKeys: boom })).map((i) => i.path)).to.deep.equal(['']);
    expect(checkFileQueueOptions(new Proxy({ dir: 'q' }, { get: boom })).map((i) => i.path)).to.deep.equal([
      '/dir',
      '/durability',
      '/busyTimeoutMs',
      '/statsCacheMs',
    ]);
  });

  it('creates the directory (mkdir -p), resolves a relative dir against the working directory', async function () {
    const nested = path.join(dir, 'a', 'b', 'c');
    const relative = path.relative(process.cwd(), nested);
    const q = new FileQueueManager({ dir: relative, durability: 'full', busyTimeoutMs: 100 }, new ManualClock(T0));
    try {
      expect(q.dir).to.equal(nested);
      expect(fs.statSync(nested).isDirectory()).to.equal(true);
      expect(fs.existsSync(path.join(nested, 'queue.sqlite'))).to.equal(true);
    } finally {
      await q.close();
    }
  });

  it('creates a deep chain of missing directories, readable by its owner only', async function () {
    const levels = Array.from({ length: 10 }, (_, i) => `d${String(i)}`);
    const deep = path.join(dir, ...levels);
    const q = new FileQueueManager({ dir: deep }, new ManualClock(T0));
    try {
      expect(fs.existsSync(path.join(deep, 'queue.sqlite'))).to.equal(true);
      for (let depth = 1; depth <= levels.length; depth++) {
        expect(fs.statSync(path.join(dir, ...levels.slice(0, depth))).mode & 0o077).to.equal(0);
      }
    } finally {
      await q.close();
    }
  });

  // Node 20's recursive mkdir loops for ever (blocking the event loop) when mkdir answers ENOENT
  // under an existing parent, as under /proc: run in a child, killed and failing if it hangs.
  it('reports a dir it cannot create (under /proc) as a BackendError naming it and the option, without hanging', function () {
    const outcome = childOutcome(`new file.FileQueueManager({ dir: '/proc/armlib-test/x' });`);
    expect(outcome.name, JSON.stringify(outcome)).to.equal('BackendError');
    expect(outcome.message).to.include("creating the directory '/proc/armlib-test/x' (the dir option)");
    expect(outcome.retryable).to.equal(false);
  });

  it('reports it the same through createRequestManager', function () {
    const outcome = childOutcome(
      `await core.createRequestManager({ queue: { adapter: 'file', options: { dir: '/proc/armlib-test/x' } } });`,
    );
    expect(outcome.name, JSON.stringify(outcome)).to.equal('BackendError');
    expect(outcome.message).to.include("'/proc/armlib-test/x' (the dir option)");
  });

  it('is built by the container from the queue options and clock tokens', async function () {
    const clock = new ManualClock(T0);
    const container = new Container();
    container.bind(TOKENS.QueueOptions).toConstantValue({ dir, durability: 'normal' });
    container.bind(TOKENS.Clock).toConstantValue(clock);
    container.bind(TOKENS.QueueManager).to(FileQueueManager).inSingletonScope();
    const resolved = container.get(TOKENS.QueueManager);
    expect(resolved).to.be.instanceOf(FileQueueManager);
    try {
      const { record } = await resolved.enqueue(entry('di'), NO_LIMITS);
      expect(record.submittedAt).to.equal(T0);
      expect(fs.existsSync(path.join(dir, 'queue.sqlite'))).to.equal(true);
    } finally {
      await resolved.close();
    }
  });
});
