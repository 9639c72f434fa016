import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { NormalizedRequest } from '../src/request.js';
import type { ClaimOptions, EnqueueOptions, NewQueueEntry } from '../src/spi/queue.js';

const T0 = Date.UTC(2026, 0, 1);
const NO_LIMITS: EnqueueOptions = { limits: {} };
/** How far the wall clock steps back (an NTP correction, a resumed VM). */
const STEP_MS = 60_000;

/** A ManualClock whose readings can step back by `back` ms, as a wall clock does (ManualClock never goes back). */
class SteppedClock extends ManualClock {
  back = 0;
  override now(): number {
    return super.now() - this.back;
  }
}

function entry(key: string, extra: Partial<NormalizedRequest> = {}): NewQueueEntry {
  return { key, request: { uri: '/reports/sales', key, group: 'default', priority: 0, ...extra }, maxAttempts: 3 };
}

function claimOptions(extra: Partial<ClaimOptions> = {}): ClaimOptions {
  return { workerId: 'w1', leaseMs: 1_000, policies: {}, ...extra };
}

describe('MemoryQueueManager: the wall clock steps back', function () {
  let clock: SteppedClock;
  let q: MemoryQueueManager;

  beforeEach(function () {
    clock = new SteppedClock(T0);
    q = new MemoryQueueManager({}, clock);
  });

  afterEach(async function () {
    await q.close();
  });

  /** Claims `key` of `group` (so the group's last claim is now), then steps the clock back. */
  async function claimThenStepBack(key: string, group = 'default'): Promise<void> {
    await q.enqueue(entry(key, { group }), NO_LIMITS);
    expect((await q.claim(claimOptions()))?.record.key).to.equal(key);
    clock.back = STEP_MS;
  }

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
