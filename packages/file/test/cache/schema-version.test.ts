import * as fs from 'node:fs';
import { join } from 'node:path';

import { BackendError, ConfigError } from '@armlib/core';
import { expect } from 'chai';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { migrateFileCache } from '../../src/cache/migrate-schema.js';
import { bytes, openResults, put, rejection, rowOf, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

/** The `results` table of schema version 0: rows in the order of (area, key), data inline. */
const VERSION_0_TABLE = `CREATE TABLE results (
  area TEXT NOT NULL, key TEXT NOT NULL, v INTEGER NOT NULL, commit_id TEXT NOT NULL,
  created_at REAL NOT NULL, fence REAL, formats TEXT NOT NULL, data BLOB,
  PRIMARY KEY (area, key)
) WITHOUT ROWID`;

/** Turns the cache database in `dir` back into schema version 0, rows unchanged. */
function downgradeToVersion0(dir: string): void {
  const db = openResults(dir);
  try {
    db.transaction(() => {
      db.exec('ALTER TABLE results RENAME TO results_v1');
      db.exec(VERSION_0_TABLE);
      db.exec('INSERT INTO results SELECT area, key, v, commit_id, created_at, fence, formats, data FROM results_v1');
      db.exec('DROP TABLE results_v1');
      db.pragma('user_version = 0');
    })();
  } finally {
    db.close();
  }
}

interface SchemaFacts {
  version: unknown;
  tableSql: string;
  indexes: string[];
}

function schemaOf(dir: string): SchemaFacts {
  const db = openResults(dir);
  try {
    const table = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'results'").get() as {
      sql: string;
    };
    const indexes = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results' AND sql IS NOT NULL")
      .all() as { name: string }[];
    return {
      version: db.pragma('user_version', { simple: true }),
      tableSql: table.sql,
      indexes: indexes.map((i) => i.name),
    };
  } finally {
    db.close();
  }
}

