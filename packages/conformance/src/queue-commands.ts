import fc from 'fast-check';

import { ArmError, canonicalJson, normalizeRequest } from '@armlib/core';
import type { Lease, ManualClock, QueueLimits, QueueManager, QueueRecord } from '@armlib/core';

import { QueueModel } from './queue-model.js';
import type { ModelErrorCode, ModelOutcome, ModelPolicy, ModelRecord, ModelSweep } from './queue-model.js';

const KEYS = ['k0', 'k1', 'k2', 'k3'] as const;
// Policies name ga and gb only (policyArb): gc is always a group without one, so claims choose
// between groups judged by their policy and groups served in plain turn order.
const GROUPS = ['ga', 'gb', 'gc'] as const;

/** Which lease token a fenced call presents. */
export type TokenChoice = 'current' | 'stale' | 'bogus';

/**
 * One step of a model-based queue sequence (plain data, so fast-check prints and shrinks it).
 * Fenced calls name a `target`: the n-th running key (modulo), or the n-th key when none runs, so
 * that most of them meet a live lease. Every step ends with a sweep; `sweep` lets `ms` pass first
 * and gives that closing sweep a `retainUntil` (`retainMs` from then), the other steps give none.
 */
export type QueueCommand =
  | {
      op: 'enqueue';
      key: string;
      group: string;
      priority: number;
      owner?: string;
      ttlMs?: number;
      sticky?: boolean;
      maxAttempts: number;
      limits: QueueLimits;
    }
  | { op: 'claim'; groups?: readonly string[]; leaseMs: number; max?: number }
  | { op: 'heartbeat'; target: number; token: TokenChoice; leaseMs: number; progress?: number }
  | { op: 'complete'; target: number; token: TokenChoice; retainMs?: number }
  | { op: 'fail'; target: number; token: TokenChoice; retryInMs?: number; retainMs?: number }
  | { op: 'release'; target: number; token: TokenChoice; countAttempt: boolean; retainMs?: number }
  | { op: 'acknowledgeCancel'; target: number; token: TokenChoice; retainMs?: number }
  | { op: 'cancel'; key: string; retainMs?: number }
  | { op: 'advance'; ms: number }
  | { op: 'sweep'; ms: number; retainMs?: number }
  | { op: 'prune'; agoMs: number }
  | { op: 'pause'; paused: boolean };

/** Per-sequence group policies (passed on every claim). */
export type PolicySet = Record<string, ModelPolicy>;

const key = fc.constantFrom(...KEYS);
const target = fc.nat({ max: 3 });
const token = fc.constantFrom<TokenChoice>('current', 'current', 'current', 'current', 'stale', 'bogus');
// Optional fields are left out (never set to undefined) by listing only the others in requiredKeys.
const retain = fc.constantFrom(0, 500, 5_000);
const small = (max: number): fc.Arbitrary<number> => fc.integer({ min: 1, max });

