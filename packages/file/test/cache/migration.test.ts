import * as fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

import { BackendError } from '@armlib/core';
import { expect } from 'chai';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { shardOf } from '../../src/cache/layout.js';
import { put, rowOf, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

type Area = 'persistent' | 'temporary';

/** A commit id made `msAgo` before now: 9 base-36 digits of time, 11 of randomness. */
function commitId(msAgo: number, random: string): string {
  return (Date.now() - msAgo).toString(36).padStart(9, '0') + random.padStart(11, '0');
}

/** Every name in the shard directories of both areas. */
function shardNames(dir: string): string[] {
  const names: string[] = [];
  for (const area of ['persistent', 'temporary']) {
    const areaDir = join(dir, area);
    if (!fs.existsSync(areaDir)) continue;
    for (const shard of fs.readdirSync(areaDir)) names.push(...fs.readdirSync(join(areaDir, shard)));
  }
  return names.sort();
}

describe('file cache: migration from the flat-1 layout (a manifest file per result)', function () {
  let tmp: TempDir;
  let dir: string;
  const open: FileCacheManager[] = [];

  function openCache(): FileCacheManager {
    const cache = new FileCacheManager({ dir });
    open.push(cache);
    return cache;
  }

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
    // A directory as the flat-1 layout left it.
    for (const sub of ['staging', 'persistent', 'temporary']) fs.mkdirSync(join(dir, sub), { recursive: true });
    fs.writeFileSync(join(dir, 'cache-layout'), 'flat-1\n');
  });

  afterEach(async function () {
    for (const cache of open.splice(0)) await cache.close();
    await tmp.remove();
  });

  /** Writes a result as the flat-1 layout did: data files, then `<key>@manifest` (version 3, small formats inline in base64). */
  function plantFlat(
    area: Area,
    key: string,
    commit: string,
    result: { files?: Record<string, string>; inline?: Record<string, string>; fence?: number; createdAt?: number },
  ): void {
    const shardDir = join(dir, area, shardOf(key));
    fs.mkdirSync(shardDir, { recursive: true });
    const formats: Record<string, { size: number; contentType: string }> = {};
    const inline: Record<string, string> = {};
    for (const [format, content] of Object.entries(result.files ?? {})) {
      fs.writeFileSync(join(shardDir, `${key}@${commit}@${format}`), content);
      formats[format] = { size: Buffer.byteLength(content), contentType: 'text/plain' };
    }
    for (const [format, content] of Object.entries(result.inline ?? {})) {
      inline[format] = Buffer.from(content).toString('base64');
      formats[format] = { size: Buffer.byteLength(content), contentType: 'text/csv' };
    }
    const manifest = {
      v: 3,
      key,
      area,
      createdAt: result.createdAt ?? 1_000,
      commit,
      formats,
      ...(Object.keys(inline).length === 0 ? {} : { inline }),
      ...(result.fence === undefined ? {} : { fence: result.fence }),
    };
    fs.writeFileSync(join(shardDir, `${key}@manifest`), JSON.stringify(manifest));
  }

  it('imports every readable manifest as a row, keeps the data files, then records the layout and removes the manifests', async function () {
    const old = commitId(2 * 60 * 60 * 1000, 'a');
    plantFlat('persistent', 'files', old, { files: { csv: 'a,b\n', json: '[]' }, createdAt: 5 });
    plantFlat('temporary', 'small', commitId(0, 'b'), { inline: { csv: 'x,y\n' }, files: { json: '{}' }, fence: 7 });
    // A manifest a power loss cut short, and one a commit was writing when it died.
    const damaged = commitId(2 * 60 * 60 * 1000, 'c');
    plantFlat('temporary', 'damaged', damaged, { files: { csv: 'lost' } });
    fs.writeFileSync(join(dir, 'temporary', shardOf('damaged'), 'damaged@manifest'), '{"v":3,"ke');
    fs.writeFileSync(join(dir, 'temporary', shardOf('small'), `small@manifest.${commitId(0, 'd')}`), '{');

    const cache = openCache();
    expect(await cache.head('files')).to.deep.include({ key: 'files', area: 'persistent', createdAt: 5 });
    expect(await text(cache, 'files', 'csv')).to.equal('a,b\n');
    expect(await text(cache, 'files', 'json')).to.equal('[]');
    const small = await cache.head('small');
    expect(small).to.deep.include({ area: 'temporary', fence: 7 });
    expect(small?.formats['csv']).to.deep.equal({ size: 4, contentType: 'text/csv' });
    expect(await text(cache, 'small', 'csv')).to.equal('x,y\n');
    expect(await text(cache, 'small', 'json')).to.equal('{}');
    // Inline formats are bytes in the row now, not base64.
    expect(rowOf(dir, 'temporary', 'small')?.data?.toString()).to.equal('x,y\n');
    // What the flat-1 layout refused to read is dropped: no result, and its files are orphans.
    expect(await cache.head('damaged')).to.equal(undefined);

    expect(fs.readFileSync(join(dir, 'cache-layout'), 'utf8')).to.equal('sqlite-1\n');
    expect(shardNames(dir).filter((name) => name.includes('@manifest'))).to.deep.equal([]);
    // A sweep collects the orphans (older than an hour) and keeps every named file.
    expect(await cache.sweep('temporary', 0)).to.equal(0);
    expect(await cache.sweep('persistent', 0)).to.equal(0);
    expect(shardNames(dir)).to.not.include(`damaged@${damaged}@csv`);
    expect(shardNames(dir)).to.include(`files@${old}@csv`);

    // A commit over a migrated result replaces it and removes its files.
    await put(cache, 'files', 'persistent', { csv: 'new' });
    expect(await text(cache, 'files', 'csv')).to.equal('new');
    expect(shardNames(dir).filter((name) => name.startsWith('files@'))).to.deep.equal([]);
    // A fresh instance opens the recorded layout as it is.
    expect(await text(openCache(), 'small', 'csv')).to.equal('x,y\n');
  });

  it('keeps the newer commit of a key that a crash of the flat-1 layout left in both areas', async function () {
    plantFlat('persistent', 'both', commitId(60_000, 'a'), { files: { csv: 'older persistent' } });
    plantFlat('temporary', 'both', commitId(0, 'b'), { files: { csv: 'newer temporary' } });
    plantFlat('temporary', 'both2', commitId(60_000, 'c'), { files: { csv: 'older temporary' } });
    plantFlat('persistent', 'both2', commitId(0, 'd'), { files: { csv: 'newer persistent' } });
    const cache = openCache();
    expect(await text(cache, 'both', 'csv')).to.equal('newer temporary');
    expect(await cache.head('both', 'persistent')).to.equal(undefined);
    expect(await text(cache, 'both2', 'csv')).to.equal('newer persistent');
    expect(await cache.head('both2', 'temporary')).to.equal(undefined);
  });

  it('imports once: an instance that still read the old record does not bring back what a migrated one changed', async function () {
    const oldCommit = commitId(0, 'a');
    plantFlat('persistent', 'k', oldCommit, { inline: { csv: 'old' } });
    plantFlat('persistent', 'gone', commitId(0, 'b'), { inline: { csv: 'deleted since' } });
    const manifests = ['k', 'gone'].map((key) => {
      const path = join(dir, 'persistent', shardOf(key), `${key}@manifest`);
      return [path, fs.readFileSync(path, 'utf8')] as const;
    });
    const first = openCache();
    await put(first, 'k', 'persistent', { csv: 'new' });
    expect(await first.delete('gone')).to.equal(1);
    // Another process read `flat-1` just before the first migrated, and its manifests were still
    // there when it listed them: it must not import them again.
    fs.writeFileSync(join(dir, 'cache-layout'), 'flat-1\n');
    for (const [path, content] of manifests) fs.writeFileSync(path, content);
    const late = openCache();
    expect(await text(late, 'k', 'csv')).to.equal('new');
    expect(await late.head('gone')).to.equal(undefined);
    expect(fs.readFileSync(join(dir, 'cache-layout'), 'utf8')).to.equal('sqlite-1\n');
    expect(shardNames(dir).filter((name) => name.includes('@manifest'))).to.deep.equal([]);
  });

  it('keeps every result when a manifest cannot be read for a passing reason, and imports it on the next open', async function () {
    plantFlat('persistent', 'kept', commitId(0, 'a'), { inline: { csv: 'kept' } });
    plantFlat('persistent', 'flaky', commitId(0, 'b'), { files: { csv: 'flaky' } });
    const flaky = join(dir, 'persistent', shardOf('flaky'), 'flaky@manifest');
    // One read of the manifest fails as a disk error would (the module's fs is node's own).
    const original = fs.readFileSync;
    let failed = 0;
    const nodeFs = (fs as unknown as { default: typeof fs }).default;
    nodeFs.readFileSync = ((...args: Parameters<typeof fs.readFileSync>) => {
      const [target] = args;
      if (failed === 0 && typeof target === 'number' && fs.readlinkSync(`/proc/self/fd/${String(target)}`) === flaky) {
        failed++;
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' });
      }
      return original(...args);
    }) as typeof fs.readFileSync;
    syncBuiltinESMExports();
    let error: unknown;
    try {
      error = await openCache()
        .head('kept')
        .then(
          () => undefined,
          (e: unknown) => e,
        );
    } finally {
      nodeFs.readFileSync = original;
      syncBuiltinESMExports();
    }
    expect(failed).to.equal(1);
    expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
    // Nothing was dropped: the directory is still flat-1 with its manifests, and the next open imports both.
    expect(fs.readFileSync(join(dir, 'cache-layout'), 'utf8')).to.equal('flat-1\n');
    const cache = openCache();
    expect(await text(cache, 'kept', 'csv')).to.equal('kept');
    expect(await text(cache, 'flaky', 'csv')).to.equal('flaky');
  });

  it('lets two instances open a flat-1 directory at once', async function () {
    plantFlat('temporary', 'shared', commitId(0, 'a'), { files: { csv: 'shared' } });
    const [a, b] = [openCache(), openCache()];
    const [fromA, fromB] = await Promise.all([text(a, 'shared', 'csv'), text(b, 'shared', 'csv')]);
    expect([fromA, fromB]).to.deep.equal(['shared', 'shared']);
  });
});
