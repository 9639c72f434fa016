import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

import { expect } from 'chai';

import { ClosedError, ConfigError, ManualClock } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { shardOf } from '../../src/cache/layout.js';
import { bytes, collect, openResults, put, rejection, rowOf, runOnResults, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

const require = createRequire(import.meta.url);
const DAY_MS = 24 * 60 * 60 * 1000;

/** Sets the mtime (and atime) of `path` to `msAgo` before now. */
function age(path: string, msAgo: number): void {
  const when = new Date(Date.now() - msAgo);
  fs.utimesSync(path, when, when);
}

/** A commit (or staging) id made `msAgo` before now: 9 base-36 digits of time, 11 of randomness. */
function commitId(msAgo: number, random: string): string {
  return (Date.now() - msAgo).toString(36).padStart(9, '0') + random.padStart(11, '0');
}

describe('file cache: durability', function () {
  let tmp: TempDir;
  let dir: string;
  const open: FileCacheManager[] = [];

  function openCache(
    options: { durability?: 'normal' | 'full'; inlineMaxBytes?: number } = {},
    clock = new ManualClock(1_000_000),
  ): FileCacheManager {
    const cache = new FileCacheManager({ dir, ...options }, clock);
    open.push(cache);
    return cache;
  }

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
  });

  /**
   * Writes a committed result by hand, as a commit (perhaps of another process) leaves it: data
   * files, then the row (the cache must have opened the directory).
   */
  function plantResult(
    area: 'persistent' | 'temporary',
    key: string,
    commit: string,
    formats: Record<string, string>,
    createdAt: number,
  ): void {
    const shardDir = join(dir, area, shardOf(key));
    fs.mkdirSync(shardDir, { recursive: true });
    const infos: Record<string, { size: number; contentType: string }> = {};
    for (const [format, content] of Object.entries(formats)) {
      fs.writeFileSync(join(shardDir, `${key}@${commit}@${format}`), content);
      infos[format] = { size: Buffer.byteLength(content), contentType: 'text/plain' };
    }
    runOnResults(
      dir,
      'INSERT OR REPLACE INTO results (area, key, v, commit_id, created_at, fence, formats, data) VALUES (?, ?, 1, ?, ?, NULL, ?, NULL)',
      area,
      key,
      commit,
      createdAt,
      JSON.stringify(infos),
    );
  }

  afterEach(async function () {
    for (const cache of open.splice(0)) await cache.close();
    await tmp.remove();
  });

  it('keeps results, areas and commit times across close and reopen', async function () {
    const first = openCache();
    await put(first, 'kept', 'persistent', { csv: 'a,b\n', json: '[]' });
    await put(first, 'temp', 'temporary', { csv: 'temporary' });
    await first.close();

    const second = openCache();
    const head = await second.head('kept');
    expect(head).to.deep.include({ key: 'kept', area: 'persistent', createdAt: 1_000_000 });
    expect(head?.formats['csv']).to.deep.equal({ size: 4, contentType: 'text/plain' });
    expect(await text(second, 'kept', 'json')).to.equal('[]');
    expect((await second.head('temp'))?.area).to.equal('temporary');
    expect((await second.list('persistent', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['kept']);
  });

  it('lets a commit and a promotion under way finish when closed, and refuses calls made after', async function () {
    // Files, not inline formats: a file commit awaits between its steps, where close() came in.
    const cache = openCache({ inlineMaxBytes: 0 });
    await put(cache, 'promoted', 'temporary', { csv: 'to promote' });
    const staged = await cache.stage('committed');
    await staged.write('csv', bytes('x'.repeat(70_000)), { contentType: 'text/csv' });
    const committing = staged.commit('temporary');
    const promoting = cache.promote('promoted');
    const closing = cache.close();
    expect(await rejection(cache.stage('late'))).to.be.instanceOf(ClosedError);
    expect(await rejection(cache.promote('promoted'))).to.be.instanceOf(ClosedError);
    expect((await committing).area).to.equal('temporary');
    expect(await promoting).to.equal(true);
    await closing;

    const reopened = openCache();
    expect(await text(reopened, 'committed', 'csv')).to.equal('x'.repeat(70_000));
    expect((await reopened.head('promoted'))?.area).to.equal('persistent');
    expect(await text(reopened, 'promoted', 'csv')).to.equal('to promote');
  });

  it('lays results out flat as <dir>/<area>/<shard>/<key>@<commit>@<format>, named by a row of cache.sqlite', async function () {
    const cache = openCache({ inlineMaxBytes: 0 });
    await put(cache, 'laid-out', 'temporary', { csv: 'x', 'tar.gz': 'y' });
    const shardDir = join(dir, 'temporary', shardOf('laid-out'));
    const names = fs.readdirSync(shardDir).sort();
    const row = rowOf(dir, 'temporary', 'laid-out');
    expect(row?.v).to.equal(1);
    expect(row?.commit_id).to.match(/^[0-9a-z]{20}$/);
    expect(names).to.deep.equal([`laid-out@${row?.commit_id ?? ''}@csv`, `laid-out@${row?.commit_id ?? ''}@tar.gz`]);
    expect(JSON.parse(row?.formats ?? '')).to.deep.equal({
      csv: { size: 1, contentType: 'text/plain' },
      'tar.gz': { size: 1, contentType: 'text/plain' },
    });
    expect(fs.readdirSync(join(dir, 'staging'))).to.deep.equal([]);
    expect(
      fs
        .readdirSync(dir)
        .filter((name) => !name.startsWith('cache.sqlite-'))
        .sort(),
    ).to.deep.equal(['cache-layout', 'cache.sqlite', 'persistent', 'staging', 'temporary']);
    expect(fs.readFileSync(join(dir, 'cache-layout'), 'utf8')).to.equal('sqlite-1\n');
    // 8 KiB pages, so that a row with a 1 KiB format fits in its leaf (see open-cache-database.ts).
    const db = openResults(dir);
    try {
      expect(db.pragma('page_size', { simple: true })).to.equal(8192);
    } finally {
      db.close();
    }
  });

  it('fits the longest key and format with a commit id in one file name of 255 bytes', async function () {
    const cache = openCache({ inlineMaxBytes: 0 });
    const key = `K${'k'.repeat(199)}`;
    const format = `F${'f'.repeat(31)}`;
    await put(cache, key, 'temporary', { [format]: 'long' });
    const names = fs.readdirSync(join(dir, 'temporary', shardOf(key)));
    const data = names.find((name) => name.endsWith(`@${format}`));
    expect(data, names.join()).to.be.a('string');
    expect(Buffer.byteLength(data ?? '')).to.be.at.most(255);
    expect(await text(cache, key, format)).to.equal('long');
    expect(await cache.promote(key)).to.equal(true);
    expect(await text(cache, key, format)).to.equal('long');
    // A rewrite in staging carries a suffix: still within the bound.
    const staged = await cache.stage(key);
    await staged.write(format, bytes('a'), { contentType: 'text/plain' });
    await staged.write(format, bytes('bb'), { contentType: 'text/plain' });
    await staged.commit('persistent');
    expect(await text(cache, key, format)).to.equal('bb');
  });

  it('refuses a directory of the old layout (a directory per key) with a ConfigError naming it', async function () {
    fs.mkdirSync(join(dir, 'persistent', 'ab', 'some-key'), { recursive: true });
    fs.writeFileSync(join(dir, 'persistent', 'ab', 'some-key', 'manifest.json'), '{"v":1}');
    const cache = openCache();
    const error = await cache.head('some-key').catch((e: unknown) => e);
    expect(ConfigError.is(error), String(error)).to.equal(true);
    expect((error as ConfigError).issues[0]?.path).to.equal('/dir');
    expect((error as ConfigError).message)
      .to.include(dir)
      .and.include('persistent/');
    // Nothing was written into it.
    expect(fs.readdirSync(dir)).to.deep.equal(['persistent']);
  });

  it('refuses a directory recorded with another layout version', async function () {
    fs.mkdirSync(dir);
    fs.writeFileSync(join(dir, 'cache-layout'), 'flat-9\n');
    const error = await openCache()
      .head('k')
      .catch((e: unknown) => e);
    expect(ConfigError.is(error), String(error)).to.equal(true);
    expect((error as ConfigError).message).to.include("'flat-9'");
  });

  it('shows the old complete result after a crash mid-write or mid-commit, and collects the garbage', async function () {
    const cache = openCache();
    await put(cache, 'k', 'temporary', { csv: 'old csv', json: '"old json"' });
    await cache.close();

    // What kill -9 leaves behind: staging files of a half-written rewrite (mid-write) ...
    // (A staging id carries the time it was made: these were made two days ago.)
    const staleId = commitId(2 * DAY_MS, 'aa');
    const staging = join(dir, 'staging', `${staleId}@csv@w1`);
    const stagingFirst = join(dir, 'staging', `${staleId}@json`);
    for (const path of [staging, stagingFirst]) {
      fs.writeFileSync(path, 'new cs');
      age(path, 2 * DAY_MS);
    }
    // ... and a staging another process still writes: its old file goes with its fresh one.
    const live = join(dir, 'staging', `${commitId(0, 'bb')}@csv`);
    const liveOld = join(dir, 'staging', `${commitId(0, 'bb')}@json`);
    fs.writeFileSync(live, 'in progress');
    fs.writeFileSync(liveOld, '{}');
    age(liveOld, 2 * DAY_MS);
    // Mid-commit: the files were renamed in, the row never written (and a half-written manifest
    // of the flat-1 layout, which a crash of an earlier armlib left).
    const shardDir = join(dir, 'temporary', shardOf('k'));
    fs.mkdirSync(shardDir, { recursive: true });
    const oldCommit = commitId(2 * 60 * 60 * 1000, 'cc');
    const orphans = ['csv', 'json'].map((format) => join(shardDir, `k@${oldCommit}@${format}`));
    fs.writeFileSync(orphans[0] ?? '', 'new csv');
    fs.writeFileSync(orphans[1] ?? '', '"new json"');
    const tornManifest = join(shardDir, `k@manifest.${oldCommit}`);
    fs.writeFileSync(tornManifest, '{"v":2,"key":"k","are');
    // A key with leftovers only (its commit died before its first manifest).
    const lone = join(shardDir, `lone@${oldCommit}@csv`);
    fs.writeFileSync(lone, 'x');
    // Files younger than the garbage threshold may be a concurrent commit: kept.
    const young = join(shardDir, `k@${commitId(1000, 'ee')}@csv`);
    fs.writeFileSync(young, 'young');
    // A name this cache never makes is left alone.
    const foreign = join(shardDir, 'README');
    fs.writeFileSync(foreign, 'not ours');

    const reopened = openCache();
    expect(await text(reopened, 'k', 'csv')).to.equal('old csv');
    expect(await text(reopened, 'k', 'json')).to.equal('"old json"');
    expect((await reopened.head('k'))?.formats['csv']?.size).to.equal(7);
    // Opening collected the stale staging only, all of it.
    expect(fs.existsSync(staging)).to.equal(false);
    expect(fs.existsSync(stagingFirst)).to.equal(false);
    expect(fs.existsSync(live)).to.equal(true);
    expect(fs.existsSync(liveOld)).to.equal(true);

    // A sweep that removes nothing still collects the orphans.
    expect(await reopened.sweep('temporary', 0)).to.equal(0);
    for (const path of [...orphans, tornManifest, lone]) expect(fs.existsSync(path), path).to.equal(false);
    expect(fs.existsSync(young)).to.equal(true);
    expect(fs.existsSync(foreign)).to.equal(true);
    expect(await text(reopened, 'k', 'csv')).to.equal('old csv');

    // The next commit of the key publishes over all of it.
    await put(reopened, 'k', 'temporary', { csv: 'newest' });
    expect(await text(reopened, 'k', 'csv')).to.equal('newest');
    expect(await reopened.get('k', 'json')).to.equal(undefined);
  });

  it("replaces the key's result in the other area in the transaction that publishes, then removes its files", async function () {
    const cache = openCache({ inlineMaxBytes: 0 });
    await put(cache, 'k', 'persistent', { csv: 'old persistent' });
    const old = rowOf(dir, 'persistent', 'k')?.commit_id ?? '';
    await put(cache, 'k', 'temporary', { csv: 'new temporary' });
    expect(rowOf(dir, 'persistent', 'k')).to.equal(undefined);
    expect(fs.readdirSync(join(dir, 'persistent', shardOf('k'))).filter((n) => n.includes(old))).to.deep.equal([]);
    expect(await text(cache, 'k', 'csv')).to.equal('new temporary');
    expect(await cache.head('k', 'persistent')).to.equal(undefined);
  });

  it('replaces a result of the other area even when the clock stepped back since it was committed', async function () {
    const cache = openCache();
    // A persistent result committed "an hour from now" by the wall clock.
    await cache.head('k'); // (opens the directory, as the process that committed it did)
    plantResult('persistent', 'k', commitId(-60 * 60 * 1000, 'abc'), { csv: 'from the future' }, 1);
    expect(await text(cache, 'k', 'csv')).to.equal('from the future');
    await put(cache, 'k', 'temporary', { csv: 'now' });
    expect((await cache.head('k'))?.area).to.equal('temporary');
    expect(await text(cache, 'k', 'csv')).to.equal('now');
    expect(await cache.head('k', 'persistent')).to.equal(undefined);
  });

  it('works the same with durability full (fsync of files and directories, synchronous=FULL)', async function () {
    const clock = new ManualClock(5_000);
    const cache = openCache({ durability: 'full' }, clock);
    const staged = await cache.stage('durable');
    await staged.write('csv', bytes('a,', 'b\n', Buffer.alloc(3 * 1024 * 1024, 0x41)), { contentType: 'text/csv' });
    await staged.write('json', bytes('{}'), { contentType: 'application/json', contentEncoding: 'identity' });
    const manifest = await staged.commit('temporary');
    expect(manifest.formats['csv']?.size).to.equal(4 + 3 * 1024 * 1024);
    expect(manifest.formats['json']).to.deep.equal({
      size: 2,
      contentType: 'application/json',
      contentEncoding: 'identity',
    });
    expect(await cache.promote('durable')).to.equal(true);
    const got = await cache.get('durable', 'json');
    expect(got).to.deep.include({ contentType: 'application/json', contentEncoding: 'identity', area: 'persistent' });
    expect((await collect(got?.body ?? bytes())).toString()).to.equal('{}');
    await clock.advance(10);
    await put(cache, 'durable', 'temporary', { csv: 'replaced' });
    expect((await cache.head('durable'))?.area).to.equal('temporary');
    expect(await cache.delete('durable')).to.equal(1);
    expect(await cache.head('durable')).to.equal(undefined);

    // Everything it wrote reads back in a normal-durability instance too.
    await put(cache, 'again', 'persistent', { csv: 'full' });
    await cache.close();
    expect(await text(openCache(), 'again', 'csv')).to.equal('full');
  });

  it('with durability full, syncs the record of a fresh directory, and each copy a promotion makes without hard links', async function () {
    const synced = watchSyncs();
    try {
      const cache = openCache({ durability: 'full', inlineMaxBytes: 0 });
      await put(cache, 'copied', 'temporary', { csv: 'x'.repeat(4096) });
      // The record and the directory that names it, before any area exists.
      const record = synced.paths.findIndex((path) => path.startsWith(join(dir, 'cache-layout')));
      expect(record, `synced: ${synced.paths.join(', ')}`).to.be.at.least(0);
      expect(synced.paths.indexOf(dir, record)).to.be.above(record);
      expect(synced.paths.findIndex((path) => path.startsWith(join(dir, 'temporary')))).to.be.above(record);

      synced.paths.length = 0;
      synced.failLinks = true;
      expect(await cache.promote('copied')).to.equal(true);
      const copies = synced.paths.filter((path) => path.startsWith(join(dir, 'staging')) && path.endsWith('@csv'));
      expect(copies, `synced: ${synced.paths.join(', ')}`).to.have.length(1);
      expect(await text(cache, 'copied', 'csv')).to.equal('x'.repeat(4096));
    } finally {
      synced.restore();
    }
  });

  it('with durability full, syncs the data files and their directory before the row names them', async function () {
    const cache = openCache({ durability: 'full', inlineMaxBytes: 0 });
    await cache.head('x'); // opens the directory (its own syncs are not this test's subject)
    const reader = openResults(dir);
    const rowExists = (): boolean =>
      reader.prepare("SELECT 1 FROM results WHERE area = 'temporary' AND key = 'synced'").get() !== undefined;
    const synced = watchSyncs(() => rowExists());
    try {
      await put(cache, 'synced', 'temporary', { csv: 'x'.repeat(4096), json: '{}' });
    } finally {
      synced.restore();
      reader.close();
    }
    const shardDir = join(dir, 'temporary', shardOf('synced'));
    const row = rowOf(dir, 'temporary', 'synced');
    expect(row).to.not.equal(undefined);
    // Each staged file was synced (under its staging name) and so was the shard directory it was
    // renamed into, all while no row named them yet.
    const files = synced.paths.filter((path) => path.startsWith(join(dir, 'staging')));
    expect(files, `synced: ${synced.paths.join(', ')}`).to.have.length(2);
    const dirSync = synced.paths.lastIndexOf(shardDir);
    expect(dirSync, `synced: ${synced.paths.join(', ')}`).to.be.above(-1);
    expect(synced.rowAt.slice(0, dirSync + 1).every((seen) => !seen)).to.equal(true);
  });

  it('streams a multi-block result back byte for byte, and serves ranges across block boundaries', async function () {
    const cache = openCache();
    const block = 1024 * 1024;
    const chunk = Buffer.alloc(100_000);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) % 251;
    // Many small chunks (gathered into blocks) followed by one big chunk (written as it is).
    const big = Buffer.alloc(2 * block + 17, 0x5a);
    const expected = Buffer.concat([...Array.from({ length: 25 }, () => chunk), big]);
    for (let i = 0; i < 25; i++) expected[i * chunk.length] = i;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 25; i++) {
        // The same buffer every time, changed after each yield: the writer must have copied it.
        chunk[0] = i;
        yield chunk;
      }
      yield big;
    }

    const staged = await cache.stage('blocks');
    const info = await staged.write('bin', source(), { contentType: 'application/octet-stream' });
    expect(info.size).to.equal(expected.length);
    await staged.commit('persistent');
    const whole = await cache.get('blocks', 'bin');
    expect(whole?.size).to.equal(expected.length);
    expect((await collect(whole?.body ?? bytes())).equals(expected)).to.equal(true);

    for (const [s, e] of [
      [block - 3, block + 3],
      [0, 0],
      [expected.length - 1, expected.length - 1],
      [2_499_999, 2_500_000],
    ] as const) {
      const part = await cache.get('blocks', 'bin', { range: { start: s, end: e } });
      expect(part?.size, `range ${String(s)}-${String(e)}`).to.equal(e - s + 1);
      expect(part?.totalSize).to.equal(expected.length);
      expect((await collect(part?.body ?? bytes())).equals(expected.subarray(s, e + 1))).to.equal(true);
    }
    const tail = await cache.get('blocks', 'bin', {
      range: { start: expected.length - 5, end: expected.length + 100 },
    });
    expect(tail?.size).to.equal(5);
    expect((await collect(tail?.body ?? bytes())).equals(expected.subarray(-5))).to.equal(true);
  });

  it('stores and serves an empty format, and refuses a range past the end', async function () {
    const cache = openCache();
    await put(cache, 'empty', 'temporary', { csv: '' });
    const got = await cache.get('empty', 'csv');
    expect(got?.size).to.equal(0);
    expect((await collect(got?.body ?? bytes())).length).to.equal(0);
    const ranged = await cache.get('empty', 'csv', { range: { start: 0 } });
    expect(ranged?.size).to.equal(0);
    await collect(ranged?.body ?? bytes());
    await put(cache, 'short', 'temporary', { csv: 'abc' });
    const error = await cache.get('short', 'csv', { range: { start: 3 } }).catch((e: unknown) => e);
    expect((error as { field?: string }).field).to.equal('range');
  });

  it('discards the partial file of a write whose source throws, and of an aborted staging', async function () {
    const cache = openCache({ inlineMaxBytes: 0 });
    const staged = await cache.stage('broken');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('partial');
      throw new Error('source broke');
    }
    const error = await staged.write('csv', failing(), { contentType: 'text/csv' }).catch((e: unknown) => e);
    expect((error as Error).message).to.equal('source broke');
    expect(staged.formats()).to.deep.equal({});
    expect(fs.readdirSync(join(dir, 'staging'))).to.deep.equal([]);
    await staged.write('json', bytes('{}'), { contentType: 'application/json' });
    await staged.write('json', bytes('{"again":1}'), { contentType: 'application/json' });
    expect(fs.readdirSync(join(dir, 'staging'))).to.have.length(1);
    await staged.abort();
    expect(fs.readdirSync(join(dir, 'staging'))).to.deep.equal([]);
    expect(await cache.head('broken')).to.equal(undefined);
  });

  it('keeps the write that finishes last when one format is written twice at once', async function () {
    const cache = openCache();
    for (const firstFinishesFirst of [false, true]) {
      const key = `twice-${String(firstFinishesFirst)}`;
      const staged = await cache.stage(key);
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      async function* slow(text: string): AsyncGenerator<Uint8Array> {
        yield Buffer.from(text);
        await gate;
      }
      const first = staged.write('csv', slow('first write'), { contentType: 'text/csv' });
      const second = staged.write('csv', firstFinishesFirst ? slow('second') : bytes('second'), {
        contentType: 'text/csv',
      });
      if (!firstFinishesFirst) await second;
      release();
      await Promise.all([first, second]);
      // As in the memory cache, whichever started first.
      const last = firstFinishesFirst ? 'second' : 'first write';
      expect(staged.formats()['csv']?.size, key).to.equal(last.length);
      await staged.commit('temporary');
      expect(await text(cache, key, 'csv'), key).to.equal(last);
    }
  });

  it('removes the files of deleted, cleared and swept results', async function () {
    const clock = new ManualClock(1_000);
    const cache = openCache({}, clock);
    await put(cache, 'a', 'temporary', { csv: '1' });
    await put(cache, 'b', 'persistent', { csv: '2' });
    await clock.advance(100);
    await put(cache, 'c', 'temporary', { csv: '3' });
    expect(await cache.delete('a')).to.equal(1);
    expect(await cache.clear('persistent')).to.equal(1);
    expect(await cache.sweep('temporary', 2_000)).to.equal(1);
    for (const area of ['persistent', 'temporary']) {
      const names = fs.readdirSync(join(dir, area)).flatMap((shard) => fs.readdirSync(join(dir, area, shard)));
      expect(names, area).to.deep.equal([]);
    }
  });
});

