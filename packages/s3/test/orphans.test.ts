import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError } from '@armlib/core';

import type { S3CacheManager } from '../src/index.js';
import { newId } from '../src/layout.js';
import { commitDeadlineOf } from '../src/options.js';
import { holdOnce, recordCommands, refuseDeletes, smallPages } from './harness/faults.js';
import type { CommandInput } from './harness/faults.js';
import { bytes, collect, commitText, listKeys, readText, rejectionOf, useCaches } from './harness/fixture.js';
import type { OpenedCache } from './harness/fixture.js';

const MINUTE = 60_000;
/** The default `orphanGraceMs`. */
const GRACE = 24 * 60 * MINUTE;
/** Its commit deadline: 6 h. */
const DEADLINE = commitDeadlineOf(GRACE);

async function put(client: S3Client, bucket: string, key: string, text: string): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(text) }));
}

function keyOf(input: CommandInput): string {
  return typeof input['Key'] === 'string' ? input['Key'] : '';
}

describe('@armlib/s3 S3CacheManager orphan collection', function () {
  this.timeout(60_000);
  const { open, ownClient } = useCaches();

  /**
   * A cache whose clock reads S3's time: objects S3 writes now are as old as the clock says
   * (s3rver stamps LastModified with the real time), and the clock then moves on from there.
   */
  async function openNow(extra: Parameters<typeof open>[0] = {}): Promise<OpenedCache> {
    const opened = await open(extra);
    await opened.clock.set(Date.now());
    return opened;
  }

  describe('sweep', function () {
    it('deletes the data of a crashed commit once older than orphanGraceMs, and nothing younger', async function () {
      const { cache, client, clock, bucket, prefix } = await openNow();
      const area = `${prefix}persistent/`;
      await commitText(cache, 'kept', { txt: 'kept' }, 'persistent');
      const kept = await listKeys(client, bucket, `${area}kept/`);
      // A commit that crashed before its manifest, in a key with no result and in one with a result.
      const crashed = [newId('c'), newId('c')];
      const orphans = [
        `${area}crashed/${crashed[0]}/txt`,
        `${area}crashed/${crashed[0]}/csv`,
        `${area}kept/${crashed[1]}/txt`,
      ];
      // Names this layout does not make: never the cache's to delete.
      const foreign = [
        `${area}crashed/notes.txt`,
        `${area}crashed/${newId('c')}/deeper/txt`,
        `${area}crashed/x1-0123456789abcdef/txt`,
        `${area}crashed/${newId('s')}/txt`,
        `${area}stray`,
        `${area}bad..key/${newId('c')}/txt`,
      ];
      for (const key of [...orphans, ...foreign]) await put(client, bucket, key, 'x');
      const everything = [...kept, ...orphans, ...foreign].sort();

      // Younger than the grace period: a commit may still be writing its manifest.
      await clock.advance(GRACE - MINUTE);
      expect(await cache.sweep('persistent', 0)).to.equal(0);
      expect(await listKeys(client, bucket, area)).to.deep.equal(everything);

      await clock.advance(2 * MINUTE);
      // Orphans are not results: the count stays the results removed.
      expect(await cache.sweep('persistent', 0)).to.equal(0);
      expect(await listKeys(client, bucket, area)).to.deep.equal([...kept, ...foreign].sort());
      expect(await readText(cache, 'kept', 'txt')).to.equal('kept');
    });

    it('deletes a replaced commit’s data whose background delete was refused, and keeps the named one', async function () {
      const opened = await openNow();
      const { cache, clock, bucket, prefix } = opened;
      const refusing = await ownClient();
      refuseDeletes(refusing, 'AccessDenied', (key) => !key.endsWith('/manifest.json'));
      const writer = opened.peer({ client: refusing });
      await commitText(writer, 'k', { txt: 'v1' }, 'persistent');
      const first = await listKeys(opened.client, bucket, `${prefix}persistent/k/`);
      await commitText(writer, 'k', { txt: 'v2' }, 'persistent');
      await writer.close();
      const both = await listKeys(opened.client, bucket, `${prefix}persistent/k/`);
      // v1's data outlived its replacement: 2 data objects and the manifest.
      expect(both).to.have.length(3);
      const v1 = first.filter((k) => !k.endsWith('/manifest.json'));
      expect(both).to.include.members(v1);

      await clock.advance(GRACE + MINUTE);
      expect(await cache.sweep('persistent', 0)).to.equal(0);
      expect(await listKeys(opened.client, bucket, `${prefix}persistent/k/`)).to.deep.equal(
        both.filter((k) => !v1.includes(k)),
      );
      expect(await readText(cache, 'k', 'txt')).to.equal('v2');
    });

    it('leaves a key whose manifest it cannot read alone, data included, and collects the others', async function () {
      const { cache, client, clock, bucket, prefix } = await openNow();
      const area = `${prefix}persistent/`;
      // A newer armlib's result: which objects it names is unknown.
      const newer = [
        `${area}b/${newId('c')}/txt`,
        `${area}b/${newId('c')}/txt`,
        `${area}b/manifest.json`,
        `${area}c/${newId('c')}/txt`,
      ];
      const orphan = `${area}a/${newId('c')}/txt`;
      for (const key of [...newer, orphan]) await put(client, bucket, key, 'x');
      await put(client, bucket, `${area}b/manifest.json`, JSON.stringify({ v: 2, key: 'b' }));
      // In the persistent area, the temporary manifest counts too (a promotion may be under way).
      await put(client, bucket, `${prefix}temporary/c/manifest.json`, 'not json');

      await clock.advance(GRACE + MINUTE);
      expect(await cache.sweep('persistent', clock.now() + 1)).to.equal(0);
      expect(await listKeys(client, bucket, area)).to.deep.equal([...newer].sort());
    });

    it('costs one listing and the manifest reads when there is nothing to collect', async function () {
      const client = await ownClient();
      const seen = recordCommands(client);
      const opened = await openNow({ client });
      const { cache, clock, bucket, prefix } = opened;
      const area = `${prefix}temporary/`;
      await commitText(cache, 'k1', { txt: '1', csv: '1' });
      await commitText(cache, 'k2', { txt: '2' });
      // Crashed just now: one commit with no manifest, one next to k2's result.
      for (const key of [`${area}k2/${newId('c')}/txt`, `${area}k3/${newId('c')}/txt`]) {
        await put(client, bucket, key, 'x');
      }

      seen.length = 0;
      expect(await cache.sweep('temporary', 0)).to.equal(0);
      expect(seen).to.deep.equal([
        'ListObjectsV2Command',
        `GetObjectCommand ${area}k1/manifest.json`,
        `GetObjectCommand ${area}k2/manifest.json`,
      ]);

      // Something to collect: a folder's manifest is read (again) right before its orphans go, all in one call.
      await clock.advance(GRACE + MINUTE);
      seen.length = 0;
      expect(await cache.sweep('temporary', 0)).to.equal(0);
      expect(seen).to.deep.equal([
        'ListObjectsV2Command',
        `GetObjectCommand ${area}k1/manifest.json`,
        `GetObjectCommand ${area}k2/manifest.json`,
        `GetObjectCommand ${area}k2/manifest.json`,
        `GetObjectCommand ${area}k3/manifest.json`,
        'DeleteObjectsCommand',
      ]);
      expect(await listKeys(client, bucket, `${area}k3/`)).to.deep.equal([]);
      expect(await listKeys(client, bucket, `${area}k2/`)).to.have.length(2);
      expect(await readText(cache, 'k1', 'csv')).to.equal('1');
    });

    it('sees a key folder whole when it straddles listing pages', async function () {
      const client = await ownClient();
      // Pages of 2 objects: every folder below spans two or three pages.
      client.middlewareStack.add(
        (next, context) => (args) =>
          next(
            context.commandName === 'ListObjectsV2Command' ? { ...args, input: { ...args.input, MaxKeys: 2 } } : args,
          ),
        { step: 'initialize', name: 'smallPages' },
      );
      const { cache, clock, bucket, prefix } = await openNow({ client });
      const area = `${prefix}persistent/`;
      await commitText(cache, 'a', { csv: 'a', txt: 'a', xml: 'a' }, 'persistent');
      await commitText(cache, 'b', { csv: 'b', txt: 'b' }, 'persistent');
      const results = await listKeys(client, bucket, area);
      const orphans = [`${area}a/${newId('c')}/txt`, `${area}b/${newId('c')}/csv`, `${area}b/${newId('c')}/txt`];
      for (const key of orphans) await put(client, bucket, key, 'x');

      await clock.advance(GRACE + MINUTE);
      const seen = recordCommands(client);
      expect(await cache.sweep('persistent', 0)).to.equal(0);
      // 10 objects, 2 a page.
      expect(seen.filter((c) => c === 'ListObjectsV2Command')).to.have.length(5);
      expect(await listKeys(client, bucket, area)).to.deep.equal(results);
      expect(await cache.sweep('persistent', clock.now() + 1)).to.equal(2);
      expect(await listKeys(client, bucket, area)).to.deep.equal([]);
    });
  });

  describe('clear', function () {
    /**
     * Commits `formats` to `key` through a peer with a client of its own, held right before its
     * manifest PUT (its data is written): `release()` lets it finish, `commit` is its outcome.
     */
    async function heldCommit(
      opened: OpenedCache,
      key: string,
      formats: Record<string, string>,
    ): Promise<{ commit: Promise<unknown>; release: () => void }> {
      const client = await ownClient();
      const hold = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith(`/${key}/manifest.json`),
      );
      const commit = commitText(opened.peer({ client }), key, formats);
      // Observed now, so that a rejection before the hold is reported by the test, not as unhandled.
      commit.catch(() => undefined);
      await Promise.race([hold.reached, commit]);
      return { commit, release: hold.release };
    }

    /**
     * Clears `area` while `held` waits, and what the clear left there; the commit is released
     * whatever happens (the caches close after each test, and wait for it).
     */
    async function clearWhileHeld(
      opened: OpenedCache,
      held: { release: () => void },
      area: 'temporary' | 'persistent',
    ): Promise<{ cleared: number; left: string[] }> {
      try {
        const cleared = await opened.cache.clear(area);
        return { cleared, left: await listKeys(opened.client, opened.bucket, `${opened.prefix}${area}/`) };
      } finally {
        held.release();
      }
    }

    /** The promise of the cache: a key has no result, or one whose every format reads whole. */
    async function expectWholeOrGone(cache: S3CacheManager, key: string): Promise<boolean> {
      const manifest = await cache.head(key);
      if (manifest === undefined) return false;
      for (const format of Object.keys(manifest.formats)) {
        const body = await cache.get(key, format);
        expect(body, `${key}/${format}: a manifest names it, its data is gone`).to.not.equal(undefined);
        expect((await collect(body?.body)).length, `${key}/${format}`).to.equal(manifest.formats[format]?.size);
      }
      return true;
    }

    it('leaves the data of a commit that has not written its manifest yet', async function () {
      const opened = await openNow();
      const { cache, client, bucket, prefix } = opened;
      const held = await heldCommit(opened, 'k', { txt: 'in flight', csv: 'in, flight' });
      const data = await listKeys(client, bucket, `${prefix}temporary/k/`);
      expect(data).to.have.length(2);

      const { cleared, left } = await clearWhileHeld(opened, held, 'temporary');
      await held.commit;
      // It committed after the clear began: it stands, whole.
      expect(await expectWholeOrGone(cache, 'k')).to.equal(true);
      expect(cleared).to.equal(0);
      // Fresh and named by no manifest listed: the commit's manifest may come later (it did).
      expect(left).to.deep.equal(data);
      expect(await readText(cache, 'k', 'txt')).to.equal('in flight');
      expect(await readText(cache, 'k', 'csv')).to.equal('in, flight');
    });

    it('removes a result and leaves the data of its replacement in flight', async function () {
      const opened = await openNow();
      const { cache, client, bucket, prefix } = opened;
      const folder = `${prefix}temporary/k/`;
      await commitText(cache, 'k', { txt: 'first', csv: 'first' });
      const first = await listKeys(client, bucket, folder);
      const held = await heldCommit(opened, 'k', { txt: 'second' });
      const second = (await listKeys(client, bucket, folder)).filter((k) => !first.includes(k));
      expect(second).to.have.length(1);

      const { cleared, left } = await clearWhileHeld(opened, held, 'temporary');
      await held.commit;
      // Committed after the clear began: the key has a whole result again.
      expect(await expectWholeOrGone(cache, 'k')).to.equal(true);
      expect(cleared).to.equal(1);
      // The result the clear listed went whole; the replacement's data (fresh, unnamed) stayed.
      expect(left).to.deep.equal(second);
      expect(await readText(cache, 'k', 'txt')).to.equal('second');
      expect(await cache.get('k', 'csv')).to.equal(undefined);
    });

    it('collects unnamed objects only once older than orphanGraceMs, with a page’s reads', async function () {
      const client = await ownClient();
      // Pages of 2 objects: folders straddle pages.
      smallPages(client, 2);
      const seen = recordCommands(client);
      const { cache, clock, bucket, prefix } = await openNow({ client });
      const area = `${prefix}persistent/`;
      await commitText(cache, 'a', { csv: 'a', txt: 'a' }, 'persistent');
      await commitText(cache, 'b', { txt: 'b' }, 'persistent');
      // A temporary result, and copies of it in the persistent area as a promotion by an armlib of
      // before `promotedFrom` made them (under the temporary commit id).
      await commitText(cache, 'p', { txt: 'p' });
      const commitId = (await listKeys(client, bucket, `${prefix}temporary/p/`))[0]?.split('/').at(-2) ?? '';
      const promoting = `${area}p/${commitId}/txt`;
      // A crashed commit, one next to a result, names this layout does not make, and a newer
      // armlib's manifest (unreadable: which objects it names is unknown) with its data.
      const orphans = [`${area}a/${newId('c')}/txt`, `${area}c/${newId('c')}/csv`, `${area}c/${newId('c')}/txt`];
      const strays = [`${area}stray`, `${area}c/notes.txt`];
      const newer = [`${area}d/${newId('c')}/txt`, `${area}d/manifest.json`];
      for (const key of [...orphans, ...strays, promoting, ...newer]) await put(client, bucket, key, 'x');
      await put(client, bucket, `${area}d/manifest.json`, JSON.stringify({ v: 2, key: 'd' }));
      const unnamed = [...orphans, ...strays, promoting, newer[0] as string].sort();

      // Younger than the grace period: every result and manifest goes, nothing unnamed.
      await clock.advance(GRACE - MINUTE);
      seen.length = 0;
      expect(await cache.clear('persistent')).to.equal(3);
      expect(await listKeys(client, bucket, area)).to.deep.equal(unnamed);
      // One GET per manifest listed, and no read more when nothing is old (promotions copy under
      // commit ids of their own, so no manifest can come back naming data the clear deleted).
      expect(seen.filter((c) => c.startsWith('GetObjectCommand'))).to.deep.equal(
        ['a', 'b', 'd'].map((k) => `GetObjectCommand ${area}${k}/manifest.json`),
      );

      await clock.advance(2 * MINUTE);
      expect(await cache.clear('persistent')).to.equal(0);
      // The temporary manifest names the promoted copy's commit: such a promotion may still write
      // a persistent manifest naming it.
      expect(await listKeys(client, bucket, area)).to.deep.equal([promoting]);
      expect(await readText(cache, 'p', 'txt')).to.equal('p');
      expect(await cache.delete('p')).to.equal(1);
      expect(await cache.clear('persistent')).to.equal(0);
      expect(await listKeys(client, bucket, area)).to.deep.equal([]);
    });
  });

  describe('the commit deadline', function () {
    it('fails a commit whose manifest would come later than the deadline, retryable, leaving no data', async function () {
      const client = await ownClient();
      const { cache, clock, bucket, prefix } = await openNow({ client });
      const area = `${prefix}persistent/`;
      const hold = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith('/txt'),
      );
      const staged = await cache.stage('k');
      await staged.write('txt', bytes('late'), { contentType: 'text/plain' });
      await staged.write('csv', bytes('late'), { contentType: 'text/csv' });
      const commit = staged.commit('persistent');
      await hold.reached;
      await clock.advance(DEADLINE + 1);
      hold.release();
      const error = await rejectionOf(commit);
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      expect(String(error)).to.include('deadline');
      expect(await listKeys(client, bucket, area)).to.deep.equal([]);
      expect(await cache.head('k')).to.equal(undefined);

      // The staged result is still open: the retry, within the deadline, publishes.
      const again = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith('/txt'),
      );
      const retry = staged.commit('persistent');
      await again.reached;
      await clock.advance(DEADLINE);
      again.release();
      await retry;
      expect(await readText(cache, 'k', 'txt')).to.equal('late');
    });

    it('fails a promotion whose copies took longer than the deadline, leaving the temporary result', async function () {
      const client = await ownClient();
      // The deadline follows the grace period: a quarter of 2 h.
      const { cache, clock, bucket, prefix } = await openNow({ client, orphanGraceMs: 2 * 60 * MINUTE });
      await commitText(cache, 'k', { txt: 'promote me' });
      const hold = holdOnce(
        client,
        (command, input) => command === 'CopyObjectCommand' && keyOf(input).startsWith(`${prefix}persistent/k/`),
      );
      const promotion = cache.promote('k');
      await hold.reached;
      await clock.advance(30 * MINUTE + 1);
      hold.release();
      const error = await rejectionOf(promotion);
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      expect(String(error)).to.include('deadline');
      expect(await listKeys(client, bucket, `${prefix}persistent/`)).to.deep.equal([]);
      expect((await cache.head('k'))?.area).to.equal('temporary');
      expect(await cache.promote('k')).to.equal(true);
      expect((await cache.head('k'))?.area).to.equal('persistent');
    });
  });
});
