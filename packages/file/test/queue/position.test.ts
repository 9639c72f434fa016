import { expect } from 'chai';

import { ManualClock, MemoryQueueManager } from '@armlib/core';
import type { QueueManager } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/**
 * The file queue counts a position from whichever side of the line looks shorter (ahead of the
 * record or behind it): every position must still be exact, as the memory queue's are, wherever
 * the record stands among groups, priorities, claims and requeued records.
 */
describe('FileQueueManager: exact positions from either side', function () {
  let dir: string;
  let clock: ManualClock;
  let file: FileQueueManager;
  let memory: MemoryQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new ManualClock(T0);
    file = new FileQueueManager({ dir }, clock);
    memory = new MemoryQueueManager({}, clock);
  });

  afterEach(async function () {
    await file.close();
    await memory.close();
    removeTempDir(dir);
  });

  async function onBoth(call: (q: QueueManager) => Promise<unknown>): Promise<void> {
    await call(memory);
    await call(file);
  }

  async function expectSamePositions(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      expect(await file.position(key), `position of ${key}`).to.equal(await memory.position(key));
    }
  }

  it('matches the memory queue for every record, head to tail, across groups and priorities', async function () {
    const keys: string[] = [];
    for (let i = 0; i < 60; i++) {
      const key = `k${String(i)}`;
      keys.push(key);
      const extra = { group: ['a', 'b', 'c'][i % 3] ?? 'a', priority: [0, 5, -2, 0][i % 4] ?? 0 };
      await onBoth((q) => q.enqueue(entry(key, extra), NO_LIMITS));
      await clock.advance(1);
    }
    await expectSamePositions(keys);
    // Claims take records out of the line; a release puts one back in its old place.
    for (let i = 0; i < 7; i++) {
      const lease = await memory.claim(claimOptions());
      const same = await file.claim(claimOptions());
      expect(same?.record.key).to.equal(lease?.record.key);
      if (i % 3 === 0 && lease !== undefined && same !== undefined) {
        await memory.release(lease.record.key, lease.token, { countAttempt: false });
        await file.release(same.record.key, same.token, { countAttempt: false });
      }
    }
    await onBoth((q) => q.cancel('k30', {}));
    await expectSamePositions([...keys, 'missing']);
  });
});