/**
 * Records the path of every file and directory fsynced from now on (through `/proc/self/fd`, so
 * Linux only), with what `probe` said at that moment (`rowAt`), and can make hard links fail as on
 * a file system without them. Node's own `fs`
 * functions are swapped, and the ESM view of them synced, so the cache's calls come here.
 */
function watchSyncs(probe: () => boolean = () => false): {
  paths: string[];
  rowAt: boolean[];
  failLinks: boolean;
  restore(): void;
} {
  const nodeFs = require('node:fs') as typeof fs;
  const original = { fsync: nodeFs.fsync, fsyncSync: nodeFs.fsyncSync, linkSync: nodeFs.linkSync };
  const watch = { paths: [] as string[], rowAt: [] as boolean[], failLinks: false, restore };
  const pathOf = (fd: number): string => nodeFs.readlinkSync(`/proc/self/fd/${String(fd)}`);
  const note = (fd: number): void => {
    watch.paths.push(pathOf(fd));
    watch.rowAt.push(probe());
  };
  nodeFs.fsync = ((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
    note(fd);
    original.fsync(fd, callback);
  }) as typeof fs.fsync;
  nodeFs.fsyncSync = (fd: number) => {
    note(fd);
    original.fsyncSync(fd);
  };
  nodeFs.linkSync = (from: fs.PathLike, to: fs.PathLike) => {
    if (watch.failLinks) throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
    original.linkSync(from, to);
  };
  syncBuiltinESMExports();
  return watch;

  function restore(): void {
    Object.assign(nodeFs, original);
    syncBuiltinESMExports();
  }
}
