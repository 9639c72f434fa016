import 'reflect-metadata';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import { Container } from 'inversify';

import { ManualClock } from '../src/clock.js';
import {
  ClosedError,
  ConfigError,
  ConflictError,
  InvalidRequestError,
  LeaseLostError,
  QueueFullError,
  QuotaExceededError,
} from '../src/errors.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { MemoryQueueManagerOptions } from '../src/memory/memory-queue-manager.js';
import type { NormalizedRequest } from '../src/request.js';
import type { ClaimOptions, EnqueueOptions, GroupPolicy, Lease, NewQueueEntry, QueueRecord } from '../src/spi/queue.js';
import { TOKENS } from '../src/tokens.js';

use(chaiAsPromised);

const T0 = Date.UTC(2026, 0, 1);
const NO_LIMITS: EnqueueOptions = { limits: {} };
const LEASE_MS = 1_000;

function request(key: string, extra: Partial<NormalizedRequest> = {}): NormalizedRequest {
  return { uri: '/reports/sales', key, group: 'default', priority: 0, ...extra };
}

function entry(key: string, extra: Partial<NormalizedRequest> = {}, more: Partial<NewQueueEntry> = {}): NewQueueEntry {
  return { key, request: request(key, extra), maxAttempts: 3, ...more };
}

function claimOptions(extra: Partial<ClaimOptions> = {}): ClaimOptions {
  return { workerId: 'w1', leaseMs: LEASE_MS, policies: {}, ...extra };
}

