import * as fs from 'node:fs';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { expect } from 'chai';

import { ManualClock } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { CLEAN_UP_CHUNK, ResultStore } from '../../src/cache/result-store.js';
import type { CleanUpChunk } from '../../src/cache/result-store.js';
import { openResults, put, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

type ChunkMethod = 'clearSome' | 'sweepSome';

/** What the chunks of one clean-up did, as seen from outside the cache between them. */
interface ChunkLog {
  /** Rows each chunk deleted. */
  readonly counts: number[];
  /** Rows of the area left once each chunk committed, read through a connection of its own. */
  readonly rowsAfter: number[];
  /** Data files of the area when each chunk started (the files of the chunks before it are gone). */
  readonly filesBefore: number[];
  /** Columns of the rows the statements of the clean-up returned, by their column of origin. */
  readonly columns: Set<string>;
}

/**
 * `clear` and `sweep` over an area of many results (review finding: both loaded every row, inline
 * data included, in one transaction: 120,000 results of 4 KiB took 550 MiB and the write lock for
 * 3.8 s). The chunk size is made small, so that a few results make several chunks.
 */
describe('file cache: clear and sweep in chunks', function () {
  let tmp: TempDir;
  let dir: string;
  let clock: ManualClock;
  let cache: FileCacheManager;
  let reader: Database.Database;
  const chunkRows = CLEAN_UP_CHUNK.rows;

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
    clock = new ManualClock(1_000_000);
    // `csv` stays in the row (inline), `bin` is a file: both kinds go with a result.
    cache = new FileCacheManager({ dir, inlineMaxBytes: 16 }, clock);
    await cache.head('x');
    reader = openResults(dir);
    CLEAN_UP_CHUNK.rows = 3;
  });

  afterEach(async function () {
    CLEAN_UP_CHUNK.rows = chunkRows;
    reader.close();
    await cache.close();
    await tmp.remove();
  });

  /** Commits `keys` to `area`, each with an inline and a file format. */
  async function putAll(keys: readonly string[], area: CacheArea): Promise<void> {
    for (const key of keys) await put(cache, key, area, { csv: key, bin: `${key}:`.padEnd(100, '.') });
  }

  function rowsOf(area: CacheArea): number {
    return reader.prepare<[string], number>('SELECT count(*) FROM results WHERE area = ?').pluck().get(area) ?? 0;
  }

  function filesOf(area: CacheArea): number {
    const areaDir = join(dir, area);
    return fs.readdirSync(areaDir).reduce((n, shard) => n + fs.readdirSync(join(areaDir, shard)).length, 0);
  }

  /**
   * Runs `body` with the store's `method` watched (and `before` run ahead of each chunk), and every
   * statement the cache runs meanwhile noted: what each chunk did, and which columns were read.
   */
  async function watchChunks<T>(
    method: ChunkMethod,
    area: CacheArea,
    body: () => Promise<T>,
    before: (index: number) => Promise<void> = () => Promise.resolve(),
  ): Promise<{ result: T; log: ChunkLog }> {
    const log: ChunkLog = { counts: [], rowsAfter: [], filesBefore: [], columns: new Set() };
    const proto = ResultStore.prototype as unknown as Record<
      ChunkMethod,
      (...args: unknown[]) => Promise<CleanUpChunk>
    >;
    const original = proto[method];
    proto[method] = async function (this: unknown, ...args: unknown[]) {
      await before(log.counts.length);
      log.filesBefore.push(filesOf(area));
      const chunk = await original.apply(this, args);
      log.counts.push(chunk.count);
      log.rowsAfter.push(rowsOf(area));
      return chunk;
    };
    const statements = watchStatements(log.columns);
    try {
      return { result: await body(), log };
    } finally {
      statements.restore();
      proto[method] = original;
    }
  }

  it('clears an area one chunk, one transaction at a time, without reading the inline data', async function () {
    const keys = Array.from({ length: 10 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await putAll(keys, 'temporary');
    await putAll(['kept'], 'persistent');
    expect(filesOf('temporary')).to.equal(10);

    const { result, log } = await watchChunks('clearSome', 'temporary', () => cache.clear('temporary'));
    expect(result).to.equal(10);
    expect(log.counts).to.deep.equal([3, 3, 3, 1]);
    // Each chunk committed on its own, and its files went before the next chunk started.
    expect(log.rowsAfter).to.deep.equal([7, 4, 1, 0]);
    expect(log.filesBefore).to.deep.equal([10, 7, 4, 1]);
    expect(log.columns.has('data'), `columns read: ${[...log.columns].join(', ')}`).to.equal(false);
    expect(filesOf('temporary')).to.equal(0);
    expect(await text(cache, 'kept', 'csv')).to.equal('kept');
    expect(await cache.list('temporary', { limit: 10 })).to.deep.equal({ items: [] });
  });

  it('lets commits in between its chunks, and clears and counts them too', async function () {
    const keys = Array.from({ length: 7 }, (_, i) => `k${String(i)}`);
    await putAll(keys, 'temporary');
    // Between the first two chunks (the clear holds no lock then), a commit to a key before the
    // ones the first chunk cleared: each chunk starts at the area's first row, so it goes too.
    const { result, log } = await watchChunks(
      'clearSome',
      'temporary',
      () => cache.clear('temporary'),
      async (index) => {
        if (index === 1) await putAll(['a-late'], 'temporary');
      },
    );
    expect(result).to.equal(8);
    expect(log.counts).to.deep.equal([3, 3, 2]);
    expect(log.rowsAfter).to.deep.equal([4, 2, 0]);
    expect(await cache.list('temporary', { limit: 10 })).to.deep.equal({ items: [] });
    expect(filesOf('temporary')).to.equal(0);
  });

  /**
   * Plants rows of damaged keys that do not read back as they are stored (review finding: the
   * clean-up bound the key it read, so it deleted nothing, counted the row anyway, and its cursor
   * stood still: a clear over such rows never ended): text that is not UTF-8 (it reads back with
   * U+FFFD), a BLOB, the empty key (nothing sorts before it). Each copies a good row's fields.
   */
  function plantDamagedKeys(area: CacheArea, createdAt: number): number {
    const db = openResults(dir);
    try {
      const good = db
        .prepare<[string], { v: number; commit_id: string; formats: string; data: Buffer | null }>(
          'SELECT v, commit_id, formats, data FROM results WHERE area = ? ORDER BY key LIMIT 1',
        )
        .get(area);
      if (good === undefined) throw new Error('no row to copy');
      const insert = (key: string) =>
        db
          .prepare(
            `INSERT INTO results (area, key, v, commit_id, created_at, fence, formats, data) VALUES (?, ${key}, ?, ?, ?, NULL, ?, ?)`,
          )
          .run(area, good.v, good.commit_id, createdAt, good.formats, good.data);
      for (const bytes of ['6bff01', '6bff02', '6bff03', '6bfe']) insert(`CAST(X'${bytes}' AS TEXT)`);
      insert(`X'00ff'`);
      insert(`''`);
      return 6;
    } finally {
      db.close();
    }
  }

  /** Fails a clean-up that runs more chunks than it could need (it would never end). */
  function atMost(chunks: number): (index: number) => Promise<void> {
    return (index) =>
      index < chunks ? Promise.resolve() : Promise.reject(new Error(`still going after ${String(chunks)} chunks`));
  }

  it('clears rows whose keys do not read back as stored, and ends', async function () {
    await putAll(['k0', 'k1', 'k2', 'k3'], 'temporary');
    const planted = plantDamagedKeys('temporary', clock.now());
    const { result, log } = await watchChunks('clearSome', 'temporary', () => cache.clear('temporary'), atMost(10));
    expect(result).to.equal(4 + planted);
    expect(log.counts).to.deep.equal([3, 3, 3, 1]);
    expect(rowsOf('temporary')).to.equal(0);
    expect(filesOf('temporary')).to.equal(0);
  });

  it('sweeps past rows whose keys do not read back as stored, and ends', async function () {
    await putAll(['k0', 'k1', 'k2', 'k3', 'k4'], 'temporary');
    plantDamagedKeys('temporary', 0);
    await clock.advance(60_000);
    // The damaged rows are unreadable (their keys are not keys), so they stay; the others go.
    const { result } = await watchChunks(
      'sweepSome',
      'temporary',
      () => cache.sweep('temporary', clock.now()),
      atMost(10),
    );
    expect(result).to.equal(5);
    expect(await cache.list('temporary', { limit: 20 })).to.deep.equal({ items: [] });
    expect(rowsOf('temporary')).to.equal(6);
  });

  it('sweeps old results one chunk, one transaction at a time, without reading the inline data', async function () {
    // Old and new keys interleave in key order, so that chunks hold old rows only.
    const old = Array.from({ length: 7 }, (_, i) => `k${String(i)}a`);
    await putAll(old, 'temporary');
    await clock.advance(60_000);
    const cutoff = clock.now();
    await clock.advance(1_000);
    await putAll(
      Array.from({ length: 4 }, (_, i) => `k${String(i)}b`),
      'temporary',
    );

    const { result, log } = await watchChunks('sweepSome', 'temporary', () => cache.sweep('temporary', cutoff));
    expect(result).to.equal(7);
    expect(log.counts).to.deep.equal([3, 3, 1]);
    expect(log.rowsAfter).to.deep.equal([8, 5, 4]);
    expect(log.filesBefore).to.deep.equal([11, 8, 5]);
    expect(log.columns.has('data'), `columns read: ${[...log.columns].join(', ')}`).to.equal(false);
    expect((await cache.list('temporary', { limit: 20 })).items.map((m) => m.key)).to.deep.equal([
      'k0b',
      'k1b',
      'k2b',
      'k3b',
    ]);
    expect(filesOf('temporary')).to.equal(4);
  });
});

/**
 * Notes the column of origin of every result column of the statements run from now on (through
 * better-sqlite3's shared Statement prototype): an expression such as `length(data)` has none.
 */
function watchStatements(columns: Set<string>): { restore(): void } {
  const probe = new Database(':memory:');
  const proto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>;
  probe.close();
  const names = ['all', 'get', 'iterate', 'run'] as const;
  const originals = names.map((name) => proto[name] as (this: Database.Statement, ...args: unknown[]) => unknown);
  names.forEach((name, i) => {
    const original = originals[i];
    if (original === undefined) return;
    proto[name] = function (this: Database.Statement, ...args: unknown[]) {
      if (this.reader) for (const column of this.columns()) if (column.column !== null) columns.add(column.column);
      return original.apply(this, args);
    };
  });
  return {
    restore() {
      names.forEach((name, i) => {
        proto[name] = originals[i];
      });
    },
  };
}