/** Random queue commands, weighted towards the interesting transitions. */
export function queueCommandArb(): fc.Arbitrary<QueueCommand> {
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record(
        {
          op: fc.constant('enqueue' as const),
          key,
          group: fc.constantFrom(...GROUPS),
          priority: fc.integer({ min: 0, max: 2 }),
          owner: fc.constantFrom('o1', 'o2'),
          ttlMs: fc.constantFrom(300, 2_000, 10_000),
          sticky: fc.boolean(),
          maxAttempts: fc.integer({ min: 1, max: 3 }),
          limits: fc.oneof(
            { weight: 3, arbitrary: fc.constant({}) },
            {
              weight: 2,
              arbitrary: fc.record(
                { maxQueueLength: small(4), groupMaxQueueLength: small(3), maxPendingPerOwner: small(2) },
                { requiredKeys: [] },
              ),
            },
          ),
        },
        { requiredKeys: ['op', 'key', 'group', 'priority', 'maxAttempts', 'limits'] },
      ),
    },
    {
      weight: 8,
      arbitrary: fc.record(
        {
          op: fc.constant('claim' as const),
          groups: fc.constantFrom(['ga'], ['gb'], ['ga', 'gb'], ['gb', 'gc']),
          leaseMs: fc.constantFrom(100, 1_000, 5_000, 5_000),
          // With max: one claimMany, which must equal that many claims in a row.
          max: fc.constantFrom(2, 3),
        },
        { requiredKeys: ['op', 'leaseMs'] },
      ),
    },
    {
      weight: 3,
      arbitrary: fc.record(
        {
          op: fc.constant('heartbeat' as const),
          target,
          token,
          leaseMs: fc.constantFrom(100, 1_000, 5_000),
          progress: fc.integer({ min: 0, max: 100 }),
        },
        { requiredKeys: ['op', 'target', 'token', 'leaseMs'] },
      ),
    },
    {
      weight: 3,
      arbitrary: fc.record(
        { op: fc.constant('complete' as const), target, token, retainMs: retain },
        { requiredKeys: ['op', 'target', 'token'] },
      ),
    },
    {
      weight: 3,
      arbitrary: fc.record(
        {
          op: fc.constant('fail' as const),
          target,
          token,
          retryInMs: fc.constantFrom(0, 50, 1_000),
          retainMs: retain,
        },
        { requiredKeys: ['op', 'target', 'token'] },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record(
        { op: fc.constant('release' as const), target, token, countAttempt: fc.boolean(), retainMs: retain },
        { requiredKeys: ['op', 'target', 'token', 'countAttempt'] },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record(
        { op: fc.constant('acknowledgeCancel' as const), target, token, retainMs: retain },
        { requiredKeys: ['op', 'target', 'token'] },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record(
        { op: fc.constant('cancel' as const), key, retainMs: retain },
        { requiredKeys: ['op', 'key'] },
      ),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: fc.constantFrom(1, 50, 99, 100, 400, 1_000, 3_000),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record(
        { op: fc.constant('sweep' as const), ms: fc.constantFrom(50, 100, 400, 1_000, 3_000), retainMs: retain },
        { requiredKeys: ['op', 'ms'] },
      ),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('prune' as const), agoMs: fc.constantFrom(0, 200, 2_000) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('pause' as const), paused: fc.boolean() }) },
  );
}

/** Random per-sequence group policies. */
export function policyArb(): fc.Arbitrary<PolicySet> {
  const policy = fc.record(
    { minIntervalMs: fc.constantFrom(0, 0, 100, 1_000), maxConcurrent: fc.integer({ min: 1, max: 2 }) },
    { requiredKeys: [] },
  );
  return fc.record({ ga: policy, gb: policy }, { requiredKeys: [] });
}

/** A failed comparison between the adapter and the model. */
export class ModelMismatch extends Error {
  override readonly name = 'ModelMismatch';
}

/** What the runner needs from the test environment. */
export interface QueueUnderTest {
  readonly queue: QueueManager;
  readonly clock: ManualClock;
  /** Multiplier for every duration (clock granularity). */
  readonly scale: number;
  readonly exactPosition: boolean;
}

/**
 * Runs `commands` against the adapter and the model, comparing every observable after each step
 * (the step's own result, then a sweep's transitions, then every key's record and position and
 * the counts). Throws {@link ModelMismatch} naming the step.
 */