describe('MemoryQueueManager', () => {
  let clock: ManualClock;
  let queue: MemoryQueueManager;

  function create(options: MemoryQueueManagerOptions = {}): MemoryQueueManager {
    return new MemoryQueueManager(options, clock);
  }

  async function add(key: string, extra: Partial<NormalizedRequest> = {}, more: Partial<NewQueueEntry> = {}) {
    return (await queue.enqueue(entry(key, extra, more), NO_LIMITS)).record;
  }

  async function claim(extra: Partial<ClaimOptions> = {}): Promise<Lease> {
    const lease = await queue.claim(claimOptions(extra));
    expect(lease, 'a claimable record').to.not.equal(undefined);
    return lease!;
  }

  async function claimedKeys(n: number, extra: Partial<ClaimOptions> = {}): Promise<string[]> {
    const keys: string[] = [];
    for (let i = 0; i < n; i++) {
      const lease = await queue.claim(claimOptions(extra));
      if (lease === undefined) break;
      keys.push(lease.record.key);
    }
    return keys;
  }

  beforeEach(() => {
    clock = new ManualClock(T0);
    queue = create();
  });

  afterEach(async () => {
    await queue.close();
  });

  describe('construction', () => {
    it('states its capabilities', () => {
      expect(queue.capabilities).to.deep.equal({
        exactPosition: true,
        sharedAcrossProcesses: false,
        clockGranularityMs: 1,
        reportsBusy: true,
      });
    });

    it('rejects bad options with the path of each bad field', () => {
      const issuesOf = (options: unknown): string[] => {
        try {
          new MemoryQueueManager(options as MemoryQueueManagerOptions, clock);
        } catch (error) {
          expect(ConfigError.is(error), String(error)).to.equal(true);
          return (error as ConfigError).issues.map((i) => i.path);
        }
        return [];
      };
      expect(issuesOf({ maxFinishedBytes: -1 })).to.deep.equal(['/maxFinishedBytes']);
      expect(issuesOf({ maxFinishedBytes: 1.5 })).to.deep.equal(['/maxFinishedBytes']);
      expect(issuesOf({ maxFinishedBytes: '64MiB' })).to.deep.equal(['/maxFinishedBytes']);
      expect(issuesOf({ maxFinishedByte: 10 })).to.deep.equal(['/maxFinishedByte']);
      // Undefined keeps the default, whatever the name (as the other adapters have it).
      expect(issuesOf({ maxFinishedBytes: undefined, other: undefined })).to.deep.equal([]);
      expect(issuesOf('memory')).to.deep.equal(['']);
      expect(issuesOf({ maxFinishedBytes: 0 })).to.deep.equal([]);
      expect(issuesOf(undefined)).to.deep.equal([]);
    });

    it('refuses options it cannot read with a ConfigError naming the field, never the raw error', () => {
      const issuesOf = (options: unknown): { path: string; message: string }[] => {
        try {
          new MemoryQueueManager(options as MemoryQueueManagerOptions, clock);
        } catch (error) {
          expect(ConfigError.is(error), String(error)).to.equal(true);
          return [...(error as ConfigError).issues];
        }
        return [];
      };
      const throwing = (name: string): object =>
        Object.defineProperty({}, name, {
          enumerable: true,
          get: () => {
            throw new Error('boom');
          },
        });
      const { proxy: revoked, revoke } = Proxy.revocable({}, {});
      revoke();
      const [issue] = issuesOf(throwing('maxFinishedBytes'));
      expect(issue).to.include({ path: '/maxFinishedBytes', message: 'cannot be read: boom' });
      expect(issue).to.have.property('cause').that.is.instanceOf(Error);
      expect(issuesOf(throwing('other')).map((i) => i.path)).to.deep.equal(['/other']);
      expect(issuesOf(revoked).map((i) => i.path)).to.deep.equal(['']);
      const trap = new Proxy(
        {},
        {
          get: () => {
            throw new Error('trap');
          },
        },
      );
      expect(issuesOf(trap).map((i) => i.path)).to.deep.equal(['/maxFinishedBytes']);
      const unprintable = {
        toString: () => {
          throw new Error('boom');
        },
      };
      expect(issuesOf({ maxFinishedBytes: unprintable }).map((i) => i.path)).to.deep.equal(['/maxFinishedBytes']);
      expect(issuesOf(5).map((i) => i.path)).to.deep.equal(['']);
    });

    it('resolves from a container with its options and clock', async () => {
      const container = new Container();
      container.bind(TOKENS.QueueOptions).toConstantValue({ maxFinishedBytes: 1024 });
      container.bind(TOKENS.Clock).toConstantValue(clock);
      container.bind(TOKENS.QueueManager).to(MemoryQueueManager).inSingletonScope();
      const resolved = container.get(TOKENS.QueueManager);
      expect(resolved).to.be.instanceOf(MemoryQueueManager);
      const { record } = await resolved.enqueue(entry('di'), NO_LIMITS);
      expect(record.submittedAt).to.equal(T0);
      await resolved.close();
    });
  });

  describe('enqueue', () => {
    it('creates a pending record with every field set from the entry and the clock', async () => {
      const result = await queue.enqueue(
        entry('k1', { group: 'g', priority: 4, owner: 'ann' }, { maxAttempts: 5, pendingExpiresAt: T0 + 10_000 }),
        NO_LIMITS,
      );
      expect(result.outcome).to.equal('created');
      expect(result.record).to.deep.equal({
        key: 'k1',
        request: request('k1', { group: 'g', priority: 4, owner: 'ann' }),
        state: 'pending',
        group: 'g',
        priority: 4,
        owner: 'ann',
        seq: result.record.seq,
        submittedAt: T0,
        readyAt: T0,
        attempts: 0,
        maxAttempts: 5,
        pendingExpiresAt: T0 + 10_000,
      });
      expect(await queue.get('k1')).to.deep.equal(result.record);
      expect(await queue.get('nope')).to.equal(undefined);
    });

    it('returns the live record for a pending or running key, without checking limits', async () => {
      const first = await add('k');
      const again = await queue.enqueue(entry('k', { priority: 9 }), { limits: { maxQueueLength: 1 } });
      expect(again).to.deep.equal({ outcome: 'existing', record: first });
      const lease = await claim();
      const whileRunning = await queue.enqueue(entry('k'), { limits: { maxQueueLength: 0 } });
      expect(whileRunning.outcome).to.equal('existing');
      expect(whileRunning.record).to.equal(lease.record);
    });

    it('makes a live record sticky when a sticky enqueue finds it, and never the other way', async () => {
      const first = await add('k', { priority: 2 });
      const upgraded = await queue.enqueue(entry('k', { sticky: true, priority: 9 }), NO_LIMITS);
      expect(upgraded.outcome).to.equal('existing');
      expect(upgraded.record).to.deep.equal({ ...first, request: { ...first.request, sticky: true } });
      expect(first.request).to.not.have.property('sticky');
      expect(await queue.get('k')).to.deep.equal(upgraded.record);
      const lease = await claim();
      expect(lease.record.request.sticky).to.equal(true);
      const notDowngraded = await queue.enqueue(entry('k', { sticky: false }), NO_LIMITS);
      expect(notDowngraded.record).to.equal(lease.record);
      await add('r');
      const running = await claim();
      const upgradedRunning = await queue.enqueue(entry('r', { sticky: true }), NO_LIMITS);
      expect(upgradedRunning.record).to.deep.equal({
        ...running.record,
        request: { ...running.record.request, sticky: true },
      });
      // The lease stays valid across the upgrade.
      await queue.heartbeat('r', running.token, { leaseMs: LEASE_MS });
    });

    it('replaces a finished record with a new pending one, later in the order', async () => {
      const first = await add('k');
      await add('other');
      const lease = await claim();
      await queue.complete('k', lease.token, { durationMs: 5 });
      const second = await queue.enqueue(entry('k'), NO_LIMITS);
      expect(second.outcome).to.equal('created');
      expect(second.record.state).to.equal('pending');
      expect(second.record.attempts).to.equal(0);
      expect(second.record.seq).to.be.greaterThan(first.seq);
      expect(await queue.position('k')).to.equal(2);
      expect((await queue.counts()).byState).to.include({ pending: 2, completed: 0 });
    });

    it('checks the global, group and owner limits atomically and changes nothing when one is hit', async () => {
      await add('a1', { group: 'a', owner: 'ann' });
      await add('a2', { group: 'a', owner: 'bob' });
      await add('b1', { group: 'b', owner: 'ann' });
      const before = await queue.counts();

      const globalFull = queue.enqueue(entry('x', { group: 'c' }), { limits: { maxQueueLength: 3 } });
      await expect(globalFull)
        .to.be.rejectedWith(QueueFullError)
        .and.eventually.include({ limit: 3, group: undefined });
      const groupFull = queue.enqueue(entry('x', { group: 'a' }), {
        limits: { maxQueueLength: 4, groupMaxQueueLength: 2 },
      });
      await expect(groupFull).to.be.rejectedWith(QueueFullError).and.eventually.include({ limit: 2, group: 'a' });
      const quota = queue.enqueue(entry('x', { group: 'b', owner: 'ann' }), { limits: { maxPendingPerOwner: 2 } });
      await expect(quota).to.be.rejectedWith(QuotaExceededError).and.eventually.include({ owner: 'ann', limit: 2 });

      expect(await queue.counts()).to.deep.equal(before);
      expect(await queue.get('x')).to.equal(undefined);
      // Running records count toward the queue length but not toward the owner's pending quota.
      await claim({ groups: ['b'] });
      const ok = await queue.enqueue(entry('x', { group: 'b', owner: 'ann' }), {
        limits: { maxQueueLength: 4, groupMaxQueueLength: 2, maxPendingPerOwner: 2 },
      });
      expect(ok.outcome).to.equal('created');
      await expect(queue.enqueue(entry('y'), { limits: { maxQueueLength: 4 } })).to.be.rejectedWith(QueueFullError);
    });

    it('counts submissions in the activity buckets', async () => {
      await add('a', { group: 'g1' });
      await add('b', { group: 'g2' });
      await add('a', { group: 'g1' }); // existing: not a submission
      const [bucket] = await queue.activity(1);
      expect(bucket?.total.submitted).to.equal(2);
      expect(Object.keys(bucket?.byGroup ?? {}).sort()).to.deep.equal(['g1', 'g2']);
    });
  });

  describe('claim', () => {
    it('claims by priority, then FIFO, and makes the record running under a fresh lease', async () => {
      await add('low', { priority: -1 });
      await add('mid-1');
      await add('high', { priority: 5 });
      await add('mid-2');
      const lease = await claim({ workerId: 'w7' });
      expect(lease.record).to.deep.include({
        key: 'high',
        state: 'running',
        attempts: 1,
        startedAt: T0,
        leaseToken: lease.token,
        leaseExpiresAt: T0 + LEASE_MS,
        workerId: 'w7',
      });
      expect(lease.token).to.match(/^[0-9a-f-]{36}$/);
      expect(await claimedKeys(5)).to.deep.equal(['mid-1', 'mid-2', 'low']);
    });

    it('claims nothing while paused', async () => {
      await add('k');
      await queue.setPaused(true);
      expect(await queue.isPaused()).to.equal(true);
      expect(await queue.claim(claimOptions())).to.equal(undefined);
      await queue.setPaused(false);
      expect((await claim()).record.key).to.equal('k');
    });

    it('claims only from the groups asked for', async () => {
      await add('a', { group: 'ga', priority: 9 });
      await add('b', { group: 'gb' });
      expect(await claimedKeys(2, { groups: ['gb', 'unknown'] })).to.deep.equal(['b']);
    });

    it('respects a group maxConcurrent', async () => {
      for (const key of ['c1', 'c2', 'c3']) await add(key, { group: 'capped' });
      const policies = { capped: { maxConcurrent: 2 } };
      expect(await claimedKeys(3, { policies })).to.deep.equal(['c1', 'c2']);
      await queue.complete('c1', (await queue.get('c1'))?.leaseToken ?? '', { durationMs: 1 });
      expect(await claimedKeys(3, { policies })).to.deep.equal(['c3']);
    });

    it('spaces claims of a group by minIntervalMs', async () => {
      for (const key of ['s1', 's2']) await add(key, { group: 'slow' });
      const policies = { slow: { minIntervalMs: 500 } };
      expect(await claimedKeys(2, { policies })).to.deep.equal(['s1']);
      await clock.advance(499);
      expect(await claimedKeys(1, { policies })).to.deep.equal([]);
      await clock.advance(1);
      expect(await claimedKeys(1, { policies })).to.deep.equal(['s2']);
    });

    it('prefers the higher priority across groups, then the group ready earliest, then the name', async () => {
      await add('b1', { group: 'b' });
      await add('a1', { group: 'a' });
      await add('b2', { group: 'b' });
      await add('a2', { group: 'a' });
      await add('z', { group: 'z', priority: 1 });
      // z has the best record; a and b tie on never-claimed, so the name decides; then alternation.
      expect(await claimedKeys(5)).to.deep.equal(['z', 'a1', 'b1', 'a2', 'b2']);
    });

    it('takes turns across many groups as a scan of every group does, policies or not', async () => {
      // Claims without `groups` take the first group of the turn order; claims naming every group
      // judge each one. Both queues get the same records and claims, so they must agree throughout.
      const scanning = create();
      const names = Array.from({ length: 120 }, (_, i) => `g${String(i).padStart(3, '0')}`);
      const policies = {
        g007: { maxConcurrent: 1 },
        g050: { minIntervalMs: 3 },
        g051: { minIntervalMs: 2, maxConcurrent: 2 },
        g119: {},
      };
      let seed = 7;
      const next = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      try {
        for (let i = 0; i < 600; i++) {
          const e = entry(`k${String(i)}`, { group: names[next(names.length)] ?? 'g000', priority: next(3) });
          await queue.enqueue(e, NO_LIMITS);
          await scanning.enqueue(e, NO_LIMITS);
        }
        const order: string[] = [];
        for (let step = 0; step < 700; step++) {
          if (step % 3 === 0) await clock.advance(1);
          const lease = await queue.claim(claimOptions({ policies }));
          const scanned = await scanning.claim(claimOptions({ policies, groups: names }));
          expect(lease?.record.key, `claim ${String(step)} after ${order.slice(-5).join(', ')}`).to.equal(
            scanned?.record.key,
          );
          if (lease === undefined || scanned === undefined) continue;
          order.push(lease.record.key);
          // Every other job ends at once, so maxConcurrent frees its group now and then.
          if (step % 2 === 0) {
            await queue.complete(lease.record.key, lease.token, { durationMs: 1 });
            await scanning.complete(scanned.record.key, scanned.token, { durationMs: 1 });
          }
        }
        expect(order.length).to.be.greaterThan(300);
      } finally {
        await scanning.close();
      }
    });

    it('serves a group whose policy was dropped after a claim set it aside', async () => {
      await add('p1', { group: 'p', priority: 1 });
      await add('p2', { group: 'p', priority: 1 });
      await add('f1', { group: 'f' });
      const capped = { p: { maxConcurrent: 1 } };
      expect(await claimedKeys(1, { policies: capped })).to.deep.equal(['p1']);
      expect(await claimedKeys(1, { policies: capped })).to.deep.equal(['f1']);
      // Without its policy, p is an ordinary group again and its turn has come.
      expect(await claimedKeys(1)).to.deep.equal(['p2']);
    });

    it('judges a group named by a non-enumerable policy, as Object.hasOwn reads policies', async () => {
      await add('c1', { group: 'constructor' });
      const policies = Object.defineProperty({}, 'constructor', { value: { maxConcurrent: 1 }, enumerable: false });
      expect(await claimedKeys(2, { policies })).to.deep.equal(['c1']);
    });

    it('keeps every group in turn when reading the policies throws midway', async () => {
      for (const g of ['a', 'b', 'c']) await add(`${g}1`, { group: g });
      let reads = 0;
      const policies = new Proxy<Record<string, GroupPolicy>>(
        { a: {}, b: {} },
        {
          getOwnPropertyDescriptor(target, name) {
            if (++reads === 3) throw new Error('policies unreadable');
            return Reflect.getOwnPropertyDescriptor(target, name);
          },
        },
      );
      await expect(queue.claim(claimOptions({ policies }))).to.be.rejectedWith('policies unreadable');
      expect(await claimedKeys(4)).to.deep.equal(['a1', 'b1', 'c1']);
    });

    it('skips entries of `groups` that are not group names', async () => {
      await add('a1', { group: 'a' });
      const groups = [null, 1, 'a'] as unknown as string[];
      expect(await claimedKeys(2, { groups })).to.deep.equal(['a1']);
    });

    it('does not claim a record before its readyAt', async () => {
      await add('k');
      const lease = await claim();
      await queue.fail('k', lease.token, {
        error: { code: 'E', message: 'boom', retryable: true },
        retryAt: T0 + 100,
      });
      expect(await queue.claim(claimOptions())).to.equal(undefined);
      await clock.advance(100);
      expect((await claim()).record.attempts).to.equal(2);
    });

    it('rejects a bad leaseMs', async () => {
      await expect(queue.claim(claimOptions({ leaseMs: 0 }))).to.be.rejectedWith(InvalidRequestError, /leaseMs/);
    });
  });

  describe('leases', () => {
    it('fences every lease call by token and expiry', async () => {
      await add('k');
      const lease = await claim();
      const calls = (token: string) => [
        queue.heartbeat('k', token, { leaseMs: LEASE_MS }),
        queue.complete('k', token, { durationMs: 1 }),
        queue.fail('k', token, { error: { code: 'E', message: 'm', retryable: false } }),
        queue.release('k', token, { countAttempt: false }),
        queue.acknowledgeCancel('k', token, {}),
      ];
      for (const call of calls('wrong')) await expect(call).to.be.rejectedWith(LeaseLostError);
      await expect(queue.complete('missing', lease.token, { durationMs: 1 })).to.be.rejectedWith(LeaseLostError);
      await clock.advance(LEASE_MS); // leaseExpiresAt <= now: no longer valid
      for (const call of calls(lease.token)) {
        await expect(call).to.be.rejectedWith(LeaseLostError).and.eventually.have.property('key', 'k');
      }
    });

    it('heartbeat extends the lease and records progress', async () => {
      await add('k');
      const lease = await claim();
      await clock.advance(600);
      const beat = await queue.heartbeat('k', lease.token, { leaseMs: LEASE_MS, progress: 40, message: 'half' });
      expect(beat).to.deep.equal({ cancelRequested: false, leaseExpiresAt: T0 + 600 + LEASE_MS });
      await clock.advance(600); // past the first expiry, within the new one
      const record = await queue.get('k');
      expect(record).to.deep.include({ state: 'running', progress: 40, message: 'half', leaseExpiresAt: T0 + 1_600 });
      expect((await queue.sweep()).requeued).to.deep.equal([]);
      await queue.cancel('k', {});
      expect((await queue.heartbeat('k', lease.token, { leaseMs: LEASE_MS })).cancelRequested).to.equal(true);
    });

    it('complete finishes the record, learns the duration and counts it', async () => {
      await add('k', { group: 'g' });
      const lease = await claim();
      await clock.advance(250);
      const done = await queue.complete('k', lease.token, { durationMs: 250, retainUntil: T0 + 60_000 });
      expect(done).to.deep.include({
        state: 'completed',
        startedAt: T0,
        finishedAt: T0 + 250,
        retainUntil: T0 + 60_000,
      });
      expect(done).to.not.have.any.keys('leaseToken', 'leaseExpiresAt');
      expect(await queue.get('k')).to.deep.equal(done);
      expect(await queue.uriStats('/reports/sales')).to.deep.equal([
        { uri: '/reports/sales', count: 1, avgMs: 250, p50Ms: 250, p95Ms: 250 },
      ]);
      expect(await queue.uriStats('/other')).to.deep.equal([]);
      expect((await queue.uriStats()).map((s) => s.uri)).to.deep.equal(['/reports/sales']);
      const [bucket] = await queue.activity(1);
      expect(bucket?.total).to.deep.equal({ submitted: 1, claimed: 1, completed: 1, failed: 0 });
    });

    it('fail with retryAt returns the record to pending at its old place', async () => {
      await add('first');
      await add('second');
      const lease = await claim();
      const error = { code: 'HTTP_503', message: 'busy', retryable: true };
      const retried = await queue.fail('first', lease.token, { error, retryAt: T0 + 5_000 });
      expect(retried).to.deep.include({ state: 'pending', readyAt: T0 + 5_000, attempts: 1, error });
      expect(retried).to.not.have.any.keys('leaseToken', 'leaseExpiresAt', 'workerId', 'startedAt');
      // While it waits, the ready record behind it goes first: it counts ahead of no one.
      expect(await queue.position('first')).to.equal(1);
      expect(await queue.position('second')).to.equal(1);
      await clock.advance(5_000);
      expect(await queue.position('first')).to.equal(1);
      expect(await queue.position('second')).to.equal(2);
      expect((await queue.activity(1))[0]?.total.failed).to.equal(0);
    });

    it('fail without retryAt is final and counted', async () => {
      await add('k');
      const lease = await claim();
      const error = { code: 'BAD', message: 'no', retryable: false };
      const failed = await queue.fail('k', lease.token, { error, retainUntil: T0 + 1_000 });
      expect(failed).to.deep.include({ state: 'failed', finishedAt: T0, error, retainUntil: T0 + 1_000 });
      expect((await queue.activity(1))[0]?.total.failed).to.equal(1);
      expect((await queue.counts()).byState.failed).to.equal(1);
    });

    it('release returns the record at once, giving the attempt back unless told to count it', async () => {
      await add('k');
      const first = await claim();
      const released = await queue.release('k', first.token, { countAttempt: false });
      expect(released).to.deep.include({ state: 'pending', readyAt: T0, attempts: 0 });
      const second = await claim();
      expect(second.record.attempts).to.equal(1);
      const counted = await queue.release('k', second.token, { countAttempt: true });
      expect(counted.attempts).to.equal(1);
    });

    it('fail with retryAt and release finish a record whose cancel was requested as cancelled', async () => {
      const error = { code: 'HTTP_503', message: 'busy', retryable: true };
      await add('retry');
      await add('release');
      const retry = await claim();
      const release = await claim();
      await queue.cancel('retry', {});
      await queue.cancel('release', {});
      const cancelled = await queue.fail('retry', retry.token, { error, retryAt: T0 + 5_000, retainUntil: T0 + 10 });
      expect(cancelled).to.deep.include({ state: 'cancelled', finishedAt: T0, retainUntil: T0 + 10, error });
      const released = await queue.release('release', release.token, { countAttempt: false, retainUntil: T0 + 20 });
      expect(released).to.deep.include({ state: 'cancelled', finishedAt: T0, retainUntil: T0 + 20, attempts: 1 });
      expect((await queue.counts()).byState).to.include({ pending: 0, running: 0, cancelled: 2 });
      expect(await queue.claim(claimOptions())).to.equal(undefined);
    });

    it('acknowledgeCancel needs a requested cancel', async () => {
      await add('k');
      const lease = await claim();
      await expect(queue.acknowledgeCancel('k', lease.token, {})).to.be.rejectedWith(ConflictError);
      await queue.cancel('k', {});
      const cancelled = await queue.acknowledgeCancel('k', lease.token, { retainUntil: T0 + 10 });
      expect(cancelled).to.deep.include({ state: 'cancelled', finishedAt: T0, retainUntil: T0 + 10 });
    });

    it('clears progress, message and the cancel request on a new claim', async () => {
      await add('k');
      const lease = await claim();
      await queue.heartbeat('k', lease.token, { leaseMs: LEASE_MS, progress: 50, message: 'm' });
      await queue.release('k', lease.token, { countAttempt: false });
      const again = await claim();
      expect(again.record).to.not.have.any.keys('progress', 'message', 'cancelRequested');
    });
  });

  describe('cancel', () => {
    it('cancels pending at once, asks running to stop, and leaves the rest unchanged', async () => {
      expect(await queue.cancel('missing', {})).to.deep.equal({ outcome: 'missing' });

      await add('p');
      const pending = await queue.cancel('p', { retainUntil: T0 + 99 });
      expect(pending.outcome).to.equal('cancelled');
      expect(pending.record).to.deep.include({ state: 'cancelled', finishedAt: T0, retainUntil: T0 + 99 });
      expect(await queue.cancel('p', {})).to.deep.equal({ outcome: 'unchanged', record: pending.record });

      await add('r');
      await claim();
      const requested = await queue.cancel('r', {});
      expect(requested.outcome).to.equal('requested');
      expect(requested.record).to.deep.include({ state: 'running', cancelRequested: true });
      const again = await queue.cancel('r', {});
      expect(again).to.deep.equal({ outcome: 'unchanged', record: requested.record });
    });
  });

  describe('sweep', () => {
    it('requeues expired leases, fails them on the last attempt and cancels them when asked to', async () => {
      await add('requeue');
      await add('last', {}, { maxAttempts: 1 });
      await add('stop');
      await claimedKeys(3);
      await queue.cancel('stop', {});
      await clock.advance(LEASE_MS);
      const result = await queue.sweep();
      expect(result.requeued.map((r) => r.key)).to.deep.equal(['requeue']);
      expect(result.requeued[0]).to.deep.include({ state: 'pending', attempts: 1, readyAt: T0 + LEASE_MS });
      expect(result.failed.map((r) => r.key)).to.deep.equal(['last']);
      expect(result.failed[0]).to.deep.include({
        state: 'failed',
        finishedAt: T0 + LEASE_MS,
        error: { code: 'LEASE_EXPIRED', message: 'lease expired on the last attempt', retryable: false },
      });
      expect(result.cancelled.map((r) => r.key)).to.deep.equal(['stop']);
      expect(result.cancelled[0]?.state).to.equal('cancelled');
      expect(result.expired).to.deep.equal([]);
      expect((await queue.activity(1))[0]?.total.failed).to.equal(1);
      expect(await queue.sweep()).to.deep.equal({ requeued: [], failed: [], expired: [], cancelled: [], dropped: 0 });
    });

    it('expires pending records and drops finished ones past retention', async () => {
      await add('old', {}, { pendingExpiresAt: T0 + 100 });
      await add('fresh', {}, { pendingExpiresAt: T0 + 10_000 });
      await add('done', { priority: 1 });
      const run = await claim();
      await queue.complete('done', run.token, { durationMs: 1, retainUntil: T0 + 50 });
      await clock.advance(100);
      const result = await queue.sweep();
      expect(result.expired.map((r) => r.key)).to.deep.equal(['old']);
      expect(result.dropped).to.equal(1);
      expect(await queue.get('done')).to.equal(undefined);
      expect((await queue.get('fresh'))?.state).to.equal('pending');
      expect((await queue.counts()).byState).to.deep.equal({
        pending: 1,
        running: 0,
        completed: 0,
        failed: 0,
        cancelled: 0,
        expired: 1,
      });
    });

    it('never expires a record once claimed, even released with its attempt given back', async () => {
      await add('k', {}, { pendingExpiresAt: T0 + 100 });
      const lease = await claim();
      expect(lease.record).to.not.have.property('pendingExpiresAt');
      await clock.advance(150);
      const released = await queue.release('k', lease.token, { countAttempt: false });
      expect(released).to.deep.include({ state: 'pending', attempts: 0 });
      expect(released).to.not.have.property('pendingExpiresAt');
      await clock.advance(10_000);
      expect((await queue.get('k'))?.state).to.equal('pending');
      expect((await queue.sweep()).expired).to.deep.equal([]);
    });

    it('gives the records it finishes its retainUntil, also those a read finished before it', async () => {
      await add('read-first', {}, { pendingExpiresAt: T0 + 100 });
      await add('swept', {}, { pendingExpiresAt: T0 + 200 });
      await clock.advance(100);
      // A read applies the expiry before any sweep, without knowing the retention yet.
      expect(await queue.get('read-first')).to.not.have.property('retainUntil');
      await clock.advance(100);
      const result = await queue.sweep({ retainUntil: T0 + 1_000 });
      expect(result.expired.map((r) => [r.key, r.retainUntil])).to.deep.equal([
        ['read-first', T0 + 1_000],
        ['swept', T0 + 1_000],
      ]);
      expect((await queue.get('read-first'))?.retainUntil).to.equal(T0 + 1_000);
      expect((await queue.list({ limit: 10 })).items.map((r) => r.retainUntil)).to.deep.equal([T0 + 1_000, T0 + 1_000]);
      await clock.advance(800);
      expect(await queue.get('read-first')).to.equal(undefined);
      expect(await queue.get('swept')).to.equal(undefined);
      expect((await queue.counts()).byState.expired).to.equal(0);
      expect((await queue.sweep()).dropped).to.equal(2);
    });

    it('drops at once what it finishes with a retainUntil already past', async () => {
      await add('k', {}, { pendingExpiresAt: T0 + 100 });
      await clock.advance(100);
      expect((await queue.get('k'))?.state).to.equal('expired');
      const result = await queue.sweep({ retainUntil: T0 + 100 });
      expect(result.expired.map((r) => r.key)).to.deep.equal(['k']);
      expect(result.dropped).to.equal(1);
      expect(await queue.get('k')).to.equal(undefined);
      expect((await queue.counts()).byState.expired).to.equal(0);
      await expect(queue.sweep({ retainUntil: Number.NaN })).to.be.rejectedWith(InvalidRequestError, /retainUntil/);
    });

    it('expires a pending record at pendingExpiresAt and applies due transitions before any read', async () => {
      await add('k', {}, { pendingExpiresAt: T0 + 100 });
      await add('other');
      await clock.advance(100);
      // A read sees the transition already...
      expect((await queue.get('k'))?.state).to.equal('expired');
      expect(await queue.position('other')).to.equal(1);
      expect((await queue.counts()).byState).to.include({ pending: 1, expired: 1 });
      // ...and the next sweep still reports it.
      const result = await queue.sweep();
      expect(result.expired.map((r) => r.key)).to.deep.equal(['k']);
      expect(result.expired[0]).to.deep.include({ state: 'expired', finishedAt: T0 + 100 });
    });

    it('treats a record past retainUntil as absent even before a sweep', async () => {
      await add('k');
      const lease = await claim();
      await queue.complete('k', lease.token, { durationMs: 1, retainUntil: T0 + 10 });
      await clock.advance(10);
      expect(await queue.get('k')).to.equal(undefined);
      expect((await queue.list({ limit: 10 })).items).to.deep.equal([]);
      expect((await queue.counts()).byState.completed).to.equal(0);
      expect((await queue.enqueue(entry('k'), NO_LIMITS)).outcome).to.equal('created');
      expect((await queue.sweep()).dropped).to.equal(1);
    });

    it('handles a large queue: positions and due transitions stay exact', async () => {
      const n = 20_000;
      for (let i = 0; i < n; i++) {
        await add(
          `k${String(i)}`,
          { priority: i % 3 },
          { pendingExpiresAt: T0 + 1_000 + (i % 10 === 0 ? 0 : 1_000_000) },
        );
      }
      // Rank: priority 2 first (i % 3 === 2), in seq order.
      expect(await queue.position('k2')).to.equal(1);
      expect(await queue.position('k5')).to.equal(2);
      expect(await queue.position('k1')).to.equal(Math.ceil((n - 2) / 3) + 1);
      await clock.advance(1_000);
      const result = await queue.sweep();
      expect(result.expired).to.have.length(n / 10);
      expect((await queue.counts()).byState.pending).to.equal(n - n / 10);
      // k1 moved up by the expired priority-2 records ahead of it.
      const expiredAhead = result.expired.filter((r) => r.priority === 2).length;
      expect(await queue.position('k1')).to.equal(Math.ceil((n - 2) / 3) + 1 - expiredAhead);
    });
  });

  describe('position', () => {
    it('ranks all pending records (delayed ones too) by priority then seq; undefined otherwise', async () => {
      await add('a');
      await add('b', { priority: 2 });
      await add('c');
      expect(await queue.position('b')).to.equal(1);
      expect(await queue.position('a')).to.equal(2);
      expect(await queue.position('c')).to.equal(3);
      const lease = await claim();
      expect(lease.record.key).to.equal('b');
      expect(await queue.position('b')).to.equal(undefined);
      expect(await queue.position('a')).to.equal(1);
      await queue.fail('b', lease.token, { error: { code: 'E', message: 'm', retryable: true }, retryAt: T0 + 1e6 });
      expect(await queue.position('b')).to.equal(1);
      expect(await queue.position('missing')).to.equal(undefined);
    });
  });

  describe('list', () => {
    it('lists in submission order with filters and an opaque cursor', async () => {
      await add('a', { group: 'g1', owner: 'ann' });
      await add('b', { group: 'g2', owner: 'bob' });
      await add('c', { group: 'g1', owner: 'bob' });
      await add('d', { group: 'g1', owner: 'ann' });
      await claim({ groups: ['g2'] });

      const keys = (page: { items: QueueRecord[] }) => page.items.map((r) => r.key);
      const first = await queue.list({ limit: 3 });
      expect(keys(first)).to.deep.equal(['a', 'b', 'c']);
      expect(first.cursor).to.be.a('string');
      const second = await queue.list({ limit: 3, cursor: first.cursor! });
      expect(keys(second)).to.deep.equal(['d']);
      expect(second).to.not.have.property('cursor');

      expect(keys(await queue.list({ limit: 10, states: ['running'] }))).to.deep.equal(['b']);
      expect(keys(await queue.list({ limit: 10, group: 'g1', owner: 'bob' }))).to.deep.equal(['c']);
      const exact = await queue.list({ limit: 2, owner: 'ann' });
      expect(keys(exact)).to.deep.equal(['a', 'd']);
      expect(exact).to.not.have.property('cursor');
    });

    it('includes finished records until they are dropped', async () => {
      await add('a');
      await add('b');
      const lease = await claim();
      await queue.complete('a', lease.token, { durationMs: 1, retainUntil: T0 + 5 });
      expect((await queue.list({ limit: 10, states: ['completed'] })).items.map((r) => r.key)).to.deep.equal(['a']);
      await clock.advance(5);
      expect((await queue.list({ limit: 10 })).items.map((r) => r.key)).to.deep.equal(['b']);
    });

    it('rejects a malformed cursor, limit or state', async () => {
      await expect(queue.list({ limit: 10, cursor: 'not a cursor' }))
        .to.be.rejectedWith(InvalidRequestError)
        .and.eventually.have.property('field', 'cursor');
      await expect(queue.list({ limit: 10, cursor: Buffer.from('-1').toString('base64url') })).to.be.rejectedWith(
        InvalidRequestError,
      );
      await expect(queue.list({ limit: 0 })).to.be.rejectedWith(InvalidRequestError, /limit/);
      await expect(queue.list({ limit: 1, states: ['done' as 'completed'] })).to.be.rejectedWith(InvalidRequestError);
    });
  });

  describe('counts and prune', () => {
    it('keeps exact counts by state and by group', async () => {
      expect(await queue.counts()).to.deep.equal({
        byState: { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0, expired: 0 },
        byGroup: {},
      });
      await add('a', { group: 'g1' });
      await add('b', { group: 'g2' });
      await add('c', { group: 'g2' });
      await claim({ groups: ['g2'] });
      await queue.cancel('c', {});
      const counts = await queue.counts();
      expect(counts.byState).to.deep.equal({
        pending: 1,
        running: 1,
        completed: 0,
        failed: 0,
        cancelled: 1,
        expired: 0,
      });
      expect(counts.byGroup).to.deep.equal({
        g1: { pending: 1, running: 0, completed: 0, failed: 0, cancelled: 0, expired: 0 },
        g2: { pending: 0, running: 1, completed: 0, failed: 0, cancelled: 1, expired: 0 },
      });
    });

    it('prunes finished records that finished before a time', async () => {
      await add('early');
      await add('late');
      await add('live');
      await queue.cancel('early', {});
      await clock.advance(10);
      await queue.cancel('late', {});
      expect(await queue.prune(T0 + 10)).to.equal(1);
      expect(await queue.get('early')).to.equal(undefined);
      expect((await queue.get('late'))?.state).to.equal('cancelled');
      expect(await queue.prune(Infinity)).to.equal(1);
      expect((await queue.counts()).byState).to.deep.include({ pending: 1, cancelled: 0 });
    });
  });

  describe('bounded memory', () => {
    it('evicts the least recently used finished records beyond maxFinishedBytes, never live ones', async () => {
      await queue.close();
      queue = create({ maxFinishedBytes: 20_000 });
      for (let i = 0; i < 500; i++) await add(`live-${String(i)}`, { priority: -1 });
      for (let i = 0; i < 200; i++) {
        const key = `done-${String(i)}`;
        await add(key, { priority: 1 });
        const lease = await claim();
        await queue.complete(key, lease.token, { durationMs: 1 });
        if (i === 10) expect(await queue.get('done-0')).to.not.equal(undefined); // a read keeps it recent
      }
      const counts = await queue.counts();
      expect(counts.byState.pending).to.equal(500);
      expect(counts.byState.completed).to.be.within(1, 199);
      expect(await queue.get('done-199')).to.not.equal(undefined);
      expect(await queue.get('done-50')).to.equal(undefined);
      const listed = (await queue.list({ limit: 1000, states: ['completed'] })).items;
      expect(listed).to.have.length(counts.byState.completed);
      expect((await queue.list({ limit: 1000, states: ['pending'] })).items).to.have.length(500);
      for (let i = 0; i < 500; i += 50) expect((await queue.get(`live-${String(i)}`))?.state).to.equal('pending');
    });

    it('keeps no finished records with maxFinishedBytes 0, but still returns them', async () => {
      await queue.close();
      queue = create({ maxFinishedBytes: 0 });
      await add('k');
      const lease = await claim();
      const done = await queue.complete('k', lease.token, { durationMs: 1 });
      expect(done.state).to.equal('completed');
      expect(await queue.get('k')).to.equal(undefined);
      expect((await queue.counts()).byState.completed).to.equal(0);
    });
  });

  describe('records', () => {
    it('never changes a record it returned', async () => {
      const created = await add('k');
      const snapshot = structuredClone(created);
      const lease = await claim();
      const leaseSnapshot = structuredClone(lease.record);
      await queue.heartbeat('k', lease.token, { leaseMs: LEASE_MS, progress: 10 });
      await queue.cancel('k', {});
      await queue.acknowledgeCancel('k', lease.token, {});
      expect(created).to.deep.equal(snapshot);
      expect(lease.record).to.deep.equal(leaseSnapshot);
    });
  });

  describe('workers and activity', () => {
    it('sums live worker reports until their ttl passes', async () => {
      await queue.reportWorker('w1', 4, 1_000);
      await queue.reportWorker('w2', 2, 5_000);
      expect(await queue.capacity()).to.deep.equal({ workers: 2, slots: 6, busy: 0 });
      await clock.advance(1_000);
      expect(await queue.capacity()).to.deep.equal({ workers: 1, slots: 2, busy: 0 });
      await queue.reportWorker('w2', 3, 5_000);
      expect(await queue.capacity()).to.deep.equal({ workers: 1, slots: 3, busy: 0 });
      await queue.removeWorker('w2');
      expect(await queue.capacity()).to.deep.equal({ workers: 0, slots: 0, busy: 0 });
      await expect(queue.reportWorker('w3', -1, 1_000)).to.be.rejectedWith(InvalidRequestError, /slots/);
    });

    it('reports the asked number of minutes, oldest first', async () => {
      await add('a');
      await clock.advance(60_000);
      await add('b');
      const buckets = await queue.activity(3);
      expect(buckets.map((b) => b.total.submitted)).to.deep.equal([0, 1, 1]);
      expect(buckets.map((b) => b.minute)).to.deep.equal([T0 - 60_000, T0, T0 + 60_000]);
    });
  });

  describe('close', () => {
    it('makes every method throw ClosedError', async () => {
      await add('k');
      await queue.close();
      await queue.close(); // idempotent
      const calls: Promise<unknown>[] = [
        queue.enqueue(entry('x'), NO_LIMITS),
        queue.get('k'),
        queue.position('k'),
        queue.claim(claimOptions()),
        queue.heartbeat('k', 't', { leaseMs: 1 }),
        queue.complete('k', 't', { durationMs: 1 }),
        queue.fail('k', 't', { error: { code: 'E', message: 'm', retryable: false } }),
        queue.release('k', 't', { countAttempt: false }),
        queue.acknowledgeCancel('k', 't', {}),
        queue.cancel('k', {}),
        queue.list({ limit: 1 }),
        queue.counts(),
        queue.sweep(),
        queue.prune(0),
        queue.setPaused(true),
        queue.isPaused(),
        queue.activity(1),
        queue.uriStats(),
        queue.reportWorker('w', 1, 1),
        queue.removeWorker('w'),
        queue.capacity(),
      ];
      for (const call of calls) await expect(call).to.be.rejectedWith(ClosedError);
    });
  });
});
