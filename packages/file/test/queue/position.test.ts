import { expect } from 'chai';

import { ManualClock, MemoryQueueManager } from '@armlib/core';
import type { QueueManager } from '@armlib/core';

import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { claimOptions, entry, NO_LIMITS, T0 } from './fixtures.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/**
 * The file queue counts a position from the short ranges of each group's line and derives the
 * long one: every position must still be exact, as the memory queue's are (serving order, the
 * groups in turn), wherever the record stands among groups, priorities, claims and requeued records.
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

  it('counts no request waiting out a backoff ahead of the others, from either side of the line', async function () {
    const keys: string[] = [];
    for (let i = 0; i < 48; i++) {
      const key = `b${String(i)}`;
      keys.push(key);
      const extra = { group: ['a', 'b'][i % 2] ?? 'a', priority: [0, 3, 0][i % 3] ?? 0 };
      await onBoth((q) => q.enqueue(entry(key, extra), NO_LIMITS));
      await clock.advance(1);
    }
    // Claimed records go back to pending: most into backoffs ending at different times, some
    // (released) ready at once; the claims themselves take the heads, so the waiting ones stand at
    // the front of their lines, and the records behind count positions from either side.
    const error = { code: 'BUSY', message: 'busy', retryable: true };
    for (let i = 0; i < 12; i++) {
      const lease = await memory.claim(claimOptions({ groups: [i % 3 === 0 ? 'b' : 'a'] }));
      const same = await file.claim(claimOptions({ groups: [i % 3 === 0 ? 'b' : 'a'] }));
      expect(same?.record.key).to.equal(lease?.record.key);
      if (lease === undefined || same === undefined) break;
      if (i % 4 === 3) {
        await memory.release(lease.record.key, lease.token, { countAttempt: true });
        await file.release(same.record.key, same.token, { countAttempt: true });
      } else {
        const retryAt = clock.now() + (1 + (i % 3)) * 1_000;
        await memory.fail(lease.record.key, lease.token, { error, retryAt });
        await file.fail(same.record.key, same.token, { error, retryAt });
      }
    }
    // A record waiting at the tail of its line (its place counted from behind): the ones ahead of
    // it, claimed before it, came back ready.
    for (const key of ['c0', 'c1', 'c2']) {
      keys.push(key);
      await onBoth((q) => q.enqueue(entry(key, { group: 'c' }), NO_LIMITS));
    }
    for (const q of [memory, file]) {
      const leases = [];
      for (let i = 0; i < 3; i++) leases.push(await q.claim(claimOptions({ groups: ['c'] })));
      const [c0, c1, c2] = leases;
      expect([c0?.record.key, c1?.record.key, c2?.record.key]).to.deep.equal(['c0', 'c1', 'c2']);
      if (c0 === undefined || c1 === undefined || c2 === undefined) return;
      await q.release('c0', c0.token, { countAttempt: false });
      await q.release('c1', c1.token, { countAttempt: false });
      await q.fail('c2', c2.token, { error, retryAt: clock.now() + 1_500 });
    }
    for (let step = 0; step < 4; step++) {
      await expectSamePositions(keys);
      await clock.advance(1_000);
    }
  });

  it('matches the memory queue where lines are long enough to be counted in several steps', async function () {
    // Ranges longer than the first statement counts (and than some later caps) on every side of
    // the records read, some of them waiting out a backoff, so every way to a count is taken.
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const keys: string[] = [];
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 1500; i++) {
      const key = `m${String(i)}`;
      keys.push(key);
      const extra = { group: ['a', 'b', 'c'][random(3)] ?? 'a', priority: [0, 0, 0, 2, -1][random(5)] ?? 0 };
      pending.push(memory.enqueue(entry(key, extra), NO_LIMITS), file.enqueue(entry(key, extra), NO_LIMITS));
    }
    await Promise.all(pending);
    const error = { code: 'BUSY', message: 'busy', retryable: true };
    for (let i = 0; i < 200; i++) {
      const options = claimOptions({ groups: [['a', 'b', 'c'][i % 3] ?? 'a'] });
      const lease = await memory.claim(options);
      const same = await file.claim(options);
      expect(same?.record.key).to.equal(lease?.record.key);
      if (lease === undefined || same === undefined || i % 2 === 1) continue;
      // Half come back waiting out a backoff: they keep their place, and count ahead of nobody.
      const retryAt = clock.now() + 1_000;
      await memory.fail(lease.record.key, lease.token, { error, retryAt });
      await file.fail(same.record.key, same.token, { error, retryAt });
    }
    const sample = keys.filter((_, i) => i % 7 === 0 || i < 40 || i >= keys.length - 40);
    await expectSamePositions(sample);
    await clock.advance(1_000);
    await expectSamePositions(sample);
  });

  it('counts the turns groups take from the claim history another process wrote', async function () {
    for (const [key, group] of [
      ['a1', 'a'],
      ['a2', 'a'],
      ['a3', 'a'],
      ['b1', 'b'],
      ['b2', 'b'],
      ['c1', 'c'],
    ] as const) {
      await onBoth((q) => q.enqueue(entry(key, { group }), NO_LIMITS));
    }
    // A second queue on the same directory, as another process: it only reads what the first wrote.
    const reader = new FileQueueManager({ dir }, clock);
    try {
      const keys = ['a1', 'a2', 'a3', 'b1', 'b2', 'c1'];
      const read = async (): Promise<Record<string, number | undefined>> => {
        const positions: Record<string, number | undefined> = {};
        for (const key of keys) positions[key] = await reader.position(key);
        return positions;
      };
      // Never claimed: the groups take turns by name.
      expect(await read()).to.deep.equal({ a1: 1, b1: 2, c1: 3, a2: 4, b2: 5, a3: 6 });
      for (const expected of [
        // a claimed last: its next turn comes after b's and c's.
        { a1: undefined, b1: 1, c1: 2, a2: 3, b2: 4, a3: 5 },
        { a1: undefined, b1: undefined, c1: 1, a2: 2, b2: 3, a3: 4 },
      ]) {
        const lease = await memory.claim(claimOptions());
        const same = await file.claim(claimOptions());
        expect(same?.record.key).to.equal(lease?.record.key);
        await clock.advance(1);
        expect(await read()).to.deep.equal(expected);
        await expectSamePositions(keys);
      }
    } finally {
      await reader.close();
    }
  });

  it('states positions in the turns of groups for records created together, as read once committed', async function () {
    // One group commit: each call runs in this order in one transaction. The claim takes x1 (x
    // and y never claimed: by name), the urgent record puts y's turns at priority 0 after x's.
    const [x1, y1, x2, taken, y2, urgent, x3] = await Promise.all([
      file.enqueue(entry('x1', { group: 'x' }), NO_LIMITS),
      file.enqueue(entry('y1', { group: 'y' }), NO_LIMITS),
      file.enqueue(entry('x2', { group: 'x' }), NO_LIMITS),
      file.claim(claimOptions()),
      file.enqueue(entry('y2', { group: 'y' }), NO_LIMITS),
      file.enqueue(entry('urgent', { group: 'y', priority: 3 }), NO_LIMITS),
      file.enqueue(entry('x3', { group: 'x' }), NO_LIMITS),
    ]);
    expect(taken?.record.key).to.equal('x1');
    expect(x1.position).to.equal(undefined);
    const stated = { y1: y1.position, x2: x2.position, y2: y2.position, urgent: urgent.position, x3: x3.position };
    const read: Record<string, number | undefined> = {};
    for (const key of Object.keys(stated)) read[key] = await file.position(key);
    expect(stated).to.deep.equal(read);
    expect(read).to.deep.equal({ urgent: 1, x2: 2, y1: 3, x3: 4, y2: 5 });
  });

  it('states the position of a record created in a transaction that also claims, completes and beats', async function () {
    // What goes ahead of the new records: a high-priority record, two in the default line, one in a
    // group of its own, and one waiting out a backoff (served after every ready one).
    for (const [key, extra] of [
      ['urgent', { priority: 5 }],
      ['old1', {}],
      ['old2', {}],
      ['other', { group: 'b' }],
      ['waits', { group: 'b', priority: 9 }],
    ] as const) {
      await file.enqueue(entry(key, extra), NO_LIMITS);
    }
    const waits = await file.claim(claimOptions({ groups: ['b'] }));
    expect(waits?.record.key).to.equal('waits');
    if (waits === undefined) return;
    await file.fail('waits', waits.token, {
      error: { code: 'BUSY', message: 'busy', retryable: true },
      retryAt: clock.now() + 10_000,
    });
    const running = await file.claim(claimOptions({ groups: ['b'] }));
    expect(running?.record.key).to.equal('other');
    if (running === undefined) return;
    // One group commit: each call runs in this order in one transaction.
    const [n1, taken1, n2, beat, n3, done, taken2, n4, solo, takenSolo] = await Promise.all([
      file.enqueue(entry('n1'), NO_LIMITS),
      file.claim(claimOptions()),
      file.enqueue(entry('n2'), NO_LIMITS),
      file.heartbeat('other', running.token, { leaseMs: 5_000 }),
      file.enqueue(entry('n3', { group: 'b', priority: -1 }), NO_LIMITS),
      file.complete('other', running.token, { durationMs: 5 }),
      file.claim(claimOptions({ groups: ['default'] })),
      file.enqueue(entry('n4', { priority: -2 }), NO_LIMITS),
      file.enqueue(entry('solo', { group: 'solo', priority: -3 }), NO_LIMITS),
      file.claim(claimOptions({ groups: ['solo'] })),
    ]);
    expect([taken1?.record.key, taken2?.record.key, takenSolo?.record.key]).to.deep.equal(['urgent', 'old1', 'solo']);
    expect(beat.cancelRequested).to.equal(false);
    expect(done.state).to.equal('completed');
    // Stated, and what position() reads once the transaction committed.
    const stated = { n1: n1.position, n2: n2.position, n3: n3.position, n4: n4.position };
    const read: Record<string, number | undefined> = {};
    for (const key of Object.keys(stated)) read[key] = await file.position(key);
    expect(stated).to.deep.equal(read);
    expect(read).to.deep.equal({ n1: 2, n2: 3, n3: 4, n4: 5 });
    // The record claimed in the transaction that created it states nothing.
    expect(solo.position).to.equal(undefined);
    expect(await file.position('solo')).to.equal(undefined);
  });
});