export async function runQueueSequence(
  target: QueueUnderTest,
  commands: readonly QueueCommand[],
  policies: PolicySet,
): Promise<void> {
  const model = new QueueModel();
  const { queue, clock } = target;
  const s = (ms: number): number => ms * target.scale;
  const scaledPolicies: PolicySet = {};
  for (const [g, p] of Object.entries(policies)) {
    scaledPolicies[g] = p.minIntervalMs === undefined ? p : { ...p, minIntervalMs: s(p.minIntervalMs) };
  }
  const tokens = new Map<string, string[]>();
  const pick = (k: string, choice: TokenChoice): string => {
    const issued = tokens.get(k) ?? [];
    if (choice === 'bogus' || issued.length === 0) return 'bogus-token';
    if (choice === 'stale') return issued.length > 1 ? (issued[issued.length - 2] ?? 'bogus-token') : 'bogus-token';
    return issued[issued.length - 1] ?? 'bogus-token';
  };
  const retainUntil = (ms: number | undefined): number | undefined =>
    ms === undefined ? undefined : clock.now() + s(ms);

  for (let step = 0; step < commands.length; step++) {
    const cmd = commands[step];
    if (cmd === undefined) continue;
    const now = clock.now();
    const running = model
      .all(now)
      .filter((r) => r.state === 'running')
      .map((r) => r.key)
      .sort();
    const fencedKey =
      'target' in cmd
        ? ((running.length > 0 ? running : KEYS)[cmd.target % (running.length || KEYS.length)] ?? 'k0')
        : undefined;
    const where = `step ${String(step + 1)} ${JSON.stringify(cmd)}${fencedKey === undefined ? '' : ` on ${fencedKey}`}`;
    switch (cmd.op) {
      case 'enqueue': {
        const request = normalizeRequest({
          uri: '/model',
          key: cmd.key,
          group: cmd.group,
          priority: cmd.priority,
          ...(cmd.owner === undefined ? {} : { owner: cmd.owner }),
          ...(cmd.sticky === undefined ? {} : { sticky: cmd.sticky }),
        });
        const pendingExpiresAt = cmd.ttlMs === undefined ? undefined : now + s(cmd.ttlMs);
        const expected = model.enqueue(
          {
            key: cmd.key,
            group: cmd.group,
            priority: cmd.priority,
            maxAttempts: cmd.maxAttempts,
            ...(cmd.owner === undefined ? {} : { owner: cmd.owner }),
            ...(cmd.sticky === undefined ? {} : { sticky: cmd.sticky }),
            ...(pendingExpiresAt === undefined ? {} : { pendingExpiresAt }),
          },
          cmd.limits,
          now,
        );
        const actual = await outcome(
          queue.enqueue(
            {
              key: cmd.key,
              request,
              maxAttempts: cmd.maxAttempts,
              ...(pendingExpiresAt === undefined ? {} : { pendingExpiresAt }),
            },
            { limits: cmd.limits },
          ),
        );
        same(
          where,
          'enqueue',
          describeOutcome(expected),
          describeOutcome(actual, (r) => r.outcome),
        );
        // The returned record is the live one, as the enqueue left it (a sticky upgrade shows).
        const enqueued = model.get(cmd.key, now);
        if (actual.ok && enqueued !== undefined) {
          compareRecord(where, 'enqueued record', enqueued, actual.value.record, now, false);
        }
        break;
      }
      case 'claim': {
        const claimOptions = {
          workerId: 'model-worker',
          leaseMs: s(cmd.leaseMs),
          ...(cmd.groups === undefined ? {} : { groups: cmd.groups }),
          policies: scaledPolicies,
        };
        // One claim, or a batch checked as that many claims in a row (then one finding nothing
        // when the batch came back short).
        // An adapter without claimMany (it is optional) is sent one claim instead.
        const leases: (Lease | undefined)[] =
          cmd.max === undefined || queue.claimMany === undefined
            ? [await queue.claim(claimOptions)]
            : await queue.claimMany(claimOptions, cmd.max);
        if (cmd.max !== undefined && queue.claimMany !== undefined && leases.length < cmd.max) leases.push(undefined);
        for (const lease of leases) {
          const allowed = model.claimable(
            { ...(cmd.groups === undefined ? {} : { groups: cmd.groups }), policies: scaledPolicies },
            now,
          );
          const got = lease?.record.key;
          if (got === undefined ? allowed.length > 0 : !allowed.includes(got)) {
            throw new ModelMismatch(
              `${where}: claim${cmd.max === undefined ? '' : `Many(${String(cmd.max)})`} differs from the model: returned ${String(got)}, expected ${allowed.length === 0 ? 'nothing' : allowed.join(' or ')}`,
            );
          }
          if (lease !== undefined) {
            const claimed = model.claim(lease.record.key, lease.token, s(cmd.leaseMs), now);
            const issued = tokens.get(lease.record.key) ?? [];
            if (issued.includes(lease.token))
              throw new ModelMismatch(`${where}: claim differs from the model: it reused a lease token`);
            tokens.set(lease.record.key, [...issued, lease.token]);
            compareRecord(where, 'claimed record', claimed, lease.record, now, true);
          }
        }
        break;
      }
      case 'heartbeat': {
        const k = fencedKey ?? 'k0';
        const t = pick(k, cmd.token);
        const expected = model.heartbeat(k, t, s(cmd.leaseMs), cmd.progress, now);
        const actual = await outcome(
          queue.heartbeat(k, t, {
            leaseMs: s(cmd.leaseMs),
            ...(cmd.progress === undefined ? {} : { progress: cmd.progress }),
          }),
        );
        same(where, 'heartbeat', describeOutcome(expected), describeOutcome(actual));
        break;
      }
      case 'complete': {
        const k = fencedKey ?? 'k0';
        const t = pick(k, cmd.token);
        const r = retainUntil(cmd.retainMs);
        const expected = model.complete(k, t, r, now);
        const actual = await outcome(
          queue.complete(k, t, { durationMs: 1, ...(r === undefined ? {} : { retainUntil: r }) }),
        );
        same(
          where,
          'complete',
          describeOutcome(expected, (m) => m.state),
          describeOutcome(actual, (a) => a.state),
        );
        break;
      }
      case 'fail': {
        const k = fencedKey ?? 'k0';
        const t = pick(k, cmd.token);
        const r = retainUntil(cmd.retainMs);
        const retryAt = cmd.retryInMs === undefined ? undefined : now + s(cmd.retryInMs);
        const expected = model.fail(
          k,
          t,
          {
            code: 'MODEL',
            ...(retryAt === undefined ? {} : { retryAt }),
            ...(r === undefined ? {} : { retainUntil: r }),
          },
          now,
        );
        const actual = await outcome(
          queue.fail(k, t, {
            error: { code: 'MODEL', message: 'model failure', retryable: retryAt !== undefined },
            ...(retryAt === undefined ? {} : { retryAt }),
            ...(r === undefined ? {} : { retainUntil: r }),
          }),
        );
        same(
          where,
          'fail',
          describeOutcome(expected, (m) => m.state),
          describeOutcome(actual, (a) => a.state),
        );
        break;
      }
      case 'release': {
        const k = fencedKey ?? 'k0';
        const t = pick(k, cmd.token);
        const r = retainUntil(cmd.retainMs);
        const expected = model.release(
          k,
          t,
          { countAttempt: cmd.countAttempt, ...(r === undefined ? {} : { retainUntil: r }) },
          now,
        );
        const actual = await outcome(
          queue.release(k, t, { countAttempt: cmd.countAttempt, ...(r === undefined ? {} : { retainUntil: r }) }),
        );
        same(
          where,
          'release',
          describeOutcome(expected, (m) => `${m.state}/${String(m.attempts)}`),
          describeOutcome(actual, (a) => `${a.state}/${String(a.attempts)}`),
        );
        break;
      }
      case 'acknowledgeCancel': {
        const k = fencedKey ?? 'k0';
        const t = pick(k, cmd.token);
        const r = retainUntil(cmd.retainMs);
        const expected = model.acknowledgeCancel(k, t, r, now);
        const actual = await outcome(queue.acknowledgeCancel(k, t, r === undefined ? {} : { retainUntil: r }));
        same(
          where,
          'acknowledgeCancel',
          describeOutcome(expected, (m) => m.state),
          describeOutcome(actual, (a) => a.state),
        );
        break;
      }
      case 'cancel': {
        const r = retainUntil(cmd.retainMs);
        const expected = model.cancel(cmd.key, r, now);
        const actual = await queue.cancel(cmd.key, r === undefined ? {} : { retainUntil: r });
        same(where, 'cancel outcome', expected, actual.outcome);
        break;
      }
      case 'advance':
        await clock.advance(s(cmd.ms));
        break;
      case 'sweep':
        await clock.advance(s(cmd.ms));
        break;
      case 'prune': {
        const before = now - s(cmd.agoMs);
        same(where, 'prune count', model.prune(before, now), await queue.prune(before));
        break;
      }
      case 'pause':
        model.setPaused(cmd.paused);
        await queue.setPaused(cmd.paused);
        same(where, 'isPaused', cmd.paused, await queue.isPaused());
        break;
    }
    // Every step ends with a sweep, so that adapters applying due transitions lazily (memory) and
    // adapters applying them in sweeps only (DynamoDB) are observed in the same state.
    const at = clock.now();
    const sweepRetainUntil = cmd.op === 'sweep' && cmd.retainMs !== undefined ? at + s(cmd.retainMs) : undefined;
    const expectedSweep = model.sweep(at, sweepRetainUntil);
    const actualSweep = await queue.sweep(sweepRetainUntil === undefined ? {} : { retainUntil: sweepRetainUntil });
    compareSweep(where, expectedSweep, actualSweep);
    await compareAll(where, target, model);
  }
}

