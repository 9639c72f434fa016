import { expect } from 'chai';

import { ConflictError, InvalidRequestError, LeaseLostError, PermanentError } from '@armlib/core';
import type { Job } from '@armlib/core';

import { resolveContext, useEnv } from './context.js';
import {
  bytesOf,
  collect,
  completeWithWorker,
  generatedBytes,
  hashStream,
  putResult,
  readText,
  rejectionOf,
  req,
  untilTerminal,
} from './helpers.js';
import type { ConformanceOptions } from './types.js';

/** §3.1 complete and §4 cache SPI: all-or-none visibility, streaming, areas, promotion, clearing, ranges, URLs. */
export function cacheTests(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe('cache', function () {
    const open = useEnv(ctx);

    it('keeps staged formats invisible until the handler returns, then shows all of them', async function () {
      const env = await open();
      const manager = env.manager();
      const gate = env.defer();
      let wrote = false;
      manager.process(async (job) => {
        await job.write('csv', 'a,b\n1,2\n', { contentType: 'text/csv' });
        await job.write('json', '[{"a":1,"b":2}]', { contentType: 'application/json' });
        wrote = true;
        await gate.promise;
      });
      await manager.submit(req('two-formats'));
      await env.until(() => wrote, { stepMs: env.settings.pollMs, what: 'both formats written' });
      expect(await manager.read('two-formats', 'csv')).to.equal(undefined);
      expect(await manager.read('two-formats', 'json')).to.equal(undefined);
      expect(await manager.resultUrl('two-formats', 'csv')).to.equal(undefined);
      expect(await env.cache.head('two-formats')).to.equal(undefined);
      const running = await manager.status('two-formats');
      expect(running.state).to.equal('running');
      expect(running.result).to.equal(undefined);
      gate.resolve();
      await untilTerminal(env, manager, ['two-formats'], env.settings.pollMs);
      const status = await manager.status('two-formats');
      expect(status.state).to.equal('completed');
      expect(status.result?.area).to.equal('temporary');
      expect(Object.keys(status.result?.formats ?? {}).sort()).to.deep.equal(['csv', 'json']);
      expect(status.result?.formats['csv']?.size).to.equal(8);
      expect(status.result?.formats['json']?.contentType).to.equal('application/json');
      const csv = await manager.read('two-formats', 'csv');
      expect(csv?.contentType).to.equal('text/csv');
      expect(csv?.size).to.equal(8);
      expect(await readText(csv)).to.equal('a,b\n1,2\n');
      expect(await readText(await manager.read('two-formats', 'json'))).to.equal('[{"a":1,"b":2}]');
      // The default format is manager.defaultFormat (csv).
      expect(await readText(await manager.read('two-formats'))).to.equal('a,b\n1,2\n');
      expect(await manager.read('two-formats', 'xlsx')).to.equal(undefined);
    });

    it('leaves nothing readable when the handler writes and then throws', async function () {
      const env = await open();
      const manager = env.manager();
      manager.process(async (job) => {
        await job.write('csv', 'half a result');
        throw new PermanentError('broke after writing');
      });
      await manager.submit(req('torn'));
      await untilTerminal(env, manager, ['torn'], env.settings.pollMs);
      const status = await manager.status('torn');
      expect(status.state).to.equal('failed');
      expect(status.result).to.equal(undefined);
      expect(await manager.read('torn', 'csv')).to.equal(undefined);
      expect(await env.cache.head('torn')).to.equal(undefined);
    });

    it('streams a large result in and out in bounded chunks', async function () {
      this.timeout(120_000);
      const env = await open();
      const manager = env.manager();
      const total = ctx.capabilities.largeResultBytes;
      const source = generatedBytes(total, 64 * 1024);
      manager.process(async (job) => {
        await job.write('bin', source.chunks, { contentType: 'application/octet-stream' });
      });
      await manager.submit(req('large', { sticky: true }));
      await untilTerminal(env, manager, ['large'], 0, undefined, 110_000);
      const status = await manager.status('large');
      expect(status.state).to.equal('completed');
      expect(status.result?.area).to.equal('persistent');
      expect(status.result?.formats['bin']?.size).to.equal(total);
      const body = await manager.read('large', 'bin');
      expect(body?.size).to.equal(total);
      if (body === undefined) return;
      const read = await hashStream(body.body);
      expect(read.bytes).to.equal(total);
      expect(read.sha256).to.equal(source.sha256());
      // Streamed, not handed over as one buffer: no chunk bigger than 1 MiB.
      expect(read.maxChunk, 'largest chunk read').to.be.at.most(Math.min(total, 1024 * 1024));
    });

    it('gives a URL for a stored format only', async function () {
      const env = await open();
      const manager = env.manager();
      await completeWithWorker(env, manager, [req('linked')]);
      const url = await manager.resultUrl('linked', 'csv');
      expect(url).to.be.a('string').and.not.equal('');
      expect(await manager.resultUrl('linked')).to.be.a('string');
      expect(await manager.resultUrl('linked', 'json')).to.equal(undefined);
      expect(await manager.resultUrl('not-there', 'csv')).to.equal(undefined);
      expect(await env.cache.url('linked', 'csv', { expiresInSec: 60 })).to.be.a('string');
    });

    it('clears temporary results by age, then everything', async function () {
      const env = await open();
      const manager = env.manager();
      await completeWithWorker(env, manager, [req('old-temp')]);
      const cutoff = env.clock.now() + env.t(5_000);
      await env.clock.advance(env.t(10_000));
      await completeWithWorker(env, manager, [req('new-temp'), req('kept', { sticky: true })]);
      expect((await manager.status('kept')).result?.area).to.equal('persistent');
      expect(await manager.clearTemporary({ olderThan: new Date(cutoff) })).to.equal(1);
      expect(await manager.read('old-temp', 'csv')).to.equal(undefined);
      expect(await readText(await manager.read('new-temp', 'csv'))).to.equal('result of new-temp');
      expect(await manager.clearTemporary()).to.equal(1);
      expect(await manager.read('new-temp', 'csv')).to.equal(undefined);
      expect(await readText(await manager.read('kept', 'csv'))).to.equal('result of kept');
      await manager.clearAll();
      expect(await manager.read('kept', 'csv')).to.equal(undefined);
      expect(await env.cache.head('kept')).to.equal(undefined);
    });

    it('refuses a write after the job completed with ConflictError', async function () {
      const env = await open();
      const manager = env.manager();
      let kept: Job | undefined;
      manager.process(async (job) => {
        kept = job;
        await job.write('csv', 'final');
      });
      await manager.submit(req('sealed'));
      await untilTerminal(env, manager, ['sealed'], env.settings.pollMs);
      const job = kept;
      expect(job).to.not.equal(undefined);
      if (job === undefined) return;
      const error = await rejectionOf(job.write('csv', 'tampered'));
      expect(ConflictError.is(error), String(error)).to.equal(true);
      expect(await rejectionOf(job.write('json', '{}'))).to.be.instanceOf(Error);
      expect(await readText(await manager.read('sealed', 'csv'))).to.equal('final');
      expect(await manager.read('sealed', 'json')).to.equal(undefined);
    });

    it('publishes staged formats atomically and discards aborted ones (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      const staged = await cache.stage('atomic');
      const csvInfo = await staged.write('csv', bytesOf('x,y\n'), { contentType: 'text/csv' });
      expect(csvInfo.size).to.equal(4);
      await staged.write('json', bytesOf('{"x":1}'), { contentType: 'application/json' });
      expect(Object.keys(staged.formats()).sort()).to.deep.equal(['csv', 'json']);
      expect(await cache.head('atomic')).to.equal(undefined);
      expect(await cache.get('atomic', 'csv')).to.equal(undefined);
      const manifest = await staged.commit('temporary');
      expect(manifest.area).to.equal('temporary');
      expect(manifest.createdAt).to.equal(env.clock.now());
      expect(Object.keys(manifest.formats).sort()).to.deep.equal(['csv', 'json']);
      const head = await cache.head('atomic');
      expect(head?.area).to.equal('temporary');
      expect(head?.formats['csv']).to.deep.include({ size: 4, contentType: 'text/csv' });
      const got = await cache.get('atomic', 'json');
      expect(got?.contentType).to.equal('application/json');
      expect(got?.area).to.equal('temporary');
      expect((await collect(got?.body ?? emptyStream())).toString()).to.equal('{"x":1}');

      const aborted = await cache.stage('never');
      await aborted.write('csv', bytesOf('nope'), { contentType: 'text/csv' });
      await aborted.abort();
      await aborted.abort();
      expect(await cache.head('never')).to.equal(undefined);
      expect(await cache.get('never', 'csv')).to.equal(undefined);

      // A second write of a format in one staging replaces the first.
      const rewrite = await cache.stage('rewritten');
      await rewrite.write('csv', bytesOf('first version'), { contentType: 'text/csv' });
      await rewrite.write('csv', bytesOf('second'), { contentType: 'text/csv' });
      await rewrite.commit('persistent');
      expect((await collect((await cache.get('rewritten', 'csv'))?.body ?? emptyStream())).toString()).to.equal(
        'second',
      );
      expect((await cache.head('rewritten'))?.formats['csv']?.size).to.equal(6);
    });

    it('lets a commit in flight finish when abort is called meanwhile, abort waiting for it (SPI)', async function () {
      const { cache } = await open();
      const staged = await cache.stage('committing');
      // Big enough for a file or object of its own where small formats travel in the manifest.
      const big = 'z'.repeat(256 * 1024);
      await staged.write('csv', bytesOf(big), { contentType: 'text/csv' });
      await staged.write('json', bytesOf('{}'), { contentType: 'application/json' });
      const commit = staged.commit('persistent');
      await staged.abort();
      // The abort returned after the commit: its result is whole and readable already.
      expect((await cache.head('committing'))?.formats['csv']?.size).to.equal(big.length);
      const manifest = await commit;
      expect(Object.keys(manifest.formats).sort()).to.deep.equal(['csv', 'json']);
      expect((await collect((await cache.get('committing', 'csv'))?.body ?? emptyStream())).toString()).to.equal(big);
      expect(
        ConflictError.is(await rejectionOf(staged.write('csv', bytesOf('late'), { contentType: 'text/csv' }))),
      ).to.equal(true);
    });

    it('refuses a commit fenced lower than the current result, in either area (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      // Two holders of one key: the stale one (claimed first, fence 100) stalls; the later one
      // (fence 200) publishes first. The stale commit must not replace it, in either area.
      const stale = await cache.stage('fenced');
      await stale.write('csv', bytesOf('stale'), { contentType: 'text/csv' });
      const stalePersistent = await cache.stage('fenced');
      await stalePersistent.write('csv', bytesOf('stale too'), { contentType: 'text/csv' });
      const fresh = await cache.stage('fenced');
      await fresh.write('csv', bytesOf('fresh'), { contentType: 'text/csv' });
      const published = await fresh.commit('temporary', { fence: 200 });
      expect(published.fence).to.equal(200);
      for (const [staged, area] of [
        [stale, 'temporary'],
        [stalePersistent, 'persistent'],
      ] as const) {
        const error = await rejectionOf(staged.commit(area, { fence: 100 }));
        expect(LeaseLostError.is(error), String(error)).to.equal(true);
      }
      expect((await cache.head('fenced'))?.area).to.equal('temporary');
      expect(await readText(await cache.get('fenced', 'csv'))).to.equal('fresh');
      // An equal or higher fence, or none, may replace it.
      const again = await cache.stage('fenced');
      await again.write('csv', bytesOf('rebuilt'), { contentType: 'text/csv' });
      expect((await again.commit('persistent', { fence: 200 })).fence).to.equal(200);
      const unfenced = await cache.stage('fenced');
      await unfenced.write('csv', bytesOf('unfenced'), { contentType: 'text/csv' });
      await unfenced.commit('temporary');
      expect(await readText(await cache.get('fenced', 'csv'))).to.equal('unfenced');
    });

    it('refuses a commit whose fence is not a finite number, and keeps the staged result open (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      const staged = await cache.stage('bad-fence');
      await staged.write('csv', bytesOf('kept'), { contentType: 'text/csv' });
      for (const fence of [Number.NaN, Number.POSITIVE_INFINITY, '7']) {
        const error = await rejectionOf(staged.commit('temporary', { fence } as unknown as { fence: number }));
        expect(InvalidRequestError.is(error) && error.field, String(error)).to.equal('fence');
      }
      expect(await cache.head('bad-fence')).to.equal(undefined);
      expect((await staged.commit('temporary', { fence: 5 })).fence).to.equal(5);
      expect(await readText(await cache.get('bad-fence', 'csv'))).to.equal('kept');
    });

    it('refuses a commit whose stillHeld says the lease ran out, and keeps the earlier result (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      const earlier = await cache.stage('still-held');
      await earlier.write('csv', bytesOf('earlier'), { contentType: 'text/csv' });
      await earlier.commit('persistent', { fence: 100 });
      // Big enough for a file or object of its own where small formats travel in the manifest.
      const big = 'y'.repeat(256 * 1024);
      for (const area of ['temporary', 'persistent'] as const) {
        const stale = await cache.stage('still-held');
        await stale.write('csv', bytesOf(big), { contentType: 'text/csv' });
        let asked = 0;
        const error = await rejectionOf(
          stale.commit(area, {
            fence: 200,
            stillHeld: () => {
              asked++;
              return false;
            },
          }),
        );
        expect(LeaseLostError.is(error), String(error)).to.equal(true);
        expect(asked).to.be.greaterThan(0);
      }
      expect((await cache.head('still-held'))?.area).to.equal('persistent');
      expect(await readText(await cache.get('still-held', 'csv'))).to.equal('earlier');
      // Asked, and held: the commit publishes.
      const held = await cache.stage('still-held');
      await held.write('csv', bytesOf('held'), { contentType: 'text/csv' });
      let asked = 0;
      const manifest = await held.commit('temporary', {
        fence: 200,
        stillHeld: () => {
          asked++;
          return true;
        },
      });
      expect(manifest.fence).to.equal(200);
      expect(asked).to.be.greaterThan(0);
      expect(await readText(await cache.get('still-held', 'csv'))).to.equal('held');
    });

    it('refuses a commit whose stillHeld is not a function, and keeps the staged result open (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      const staged = await cache.stage('bad-still-held');
      await staged.write('csv', bytesOf('kept'), { contentType: 'text/csv' });
      for (const stillHeld of [true, 'yes', 1]) {
        const error = await rejectionOf(staged.commit('temporary', { stillHeld } as unknown as { fence: number }));
        expect(InvalidRequestError.is(error) && error.field, String(error)).to.equal('stillHeld');
      }
      expect(await cache.head('bad-still-held')).to.equal(undefined);
      await staged.commit('temporary', { stillHeld: () => true });
      expect(await readText(await cache.get('bad-still-held', 'csv'))).to.equal('kept');
    });

    it('keeps the fence of a promoted result, so a stale commit still cannot replace it (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      const fresh = await cache.stage('promoted-fence');
      await fresh.write('csv', bytesOf('fresh'), { contentType: 'text/csv' });
      await fresh.commit('temporary', { fence: 200 });
      expect(await cache.promote('promoted-fence')).to.equal(true);
      expect((await cache.head('promoted-fence'))?.fence).to.equal(200);
      const stale = await cache.stage('promoted-fence');
      await stale.write('csv', bytesOf('stale'), { contentType: 'text/csv' });
      const error = await rejectionOf(stale.commit('temporary', { fence: 100 }));
      expect(LeaseLostError.is(error), String(error)).to.equal(true);
      expect((await cache.head('promoted-fence'))?.area).to.equal('persistent');
      expect(await readText(await cache.get('promoted-fence', 'csv'))).to.equal('fresh');
    });

    it('replaces an earlier result in both areas on commit, and promotes temporary results (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      await putResult(env, 'k', 'temporary', { csv: 'temp csv' });
      await putResult(env, 'k', 'persistent', { json: '{"v":2}' });
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      const head = await cache.head('k');
      expect(head?.area).to.equal('persistent');
      expect(Object.keys(head?.formats ?? {})).to.deep.equal(['json']);
      expect(await cache.get('k', 'csv')).to.equal(undefined);

      await putResult(env, 'p', 'temporary', { csv: 'promote me' });
      expect(await cache.promote('p')).to.equal(true);
      expect((await cache.head('p'))?.area).to.equal('persistent');
      expect(await cache.head('p', 'temporary')).to.equal(undefined);
      expect((await cache.head('p', 'persistent'))?.formats['csv']?.size).to.equal(10);
      expect((await collect((await cache.get('p', 'csv'))?.body ?? emptyStream())).toString()).to.equal('promote me');
      expect(await cache.promote('p')).to.equal(false);
      expect(await cache.promote('absent')).to.equal(false);
    });

    it('serves byte ranges (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      await putResult(env, 'ranged', 'temporary', { csv: '0123456789' });
      const middle = await cache.get('ranged', 'csv', { range: { start: 2, end: 5 } });
      expect(middle?.size).to.equal(4);
      expect(middle?.totalSize).to.equal(10);
      expect((await collect(middle?.body ?? emptyStream())).toString()).to.equal('2345');
      const tail = await cache.get('ranged', 'csv', { range: { start: 7 } });
      expect(tail?.size).to.equal(3);
      expect((await collect(tail?.body ?? emptyStream())).toString()).to.equal('789');
      const whole = await cache.get('ranged', 'csv');
      expect(whole?.size).to.equal(10);
      expect(whole?.totalSize).to.equal(10);
      await collect(whole?.body ?? emptyStream());
    });

    it('deletes, clears, sweeps by age and lists results per area (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      await putResult(env, 'old-1', 'temporary');
      await putResult(env, 'old-2', 'temporary');
      await putResult(env, 'sticky-old', 'persistent');
      await env.clock.advance(env.t(60_000));
      const cutoff = env.clock.now();
      await env.clock.advance(env.t(1_000));
      await putResult(env, 'new-1', 'temporary');
      await putResult(env, 'sticky-new', 'persistent');

      const temp = await listAll(cache, 'temporary');
      expect(temp.sort()).to.deep.equal(['new-1', 'old-1', 'old-2']);
      expect(await cache.sweep('temporary', cutoff)).to.equal(2);
      expect((await listAll(cache, 'temporary')).sort()).to.deep.equal(['new-1']);
      expect(await cache.sweep('persistent', cutoff)).to.equal(1);
      expect(await cache.head('sticky-old')).to.equal(undefined);
      expect(await cache.delete('new-1')).to.equal(1);
      expect(await cache.delete('new-1')).to.equal(0);
      expect(await cache.delete('sticky-new', 'temporary')).to.equal(0);
      expect(await cache.clear('persistent')).to.equal(1);
      expect(await listAll(cache, 'persistent')).to.deep.equal([]);
      for (let i = 0; i < 7; i++) await putResult(env, `many-${String(i)}`, 'temporary');
      expect((await listAll(cache, 'temporary', 3)).sort()).to.deep.equal(
        Array.from({ length: 7 }, (_, i) => `many-${String(i)}`),
      );
      expect(await cache.clear('temporary')).to.equal(7);
    });

    it('refuses malformed options of every call with InvalidRequestError naming the field (SPI)', async function () {
      const env = await open();
      const { cache } = env;
      await putResult(env, 'present', 'temporary', { csv: '0123456789' });
      const staged = await cache.stage('staged');
      // Through `never`: these are the calls a JavaScript caller (or a cast) can make.
      const calls: [string, string, () => Promise<unknown>][] = [
        ['options', 'list null', () => cache.list('temporary', null as never)],
        ['options', 'list a string', () => cache.list('temporary', 'ten' as never)],
        ['options', 'list an array', () => cache.list('temporary', [10] as never)],
        ['limit', 'list without options', () => cache.list('temporary', undefined as never)],
        ['limit', 'list {}', () => cache.list('temporary', {} as never)],
        ['limit', 'list a string limit', () => cache.list('temporary', { limit: '10' } as never)],
        ['limit', 'list a null limit', () => cache.list('temporary', { limit: null } as never)],
        ['limit', 'list limit 0', () => cache.list('temporary', { limit: 0 })],
        ['limit', 'list limit 1.5', () => cache.list('temporary', { limit: 1.5 })],
        ['limit', 'list limit NaN', () => cache.list('temporary', { limit: Number.NaN })],
        ['cursor', 'list a numeric cursor', () => cache.list('temporary', { limit: 1, cursor: 5 } as never)],
        ['cursor', 'list a null cursor', () => cache.list('temporary', { limit: 1, cursor: null } as never)],
        ['cursor', 'list a foreign cursor', () => cache.list('temporary', { limit: 1, cursor: 'bm90LWEtY3Vyc29y' })],
        ['olderThan', 'sweep without a time', () => cache.sweep('temporary', undefined as never)],
        ['olderThan', 'sweep a string time', () => cache.sweep('temporary', '1' as never)],
        ['olderThan', 'sweep NaN', () => cache.sweep('temporary', Number.NaN)],
        ['options', 'commit a string', () => staged.commit('temporary', 'soon' as never)],
        ['contentType', 'write null', () => staged.write('csv', bytesOf('x'), null as never)],
        // Served as HTTP headers: nothing that could inject another header, or that no header can carry.
        [
          'contentType',
          'write a content type with CR/LF',
          () => staged.write('csv', bytesOf('x'), { contentType: 'text/csv\r\nX-Injected: 1' }),
        ],
        [
          'contentType',
          'write a content type with no subtype',
          () => staged.write('csv', bytesOf('x'), { contentType: 'csv' }),
        ],
        [
          'contentType',
          'write a non-ASCII content type',
          () => staged.write('csv', bytesOf('x'), { contentType: 'text/csv; name="ü"' }),
        ],
        [
          'contentEncoding',
          'write a content encoding with CR/LF',
          () =>
            staged.write('csv', bytesOf('x'), { contentType: 'text/csv', contentEncoding: 'gzip\r\nX-Injected: 1' }),
        ],
        [
          'contentEncoding',
          'write an empty content encoding',
          () => staged.write('csv', bytesOf('x'), { contentType: 'text/csv', contentEncoding: ' ' }),
        ],
      ];
      // A lookup that finds nothing checks its options all the same.
      for (const key of ['present', 'absent']) {
        calls.push(
          ['options', `get ${key} null`, () => cache.get(key, 'csv', null as never)],
          ['options', `get ${key} a string`, () => cache.get(key, 'csv', 'all' as never)],
          ['range', `get ${key} a null range`, () => cache.get(key, 'csv', { range: null } as never)],
          ['range', `get ${key} a string range`, () => cache.get(key, 'csv', { range: '0-4' } as never)],
          ['range', `get ${key} a negative range`, () => cache.get(key, 'csv', { range: { start: -1 } })],
          ['range', `get ${key} a reversed range`, () => cache.get(key, 'csv', { range: { start: 4, end: 2 } })],
          ['options', `url ${key} null`, () => cache.url(key, 'csv', null as never)],
          ['options', `url ${key} a number`, () => cache.url(key, 'csv', 60 as never)],
          ['expiresInSec', `url ${key} without options`, () => cache.url(key, 'csv', undefined as never)],
          ['expiresInSec', `url ${key} a string expiry`, () => cache.url(key, 'csv', { expiresInSec: '60' } as never)],
        );
      }
      // Every call is tried, so that a failure lists all the calls an adapter gets wrong.
      const wrong: string[] = [];
      for (const [field, what, call] of calls) {
        const error = await call().then(
          () => 'resolved',
          (reason: unknown) => reason,
        );
        if (!InvalidRequestError.is(error) || error.field !== field) wrong.push(`${what}: ${String(error)}`);
      }
      expect(wrong).to.deep.equal([]);
      // Nothing was changed by the refused calls: the staged result is still open.
      expect(await readText(await cache.get('present', 'csv', { range: { start: 2, end: 4 } }))).to.equal('234');
      expect((await cache.list('temporary', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['present']);
      await staged.write('csv', bytesOf('kept'), { contentType: 'text/csv' });
      await staged.commit('temporary');
      expect(await readText(await cache.get('staged', 'csv'))).to.equal('kept');
    });
  });
}

async function listAll(
  cache: {
    list(
      area: 'persistent' | 'temporary',
      o: { limit: number; cursor?: string },
    ): Promise<{ items: { key: string }[]; cursor?: string }>;
  },
  area: 'persistent' | 'temporary',
  limit = 100,
): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const result = await cache.list(area, cursor === undefined ? { limit } : { limit, cursor });
    expect(result.items.length).to.be.at.most(limit);
    keys.push(...result.items.map((m) => m.key));
    cursor = result.cursor;
    if (cursor === undefined) return keys;
  }
  throw new Error('list never ended');
}

/** Stands in for a missing body, so that a failed expectation above reports first. */
async function* emptyStream(): AsyncGenerator<Uint8Array> {
  // Nothing to yield.
}
