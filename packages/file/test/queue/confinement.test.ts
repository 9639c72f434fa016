import fs from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { ConfigError, ManualClock } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (ConfigError.is(error)) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('FileQueueManager: confinement to its directory', function () {
  let root: string;

  beforeEach(function () {
    root = makeTempDir();
  });

  afterEach(function () {
    removeTempDir(root);
  });

  it('refuses a directory that is a symbolic link, writing nothing through it', function () {
    const real = path.join(root, 'real');
    fs.mkdirSync(real);
    const link = path.join(root, 'link');
    fs.symlinkSync(real, link);
    const error = refusal(() => new FileQueueManager({ dir: link }, new ManualClock(T0)));
    expect(error.issues.map((i) => i.path)).to.deep.equal(['/dir']);
    expect(fs.readdirSync(real)).to.deep.equal([]);
  });

  for (const name of ['queue.sqlite', 'queue.sqlite-wal', 'queue.sqlite-shm']) {
    it(`refuses a symbolic link planted as ${name}, leaving its target alone`, function () {
      const dir = path.join(root, 'q');
      fs.mkdirSync(dir);
      const target = path.join(root, 'elsewhere');
      fs.writeFileSync(target, 'precious');
      fs.symlinkSync(target, path.join(dir, name));
      const error = refusal(() => new FileQueueManager({ dir }, new ManualClock(T0)));
      expect(error.issues.map((i) => i.path)).to.deep.equal(['/dir']);
      expect(fs.readFileSync(target, 'utf8')).to.equal('precious');
    });
  }

  it('refuses a dir that is a file', function () {
    const file = path.join(root, 'file');
    fs.writeFileSync(file, '');
    const error = refusal(() => new FileQueueManager({ dir: file }, new ManualClock(T0)));
    expect(error.issues.map((i) => i.path)).to.deep.equal(['/dir']);
  });

  it('touches nothing in its directory but queue.sqlite and its -wal and -shm files', async function () {
    const dir = path.join(root, 'q');
    const other = path.join(dir, 'persistent');
    fs.mkdirSync(other, { recursive: true });
    const clock = new ManualClock(T0);
    const q = new FileQueueManager({ dir }, clock);
    try {
      await q.enqueue(entry('../../etc/passwd'), NO_LIMITS);
      await q.enqueue(entry('k', { uri: '/x/../../y', group: '../g', owner: '/abs' }), NO_LIMITS);
      const lease = await q.claim(claimOptions());
      await q.complete(lease?.record.key ?? '', lease?.token ?? '', { durationMs: 1 });
      await q.sweep();
      expect(fs.readdirSync(dir).sort()).to.deep.equal([
        'persistent',
        'queue.sqlite',
        'queue.sqlite-shm',
        'queue.sqlite-wal',
      ]);
      expect(fs.readdirSync(other)).to.deep.equal([]);
      expect(fs.readdirSync(root)).to.deep.equal(['q']);
    } finally {
      await q.close();
    }
  });
});