async function compareAll(where: string, target: QueueUnderTest, model: QueueModel): Promise<void> {
  const now = target.clock.now();
  for (const k of KEYS) {
    const expected = model.get(k, now);
    const actual = await target.queue.get(k);
    if (expected === undefined || actual === undefined) {
      same(where, `get(${k})`, expected?.state ?? 'absent', actual?.state ?? 'absent');
    } else {
      compareRecord(where, `get(${k})`, expected, actual, now, false);
    }
    const position = await target.queue.position(k);
    const expectedPosition = model.position(k, now);
    if (target.exactPosition) same(where, `position(${k})`, expectedPosition, position);
    else same(where, `position(${k}) defined`, expectedPosition !== undefined, position !== undefined);
  }
  const counts = await target.queue.counts();
  const expectedCounts = model.counts(now);
  same(where, 'counts.byState', expectedCounts.byState, { ...counts.byState });
  const byGroup: Record<string, unknown> = {};
  for (const [g, c] of Object.entries(counts.byGroup)) {
    if (Object.values(c).some((n) => n > 0)) byGroup[g] = { ...c };
  }
  same(where, 'counts.byGroup', expectedCounts.byGroup, byGroup);
  // list pages through exactly the records reads see.
  const listed: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 20; page++) {
    const result = await target.queue.list(cursor === undefined ? { limit: 2 } : { limit: 2, cursor });
    listed.push(...result.items.map((r) => r.key));
    cursor = result.cursor;
    if (cursor === undefined) break;
  }
  same(
    where,
    'list keys',
    model
      .all(now)
      .map((r) => r.key)
      .sort(),
    [...listed].sort(),
  );
}

