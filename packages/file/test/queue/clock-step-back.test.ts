import { expect } from 'chai';

import { ManualClock } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/** How far the wall clock steps back (an NTP correction, a resumed VM). */
const STEP_MS = 60_000;

/** A ManualClock whose readings can step back by `back` ms, as a wall clock does (ManualClock never goes back). */
class SteppedClock extends ManualClock {
  back = 0;
  override now(): number {
    return super.now() - this.back;
  }
}

describe('FileQueueManager: the wall clock steps back', function () {
  let dir: string;
  let clock: SteppedClock;
  let q: FileQueueManager;

  beforeEach(function () {
    dir = makeTempDir();
    clock = new SteppedClock(T0);
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
    clock.back = STEP_MS;
  }

  it('claims at once after a restart: the claim time kept in the database does not hold the group', async function () {
    await claimThenStepBack('a');
    await q.close();
    q = new FileQueueManager({ dir }, clock);
    await q.enqueue(entry('b'), NO_LIMITS);
    expect((await q.claim(claimOptions()))?.record.key).to.equal('b');
  });

  it('keeps the turns of groups claimed before the step', async function () {
    await claimThenStepBack('a1', 'first');
    clock.back = 0;
    await clock.advance(10);
    await q.enqueue(entry('b1', { group: 'second' }), NO_LIMITS);
    expect((await q.claim(claimOptions()))?.record.key).to.equal('b1');
    clock.back = STEP_MS;
    await q.enqueue(entry('b2', { group: 'second' }), NO_LIMITS);
    await q.enqueue(entry('a2', { group: 'first' }), NO_LIMITS);
    // Both last claims lie ahead: the group claimed less recently still goes first.
    const keys = (await q.claimMany(claimOptions(), 2)).map((l) => l.record.key);
    expect(keys).to.deep.equal(['a2', 'b2']);
  });
});
