import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { DeleteObjectsCommandInput, S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError } from '@armlib/core';

import type { S3CacheManager } from '../src/index.js';
import { holdOnce, injectFault, recordCommands } from './harness/faults.js';
import type { CommandInput } from './harness/faults.js';
import {
  barrier,
  bytes,
  commitText,
  listKeys,
  readText,
  rejectionOf,
  settleTurns,
  useCaches,
} from './harness/fixture.js';
import type { OpenedCache } from './harness/fixture.js';

/** The object key a command names, if any. */
function keyOf(input: CommandInput): string {
  return typeof input['Key'] === 'string' ? input['Key'] : '';
}

/** The object keys a DeleteObjects command names. */
function deletedKeys(input: CommandInput): string[] {
  return ((input as unknown as DeleteObjectsCommandInput).Delete?.Objects ?? []).map((o) => o.Key ?? '');
}

/** The text of an object. */
async function getText(client: S3Client, bucket: string, key: string): Promise<string> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return (await out.Body?.transformToString()) ?? '';
}

/**
 * A client whose first DeleteObjects naming `manifestSuffix` waits until `release()`; `held`
 * settles once it waits (the manifest PUT and the read of the other area went before it).
 */
function holdManifestDelete(
  client: S3Client,
  manifestSuffix: string,
): { readonly held: Promise<void>; readonly release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reached!: () => void;
  const held = new Promise<void>((resolve) => (reached = resolve));
  let done = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as DeleteObjectsCommandInput;
      if (
        !done &&
        context.commandName === 'DeleteObjectsCommand' &&
        (input.Delete?.Objects ?? []).some((o) => (o.Key ?? '').endsWith(manifestSuffix))
      ) {
        done = true;
        reached();
        await gate;
      }
      return next(args);
    },
    { step: 'initialize', name: 'holdManifestDelete' },
  );
  return { held, release };
}

