import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { expect } from 'chai';

import { createRequestManager, DEFAULT_CONFIG, ManualClock, readAll } from '@armlib/core';
import type { RequestManager } from '@armlib/core';
import { runConformance } from '@armlib/conformance';

import { fileAdapter, FileCacheManager, FileQueueManager } from '../src/index.js';

const BASE = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

// Both file adapters together on one directory, as the embedded default runs them; peer() opens
// both again on the same directory, as another process would.
runConformance({
  name: 'file queue + file cache (one directory)',
  create: ({ clock }) => {
    const dir = fs.mkdtempSync(path.join(BASE, 'armlib-file-both-'));
    return Promise.resolve({
      queue: new FileQueueManager({ dir }, clock),
      cache: new FileCacheManager({ dir }, clock),
      peer: () =>
        Promise.resolve({ queue: new FileQueueManager({ dir }, clock), cache: new FileCacheManager({ dir }, clock) }),
      close: () => {
        fs.rmSync(dir, { recursive: true, force: true });
        return Promise.resolve();
      },
    });
  },
});

describe('@armlib/file as the embedded default', function () {
  let dir: string;
  let managers: RequestManager[];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(BASE, 'armlib-file-default-'));
    managers = [];
  });

  afterEach(async () => {
    for (const rm of managers) await rm.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(clock: ManualClock): Promise<RequestManager> {
    // No config: the default configuration, moved into the test directory by ARMLIB_DIR.
    const rm = await createRequestManager(undefined, { env: { ARMLIB_DIR: dir }, clock });
    managers.push(rm);
    return rm;
  }

  it('is the default configuration, under ./var/armlib', () => {
    expect(DEFAULT_CONFIG.queue).to.deep.equal({ adapter: 'file', options: { dir: './var/armlib' } });
    expect(DEFAULT_CONFIG.cache).to.deep.equal({ adapter: 'file', options: { dir: './var/armlib' } });
  });

  it('is loaded by name and writes only under ARMLIB_DIR', async () => {
    const rm = await open(new ManualClock());
    const status = await rm.submit({ uri: '/reports/sales', params: { year: '2024' } });
    expect(status.state).to.equal('pending');
    expect(fs.readdirSync(dir)).to.include('queue.sqlite');
  });

  it('keeps queued requests and results across a restart', async () => {
    const clock = new ManualClock();
    const first = await open(clock);
    const done = await first.submit({ uri: '/reports/sales', params: { year: '2024' } });
    const worker = first.process(
      async (job) => {
        await job.write('csv', `year\n${String(job.request.params?.['year'])}\n`);
      },
      { concurrency: 1 },
    );
    await first.waitFor(done.key, { timeoutMs: 10_000 });
    await worker.stop();
    const waiting = await first.submit({ uri: '/reports/sales', params: { year: '2025' } });
    const cancelled = await first.submit({ uri: '/reports/sales', params: { year: '2026' } });
    await first.cancel(cancelled.key);
    await first.close();
    managers = [];

    const second = await open(clock);
    const again = await second.submit({ uri: '/reports/sales', params: { year: '2024' } });
    expect(again.state).to.equal('completed');
    const result = await second.read(done.key, 'csv');
    expect(result).to.not.equal(undefined);
    if (result === undefined) return;
    expect(Buffer.from(await readAll(result.body)).toString()).to.equal('year\n2024\n');
    const stillWaiting = await second.status(waiting.key);
    expect(stillWaiting.state).to.equal('pending');
    expect(stillWaiting.position).to.equal(1);
    expect((await second.status(cancelled.key)).state).to.equal('cancelled');
  });

  it('validates its options by path before opening anything', () => {
    expect(fileAdapter.validateQueueOptions?.({ dir: '', durability: 'sometimes' })).to.have.length.greaterThan(0);
    const issues = fileAdapter.validateCacheOptions?.({ dir: 'a\u0000b' }) ?? [];
    expect(issues.map((i) => i.path)).to.include('/dir');
  });
});
