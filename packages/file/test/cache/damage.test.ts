import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

import { expect } from 'chai';

import { BackendError } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { collectStaging, STALE_STAGING_MS } from '../../src/cache/garbage.js';
import { shardOf } from '../../src/cache/layout.js';
import { put, rejection, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

/** The files of one key in its shard directory of `area`. */
function filesOf(dir: string, area: string, key: string): string[] {
  return fs
    .readdirSync(join(dir, area, shardOf(key)))
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

  it('leaves alone, data files included, a key whose manifest it cannot read', async function () {
    await put(cache, 'newer', 'persistent', { csv: 'a,b\n' });
    const shardDir = join(dir, 'persistent', shardOf('newer'));
    const manifestPath = join(shardDir, 'newer@manifest');
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { commit: string };
    // A result committed two hours ago (the commit id carries its time): its data files are past
    // the age at which files no manifest names are collected.
    const old = (Date.now() - 2 * 3_600_000).toString(36).padStart(9, '0') + manifest.commit.slice(9);
    fs.renameSync(join(shardDir, `newer@${manifest.commit}@csv`), join(shardDir, `newer@${old}@csv`));
    fs.writeFileSync(manifestPath, JSON.stringify({ ...manifest, commit: old }));
    expect(await text(cache, 'newer', 'csv')).to.equal('a,b\n');
    // As a newer armlib might write it: a manifest version this one does not read.
    fs.writeFileSync(manifestPath, JSON.stringify({ ...manifest, commit: old, v: 99 }));
    const before = filesOf(dir, 'persistent', 'newer');
    expect(await cache.sweep('persistent', 0)).to.equal(0);
    expect(filesOf(dir, 'persistent', 'newer')).to.deep.equal(before);
  });

  it('removes a damaged manifest on delete and clear, and lists around it', async function () {
    await put(cache, 'empty', 'persistent', { csv: 'x\n' });
    await put(cache, 'whole', 'persistent', { csv: 'y\n' });
    // What a power loss in `normal` durability can leave: a manifest of zero bytes.
    fs.writeFileSync(join(dir, 'persistent', shardOf('empty'), 'empty@manifest'), '');
    expect((await cache.list('persistent', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['whole']);
    expect(await cache.delete('empty')).to.equal(1);
    expect(await cache.head('empty')).to.equal(undefined);
    await put(cache, 'empty', 'persistent', { csv: 'z\n' });
    fs.writeFileSync(join(dir, 'persistent', shardOf('empty'), 'empty@manifest'), '');
    expect(await cache.clear('persistent')).to.equal(2);
    expect(await cache.head('empty')).to.equal(undefined);
    expect(await cache.head('whole')).to.equal(undefined);
  });

  it('refuses a FIFO planted at a manifest name instead of hanging on it', async function () {
    await put(cache, 'piped', 'persistent', { csv: 'x\n' });
    const manifestPath = join(dir, 'persistent', shardOf('piped'), 'piped@manifest');
    fs.unlinkSync(manifestPath);
    execFileSync('mkfifo', [manifestPath]);
    const error = await rejection(cache.head('piped'));
    expect(BackendError.is(error), String(error)).to.equal(true);
    expect(String(error)).to.include('not a regular file');
    expect(await cache.sweep('persistent', Date.now() + 1000)).to.equal(0);
    // Deleting the key removes the planted FIFO.
    expect(await cache.delete('piped')).to.equal(1);
    expect(fs.existsSync(manifestPath)).to.equal(false);
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
