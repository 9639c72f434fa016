import { expect } from 'chai';

import { ConfigError, createRequestManager, loadAdapterPlugin, loadConfig } from '@armlib/core';

import { armlibAdapter, s3Adapter } from '../src/index.js';
import { s3TestEnv } from './harness/s3-env.js';

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('@armlib/s3 plugin', function () {
  this.timeout(60_000);

  it('is exported as armlibAdapter and found by core under the name s3', async function () {
    expect(armlibAdapter).to.equal(s3Adapter);
    expect(s3Adapter.name).to.equal('s3');
    expect('queueModule' in s3Adapter, 'a cache-only plugin').to.equal(false);
    expect(await loadAdapterPlugin('s3', process.cwd())).to.have.property('name', 's3');
  });

  it('runs a request end to end with createRequestManager({ cache: { adapter: "s3" } })', async function () {
    const env = await s3TestEnv();
    const prefix = env.newPrefix();
    const manager = await createRequestManager({
      queue: { adapter: 'memory' },
      cache: { adapter: 's3', options: { bucket: env.bucket, prefix, clientConfig: env.clientConfig } },
      manager: { pollMs: 10 },
    });
    try {
      const worker = manager.process(async (job) => {
        await job.write('csv', `hello from ${job.key}`);
      });
      const submitted = await manager.submit({ key: 'plugged', uri: 'test://plugin', params: {} });
      const done = await manager.waitFor(submitted.key, { timeoutMs: 30_000 });
      expect(done.state).to.equal('completed');
      expect(done.result?.area).to.equal('temporary');
      const body = await manager.read('plugged', 'csv');
      expect(body?.contentType).to.match(/^text\/csv/);
      const chunks: Buffer[] = [];
      for await (const chunk of body?.body ?? []) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).to.equal('hello from plugged');
      const url = await manager.resultUrl('plugged', 'csv');
      expect(await (await fetch(url ?? '')).text()).to.equal('hello from plugged');
      await worker.stop();
    } finally {
      await manager.close();
      await env.release(prefix);
    }
  });

  it('accepts a switch to s3 by environment: the file options of the adapter it replaces are dropped', async function () {
    const file = { queue: { adapter: 'memory' }, cache: { adapter: 'file', options: { dir: './var/armlib' } } };
    const env = { ARMLIB_CACHE_ADAPTER: 's3', ARMLIB_CACHE_OPTIONS: '{"bucket":"my-bucket","prefix":"armlib/"}' };
    const config = await loadConfig(file, { env });
    expect(config.cache).to.deep.equal({ adapter: 's3', options: { bucket: 'my-bucket', prefix: 'armlib/' } });
    // A typo in the options the s3 adapter gets is reported, wherever they came from.
    const typo = await rejectionOf(
      loadConfig(file, { env: { ...env, ARMLIB_CACHE_OPTIONS: '{"bucket":"b-b","keyPrefx":"x"}' } }),
    );
    expect(ConfigError.is(typo), String(typo)).to.equal(true);
    expect((typo as ConfigError).issues.map((i) => i.path)).to.deep.equal([
      '/cache/options/keyPrefx (from ARMLIB_CACHE_OPTIONS)',
    ]);
  });

  it('reports bad s3 options under /cache/options before starting anything', async function () {
    const error = await rejectionOf(
      createRequestManager({ queue: { adapter: 'memory' }, cache: { adapter: 's3', options: { prefix: 1 } } }),
    );
    expect(ConfigError.is(error), String(error)).to.equal(true);
    expect((error as ConfigError).issues.map((i) => i.path)).to.include.members([
      '/cache/options/bucket',
      '/cache/options/prefix',
    ]);
  });
});