describe('file cache: schema version of cache.sqlite', function () {
  let tmp: TempDir;
  let dir: string;
  const open: FileCacheManager[] = [];

  function openCache(): FileCacheManager {
    const cache = new FileCacheManager({ dir, inlineMaxBytes: 64 });
    open.push(cache);
    return cache;
  }

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
  });

  afterEach(async function () {
    for (const cache of open.splice(0)) await cache.close();
    await tmp.remove();
  });

  it('creates version 1: rows in commit order, keys found through a unique index', async function () {
    await put(openCache(), 'a', 'temporary', { csv: 'x\n' });
    const schema = schemaOf(dir);
    expect(schema.version).to.equal(1);
    expect(schema.tableSql).to.match(/id INTEGER PRIMARY KEY/);
    expect(schema.tableSql).not.to.match(/WITHOUT ROWID/);
    expect(schema.indexes).to.deep.equal(['results_area_key']);
  });

  it('migrates a version 0 database on first use, keeping every result (inline, file, fenced, both areas)', async function () {
    const first = openCache();
    await put(first, 'small', 'temporary', { csv: 'a,b\n' });
    await put(first, 'large', 'persistent', { csv: 'x'.repeat(1000), json: '{"n":1}' });
    const staged = await first.stage('fenced');
    await staged.write('txt', bytes('fenced'), { contentType: 'text/plain' });
    await staged.commit('temporary', { fence: 7 });
    await first.close();
    const before = ['small', 'large', 'fenced'].map((key) =>
      rowOf(dir, key === 'large' ? 'persistent' : 'temporary', key),
    );
    downgradeToVersion0(dir);
    expect(schemaOf(dir).tableSql).to.match(/WITHOUT ROWID/);

    const cache = openCache();
    expect(await text(cache, 'small', 'csv')).to.equal('a,b\n');
    expect(await text(cache, 'large', 'csv')).to.equal('x'.repeat(1000));
    expect(await text(cache, 'large', 'json')).to.equal('{"n":1}');
    expect((await cache.head('fenced'))?.fence).to.equal(7);
    // The fence still guards the migrated row.
    const late = await cache.stage('fenced');
    await late.write('txt', bytes('late'), { contentType: 'text/plain' });
    expect(((await rejection(late.commit('temporary', { fence: 6 }))) as Error).name).to.equal('LeaseLostError');

    const schema = schemaOf(dir);
    expect(schema.version).to.equal(1);
    expect(schema.tableSql).not.to.match(/WITHOUT ROWID/);
    expect(schema.indexes).to.deep.equal(['results_area_key']);
    const after = ['small', 'large', 'fenced'].map((key) =>
      rowOf(dir, key === 'large' ? 'persistent' : 'temporary', key),
    );
    expect(after.map((row) => (row === undefined ? row : { ...row, id: undefined }))).to.deep.equal(
      before.map((row) => (row === undefined ? row : { ...row, id: undefined })),
    );
    // A second cache on the migrated directory (another process) finds it current.
    expect(await text(openCache(), 'small', 'csv')).to.equal('a,b\n');
  });

  it('keeps a version 0 database over 64 MiB at version 0, working, until migrateFileCache moves it', async function () {
    this.timeout(60_000);
    const first = openCache();
    await put(first, 'mine', 'persistent', { csv: 'm\n' });
    await first.close();
    downgradeToVersion0(dir);
    // 70,000 more rows of 1 KiB, as a busy cache of the previous version would hold.
    const db = openResults(dir);
    db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 70000)
      INSERT INTO results SELECT 'temporary', 'bulk' || i, 1, '${'0'.repeat(20)}', 1, NULL,
        '{"csv":{"size":1024,"contentType":"text/csv","at":0}}', randomblob(1024) FROM n`);
    db.close();

    const cache = openCache();
    expect(await text(cache, 'mine', 'csv')).to.equal('m\n');
    await put(cache, 'later', 'temporary', { csv: 'l\n' });
    expect(await text(cache, 'later', 'csv')).to.equal('l\n');
    expect(schemaOf(dir).version).to.equal(0);
    expect(schemaOf(dir).tableSql).to.match(/WITHOUT ROWID/);
    await cache.close();

    expect(migrateFileCache(dir)).to.deep.equal({ from: 0, to: 1 });
    expect(schemaOf(dir).version).to.equal(1);
    const migrated = openCache();
    expect(await text(migrated, 'mine', 'csv')).to.equal('m\n');
    expect(await text(migrated, 'later', 'csv')).to.equal('l\n');
    expect((await migrated.head('bulk70000'))?.formats['csv']?.size).to.equal(1024);
    expect(migrateFileCache(dir)).to.deep.equal({ from: 1, to: 1 });
  });

  it('works on at version 0 when the migration fails, and migrateFileCache says why', async function () {
    await put(openCache(), 'kept', 'temporary', { csv: 'k\n' });
    for (const cache of open.splice(0)) await cache.close();
    downgradeToVersion0(dir);
    // A table left by an interrupted manual migration: the first step of ours fails on it.
    const db = openResults(dir);
    db.exec('CREATE TABLE results_v0 (x)');
    db.close();

    const cache = openCache();
    expect(await text(cache, 'kept', 'csv')).to.equal('k\n');
    await put(cache, 'new', 'temporary', { csv: 'n\n' });
    expect(await text(cache, 'new', 'csv')).to.equal('n\n');
    expect(schemaOf(dir).version).to.equal(0);
    const error = (() => {
      try {
        migrateFileCache(dir);
      } catch (thrown) {
        return thrown;
      }
      return undefined;
    })();
    expect(BackendError.is(error)).to.equal(true);
    expect((error as Error).message).to.match(/results_v0/);
    expect(schemaOf(dir).version).to.equal(0);
  });

  it('refuses migrateFileCache on a directory without a cache database, or through a symlink', async function () {
    const empty = join(tmp.path, 'empty');
    fs.mkdirSync(empty);
    expect(() => migrateFileCache(empty)).to.throw(ConfigError, /no cache\.sqlite/);
    for (const bad of [42, '', 'a\0b']) {
      expect(() => migrateFileCache(bad as string)).to.throw(ConfigError, /not a file cache directory/);
    }
    await put(openCache(), 'a', 'temporary', { csv: 'a\n' });
    const link = join(tmp.path, 'link');
    fs.symlinkSync(dir, link);
    expect(() => migrateFileCache(link)).to.throw(ConfigError, /not a directory/);
  });

  it('refuses a newer schema version even when its tables have other names, creating nothing', async function () {
    fs.mkdirSync(dir, { recursive: true });
    const db = openResults(dir);
    db.exec('CREATE TABLE results2 (x)');
    db.pragma('user_version = 2');
    db.close();
    const error = await rejection(openCache().head('x'));
    expect(BackendError.is(error)).to.equal(true);
    expect((error as Error).message).to.match(/newer than this armlib's/);
    const check = openResults(dir);
    const tables = check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    check.close();
    expect(tables.map((t) => t.name)).to.deep.equal(['results2']);
  });

  it('refuses a database of a newer schema version with a BackendError, changing nothing', async function () {
    await put(openCache(), 'kept', 'temporary', { csv: 'k\n' });
    const db = openResults(dir);
    db.pragma('user_version = 2');
    db.close();

    const error = await rejection(openCache().head('kept'));
    expect(BackendError.is(error)).to.equal(true);
    expect((error as Error).message).to.match(/schema version 2, newer than this armlib's \(1\)/);
    expect(schemaOf(dir).version).to.equal(2);
    expect(rowOf(dir, 'temporary', 'kept')?.key).to.equal('kept');
  });
});
