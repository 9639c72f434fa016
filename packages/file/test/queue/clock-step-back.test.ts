import { expect } from 'chai';

import { SteppingClock } from '@armlib/conformance';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/** How far the wall clock steps back (an NTP correction, a resumed VM). */
const STEP_MS = 60_000;

describe('FileQueueManager: the wall clock steps back', function () {
  let dir: string;
  let clock: SteppingClock;
  let q: FileQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new SteppingClock(T0);
    q = new FileQueueManager({ dir }, clock);
  });

  afterEach(async function () {
    await q.close();
    removeTempDir(dir);
  });

  /** Claims `key` of `group` (so the group's last claim is now), then steps the clock back. */
  async function claimThenStepBack(key: string, group = 'default'): Promise<void> {
    await q.enqueue(entry(key, { group }), NO_LIMITS);
    expect((await q.claim(claimOptions()))?.record.key).to.equal(key);
    clock.stepBack(STEP_MS);
  }

  it('claims at once after a restart: the claim time kept in the database does not hold the group', async function () {
    await claimThenStepBack('a');
    await q.close();
    q = new FileQueueManager({ dir }, clock);
    await q.enqueue(entry('b'), NO_LIMITS);
    expect((await q.claim(claimOptions()))?.record.key).to.equal('b');
  });
});
