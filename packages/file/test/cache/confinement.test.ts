import * as fs from 'node:fs';
import { join } from 'node:path';

import { expect } from 'chai';

import { BackendError, ConfigError, InvalidRequestError } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { CacheLayout, shardOf } from '../../src/cache/layout.js';
import { bytes, put, rejection, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

/** Issue #3, point 4: no key, format or config value reads or writes outside the root. */
describe('file cache: confinement', function () {
  let tmp: TempDir;
  let root: string;
  /** A directory outside the root that must stay empty. */
  let sentinel: string;
  let cache: FileCacheManager;

  beforeEach(async function () {
    tmp = await tempDir();
    root = join(tmp.path, 'root');
    sentinel = join(tmp.path, 'sentinel');
    fs.mkdirSync(sentinel);
    // Every format in a file of its own (small ones are kept in the manifest by default): the
    // data files are what these tests try to lead astray.
    cache = new FileCacheManager({ dir: root, inlineMaxBytes: 0 });
  });

  afterEach(async function () {
    await cache.close();
    await tmp.remove();
  });

  /** Everything under `dir`, relative, sorted (not following symlinks). */
  function tree(dir: string): string[] {
    return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
  }

  function expectSentinelUntouched(): void {
    expect(tree(sentinel), 'files outside the root').to.deep.equal([]);
    // The root may not even exist: invalid input is refused before the disk is touched.
    expect(fs.readdirSync(tmp.path).filter((name) => name !== 'root')).to.deep.equal(['sentinel']);
  }

  const BAD_NAMES: [string, string][] = [
    ['..', '..'],
    ['../../etc/passwd', '../../etc/passwd'],
    ['../sentinel/x', '../sentinel/x'],
    ['an absolute path', '/etc/passwd'],
    ['a NUL byte', 'ok\0../../x'],
    ['a backslash', 'a\\..\\..\\x'],
    ['a slash', 'a/b'],
    ['a leading dot', '.hidden'],
    ['300 characters', 'k'.repeat(300)],
    ['5000 characters', 'k'.repeat(5000)],
    ['the empty string', ''],
  ];

  for (const [what, bad] of BAD_NAMES) {
    it(`rejects a key with ${what} in every call, creating nothing outside`, async function () {
      const calls: [string, () => Promise<unknown>][] = [
        ['stage', () => cache.stage(bad)],
        ['head', () => cache.head(bad)],
        ['get', () => cache.get(bad, 'csv')],
        ['url', () => cache.url(bad, 'csv', { expiresInSec: 60 })],
        ['promote', () => cache.promote(bad)],
        ['delete', () => cache.delete(bad)],
      ];
      for (const [name, call] of calls) {
        const error = await rejection(call());
        expect(InvalidRequestError.is(error), `${name}: ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field, name).to.equal('key');
      }
      expectSentinelUntouched();
    });

    it(`rejects a format with ${what} in every call, creating nothing outside`, async function () {
      await put(cache, 'good', 'temporary', { csv: 'data' });
      const staged = await cache.stage('good');
      const calls: [string, () => Promise<unknown>][] = [
        ['write', () => staged.write(bad, bytes('x'), { contentType: 'text/plain' })],
        ['get', () => cache.get('good', bad)],
        ['url', () => cache.url('good', bad, { expiresInSec: 60 })],
      ];
      for (const [name, call] of calls) {
        const error = await rejection(call());
        expect(InvalidRequestError.is(error), `${name}: ${String(error)}`).to.equal(true);
        expect((error as InvalidRequestError).field, name).to.equal('format');
      }
      await staged.abort();
      expect(await text(cache, 'good', 'csv')).to.equal('data');
      expectSentinelUntouched();
    });
  }

  it('rejects a cursor that smuggles a path', async function () {
    const cursor = Buffer.from('file1:../../etc', 'utf8').toString('base64url');
    const error = await rejection(cache.list('temporary', { limit: 10, cursor }));
    expect(InvalidRequestError.is(error), String(error)).to.equal(true);
    expect((error as InvalidRequestError).field).to.equal('cursor');
  });

  it('builds no path outside the root even from a name that passed no validation', function () {
    const layout = new CacheLayout(root);
    const shardDir = layout.shardDir('persistent', 'k');
    expect(layout.manifestPath(shardDir, 'k')).to.equal(join(root, 'persistent', shardOf('k'), 'k@manifest'));
    for (const name of ['../../../etc/passwd', 'a/b', `a${String.fromCharCode(0)}b`]) {
      const error = (() => {
        try {
          return layout.manifestPath(shardDir, name);
        } catch (e) {
          return e;
        }
      })();
      expect(BackendError.is(error), `${JSON.stringify(name)}: ${String(error)}`).to.equal(true);
    }
    // A directory the layout did not make is resolved and checked in full.
    expect(() => layout.manifestPath(join(root, '..'), 'x')).to.throw(/outside/);
    expect(() => layout.stagingPath('id', '../../x')).to.throw(/not one name/);
  });

  it('rejects an unknown area instead of using it as a directory', async function () {
    const error = await rejection(cache.clear('../sentinel' as CacheArea));
    expect(InvalidRequestError.is(error), String(error)).to.equal(true);
    expectSentinelUntouched();
  });

  describe('symlinks planted inside the root', function () {
    /**
     * A complete fake result in `dir` (outside the root), as a symlink would expose it: the data
     * file and a manifest (as the `flat-1` layout named it) in what a symlinked shard directory
     * would show.
     */
    function plantFakeResult(dir: string, key: string, area: CacheArea): void {
      const commit = `${Date.now().toString(36).padStart(9, '0')}0123456789a`;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(join(dir, `${key}@${commit}@csv`), 'SECRET');
      const manifest = JSON.stringify({
        v: 2,
        key,
        area,
        createdAt: 1,
        commit,
        formats: { csv: { size: 6, contentType: 'text/csv' } },
      });
      fs.writeFileSync(join(dir, `${key}@manifest`), manifest);
    }

    function expectBackendError(error: unknown, what: string): void {
      expect(BackendError.is(error), `${what}: ${String(error)}`).to.equal(true);
    }

    it('refuses an area directory that is a symlink, for writes and reads', async function () {
      await put(cache, 'before', 'temporary', { csv: 'ok' });
      await put(cache, 'kept', 'persistent', { csv: 'ok' });
      fs.rmSync(join(root, 'persistent'), { recursive: true });
      fs.symlinkSync(sentinel, join(root, 'persistent'));

      const staged = await cache.stage('k');
      await staged.write('csv', bytes('data'), { contentType: 'text/csv' });
      expectBackendError(await rejection(staged.commit('persistent')), 'commit');
      // The row is in the database; its file is not read through the link.
      expectBackendError(await rejection(cache.get('kept', 'csv')), 'get');
      expectBackendError(await rejection(cache.list('persistent', { limit: 10 })), 'list');
      expectBackendError(await rejection(cache.clear('persistent')), 'clear');
      expectBackendError(await rejection(cache.delete('kept')), 'delete');
      expect(tree(sentinel)).to.deep.equal([]);
      // Planted before the cache opens: refused at once.
      const reopened = new FileCacheManager({ dir: root, inlineMaxBytes: 0 });
      expectBackendError(await rejection(reopened.head('before')), 'head after reopen');
      await reopened.close();
      expect(tree(sentinel)).to.deep.equal([]);
    });

    it('does not read a result that a symlinked shard directory exposes', async function () {
      await put(cache, 'other', 'temporary', { csv: 'ok' });
      const key = 'victim';
      const shardDir = join(root, 'temporary', shardOf(key));
      fs.rmSync(shardDir, { recursive: true, force: true });
      plantFakeResult(sentinel, key, 'temporary');
      const before = tree(sentinel);
      fs.symlinkSync(sentinel, shardDir);

      // No row names the key: the planted files are never looked at.
      expect(await cache.head(key)).to.equal(undefined);
      expect(await cache.get(key, 'csv')).to.equal(undefined);
      expectBackendError(await rejection(cache.delete(key)), 'delete');
      // A sweep skips the link (never enters it) and sweeps the rest of the area.
      expect(await cache.sweep('temporary', Number.MAX_SAFE_INTEGER)).to.equal(1);
      expect(await cache.head('other')).to.equal(undefined);
      const staged = await cache.stage(key);
      await staged.write('csv', bytes('new data'), { contentType: 'text/csv' });
      expectBackendError(await rejection(staged.commit('temporary')), 'commit');
      expect(tree(sentinel), 'nothing written, nothing removed outside').to.deep.equal(before);
      expect(fs.readFileSync(join(sentinel, `${key}@manifest`), 'utf8')).to.include('"createdAt":1');
    });

    for (const suffix of ['', '-wal', '-shm']) {
      it(`refuses a symlink planted at cache.sqlite${suffix}`, async function () {
        await put(cache, 'k', 'persistent', { csv: 'real' });
        await cache.close();
        // What the link points to: a file outside the root that must stay as it is.
        const target = join(sentinel, 'target');
        fs.writeFileSync(target, 'NOT A DATABASE');
        const path = join(root, `cache.sqlite${suffix}`);
        fs.rmSync(path, { force: true });
        fs.symlinkSync(target, path);
        const reopened = new FileCacheManager({ dir: root, inlineMaxBytes: 0 });
        try {
          for (const [name, call] of [
            ['head', () => reopened.head('k')],
            ['commit', () => put(reopened, 'k', 'persistent', { csv: 'new' })],
            ['list', () => reopened.list('persistent', { limit: 10 })],
          ] as const) {
            const error = await rejection(call());
            expectBackendError(error, name);
            expect(String(error)).to.include('symlink');
          }
        } finally {
          await reopened.close();
        }
        expect(tree(sentinel)).to.deep.equal(['target']);
        expect(fs.readFileSync(target, 'utf8')).to.equal('NOT A DATABASE');
        // The root holds nothing the refused opens made.
        expect(fs.lstatSync(path).isSymbolicLink()).to.equal(true);
      });
    }

    it('skips what is not a regular file or a real directory when sweeping, and sweeps the rest', async function () {
      await put(cache, 'k', 'temporary', { csv: 'kept' });
      const areaDir = join(root, 'temporary');
      const shardDir = join(areaDir, shardOf('k'));
      // Names of commits two hours old that no row names: orphans by their names.
      const twoHoursAgo = Date.now() - 2 * 60 * 60 * 1000;
      const stale = (n: number): string => `k@${idAt(twoHoursAgo, n)}@csv`;
      const target = join(sentinel, 'target');
      fs.writeFileSync(target, 'OUTSIDE');
      fs.symlinkSync(target, join(shardDir, stale(1)));
      fs.mkdirSync(join(shardDir, stale(2)));
      fs.writeFileSync(join(shardDir, stale(3)), 'a real orphan');
      // A shard name that is a symlink to a directory outside holding an orphan by its name.
      const elsewhere = join(sentinel, 'shard');
      fs.mkdirSync(elsewhere);
      fs.writeFileSync(join(elsewhere, stale(4)), 'OUTSIDE');
      const otherShard = ['00', '01', '02'].find((name) => name !== shardOf('k')) ?? '';
      fs.rmSync(join(areaDir, otherShard), { recursive: true, force: true });
      fs.symlinkSync(elsewhere, join(areaDir, otherShard));
      const outside = tree(sentinel);

      expect(await cache.sweep('temporary', 0)).to.equal(0);
      expect(fs.existsSync(join(shardDir, stale(3))), 'the regular orphan').to.equal(false);
      expect(fs.lstatSync(join(shardDir, stale(1))).isSymbolicLink(), 'the planted link').to.equal(true);
      expect(fs.lstatSync(join(shardDir, stale(2))).isDirectory(), 'the planted directory').to.equal(true);
      expect(tree(sentinel)).to.deep.equal(outside);
      expect(fs.readFileSync(target, 'utf8')).to.equal('OUTSIDE');
      expect(await text(cache, 'k', 'csv')).to.equal('kept');
      // A listing reads rows only: it meets no file.
      expect((await cache.list('temporary', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['k']);
      expect(await cache.sweep('temporary', Number.MAX_SAFE_INTEGER)).to.equal(1);
      expect(fs.readFileSync(target, 'utf8')).to.equal('OUTSIDE');
    });

    it('does not open a format file that is a symlink', async function () {
      const secret = join(sentinel, 'secret');
      fs.writeFileSync(secret, 'SECRET');
      const manifest = await put(cache, 'k', 'temporary', { csv: 'public' });
      const shardDir = join(root, 'temporary', shardOf('k'));
      const name = fs.readdirSync(shardDir).find((n) => n.startsWith('k@') && n.endsWith('@csv'));
      expect(name).to.be.a('string');
      const file = join(shardDir, name ?? '');
      fs.unlinkSync(file);
      fs.symlinkSync(secret, file);
      expect(manifest.formats['csv']?.size).to.equal(6);
      expectBackendError(await rejection(cache.get('k', 'csv')), 'get');
      // Promotion links the symlink itself (never its target); the copy stays unreadable.
      await cache.promote('k').catch(() => undefined);
      expectBackendError(await rejection(cache.get('k', 'csv')), 'get after promote');
      expect(fs.readFileSync(secret, 'utf8')).to.equal('SECRET');
    });

    it('refuses a staging directory that is a symlink', async function () {
      await put(cache, 'k', 'temporary', { csv: 'x' });
      fs.rmSync(join(root, 'staging'), { recursive: true });
      fs.symlinkSync(sentinel, join(root, 'staging'));
      const staged = cache.stage('k').then((s) => s.write('csv', bytes('data'), { contentType: 'text/csv' }));
      expectBackendError(await rejection(staged), 'write');
      expectBackendError(await rejection(cache.promote('k')), 'promote');
      expectBackendError(await rejection(cache.sweep('temporary', 0)), 'sweep');
      expect(tree(sentinel)).to.deep.equal([]);
    });

    it('refuses a root that is a symlink with a ConfigError on /dir', async function () {
      const real = join(tmp.path, 'sentinel');
      const link = join(tmp.path, 'link');
      fs.symlinkSync(real, link);
      const linked = new FileCacheManager({ dir: link });
      const error = await rejection(linked.head('k'));
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/dir']);
      await linked.close();
      expect(tree(sentinel)).to.deep.equal([]);
    });
  });
});

/** A commit id of the time `at` (epoch ms); `n` tells several of one time apart. */
function idAt(at: number, n: number): string {
  return at.toString(36).padStart(9, '0') + String(n).padStart(11, 'a');
}