describe('@armlib/s3 S3CacheManager under concurrency and partial failures', function () {
  this.timeout(60_000);
  const { open, ownClient } = useCaches();

  describe('commits of one key to both areas', function () {
    /**
     * A second cache whose manifest PUT for `key` waits at `beforeWrite`, and whose first call
     * after that PUT waits at `afterWrite`: two of them commit side by side, each past the other's
     * reads, and each writes before either looks at the other area again.
     */
    async function overlapping(
      opened: OpenedCache,
      key: string,
      meet: { beforeWrite: () => Promise<void>; afterWrite: () => Promise<void> },
    ): Promise<S3CacheManager> {
      const client = await ownClient();
      let written = false;
      let met = false;
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const isManifestPut =
            context.commandName === 'PutObjectCommand' &&
            keyOf(args.input as CommandInput).endsWith(`/${key}/manifest.json`);
          if (isManifestPut) {
            await meet.beforeWrite();
            const result = await next(args);
            written = true;
            return result;
          }
          if (written && !met) {
            met = true;
            await meet.afterWrite();
          }
          return next(args);
        },
        { step: 'initialize', name: 'overlapAroundManifest' },
      );
      return opened.peer({ client });
    }

    async function commitBoth(
      fences: [number | undefined, number | undefined],
    ): Promise<{ opened: OpenedCache; temporary: S3CacheManager; persistent: S3CacheManager }> {
      const opened = await open();
      const meet = { beforeWrite: barrier(2), afterWrite: barrier(2) };
      const temporary = await overlapping(opened, 'k', meet);
      const persistent = await overlapping(opened, 'k', meet);
      const [t, p] = fences;
      await Promise.all([
        commitText(temporary, 'k', { txt: 'temporary' }, 'temporary', t === undefined ? {} : { fence: t }),
        commitText(persistent, 'k', { txt: 'persistent' }, 'persistent', p === undefined ? {} : { fence: p }),
      ]);
      // Their background clean-up is over once they are closed.
      await temporary.close();
      await persistent.close();
      return { opened, temporary, persistent };
    }

    it('keeps the result of the later claim when two commits to different areas overlap', async function () {
      const { opened } = await commitBoth([1, 2]);
      const { cache, client, bucket, prefix } = opened;
      expect((await cache.head('k', 'temporary'))?.fence).to.equal(undefined);
      const head = await cache.head('k');
      expect(head?.area).to.equal('persistent');
      expect(head?.fence).to.equal(2);
      expect(await readText(cache, 'k', 'txt')).to.equal('persistent');
      // The losing commit's data went with its manifest.
      const left = await listKeys(client, bucket, prefix);
      expect(left.filter((k) => k.includes('/temporary/'))).to.deep.equal([]);
    });

    it('keeps exactly one of two overlapping unfenced commits to different areas', async function () {
      const { opened } = await commitBoth([undefined, undefined]);
      const { cache } = opened;
      const kept = [await cache.head('k', 'temporary'), await cache.head('k', 'persistent')].filter(
        (m) => m !== undefined,
      );
      expect(kept).to.have.length(1);
      expect(await readText(cache, 'k', 'txt')).to.equal(kept[0]?.area);
    });

    it('keeps a result when each of two overlapping commits to different areas deletes the other’s manifest', async function () {
      const opened = await open();
      const { cache, client, bucket, prefix } = opened;
      await commitText(cache, 'k', { txt: 'first' }, 'temporary', { fence: 1 });
      // A wrote its persistent manifest and read the temporary result (the first), and deletes
      // it by key only once B's temporary commit, which read and deleted A's result, is over.
      const aClient = await ownClient();
      const hold = holdManifestDelete(aClient, '/temporary/k/manifest.json');
      const a = opened.peer({ client: aClient });
      const committingA = commitText(a, 'k', { txt: 'A' }, 'persistent', { fence: 2 });
      await hold.held;
      const b = opened.peer();
      expect((await commitText(b, 'k', { txt: 'B' }, 'temporary', { fence: 3 })).area).to.equal('temporary');
      // B's clean-up, A's data included, is over.
      await b.close();
      expect((await cache.head('k'))?.fence).to.equal(3);
      hold.release();
      expect((await committingA).area).to.equal('persistent');
      await a.close();
      // A's delete took B's manifest; A committed again, data included.
      const head = await cache.head('k');
      expect(head?.area).to.equal('persistent');
      expect(head?.fence).to.equal(2);
      expect(await readText(cache, 'k', 'txt')).to.equal('A');
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      // In the persistent area, that result alone: A's first data went. B's data, which no
      // manifest names any more, is left to sweep as an orphan.
      expect(await listKeys(client, bucket, `${prefix}persistent/`)).to.have.length(2);
      const temporary = await listKeys(client, bucket, `${prefix}temporary/`);
      expect(temporary.filter((k) => k.endsWith('/manifest.json'))).to.deep.equal([]);
      expect(temporary).to.have.length(1);
    });

    it('replaces the other area’s result even when a host with a clock ahead committed it', async function () {
      const { cache, client, bucket, prefix } = await open();
      // A result whose commit id is an hour ahead of this host's clock.
      const commitId = `c${(Date.now() + 3_600_000).toString(36)}-0000000000000000`;
      const manifest = {
        v: 1,
        key: 'k',
        area: 'persistent',
        createdAt: 1,
        commitId,
        formats: { txt: { size: 3, contentType: 'text/plain' } },
      };
      const put = (Key: string, Body: string): Promise<unknown> =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
      await put(`${prefix}persistent/k/${commitId}/txt`, 'old');
      await put(`${prefix}persistent/k/manifest.json`, JSON.stringify(manifest));
      await commitText(cache, 'k', { txt: 'new' }, 'temporary');
      expect((await cache.head('k'))?.area).to.equal('temporary');
      expect(await readText(cache, 'k', 'txt')).to.equal('new');
      // And a commit after that one, back in the persistent area, replaces it in turn.
      await commitText(cache, 'k', { txt: 'newer' }, 'persistent');
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      expect(await readText(cache, 'k', 'txt')).to.equal('newer');
    });
  });

  describe('two promotions of one result and a delete', function () {
    /**
     * Commits a temporary result `k`, and starts a promotion of it by a peer that has copied its
     * data and made its last checks, its persistent manifest PUT held; then promotes `k` all the
     * way with the opened cache (copies of its own, the temporary result gone).
     */
    async function promotedWithOneHeld(): Promise<{
      opened: OpenedCache;
      promoting: Promise<boolean>;
      release: () => void;
    }> {
      const opened = await open();
      const { cache } = opened;
      await commitText(cache, 'k', { txt: 'promoted' }, 'temporary');
      const client = await ownClient();
      const held = holdOnce(
        client,
        (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith('/persistent/k/manifest.json'),
      );
      const promoting = opened.peer({ client }).promote('k');
      await held.reached;
      expect(await cache.promote('k')).to.equal(true);
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      return { opened, promoting, release: held.release };
    }

    /** A result that shows must read whole: a manifest naming deleted data is the failure. */
    async function expectWholeOrGone(cache: S3CacheManager): Promise<void> {
      if ((await cache.head('k')) === undefined) return;
      expect(await readText(cache, 'k', 'txt'), 'the manifest names deleted data').to.equal('promoted');
    }

    it('a promotion whose manifest write comes after a clear removed the same result names its own copies', async function () {
      const { opened, promoting, release } = await promotedWithOneHeld();
      const { cache, client, bucket, prefix } = opened;
      // The clear removes the promoted result: its manifest, then its data (the other promotion's
      // copies, under a commit id of its own).
      expect(await cache.clear('persistent')).to.equal(1);
      release();
      // Its manifest, written after the clear, names its own copies: the result is back, whole.
      expect(await promoting).to.equal(true);
      await expectWholeOrGone(cache);
      expect((await cache.head('k'))?.area).to.equal('persistent');
      expect(await listKeys(client, bucket, prefix)).to.have.length(2);
    });

    it('a delete leaves whole a manifest that a promotion of the same result wrote before the delete’s data delete', async function () {
      const { opened, promoting, release } = await promotedWithOneHeld();
      const { cache, client, bucket, prefix } = opened;
      // The delete removed the manifest; its data delete waits until the held promotion is over.
      const deleterClient = await ownClient();
      const heldData = holdOnce(
        deleterClient,
        (command, input) =>
          command === 'DeleteObjectsCommand' && deletedKeys(input).some((k) => /\/persistent\/k\/c[^/]+\/txt$/.test(k)),
      );
      const deleting = opened.peer({ client: deleterClient }).delete('k', 'persistent');
      await heldData.reached;
      expect(await cache.head('k')).to.equal(undefined);
      release();
      // Its manifest, written after the delete removed the other's, names its own copies.
      expect(await promoting).to.equal(true);
      heldData.release();
      // The delete's data delete takes the other promotion's copies only.
      expect(await deleting).to.equal(1);
      await expectWholeOrGone(cache);
      expect((await cache.head('k'))?.area).to.equal('persistent');
      expect(await listKeys(client, bucket, prefix)).to.have.length(2);
    });

    // Review finding: a promotion that undid itself by key (its copies gone) deleted the objects a
    // third promotion of the same result, made after the delete, had just written, as all of them
    // shared one commit id.
    for (const variant of ['manifest', 'data'] as const) {
      it(`a promotion made after a delete stands whatever an earlier promotion of the same result does (its ${variant} delete)`, async function () {
        const opened = await open();
        const { cache, client, bucket, prefix } = opened;
        await commitText(cache, 'k', { txt: 'promoted' }, 'temporary');
        const clientB = await ownClient();
        const clientC = await ownClient();
        // B copied and checked, its manifest PUT waits; a delete of the persistent area by B
        // (the undo of old) waits too, should it come.
        const putB = holdOnce(
          clientB,
          (command, input) => command === 'PutObjectCommand' && keyOf(input).endsWith('/persistent/k/manifest.json'),
        );
        const undoB = holdOnce(
          clientB,
          (command, input) =>
            command === 'DeleteObjectsCommand' &&
            deletedKeys(input).some((k) =>
              variant === 'manifest'
                ? k.endsWith('/persistent/k/manifest.json')
                : /\/persistent\/k\/c[^/]+\/txt$/.test(k),
            ),
        );
        // C published its manifest; its removal of the temporary result waits.
        const tempC = holdOnce(
          clientC,
          (command, input) =>
            command === 'DeleteObjectsCommand' &&
            deletedKeys(input).some((k) => k.endsWith('/temporary/k/manifest.json')),
        );
        const promotingB = opened.peer({ client: clientB }).promote('k');
        await putB.reached;
        const promotingC = opened.peer({ client: clientC }).promote('k');
        await tempC.reached;
        // The persistent result (C's) is deleted, start to finish.
        expect(await cache.delete('k', 'persistent')).to.equal(1);
        putB.release();
        // B goes on to its end, or to its delete of the persistent area, which waits.
        const bSettled = promotingB.then(
          () => 'settled',
          () => 'settled',
        );
        await Promise.race([undoB.reached, bSettled]);
        // A promotion started after the delete returned.
        const promotedA = await cache.promote('k');
        undoB.release();
        const promotedB = await promotingB;
        tempC.release();
        expect(await promotingC).to.equal(true);
        // Whichever of A and B promoted after the delete, nothing deleted its result since.
        expect(promotedA || promotedB).to.equal(true);
        expect(await readText(cache, 'k', 'txt'), 'promoted result lost').to.equal('promoted');
        expect((await cache.head('k'))?.area).to.equal('persistent');
        // One result, its copies, nothing else: the deleted result's copies went with it.
        expect(await listKeys(client, bucket, prefix)).to.have.length(2);
      });
    }

    it('a promotion finding the result already promoted by another writes nothing and removes its copies', async function () {
      const opened = await open();
      const { cache, client, bucket, prefix } = opened;
      await commitText(cache, 'k', { txt: 'promoted' }, 'temporary');
      const clientB = await ownClient();
      const clientC = await ownClient();
      // B's first copy waits until C has published.
      const copyB = holdOnce(clientB, (command) => command === 'CopyObjectCommand');
      const tempC = holdOnce(
        clientC,
        (command, input) =>
          command === 'DeleteObjectsCommand' &&
          deletedKeys(input).some((k) => k.endsWith('/temporary/k/manifest.json')),
      );
      const seenB = recordCommands(clientB);
      const promotingB = opened.peer({ client: clientB }).promote('k');
      await copyB.reached;
      const promotingC = opened.peer({ client: clientC }).promote('k');
      await tempC.reached;
      const published = await cache.head('k', 'persistent');
      copyB.release();
      const promotedB = await promotingB;
      tempC.release();
      expect(await promotingC).to.equal(true);
      expect(promotedB).to.equal(true);
      expect(seenB.filter((c) => c.startsWith('PutObjectCommand'))).to.deep.equal([]);
      expect(await cache.head('k', 'persistent')).to.deep.equal(published);
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      expect(await readText(cache, 'k', 'txt')).to.equal('promoted');
      expect(await listKeys(client, bucket, prefix)).to.have.length(2);
    });

    it('reads a result promoted before promotions had commit ids of their own as the same result', async function () {
      const { cache, client, bucket, prefix } = await open();
      await commitText(cache, 'k', { txt: 'promoted' }, 'temporary');
      // As such a promotion left it after its manifest write: same commit id, no promotedFrom.
      const keys = await listKeys(client, bucket, `${prefix}temporary/k/`);
      const data = keys.find((k) => !k.endsWith('/manifest.json')) ?? '';
      const manifest = await getText(client, bucket, `${prefix}temporary/k/manifest.json`);
      const old = JSON.parse(manifest) as Record<string, unknown>;
      expect(old).to.not.have.property('promotedFrom');
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: data.replace('/temporary/', '/persistent/'), Body: 'promoted' }),
      );
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `${prefix}persistent/k/manifest.json`,
          Body: JSON.stringify({ ...old, area: 'persistent' }),
        }),
      );
      // Already promoted: this promotion writes nothing, and finishes that one's work.
      expect(await cache.promote('k')).to.equal(true);
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      expect(await readText(cache, 'k', 'txt')).to.equal('promoted');
      expect(await listKeys(client, bucket, prefix)).to.deep.equal(
        [`${prefix}persistent/k/manifest.json`, data.replace('/temporary/', '/persistent/')].sort(),
      );
    });
  });

  describe('sweep', function () {
    it('leaves a result committed after the sweep read the key’s manifest', async function () {
      const opened = await open();
      const { cache, clock, prefix } = opened;
      await commitText(cache, 'k', { txt: 'old' });
      await commitText(cache, 'due', { txt: 'due' });
      const olderThan = clock.now() + 1;
      const sweeperClient = await ownClient();
      let readK = false;
      let fresh: Promise<unknown> | undefined;
      sweeperClient.middlewareStack.add(
        (next, context) => async (args) => {
          // The sweep's next call after its read of k's manifest waits for a fresh commit of k.
          if (readK && fresh === undefined) {
            await clock.advance(10);
            fresh = commitText(cache, 'k', { txt: 'fresh' });
            await fresh;
          }
          const result = await next(args);
          if (
            context.commandName === 'GetObjectCommand' &&
            keyOf(args.input as CommandInput) === `${prefix}temporary/k/manifest.json`
          ) {
            readK = true;
          }
          return result;
        },
        { step: 'initialize', name: 'commitAfterSweepRead' },
      );
      const sweeper = opened.peer({ client: sweeperClient });
      expect(await sweeper.sweep('temporary', olderThan)).to.equal(1);
      expect(fresh).to.not.equal(undefined);
      expect(await cache.head('due')).to.equal(undefined);
      expect((await cache.head('k'))?.createdAt).to.equal(olderThan + 9);
      expect(await readText(cache, 'k', 'txt')).to.equal('fresh');
    });
  });

  describe('a commit that fails part way', function () {
    it('deletes its data when the manifest PUT failed, and stands when the PUT landed all the same', async function () {
      const client = await ownClient(1);
      let mode: 'refuse' | 'lose-answer' | 'off' = 'refuse';
      const isManifest = (input: CommandInput): boolean => keyOf(input).endsWith('/k/manifest.json');
      injectFault(
        client,
        'PutObjectCommand',
        { status: 503, code: 'SlowDown' },
        (i) => mode === 'refuse' && isManifest(i),
      );
      injectFault(
        client,
        'PutObjectCommand',
        { status: 503, code: 'SlowDown' },
        (i) => mode === 'lose-answer' && isManifest(i),
        { afterSending: true },
      );
      const { cache, bucket, prefix } = await open({ client });
      const staged = await cache.stage('k');
      await staged.write('txt', bytes('small'), { contentType: 'text/plain' });
      // Over 1 MiB: streamed into staging, and copied in by the commit.
      await staged.write('bin', bytes(Buffer.alloc(1024 * 1024 + 1, 'b')), { contentType: 'application/octet-stream' });
      const refused = await rejectionOf(staged.commit('persistent'));
      expect(BackendError.is(refused) && refused.retryable, String(refused)).to.equal(true);
      // Nothing of that commit is left in the area; the staged object stays for a retry.
      expect(await listKeys(client, bucket, `${prefix}persistent/`)).to.deep.equal([]);
      expect(await listKeys(client, bucket, `${prefix}staging/`)).to.have.length(1);
      mode = 'lose-answer';
      const manifest = await staged.commit('persistent');
      expect(manifest.area).to.equal('persistent');
      expect(await readText(cache, 'k', 'txt')).to.equal('small');
      const big = await cache.get('k', 'bin');
      big?.body.destroy();
      expect(big?.size).to.equal(1024 * 1024 + 1);
    });

    it('deletes its data only once every write has settled when reading the current result fails', async function () {
      const client = await ownClient(1);
      const seen = recordCommands(client);
      let readFailed!: () => void;
      const failed = new Promise<void>((resolve) => (readFailed = resolve));
      injectFault(client, 'GetObjectCommand', { status: 500, code: 'InternalError' }, (input) => {
        if (!keyOf(input).endsWith('/temporary/k/manifest.json')) return false;
        readFailed();
        return true;
      });
      const { cache, bucket, prefix } = await open({ client });
      // The data write goes out only after the failed read was answered and what followed it
      // ran, including a delete the commit may have sent meanwhile.
      let deleting: Promise<unknown> | undefined;
      let written: Promise<unknown> | undefined;
      client.middlewareStack.add(
        (next, context) => (args) => {
          const objectKey = keyOf(args.input as CommandInput);
          if (context.commandName === 'DeleteObjectsCommand') return (deleting = next(args));
          if (context.commandName !== 'PutObjectCommand' || !/\/persistent\/k\/c[^/]+\/txt$/.test(objectKey)) {
            return next(args);
          }
          const write = (async () => {
            await failed;
            await settleTurns();
            await deleting;
            return next(args);
          })();
          written = write;
          return write;
        },
        { step: 'initialize', name: 'slowDataWrite' },
      );
      const error = await rejectionOf(commitText(cache, 'k', { txt: 'late' }, 'persistent'));
      expect(BackendError.is(error) && error.retryable, String(error)).to.equal(true);
      // Whatever the commit left running has landed by now.
      await written;
      expect(await listKeys(client, bucket, `${prefix}persistent/`), seen.join('\n')).to.deep.equal([]);
    });

    it('promote leaves a newer persistent result committed while it promoted', async function () {
      const opened = await open();
      const { cache, client, bucket, prefix } = opened;
      await commitText(cache, 'k', { txt: 'old' }, 'temporary');
      // A newer commit to the persistent area wrote its manifest; its removal of the temporary
      // result waits until the promotion is over.
      const newerClient = await ownClient();
      const hold = holdManifestDelete(newerClient, '/temporary/k/manifest.json');
      const newer = opened.peer({ client: newerClient });
      const committing = commitText(newer, 'k', { txt: 'new' }, 'persistent');
      await hold.held;
      expect(await cache.promote('k')).to.equal(false);
      expect(await readText(cache, 'k', 'txt')).to.equal('new');
      hold.release();
      expect((await committing).area).to.equal('persistent');
      await newer.close();
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      expect(await readText(cache, 'k', 'txt')).to.equal('new');
      // The promotion's copies went: only the newer result's manifest and data are left.
      expect(await listKeys(client, bucket, prefix)).to.have.length(2);
    });

    it('promote reports false when a newer persistent commit replaced its result before it finished', async function () {
      const promoterClient = await ownClient();
      const opened = await open({ client: promoterClient });
      const { cache, bucket, prefix } = opened;
      await commitText(cache, 'k', { txt: 'old' }, 'temporary');
      // The promotion's read of the temporary area after its manifest PUT waits for a commit to
      // the persistent area, which replaces the promoted manifest and removes the temporary result.
      let reads = 0;
      const newer = opened.peer({ client: await ownClient() });
      promoterClient.middlewareStack.add(
        (next, context) => async (args) => {
          const isTemporaryRead =
            context.commandName === 'GetObjectCommand' &&
            keyOf(args.input as CommandInput).endsWith('/temporary/k/manifest.json');
          if (isTemporaryRead && ++reads === 3) await commitText(newer, 'k', { txt: 'new' }, 'persistent');
          return next(args);
        },
        { step: 'initialize', name: 'commitAfterPromotedPut' },
      );
      expect(await cache.promote('k')).to.equal(false);
      expect(reads).to.equal(3);
      await newer.close();
      expect(await readText(cache, 'k', 'txt')).to.equal('new');
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      expect(await listKeys(promoterClient, bucket, prefix)).to.have.length(2);
    });

    it('promote removes the copies it made when a copy or the manifest write fails', async function () {
      const client = await ownClient(1);
      let copies = 0;
      let failCopies = true;
      const toPersistent = (input: CommandInput): boolean => keyOf(input).includes('/persistent/');
      injectFault(
        client,
        'CopyObjectCommand',
        { status: 503, code: 'SlowDown' },
        (input) => failCopies && toPersistent(input) && ++copies === 3,
      );
      let failManifest = false;
      injectFault(
        client,
        'PutObjectCommand',
        { status: 403, code: 'AccessDenied' },
        (input) => failManifest && keyOf(input).endsWith('/persistent/k/manifest.json'),
      );
      const { cache, bucket, prefix } = await open({ client });
      await commitText(cache, 'k', { a: 'a', b: 'b', c: 'c', d: 'd' });
      const copyFailed = await rejectionOf(cache.promote('k'));
      expect(BackendError.is(copyFailed) && copyFailed.retryable, String(copyFailed)).to.equal(true);
      expect(copies).to.be.greaterThanOrEqual(3);
      expect(await listKeys(client, bucket, `${prefix}persistent/`)).to.deep.equal([]);
      failCopies = false;
      failManifest = true;
      const putFailed = await rejectionOf(cache.promote('k'));
      expect(BackendError.is(putFailed) && !putFailed.retryable, String(putFailed)).to.equal(true);
      expect(await listKeys(client, bucket, `${prefix}persistent/`)).to.deep.equal([]);
      expect((await cache.head('k'))?.area).to.equal('temporary');
      failManifest = false;
      expect(await cache.promote('k')).to.equal(true);
      expect(await readText(cache, 'k', 'c')).to.equal('c');
    });
  });

  describe('promoted commit ids', function () {
    it('sorts the promoted commit id after its source, even one from a clock ahead', async function () {
      const { cache, client, bucket, prefix } = await open();
      await commitText(cache, 'k', { txt: 'ahead' }, 'temporary');
      // The temporary result as a host whose clock is an hour ahead would have committed it.
      const source = `c${(Date.now() + 3_600_000).toString(36)}-0123456789abcdef`;
      const manifest = JSON.parse(await getText(client, bucket, `${prefix}temporary/k/manifest.json`)) as {
        commitId: string;
      };
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: `${prefix}temporary/k/${source}/txt`, Body: 'ahead' }),
      );
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `${prefix}temporary/k/manifest.json`,
          Body: JSON.stringify({ ...manifest, commitId: source }),
        }),
      );
      expect(await cache.promote('k')).to.equal(true);
      const promoted = JSON.parse(await getText(client, bucket, `${prefix}persistent/k/manifest.json`)) as {
        commitId: string;
        promotedFrom: string;
      };
      expect(promoted.promotedFrom).to.equal(source);
      // An armlib from before promotedFrom breaks ties on the commit id: the promotion must not rank older.
      expect(promoted.commitId > source).to.equal(true);
      expect(await readText(cache, 'k', 'txt')).to.equal('ahead');
    });
  });

  describe('a promotion and a commit that read the key before it', function () {
    const isManifest = (area: string) => (input: CommandInput) => keyOf(input).endsWith(`/${area}/k/manifest.json`);
    const isPut = (area: string) => (command: string, input: CommandInput) =>
      command === 'PutObjectCommand' && isManifest(area)(input);
    const isGet = (area: string) => (command: string, input: CommandInput) =>
      command === 'GetObjectCommand' && isManifest(area)(input);
    const isDelete = (area: string) => (command: string, input: CommandInput) =>
      command === 'DeleteObjectsCommand' && deletedKeys(input).some((k) => k.endsWith(`/${area}/k/manifest.json`));

    /** Commit ids carry the time in ms: waiting for the next one makes a later commit rank newer. */
    async function nextMillisecond(): Promise<void> {
      const start = Date.now();
      while (Date.now() <= start) await new Promise<void>((resolve) => setImmediate(resolve));
    }

    it('keeps a result when an older persistent commit replaced the promotion and yielded to its source', async function () {
      const opened = await open();
      const { cache } = opened;
      const clientA = await ownClient();
      const clientC = await ownClient();
      // An older persistent commit that read both areas empty; its manifest PUT waits.
      const putA = holdOnce(clientA, isPut('persistent'));
      const older = commitText(opened.peer({ client: clientA }), 'k', { txt: 'older' }, 'persistent');
      await putA.reached;
      await nextMillisecond();
      await commitText(cache, 'k', { txt: 'newer' }, 'temporary');
      // The promotion has written its manifest and read the temporary one; its delete waits.
      const deleteC = holdOnce(clientC, isDelete('temporary'));
      const promotion = opened.peer({ client: clientC }).promote('k');
      await deleteC.reached;
      // The older commit replaces the promotion's manifest, finds the temporary result newer and
      // removes itself; its delete waits while the promotion removes the temporary result.
      const selfDeleteA = holdOnce(clientA, isDelete('persistent'));
      putA.release();
      await selfDeleteA.reached;
      deleteC.release();
      expect(await promotion).to.equal(true);
      selfDeleteA.release();
      // Having removed itself, it reads both areas again, finds neither and commits once more.
      expect((await older).area).to.equal('persistent');
      expect((await cache.head('k'))?.area).to.equal('persistent');
      expect(await readText(cache, 'k', 'txt')).to.equal('older');
    });

    it('keeps the promotion when an older temporary commit lands behind it and yields to it', async function () {
      const opened = await open();
      const { cache } = opened;
      const clientA = await ownClient();
      const clientC = await ownClient();
      // An older temporary commit that read both areas empty; its manifest PUT waits.
      const putA = holdOnce(clientA, isPut('temporary'));
      const older = commitText(opened.peer({ client: clientA }), 'k', { txt: 'older' }, 'temporary');
      await putA.reached;
      await nextMillisecond();
      await commitText(cache, 'k', { txt: 'newer' }, 'temporary');
      // The promotion writes its manifest; its read of the temporary one after the write waits.
      const putC = holdOnce(clientC, isPut('persistent'));
      const promotion = opened.peer({ client: clientC }).promote('k');
      await putC.reached;
      const afterC = holdOnce(clientC, isGet('temporary'));
      putC.release();
      await afterC.reached;
      // The older commit lands in the temporary area, finds the promotion newer and removes
      // itself; that delete waits until the promotion is done or about to undo itself.
      const selfDeleteA = holdOnce(clientA, isDelete('temporary'));
      putA.release();
      await selfDeleteA.reached;
      const undoC = holdOnce(clientC, isDelete('persistent'));
      afterC.release();
      const promoted = await Promise.race([promotion, undoC.reached.then(() => undefined)]);
      selfDeleteA.release();
      expect((await older).area).to.equal('temporary');
      undoC.release();
      expect(promoted ?? (await promotion)).to.equal(true);
      expect((await cache.head('k'))?.area).to.equal('persistent');
      expect(await readText(cache, 'k', 'txt')).to.equal('newer');
      expect(await cache.head('k', 'temporary')).to.equal(undefined);
      // Only the promotion's manifest and copy are left: the replaced result's data went too.
      expect(await listKeys(opened.client, opened.bucket, opened.prefix)).to.have.length(2);
    });
  });
});
