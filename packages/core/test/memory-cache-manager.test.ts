import 'reflect-metadata';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import { Container } from 'inversify';

import { ManualClock } from '../src/clock.js';
import { loadConfig } from '../src/config/load.js';
import { BackendError, ClosedError, ConfigError, ConflictError, InvalidRequestError } from '../src/errors.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import type { MemoryCacheManagerOptions } from '../src/memory/memory-cache-manager.js';
import type { CacheArea } from '../src/model.js';
import type { CachedBody } from '../src/spi/cache.js';
import { TOKENS } from '../src/tokens.js';
import { readAll } from '../src/util/bytes.js';

use(chaiAsPromised);

const CSV = { contentType: 'text/csv; charset=utf-8' };
const JSON_TYPE = { contentType: 'application/json' };

async function* bytes(...parts: (string | Buffer)[]): AsyncIterable<Uint8Array> {
  for (const part of parts) {
    await Promise.resolve();
    yield typeof part === 'string' ? Buffer.from(part) : part;
  }
}

async function text(body: CachedBody | undefined): Promise<string> {
  expect(body, 'body').to.not.equal(undefined);
  return (await readAll(body!.body)).toString();
}

describe('MemoryCacheManager', () => {
  let clock: ManualClock;
  let cache: MemoryCacheManager;

  function create(options: MemoryCacheManagerOptions = {}): MemoryCacheManager {
    return new MemoryCacheManager(options, clock);
  }

  async function put(key: string, area: CacheArea, formats: Record<string, string | Buffer> = { csv: 'a,b\n' }) {
    const staged = await cache.stage(key);
    for (const [format, data] of Object.entries(formats)) await staged.write(format, bytes(data), CSV);
    return staged.commit(area);
  }

  beforeEach(() => {
    clock = new ManualClock();
    cache = create();
  });

  afterEach(async () => {
    await cache.close();
  });

  describe('options', () => {
    it('declares its capabilities', () => {
      expect(cache.capabilities).to.deep.equal({ signedUrls: false, sharedAcrossProcesses: false });
    });

    it('rejects bad values with ConfigError naming each path', () => {
      const bad = { maxTemporaryBytes: 0, urlPrefix: 'results' } as MemoryCacheManagerOptions;
      expect(() => create(bad))
        .to.throw(ConfigError)
        .that.satisfies((e: ConfigError) => {
          expect(e.issues.map((i) => i.path)).to.deep.equal(['/maxTemporaryBytes', '/urlPrefix']);
          return true;
        });
      for (const maxTemporaryBytes of [-1, 1.5, Number.NaN, '100']) {
        expect(() => create({ maxTemporaryBytes } as MemoryCacheManagerOptions)).to.throw(
          ConfigError,
          /\/maxTemporaryBytes/,
        );
      }
      expect(() => create(42 as unknown as MemoryCacheManagerOptions)).to.throw(ConfigError, /must be an object/);
    });

    it('refuses options it cannot read with a ConfigError naming the field, never the raw error', () => {
      const pathsOf = (options: unknown): string[] => {
        try {
          new MemoryCacheManager(options as MemoryCacheManagerOptions, clock);
        } catch (error) {
          expect(ConfigError.is(error), String(error)).to.equal(true);
          return (error as ConfigError).issues.map((i) => i.path);
        }
        return [];
      };
      const throwing = Object.defineProperty({}, 'urlPrefix', {
        enumerable: true,
        get: () => {
          throw new Error('boom');
        },
      });
      const { proxy: revoked, revoke } = Proxy.revocable({}, {});
      revoke();
      expect(pathsOf(throwing)).to.deep.equal(['/urlPrefix']);
      expect(pathsOf(revoked)).to.deep.equal(['']);
      expect(
        pathsOf(
          new Proxy(
            {},
            {
              ownKeys: () => {
                throw new Error('trap');
              },
            },
          ),
        ),
      ).to.deep.equal(['']);
      expect(pathsOf({ maxTemporaryBytes: 10n })).to.deep.equal(['/maxTemporaryBytes']);
      expect(
        pathsOf({
          urlPrefix: {
            toJSON: () => {
              throw new Error('boom');
            },
          },
        }),
      ).to.deep.equal(['/urlPrefix']);
      expect(pathsOf('x')).to.deep.equal(['']);
    });

    it('accepts missing options, and rejects unknown names as the other adapters do', async () => {
      const none = new MemoryCacheManager(undefined, clock);
      await none.close();
      // A name set to undefined keeps the default, whatever the name.
      const unset = create({ maxTemporaryBytes: undefined, other: undefined } as unknown as MemoryCacheManagerOptions);
      await unset.close();
      expect(() => create({ dir: './var', urlPrefx: '/r/', urlPrefix: '/r/' } as MemoryCacheManagerOptions))
        .to.throw(ConfigError)
        .that.satisfies((e: ConfigError) => {
          expect(e.issues).to.deep.equal([
            { path: '/dir', message: 'unknown option (expected one of maxTemporaryBytes, urlPrefix)' },
            { path: '/urlPrefx', message: 'unknown option (expected one of maxTemporaryBytes, urlPrefix)' },
          ]);
          return true;
        });
    });

    it('still loads when an environment variable switches the cache to memory from an adapter with options', async () => {
      const config = await loadConfig(
        { queue: { adapter: 'memory' }, cache: { adapter: 'file', options: { dir: './var/armlib' } } },
        { env: { ARMLIB_CACHE_ADAPTER: 'memory', ARMLIB_DIR: '/data/armlib' } },
      );
      expect(config.cache).to.deep.equal({ adapter: 'memory', options: {} });
      // Options written for the memory cache are still checked, names included.
      const error: unknown = await loadConfig(
        { queue: { adapter: 'memory' }, cache: { adapter: 'memory', options: { maxTemporaryByte: 1 } } },
        { env: {} },
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/cache/options/maxTemporaryByte']);
    });

    it('resolves from an inversify container', async () => {
      const container = new Container();
      container.bind(TOKENS.CacheOptions).toConstantValue({ urlPrefix: '/dl/' });
      container.bind(TOKENS.Clock).toConstantValue(clock);
      container.bind(TOKENS.CacheManager).to(MemoryCacheManager);
      const resolved = container.get(TOKENS.CacheManager);
      await (await resolved.stage('k1')).commit('temporary');
      expect((await resolved.head('k1'))?.createdAt).to.equal(clock.now());
      await resolved.close();
    });
  });

  describe('stage and commit', () => {
    it('keeps staged formats invisible until commit, then publishes all at once', async () => {
      const staged = await cache.stage('k1');
      const info = await staged.write('csv', bytes('a,', 'b\n'), CSV);
      expect(info).to.deep.equal({ size: 4, contentType: CSV.contentType });
      await staged.write('json', bytes('[1]'), { contentType: 'application/json', contentEncoding: 'identity' });
      expect(Object.keys(staged.formats())).to.deep.equal(['csv', 'json']);

      expect(await cache.head('k1')).to.equal(undefined);
      expect(await cache.get('k1', 'csv')).to.equal(undefined);
      expect(await cache.url('k1', 'csv', { expiresInSec: 60 })).to.equal(undefined);
      expect((await cache.list('temporary', { limit: 10 })).items).to.deep.equal([]);

      const manifest = await staged.commit('temporary');
      expect(manifest).to.deep.equal({
        key: 'k1',
        area: 'temporary',
        createdAt: clock.now(),
        formats: {
          csv: { size: 4, contentType: CSV.contentType },
          json: { size: 3, contentType: 'application/json', contentEncoding: 'identity' },
        },
      });
      expect(await cache.head('k1')).to.deep.equal(manifest);
      expect(await text(await cache.get('k1', 'json'))).to.equal('[1]');
    });

    it('copies written data, so the writer may reuse its buffer', async () => {
      const buffer = Buffer.from('abc');
      const staged = await cache.stage('k1');
      await staged.write('csv', bytes(buffer), CSV);
      buffer.write('xyz');
      await staged.commit('temporary');
      expect(await text(await cache.get('k1', 'csv'))).to.equal('abc');
    });

    it('replaces an earlier write of the same format', async () => {
      const staged = await cache.stage('k1');
      await staged.write('csv', bytes('first'), CSV);
      await staged.write('csv', bytes('2nd'), JSON_TYPE);
      expect(staged.formats()).to.deep.equal({ csv: { size: 3, contentType: 'application/json' } });
      await staged.commit('persistent');
      expect(await text(await cache.get('k1', 'csv'))).to.equal('2nd');
    });

    it('allows a commit with no formats', async () => {
      const manifest = await (await cache.stage('k1')).commit('persistent');
      expect(manifest.formats).to.deep.equal({});
      expect((await cache.head('k1'))?.area).to.equal('persistent');
    });

    it('leaves nothing after abort, and abort is idempotent', async () => {
      await put('k1', 'temporary', { csv: 'old' });
      const staged = await cache.stage('k1');
      await staged.write('csv', bytes('new'), CSV);
      await staged.abort();
      await staged.abort();
      expect(staged.formats()).to.deep.equal({});
      expect(await text(await cache.get('k1', 'csv'))).to.equal('old');
      await expect(staged.write('csv', bytes('x'), CSV)).to.be.rejectedWith(ConflictError);
      await expect(staged.commit('temporary')).to.be.rejectedWith(ConflictError);
    });

    it('refuses write and commit after commit', async () => {
      const staged = await cache.stage('k1');
      await staged.commit('temporary');
      await expect(staged.write('csv', bytes('x'), CSV)).to.be.rejectedWith(ConflictError, /committed/);
      await expect(staged.commit('temporary')).to.be.rejectedWith(ConflictError);
      await staged.abort();
      expect(await cache.head('k1')).to.not.equal(undefined);
    });

    it('refuses to commit while a write is in progress', async () => {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      async function* slow(): AsyncIterable<Uint8Array> {
        yield Buffer.from('a');
        await gate;
        yield Buffer.from('b');
      }
      const staged = await cache.stage('k1');
      const writing = staged.write('csv', slow(), CSV);
      await clock.tick();
      await expect(staged.commit('temporary')).to.be.rejectedWith(ConflictError, /in progress/);
      release();
      await writing;
      await staged.commit('temporary');
      expect(await text(await cache.get('k1', 'csv'))).to.equal('ab');
    });

    it('drops a write that was still streaming when the stage was aborted', async () => {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      async function* slow(): AsyncIterable<Uint8Array> {
        await gate;
        yield Buffer.from('a');
      }
      const staged = await cache.stage('k1');
      const writing = staged.write('csv', slow(), CSV);
      await staged.abort();
      release();
      await expect(writing).to.be.rejectedWith(ConflictError, /aborted/);
      expect(staged.formats()).to.deep.equal({});
    });

    it('keeps the staged result unchanged when a write stream fails', async () => {
      async function* failing(): AsyncIterable<Uint8Array> {
        yield Buffer.from('partial');
        await Promise.resolve();
        throw new Error('source broke');
      }
      const staged = await cache.stage('k1');
      await staged.write('csv', bytes('good'), CSV);
      await expect(staged.write('csv', failing(), CSV)).to.be.rejectedWith('source broke');
      await staged.commit('temporary');
      expect(await text(await cache.get('k1', 'csv'))).to.equal('good');
    });

    it('replaces the earlier result of the key in both areas', async () => {
      await put('k1', 'persistent', { csv: 'old', json: '{}' });
      await clock.advance(1000);
      const manifest = await put('k1', 'temporary', { csv: 'new' });
      expect(await cache.head('k1', 'persistent')).to.equal(undefined);
      expect(await cache.head('k1')).to.deep.equal(manifest);
      expect(await cache.get('k1', 'json')).to.equal(undefined);
      expect(await text(await cache.get('k1', 'csv'))).to.equal('new');

      await put('k1', 'persistent', { csv: 'newer' });
      expect(await cache.head('k1', 'temporary')).to.equal(undefined);
      expect((await cache.head('k1'))?.area).to.equal('persistent');
    });

    it('keeps concurrent stages of one key independent; the last commit wins', async () => {
      const a = await cache.stage('k1');
      const b = await cache.stage('k1');
      await a.write('csv', bytes('from a'), CSV);
      await b.write('json', bytes('"from b"'), JSON_TYPE);
      await b.commit('temporary');
      await a.commit('temporary');
      expect(Object.keys((await cache.head('k1'))!.formats)).to.deep.equal(['csv']);
      expect(await text(await cache.get('k1', 'csv'))).to.equal('from a');
    });

    it('validates keys, formats, areas and write options', async () => {
      await expect(cache.stage('../etc')).to.be.rejectedWith(InvalidRequestError, /key/);
      const staged = await cache.stage('k1');
      await expect(staged.write('c/sv', bytes('x'), CSV)).to.be.rejectedWith(InvalidRequestError, /format/);
      await expect(staged.write('csv', bytes('x'), { contentType: '' })).to.be.rejectedWith(
        InvalidRequestError,
        /contentType/,
      );
      await expect(staged.commit('elsewhere' as CacheArea)).to.be.rejectedWith(InvalidRequestError, /area/);
      await expect(cache.head('bad key')).to.be.rejectedWith(InvalidRequestError);
      await expect(cache.get('k1', '.csv')).to.be.rejectedWith(InvalidRequestError, /format/);
    });

    it('returns frozen manifests', async () => {
      const manifest = await put('k1', 'temporary');
      expect(Object.isFrozen(manifest)).to.equal(true);
      expect(Object.isFrozen(manifest.formats)).to.equal(true);
      expect(Object.isFrozen(manifest.formats['csv'])).to.equal(true);
    });
  });

  describe('head', () => {
    it('looks in the persistent area first, or only in the area asked for', async () => {
      await put('p1', 'persistent');
      await put('t1', 'temporary');
      expect((await cache.head('p1'))?.area).to.equal('persistent');
      expect((await cache.head('t1'))?.area).to.equal('temporary');
      expect(await cache.head('p1', 'temporary')).to.equal(undefined);
      expect(await cache.head('t1', 'persistent')).to.equal(undefined);
      expect((await cache.head('t1', 'temporary'))?.key).to.equal('t1');
      expect(await cache.head('nothing')).to.equal(undefined);
    });
  });

  describe('get', () => {
    beforeEach(async () => {
      const staged = await cache.stage('k1');
      await staged.write('txt', bytes('0123', '456789'), { contentType: 'text/plain', contentEncoding: 'identity' });
      await staged.write('empty', bytes(), CSV);
      await staged.commit('persistent');
    });

    it('streams a whole format with its metadata', async () => {
      const got = await cache.get('k1', 'txt');
      expect(got).to.include({ size: 10, totalSize: 10, contentType: 'text/plain', contentEncoding: 'identity' });
      expect(got?.area).to.equal('persistent');
      expect(await text(got)).to.equal('0123456789');
    });

    it('is undefined for an absent key or format', async () => {
      expect(await cache.get('k2', 'txt')).to.equal(undefined);
      expect(await cache.get('k1', 'csv')).to.equal(undefined);
    });

    it('reads inclusive ranges, clamping the end', async () => {
      const mid = await cache.get('k1', 'txt', { range: { start: 2, end: 4 } });
      expect(mid).to.include({ size: 3, totalSize: 10 });
      expect(await text(mid)).to.equal('234');
      expect(await text(await cache.get('k1', 'txt', { range: { start: 7 } }))).to.equal('789');
      const tail = await cache.get('k1', 'txt', { range: { start: 8, end: 99 } });
      expect(tail?.size).to.equal(2);
      expect(await text(tail)).to.equal('89');
    });

    it('rejects invalid ranges with InvalidRequestError on range', async () => {
      for (const range of [{ start: -1 }, { start: 5, end: 3 }, { start: 10 }]) {
        await expect(cache.get('k1', 'txt', { range }), JSON.stringify(range))
          .to.be.rejectedWith(InvalidRequestError)
          .and.eventually.have.property('field', 'range');
      }
    });

    it('serves empty formats, including a range starting at 0', async () => {
      const empty = await cache.get('k1', 'empty');
      expect(empty).to.include({ size: 0, totalSize: 0 });
      expect(await text(empty)).to.equal('');
      expect(await text(await cache.get('k1', 'empty', { range: { start: 0 } }))).to.equal('');
    });
  });

  describe('url', () => {
    it('routes existing formats under the url prefix', async () => {
      await put('k1', 'temporary');
      expect(await cache.url('k1', 'csv', { expiresInSec: 60 })).to.equal('/results/k1/csv');
      expect(await cache.url('k1', 'json', { expiresInSec: 60 })).to.equal(undefined);
      expect(await cache.url('k2', 'csv', { expiresInSec: 60 })).to.equal(undefined);
      await expect(cache.url('k1', 'csv', { expiresInSec: 0 })).to.be.rejectedWith(InvalidRequestError, /expiresInSec/);

      const other = create({ urlPrefix: 'https://api.example/v1/results/' });
      await (await other.stage('k1')).commit('persistent');
      expect(await other.url('k1', 'csv', { expiresInSec: 1 })).to.equal(undefined);
      const staged = await other.stage('k1');
      await staged.write('csv', bytes('x'), CSV);
      await staged.commit('persistent');
      expect(await other.url('k1', 'csv', { expiresInSec: 1 })).to.equal('https://api.example/v1/results/k1/csv');
      await other.close();
    });
  });

  describe('promote', () => {
    it('moves a temporary result to the persistent area, keeping createdAt', async () => {
      const committed = await put('k1', 'temporary');
      await clock.advance(5000);
      expect(await cache.promote('k1')).to.equal(true);
      expect(await cache.head('k1', 'temporary')).to.equal(undefined);
      const promoted = await cache.head('k1', 'persistent');
      expect(promoted).to.deep.equal({ ...committed, area: 'persistent' });
      expect((await cache.get('k1', 'csv'))?.area).to.equal('persistent');
    });

    it('returns false when there is no temporary result', async () => {
      expect(await cache.promote('k1')).to.equal(false);
      await put('k1', 'persistent');
      expect(await cache.promote('k1')).to.equal(false);
    });
  });

  describe('delete, clear and sweep', () => {
    it('deletes one key from one area or both', async () => {
      await put('k1', 'temporary');
      await put('k2', 'persistent');
      expect(await cache.delete('k1', 'persistent')).to.equal(0);
      expect(await cache.delete('k1')).to.equal(1);
      expect(await cache.head('k1')).to.equal(undefined);
      expect(await cache.delete('k2', 'persistent')).to.equal(1);
      expect(await cache.delete('k2')).to.equal(0);
    });

    it('clears one area and says how many results went', async () => {
      await put('t1', 'temporary');
      await put('t2', 'temporary');
      await put('p1', 'persistent');
      expect(await cache.clear('temporary')).to.equal(2);
      expect(await cache.head('t1')).to.equal(undefined);
      expect(await cache.head('p1')).to.not.equal(undefined);
      expect(await cache.clear('persistent')).to.equal(1);
      expect(await cache.clear('persistent')).to.equal(0);
    });

    it('sweeps results committed before a time, in one area', async () => {
      await put('old', 'temporary');
      await put('oldp', 'persistent');
      await clock.advance(1000);
      const cutoff = clock.now();
      await put('new', 'temporary');
      expect(await cache.sweep('temporary', cutoff)).to.equal(1);
      expect(await cache.head('old')).to.equal(undefined);
      expect(await cache.head('new')).to.not.equal(undefined);
      expect(await cache.head('oldp')).to.not.equal(undefined);
      expect(await cache.sweep('persistent', cutoff + 1)).to.equal(1);
      await expect(cache.sweep('temporary', Number.NaN)).to.be.rejectedWith(InvalidRequestError, /olderThan/);
    });
  });

  describe('list', () => {
    it('pages through one area in key order', async () => {
      for (const key of ['c', 'a', 'e', 'b', 'd']) await put(key, 'temporary');
      await put('p', 'persistent');
      const first = await cache.list('temporary', { limit: 2 });
      expect(first.items.map((m) => m.key)).to.deep.equal(['a', 'b']);
      expect(first.cursor).to.be.a('string');
      const second = await cache.list('temporary', { limit: 2, cursor: first.cursor! });
      expect(second.items.map((m) => m.key)).to.deep.equal(['c', 'd']);
      const third = await cache.list('temporary', { limit: 2, cursor: second.cursor! });
      expect(third.items.map((m) => m.key)).to.deep.equal(['e']);
      expect(third).to.not.have.property('cursor');
      const exact = await cache.list('persistent', { limit: 1 });
      expect(exact.items.map((m) => m.key)).to.deep.equal(['p']);
      expect(exact).to.not.have.property('cursor');
    });

    it('rejects bad cursors and limits', async () => {
      await expect(cache.list('temporary', { limit: 2, cursor: 'garbage!' })).to.be.rejectedWith(
        InvalidRequestError,
        /cursor/,
      );
      await expect(cache.list('temporary', { limit: 0 })).to.be.rejectedWith(InvalidRequestError, /limit/);
    });
  });

  describe('temporary area size limit', () => {
    const KB = 1024;

    async function recreate(maxTemporaryBytes: number): Promise<void> {
      await cache.close();
      cache = create({ maxTemporaryBytes });
    }

    it('evicts the least recently used temporary results, never persistent ones', async () => {
      await recreate(10 * KB);
      await put('p1', 'persistent', { csv: Buffer.alloc(20 * KB) });
      await put('t1', 'temporary', { csv: Buffer.alloc(4 * KB) });
      await put('t2', 'temporary', { csv: Buffer.alloc(4 * KB) });
      // A read makes t1 the most recently used, so t2 goes when t3 arrives.
      expect(await cache.get('t1', 'csv')).to.not.equal(undefined);
      await put('t3', 'temporary', { csv: Buffer.alloc(4 * KB) });
      expect(await cache.head('t2')).to.equal(undefined);
      expect(await cache.head('t1')).to.not.equal(undefined);
      expect(await cache.head('t3')).to.not.equal(undefined);
      expect((await cache.get('p1', 'csv'))?.totalSize).to.equal(20 * KB);
    });

    it('refuses a temporary result bigger than maxTemporaryBytes and publishes nothing', async () => {
      await recreate(10 * KB);
      await put('k1', 'temporary', { csv: 'old' });
      const staged = await cache.stage('k1');
      await staged.write('csv', bytes(Buffer.alloc(6 * KB)), CSV);
      await staged.write('json', bytes(Buffer.alloc(6 * KB)), JSON_TYPE);
      const error = await staged.commit('temporary').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(BackendError);
      expect((error as BackendError).retryable).to.equal(false);
      expect((error as BackendError).message).to.match(/maxTemporaryBytes/);
      expect(await text(await cache.get('k1', 'csv'))).to.equal('old');
      // The stage stays open: the same result still fits in the persistent area.
      expect((await staged.commit('persistent')).area).to.equal('persistent');
    });

    it('admits a temporary result whose data exactly fills the limit', async () => {
      await recreate(4 * KB);
      await put('k1', 'temporary', { csv: Buffer.alloc(4 * KB) });
      expect((await cache.head('k1'))?.formats['csv']?.size).to.equal(4 * KB);
    });

    it('bounds many empty results by their bookkeeping overhead', async () => {
      await recreate(4 * KB);
      for (let i = 0; i < 100; i++) await (await cache.stage(`k${String(i)}`)).commit('temporary');
      const page = await cache.list('temporary', { limit: 1000 });
      expect(page.items.length).to.be.greaterThan(0).and.lessThan(100);
    });
  });

  describe('close', () => {
    it('makes every method throw ClosedError', async () => {
      const staged = await cache.stage('k1');
      await cache.close();
      await cache.close();
      await expect(cache.stage('k1')).to.be.rejectedWith(ClosedError);
      await expect(cache.head('k1')).to.be.rejectedWith(ClosedError);
      await expect(cache.get('k1', 'csv')).to.be.rejectedWith(ClosedError);
      await expect(cache.url('k1', 'csv', { expiresInSec: 1 })).to.be.rejectedWith(ClosedError);
      await expect(cache.promote('k1')).to.be.rejectedWith(ClosedError);
      await expect(cache.delete('k1')).to.be.rejectedWith(ClosedError);
      await expect(cache.clear('temporary')).to.be.rejectedWith(ClosedError);
      await expect(cache.sweep('temporary', 0)).to.be.rejectedWith(ClosedError);
      await expect(cache.list('temporary', { limit: 1 })).to.be.rejectedWith(ClosedError);
      await expect(staged.write('csv', bytes('x'), CSV)).to.be.rejectedWith(ClosedError);
      await expect(staged.commit('temporary')).to.be.rejectedWith(ClosedError);
      await staged.abort();
    });
  });
});
