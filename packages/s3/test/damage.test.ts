import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { BackendError } from '@armlib/core';

import { recordCommands, refuseDeletes } from './harness/faults.js';
import { commitText, listKeys, readText, rejectionOf, useCaches } from './harness/fixture.js';

describe('@armlib/s3 S3CacheManager with damaged manifests and refused deletes', function () {
  this.timeout(60_000);
  const { open, ownClient } = useCaches();

  async function getText(client: S3Client, bucket: string, key: string): Promise<string> {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await out.Body?.transformToString('utf8')) ?? '';
  }

  async function putText(client: S3Client, bucket: string, key: string, text: string): Promise<void> {
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(text), ContentType: 'application/json' }),
    );
  }

  it('keeps the data of a result whose manifest S3 refused to delete', async function () {
    const client = await ownClient();
    let refusing = true;
    refuseDeletes(client, 'InternalError', (key) => refusing && key.endsWith('/manifest.json'));
    const { cache, clock, bucket, prefix } = await open({ client });
    await commitText(cache, 'k', { txt: 'kept' });
    await commitText(cache, 'old', { txt: 'old' });
    const deleted = await rejectionOf(cache.delete('k'));
    expect(BackendError.is(deleted) && deleted.retryable, String(deleted)).to.equal(true);
    expect(await readText(cache, 'k', 'txt')).to.equal('kept');
    const swept = await rejectionOf(cache.sweep('temporary', clock.now() + 1));
    expect(BackendError.is(swept) && swept.retryable, String(swept)).to.equal(true);
    expect(await readText(cache, 'old', 'txt')).to.equal('old');
    refusing = false;
    expect(await cache.delete('k')).to.equal(1);
    expect(await listKeys(client, bucket, `${prefix}temporary/k/`)).to.deep.equal([]);
  });

  it('skips a manifest of a newer armlib in list and sweep, refuses to commit over it, and deletes it', async function () {
    const client = await ownClient();
    const seen = recordCommands(client);
    const { cache, clock, bucket, prefix } = await open({ client });
    for (const key of ['a', 'b', 'c']) await commitText(cache, key, { txt: key });
    const manifestKey = `${prefix}temporary/b/manifest.json`;
    const data = (await listKeys(client, bucket, `${prefix}temporary/b/`)).filter((k) => k !== manifestKey);
    await putText(client, bucket, manifestKey, (await getText(client, bucket, manifestKey)).replace('"v":1', '"v":2'));

    // Read once: JSON of another version does not change by being read again.
    seen.length = 0;
    const read = await rejectionOf(cache.head('b'));
    expect(seen.filter((c) => c === `GetObjectCommand ${manifestKey}`)).to.have.length(1);
    expect(BackendError.is(read) && !read.retryable, String(read)).to.equal(true);
    expect(String(read)).to.include('version 2');

    expect((await cache.list('temporary', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['a', 'c']);
    const commit = await rejectionOf(commitText(cache, 'b', { txt: 'mine' }));
    expect(BackendError.is(commit) && !commit.retryable, String(commit)).to.equal(true);
    expect(String(commit)).to.include("delete('b')");
    // Due, but left alone with its data: it may be a newer armlib's result.
    expect(await cache.sweep('temporary', clock.now() + 1)).to.equal(2);
    expect(await listKeys(client, bucket, `${prefix}temporary/b/`)).to.deep.equal([...data, manifestKey].sort());

    expect(await cache.delete('b')).to.equal(1);
    // Its data is left to clear() and the lifecycle rule: which objects it names is unknown.
    expect(await listKeys(client, bucket, `${prefix}temporary/b/`)).to.deep.equal(data);
    await commitText(cache, 'b', { txt: 'mine' });
    expect(await readText(cache, 'b', 'txt')).to.equal('mine');
  });

  it('skips a manifest that is not JSON in list, and delete and clear remove it', async function () {
    const { cache, client, clock, bucket, prefix } = await open();
    for (const key of ['a', 'b', 'c']) await commitText(cache, key, { txt: key });
    await putText(client, bucket, `${prefix}temporary/b/manifest.json`, '{"v":1,"key":"b",');
    await putText(client, bucket, `${prefix}temporary/c/manifest.json`, '');
    expect((await cache.list('temporary', { limit: 10 })).items.map((m) => m.key)).to.deep.equal(['a']);
    expect(BackendError.is(await rejectionOf(cache.get('b', 'txt')))).to.equal(true);
    expect(await cache.delete('b', 'temporary')).to.equal(1);
    expect(await cache.head('b')).to.equal(undefined);
    const data = (await listKeys(client, bucket, `${prefix}temporary/`)).filter((k) => /\/[bc]\//.test(k));
    expect(await cache.clear('temporary')).to.equal(2);
    // Which objects those manifests named is unknown: their data goes only once older than the
    // grace period (it could be a commit in flight's).
    expect(await listKeys(client, bucket, `${prefix}temporary/`)).to.deep.equal(
      data.filter((k) => !k.endsWith('.json')),
    );
    await clock.set(Date.now() + 25 * 3_600_000);
    expect(await cache.clear('temporary')).to.equal(0);
    expect(await listKeys(client, bucket, `${prefix}temporary/`)).to.deep.equal([]);
  });
});