function compareRecord(
  where: string,
  what: string,
  expected: ModelRecord,
  actual: QueueRecord,
  now: number,
  justClaimed: boolean,
): void {
  const view = (
    r: {
      state: string;
      attempts: number;
      group: string;
      priority: number;
      owner?: string | undefined;
      submittedAt: number;
      readyAt: number;
      leaseExpiresAt?: number | undefined;
      cancelRequested?: boolean | undefined;
      progress?: number | undefined;
      finishedAt?: number | undefined;
      maxAttempts: number;
    },
    errorCode: string | undefined,
    sticky: boolean,
  ): Record<string, unknown> => ({
    state: r.state,
    sticky,
    attempts: r.attempts,
    maxAttempts: r.maxAttempts,
    group: r.group,
    priority: r.priority,
    owner: r.owner,
    submittedAt: r.submittedAt,
    ready: r.state === 'pending' ? (r.readyAt > now ? r.readyAt : 'now') : undefined,
    leaseExpiresAt: r.state === 'running' ? r.leaseExpiresAt : undefined,
    cancelRequested: r.state === 'running' ? r.cancelRequested === true : undefined,
    progress: r.state === 'running' && !justClaimed ? r.progress : undefined,
    finishedAt: r.state === 'pending' || r.state === 'running' ? undefined : r.finishedAt,
    errorCode: r.state === 'failed' ? errorCode : undefined,
  });
  same(
    where,
    what,
    view(expected, expected.errorCode, expected.sticky),
    view(actual, actual.error?.code, actual.request.sticky === true),
  );
}

function compareSweep(
  where: string,
  expected: ModelSweep,
  actual: { requeued: QueueRecord[]; failed: QueueRecord[]; expired: QueueRecord[]; cancelled: QueueRecord[] },
): void {
  const keys = (records: QueueRecord[]): string[] => records.map((r) => r.key).sort();
  same(
    where,
    'sweep transitions',
    {
      requeued: [...expected.requeued].sort(),
      failed: [...expected.failed].sort(),
      expired: [...expected.expired].sort(),
      cancelled: [...expected.cancelled].sort(),
    },
    {
      requeued: keys(actual.requeued),
      failed: keys(actual.failed),
      expired: keys(actual.expired),
      cancelled: keys(actual.cancelled),
    },
  );
}

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

async function outcome<T>(promise: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    if (ArmError.is(error)) return { ok: false, code: error.code };
    throw error;
  }
}

function describeOutcome<T>(o: ModelOutcome<T> | Outcome<T>, view: (value: T) => unknown = (v) => v): unknown {
  return o.ok ? { ok: view(o.value) } : { error: o.code as ModelErrorCode };
}

function same(where: string, what: string, expected: unknown, actual: unknown): void {
  // Key order must not matter: adapters build their objects as they like.
  const e = canonicalJson(expected);
  const a = canonicalJson(actual);
  if (e !== a) throw new ModelMismatch(`${where}: ${what} differs from the model\n  expected ${e}\n  actual   ${a}`);
}
