import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

import { expect } from 'chai';

import { BackendError } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { collectStaging, STALE_STAGING_MS } from '../../src/cache/garbage.js';
import { shardOf } from '../../src/cache/layout.js';
import { put, rejection, rowOf, runOnResults, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

/** The files of one key in its shard directory of `area`. */
function filesOf(dir: string, area: string, key: string): string[] {
  const shardDir = join(dir, area, shardOf(key));
  if (!fs.existsSync(shardDir)) return [];
  return fs
    .readdirSync(shardDir)
    .filter((name) => name.startsWith(`${key}@`))
    .sort();
}

describe('file cache: damaged and foreign entries', function () {
  let tmp: TempDir;
  let dir: string;
  let cache: FileCacheManager;

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
    // Every format in a file of its own, so that a sweep has data files to keep or remove.
    cache = new FileCacheManager({ dir, inlineMaxBytes: 0 });
  });

  afterEach(async function () {
    await cache.close();
    await tmp.remove();
  });

  it('leaves alone, data files included, a key whose row it cannot read, and refuses to commit over it', async function () {
    await put(cache, 'newer', 'persistent', { csv: 'a,b\n' });
    const shardDir = join(dir, 'persistent', shardOf('newer'));
    const commit = rowOf(dir, 'persistent', 'newer')?.commit_id ?? '';
    // A result committed two hours ago (the commit id carries its time): its data files are past
    // the age at which files no row names are collected.
    const old = (Date.now() - 2 * 3_600_000).toString(36).padStart(9, '0') + commit.slice(9);
    fs.renameSync(join(shardDir, `newer@${commit}@csv`), join(shardDir, `newer@${old}@csv`));
    runOnResults(dir, "UPDATE results SET commit_id = ? WHERE key = 'newer'", old);
    expect(await text(cache, 'newer', 'csv')).to.equal('a,b\n');
    // As a newer armlib might write it: a row version this one does not read.
    runOnResults(dir, "UPDATE results SET v = 99 WHERE key = 'newer'");
    const before = filesOf(dir, 'persistent', 'newer');
    expect(await cache.sweep('persistent', Date.now() + 1000)).to.equal(0);
    expect(filesOf(dir, 'persistent', 'newer')).to.deep.equal(before);
    expect(rowOf(dir, 'persistent', 'newer')?.v).to.equal(99);
    // Reads fail rather than guess; a commit, to either area, does not replace it.
    const read = await rejection(cache.head('newer'));
    expect(BackendError.is(read), String(read)).to.equal(true);
    expect(String(read)).to.include('row version 99');
    for (const area of ['persistent', 'temporary'] as const) {
      const refused = await rejection(put(cache, 'newer', area, { csv: 'replacement' }));
      expect(BackendError.is(refused), `${area}: ${String(refused)}`).to.equal(true);
    }
    expect(rowOf(dir, 'persistent', 'newer')?.v).to.equal(99);
    expect(rowOf(dir, 'temporary', 'newer')).to.equal(undefined);
    expect(filesOf(dir, 'persistent', 'newer')).to.deep.equal(before);
    // Deleting the key removes the row; its data file is then an orphan, collected by a sweep.
    expect(await cache.delete('newer')).to.equal(1);
    expect(await cache.sweep('persistent', 0)).to.equal(0);
    expect(filesOf(dir, 'persistent', 'newer')).to.deep.equal([]);
  });

  it('removes a damaged row on delete and clear, and lists around it', async function () {
    await put(cache, 'empty', 'persistent', { csv: 'x\n' });
    await put(cache, 'whole', 'persistent', { csv: 'y\n' });
    // Rows damaged by hand (or by a bug): formats that are not JSON.
    runOnResults(dir, "UPDATE results SET formats = '{\"csv\":' WHERE key = 'empty'");
    expect((await cache.list('persistent', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['whole']);
    // A page of one skips the damaged row and still says that more follow.
    const first = await cache.list('persistent', { limit: 1 });
    expect(first.items.map((m) => m.key)).to.deep.equal(['whole']);
    expect(BackendError.is(await rejection(cache.head('empty')))).to.equal(true);
    expect(await cache.delete('empty')).to.equal(1);
    expect(await cache.head('empty')).to.equal(undefined);
    await put(cache, 'empty', 'persistent', { csv: 'z\n' });
    runOnResults(dir, "UPDATE results SET data = x'00', formats = '{}' WHERE key = 'empty'");
    // A key no request could have: never made into a file name.
    runOnResults(
      dir,
      'INSERT INTO results (area, key, v, commit_id, created_at, fence, formats, data) ' +
        'VALUES (\'persistent\', \'../evil\', 1, ?, 1, NULL, \'{"csv":{"size":1,"contentType":"text/csv"}}\', NULL)',
      rowOf(dir, 'persistent', 'whole')?.commit_id,
    );
    expect((await cache.list('persistent', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['whole']);
    expect(await cache.clear('persistent')).to.equal(3);
    expect(await cache.head('empty')).to.equal(undefined);
    expect(await cache.head('whole')).to.equal(undefined);
  });

  it('refuses a FIFO planted at a data file name instead of hanging on it', async function () {
    await put(cache, 'piped', 'persistent', { csv: 'x\n' });
    const commit = rowOf(dir, 'persistent', 'piped')?.commit_id ?? '';
    const dataPath = join(dir, 'persistent', shardOf('piped'), `piped@${commit}@csv`);
    fs.unlinkSync(dataPath);
    execFileSync('mkfifo', [dataPath]);
    const error = await rejection(cache.get('piped', 'csv'));
    expect(BackendError.is(error), String(error)).to.equal(true);
    expect(String(error)).to.include('not a regular file');
    expect(await cache.sweep('persistent', 0)).to.equal(0);
    // Deleting the key removes the planted FIFO.
    expect(await cache.delete('piped')).to.equal(1);
    expect(fs.existsSync(dataPath)).to.equal(false);
  });

  it('refuses a FIFO planted at a data file name when a promotion copies (no hard links), instead of hanging', async function () {
    await put(cache, 'piped', 'temporary', { csv: 'x\n' });
    const commit = rowOf(dir, 'temporary', 'piped')?.commit_id ?? '';
    const dataPath = join(dir, 'temporary', shardOf('piped'), `piped@${commit}@csv`);
    fs.unlinkSync(dataPath);
    // Node has no mkfifo of its own; coreutils' command is on every machine CI uses (Debian), where
    // this runs. Only a machine without it skips, and says so in the test's title.
    if (!mkfifo(dataPath)) skipBecause(this, 'the mkfifo command is not installed: no FIFO to plant');
    // A writer that opens the FIFO and closes it at once, as soon as a reader opens it: a copy
    // that opened the FIFO anyway then reads an empty file and this test fails, where it would
    // otherwise hang the whole run inside a synchronous open.
    const writer = spawn('sh', ['-c', ': > "$0"', dataPath], { stdio: 'ignore' });
    const links = failLinks();
    try {
      const error = await rejection(cache.promote('piped'));
      expect(BackendError.is(error), String(error)).to.equal(true);
      expect(String(error)).to.include('not a regular file');
    } finally {
      links.restore();
      writer.kill();
    }
    expect(fs.readdirSync(join(dir, 'staging')), 'no copy left in staging').to.deep.equal([]);
    expect(rowOf(dir, 'temporary', 'piped')?.commit_id).to.equal(commit);
    expect(rowOf(dir, 'persistent', 'piped')).to.equal(undefined);
  });

  it('refuses a symlink planted at a data file name when a promotion copies, leaving its target alone', async function () {
    await put(cache, 'linked', 'temporary', { csv: 'x\n' });
    const commit = rowOf(dir, 'temporary', 'linked')?.commit_id ?? '';
    const dataPath = join(dir, 'temporary', shardOf('linked'), `linked@${commit}@csv`);
    const secret = join(tmp.path, 'secret');
    fs.writeFileSync(secret, 'SECRET');
    fs.unlinkSync(dataPath);
    fs.symlinkSync(secret, dataPath);
    const links = failLinks();
    try {
      const error = await rejection(cache.promote('linked'));
      expect(BackendError.is(error), String(error)).to.equal(true);
      expect(String(error)).to.include('symlink');
    } finally {
      links.restore();
    }
    expect(fs.readdirSync(join(dir, 'staging'))).to.deep.equal([]);
    expect(fs.readFileSync(secret, 'utf8')).to.equal('SECRET');
  });

  it('promotes by copying where the file system has no hard links', async function () {
    const big = 'y'.repeat(200_000);
    await put(cache, 'copied', 'temporary', { csv: big, json: '{}' });
    const links = failLinks();
    try {
      expect(await cache.promote('copied')).to.equal(true);
    } finally {
      links.restore();
    }
    expect(await text(cache, 'copied', 'csv')).to.equal(big);
    expect(await text(cache, 'copied', 'json')).to.equal('{}');
    expect((await cache.head('copied'))?.area).to.equal('persistent');
    expect(fs.readdirSync(join(dir, 'staging'))).to.deep.equal([]);
  });

  it('reads a row whose data file is missing as damage, not retryable, in get and promote', async function () {
    await put(cache, 'lost', 'temporary', { csv: 'x\n' });
    const commit = rowOf(dir, 'temporary', 'lost')?.commit_id ?? '';
    fs.unlinkSync(join(dir, 'temporary', shardOf('lost'), `lost@${commit}@csv`));
    for (const error of [await rejection(cache.get('lost', 'csv')), await rejection(cache.promote('lost'))]) {
      expect(BackendError.is(error), String(error)).to.equal(true);
      expect((error as BackendError).retryable, String(error)).to.equal(false);
      expect(String(error)).to.include("csv of 'lost' is missing");
    }
    // Still there until deleted or committed again.
    expect(rowOf(dir, 'temporary', 'lost')?.commit_id).to.equal(commit);
    expect(await cache.delete('lost')).to.equal(1);
    expect(await cache.get('lost', 'csv')).to.equal(undefined);
  });

  it('keeps a promotion’s staged hard link of an old file: its stage id is fresh, whatever its mtime', async function () {
    await put(cache, 'warm', 'temporary', { csv: 'x\n' });
    const staging = join(dir, 'staging');
    const twoDays = 2 * STALE_STAGING_MS;
    const idAt = (msAgo: number): string => (Date.now() - msAgo).toString(36).padStart(9, '0') + 'a'.repeat(11);
    // A link made just now (fresh id) of a file last written two days ago, as promote makes.
    const linked = `${idAt(0)}@csv`;
    // A staging left two days ago.
    const left = `${idAt(twoDays)}@csv`;
    const old = new Date(Date.now() - twoDays);
    for (const name of [linked, left]) {
      fs.writeFileSync(join(staging, name), 'x');
      fs.utimesSync(join(staging, name), old, old);
    }
    expect(collectStaging(staging)).to.equal(1);
    expect(fs.readdirSync(staging)).to.deep.equal([linked]);
  });

  it('opens a fresh directory that another process sets up between its two looks at it', async function () {
    const require = createRequire(import.meta.url);
    const cjsFs = require('node:fs') as typeof fs;
    const first = new FileCacheManager({ dir });
    const second = new FileCacheManager({ dir });
    const openSync = cjsFs.openSync;
    let armed = true;
    let firstOpened: Promise<unknown> | undefined;
    // The second instance finds no layout record; the first then sets the directory up in full.
    cjsFs.openSync = function (this: unknown, ...args: Parameters<typeof fs.openSync>) {
      if (armed && String(args[0]).endsWith('cache-layout')) {
        armed = false;
        try {
          return openSync.apply(this, args);
        } finally {
          firstOpened = first.head('x');
        }
      }
      return openSync.apply(this, args);
    };
    syncBuiltinESMExports();
    try {
      expect(await second.head('x')).to.equal(undefined);
      expect(await firstOpened).to.equal(undefined);
    } finally {
      cjsFs.openSync = openSync;
      syncBuiltinESMExports();
      await first.close();
      await second.close();
    }
    expect(await text(cache, 'x', 'csv')).to.equal(undefined);
  });
});

/** Skips the running test, saying why in its title (mocha's skip takes no reason). */
function skipBecause(context: Mocha.Context, reason: string): never {
  if (context.test !== undefined) context.test.title += ` (skipped: ${reason})`;
  context.skip();
}

/** Makes a FIFO at `path`; false when the mkfifo command is not installed. */
function mkfifo(path: string): boolean {
  try {
    execFileSync('mkfifo', [path]);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Makes hard links fail as on a file system without them (EPERM), until restored: Node's own
 * `fs.linkSync` is swapped, and the ESM view of it synced, so the cache's calls come here.
 */
function failLinks(): { restore(): void } {
  const nodeFs = createRequire(import.meta.url)('node:fs') as typeof fs;
  const linkSync = nodeFs.linkSync;
  nodeFs.linkSync = () => {
    throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
  };
  syncBuiltinESMExports();
  return {
    restore() {
      nodeFs.linkSync = linkSync;
      syncBuiltinESMExports();
    },
  };
}
