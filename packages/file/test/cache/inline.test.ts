import * as fs from 'node:fs';
import { join } from 'node:path';

import { expect } from 'chai';

import { BackendError, ManualClock } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { shardOf } from '../../src/cache/layout.js';
import { bytes, collect, put, rowOf, runOnResults, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

const LIMIT = 64;

describe('file cache: small formats kept in the row', function () {
  let tmp: TempDir;
  let cache: FileCacheManager;

  beforeEach(async function () {
    tmp = await tempDir();
    cache = new FileCacheManager({ dir: tmp.path, inlineMaxBytes: LIMIT }, new ManualClock(1_000_000));
  });

  afterEach(async function () {
    await cache.close();
    await tmp.remove();
  });

  function names(area: 'persistent' | 'temporary', key: string): string[] {
    const shardDir = join(tmp.path, area, shardOf(key));
    return fs.existsSync(shardDir) ? fs.readdirSync(shardDir).sort() : [];
  }

  /** The row of a result: its version and the formats it holds inline (those with an offset in its data). */
  function rowInline(area: 'persistent' | 'temporary', key: string): { v: number; inline: string[] } {
    const row = rowOf(tmp.path, area, key);
    expect(row, `the row of ${key} in ${area}`).to.not.equal(undefined);
    const formats = JSON.parse(row?.formats ?? '{}') as Record<string, { at?: number }>;
    return {
      v: row?.v ?? 0,
      inline: Object.keys(formats)
        .filter((name) => formats[name]?.at !== undefined)
        .sort(),
    };
  }

  it('writes a small result as its row alone, and serves it whole and by range', async function () {
    const manifest = await put(cache, 'small', 'temporary', { csv: 'a,b\n1,2\n', json: '{"a":1}' });
    expect(manifest.formats['csv']?.size).to.equal(8);
    expect(names('temporary', 'small')).to.deep.equal([]);
    expect(fs.readdirSync(join(tmp.path, 'staging'))).to.deep.equal([]);
    const stored = rowInline('temporary', 'small');
    expect(stored.v).to.equal(1);
    expect(stored.inline).to.deep.equal(['csv', 'json']);
    // The bytes themselves, one after the other in the row's BLOB (no base64).
    expect(rowOf(tmp.path, 'temporary', 'small')?.data?.toString()).to.equal('a,b\n1,2\n{"a":1}');

    expect(await text(cache, 'small', 'csv')).to.equal('a,b\n1,2\n');
    const got = await cache.get('small', 'json');
    expect(got?.contentType).to.equal('text/plain');
    expect(got?.size).to.equal(7);
    expect(got?.area).to.equal('temporary');
    const part = await cache.get('small', 'csv', { range: { start: 4, end: 6 } });
    expect(part?.size).to.equal(3);
    expect(part?.totalSize).to.equal(8);
    expect((await collect(part?.body ?? bytes())).toString()).to.equal('1,2');
  });

  it('puts a format over the limit in a file, and one of exactly the limit in the row', async function () {
    await put(cache, 'edge', 'persistent', { at: 'x'.repeat(LIMIT), over: 'y'.repeat(LIMIT + 1) });
    const files = names('persistent', 'edge');
    expect(files).to.have.length(1);
    expect(files[0]).to.match(/^edge@[0-9a-z]{20}@over$/);
    expect(rowInline('persistent', 'edge').inline).to.deep.equal(['at']);
    expect(await text(cache, 'edge', 'at')).to.equal('x'.repeat(LIMIT));
    expect(await text(cache, 'edge', 'over')).to.equal('y'.repeat(LIMIT + 1));
  });

  it('keeps at most four times the limit of one result in its row', async function () {
    const formats = Object.fromEntries(['a', 'b', 'c', 'd', 'e'].map((f) => [f, f.repeat(LIMIT)]));
    await put(cache, 'many', 'temporary', formats);
    expect(rowInline('temporary', 'many').inline).to.have.length(4);
    expect(names('temporary', 'many')).to.have.length(1);
    for (const [format, content] of Object.entries(formats))
      expect(await text(cache, 'many', format)).to.equal(content);
  });

  it('copies each chunk of a small write (the producer may reuse its buffer)', async function () {
    const buffer = Buffer.from('aaaa');
    async function* reused(): AsyncGenerator<Uint8Array> {
      yield buffer;
      buffer.fill('b');
      yield buffer;
      buffer.fill('c');
    }
    const staged = await cache.stage('reused');
    await staged.write('txt', reused(), { contentType: 'text/plain' });
    await staged.commit('temporary');
    expect(await text(cache, 'reused', 'txt')).to.equal('aaaabbbb');
  });

  it('replaces a file with a small rewrite and a small write with a big one, leaving no staging file', async function () {
    const staged = await cache.stage('rewritten');
    await staged.write('csv', bytes('z'.repeat(LIMIT * 2)), { contentType: 'text/csv' });
    await staged.write('csv', bytes('small'), { contentType: 'text/csv' });
    await staged.write('json', bytes('{}'), { contentType: 'application/json' });
    await staged.write('json', bytes(`[${'0,'.repeat(LIMIT)}0]`), { contentType: 'application/json' });
    expect(staged.formats()['csv']?.size).to.equal(5);
    await staged.commit('temporary');
    expect(fs.readdirSync(join(tmp.path, 'staging'))).to.deep.equal([]);
    expect(await text(cache, 'rewritten', 'csv')).to.equal('small');
    expect(await text(cache, 'rewritten', 'json')).to.equal(`[${'0,'.repeat(LIMIT)}0]`);
    expect(rowInline('temporary', 'rewritten').inline).to.deep.equal(['csv']);
  });

  it('promotes, replaces and deletes a small result without leaving files behind', async function () {
    await put(cache, 'moved', 'temporary', { csv: 'one' });
    expect(await cache.promote('moved')).to.equal(true);
    expect(names('temporary', 'moved')).to.deep.equal([]);
    expect(names('persistent', 'moved')).to.deep.equal([]);
    expect(await text(cache, 'moved', 'csv')).to.equal('one');
    // A big result replaces the small one, then a small one the big one: the big file goes.
    await put(cache, 'moved', 'persistent', { csv: 'B'.repeat(LIMIT + 10) });
    expect(names('persistent', 'moved')).to.have.length(1);
    await put(cache, 'moved', 'persistent', { csv: 'two' });
    expect(names('persistent', 'moved')).to.deep.equal([]);
    expect(await cache.delete('moved')).to.equal(1);
    expect(names('persistent', 'moved')).to.deep.equal([]);
    expect(await cache.head('moved')).to.equal(undefined);
  });

  it('refuses a row whose inline data does not match its size', async function () {
    await put(cache, 'bent', 'temporary', { csv: 'abc' });
    runOnResults(tmp.path, "UPDATE results SET data = CAST('ab' AS BLOB) WHERE key = 'bent'");
    const error = await cache.head('bent').catch((e: unknown) => e);
    expect(BackendError.is(error), String(error)).to.equal(true);
    expect((error as Error).message).to.include('bad inline data of csv');
  });

  it('keeps every format in a file with inlineMaxBytes 0', async function () {
    const files = new FileCacheManager({ dir: join(tmp.path, 'files'), inlineMaxBytes: 0 });
    try {
      await put(files, 'k', 'temporary', { csv: 'x' });
      expect(fs.readdirSync(join(tmp.path, 'files', 'temporary', shardOf('k')))).to.have.length(1);
      expect(await text(files, 'k', 'csv')).to.equal('x');
    } finally {
      await files.close();
    }
  });
});
