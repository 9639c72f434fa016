import type { QueueLimits, QueueState } from '@armlib/core';

/** One record of the reference model: the observable part of a `QueueRecord`. */
export interface ModelRecord {
  key: string;
  state: QueueState;
  group: string;
  priority: number;
  owner?: string;
  seq: number;
  submittedAt: number;
  readyAt: number;
  /** Cleared by the first claim: only a request never started expires. */
  pendingExpiresAt?: number;
  attempts: number;
  maxAttempts: number;
  /** `request.sticky`; a sticky enqueue onto a live record sets it. */
  sticky: boolean;
  token?: string;
  leaseExpiresAt?: number;
  cancelRequested: boolean;
  progress?: number;
  errorCode?: string;
  finishedAt?: number;
  retainUntil?: number;
}

/** Error codes the model predicts (the `code` of the armlib error an adapter must throw). */
export type ModelErrorCode = 'LEASE_LOST' | 'CONFLICT' | 'QUEUE_FULL' | 'QUOTA_EXCEEDED';

/** What an operation does according to the model. */
export type ModelOutcome<T> = { ok: true; value: T } | { ok: false; code: ModelErrorCode };

/** What the model enqueues. */
export interface ModelEntry {
  key: string;
  group: string;
  priority: number;
  owner?: string;
  maxAttempts: number;
  pendingExpiresAt?: number;
  sticky?: boolean;
}

/** Group policy as the model reads it. */
export interface ModelPolicy {
  minIntervalMs?: number;
  maxConcurrent?: number;
}

/** Keys moved by a sweep. */
export interface ModelSweep {
  requeued: string[];
  failed: string[];
  expired: string[];
  cancelled: string[];
}

interface GroupHistory {
  lastClaimAt: number;
  lastClaimSeq: number;
}

const FINISHED: ReadonlySet<QueueState> = new Set(['completed', 'failed', 'cancelled', 'expired']);

/** Serving order within the pending set: priority high first, then FIFO by seq. */
function servedBefore(a: ModelRecord, b: ModelRecord): number {
  return b.priority - a.priority || a.seq - b.seq;
}

function compareTurns(
  a: readonly [number, number, number, string],
  b: readonly [number, number, number, string],
): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0 && !Number.isNaN(d)) return d;
  }
  return a[3] < b[3] ? -1 : a[3] > b[3] ? 1 : 0;
}

/**
 * The reference semantics of the queue SPI, kept deliberately naive (scans everything) so that
 * it is easy to read against SPEC §3-§4. Time is passed in; nothing here is asynchronous.
 */
export class QueueModel {
  readonly #records = new Map<string, ModelRecord>();
  readonly #groups = new Map<string, GroupHistory>();
  #paused = false;
  #seq = 0;
  #claimSeq = 0;

  /** The record as reads see it: a finished record past `retainUntil` is absent. */
  get(key: string, now: number): ModelRecord | undefined {
    const r = this.#records.get(key);
    if (r === undefined) return undefined;
    if (FINISHED.has(r.state) && r.retainUntil !== undefined && r.retainUntil <= now) {
      this.#records.delete(key);
      return undefined;
    }
    return r;
  }

  /** Every record reads would see. */
  all(now: number): ModelRecord[] {
    return [...this.#records.keys()].map((k) => this.get(k, now)).filter((r) => r !== undefined);
  }

  enqueue(entry: ModelEntry, limits: QueueLimits, now: number): ModelOutcome<'created' | 'existing'> {
    const existing = this.get(entry.key, now);
    if (existing !== undefined && (existing.state === 'pending' || existing.state === 'running')) {
      // A sticky caller must get a persistent result even when it joins a non-sticky entry.
      if (entry.sticky === true) existing.sticky = true;
      return { ok: true, value: 'existing' };
    }
    const live = this.all(now).filter((r) => r.state === 'pending' || r.state === 'running');
    if (limits.maxQueueLength !== undefined && live.length >= limits.maxQueueLength) {
      return { ok: false, code: 'QUEUE_FULL' };
    }
    if (
      limits.groupMaxQueueLength !== undefined &&
      live.filter((r) => r.group === entry.group).length >= limits.groupMaxQueueLength
    ) {
      return { ok: false, code: 'QUEUE_FULL' };
    }
    if (
      entry.owner !== undefined &&
      limits.maxPendingPerOwner !== undefined &&
      live.filter((r) => r.state === 'pending' && r.owner === entry.owner).length >= limits.maxPendingPerOwner
    ) {
      return { ok: false, code: 'QUOTA_EXCEEDED' };
    }
    const record: ModelRecord = {
      key: entry.key,
      state: 'pending',
      group: entry.group,
      priority: entry.priority,
      seq: ++this.#seq,
      submittedAt: now,
      readyAt: now,
      attempts: 0,
      maxAttempts: entry.maxAttempts,
      sticky: entry.sticky === true,
      cancelRequested: false,
    };
    if (entry.owner !== undefined) record.owner = entry.owner;
    if (entry.pendingExpiresAt !== undefined) record.pendingExpiresAt = entry.pendingExpiresAt;
    this.#records.set(entry.key, record);
    return { ok: true, value: 'created' };
  }

  /**
   * Keys a correct claim may return now (empty: it must return nothing). Among groups with a ready
   * pending record, under `maxConcurrent`, whose ready time (last claim + `minIntervalMs`, -∞ when
   * never claimed) has come: the highest head priority, then the earliest ready time; a tie is
   * broken by group name or by the least recent claim (either is accepted). Within the group:
   * priority, then seq.
   */
  claimable(
    options: { groups?: readonly string[]; policies: Readonly<Record<string, ModelPolicy>> },
    now: number,
  ): string[] {
    if (this.#paused) return [];
    const records = this.all(now);
    const candidates: { group: string; head: ModelRecord; readyAt: number; lastClaimSeq: number }[] = [];
    const groups = new Set(records.filter((r) => r.state === 'pending' && r.readyAt <= now).map((r) => r.group));
    for (const group of groups) {
      if (options.groups !== undefined && !options.groups.includes(group)) continue;
      const policy = Object.hasOwn(options.policies, group) ? options.policies[group] : undefined;
      const running = records.filter((r) => r.group === group && r.state === 'running').length;
      if (policy?.maxConcurrent !== undefined && running >= policy.maxConcurrent) continue;
      const history = this.#groups.get(group) ?? { lastClaimAt: -Infinity, lastClaimSeq: 0 };
      const readyAt = history.lastClaimAt + (policy?.minIntervalMs ?? 0);
      if (readyAt > now) continue;
      const head = records
        .filter((r) => r.group === group && r.state === 'pending' && r.readyAt <= now)
        .sort(servedBefore)[0];
      if (head !== undefined) candidates.push({ group, head, readyAt, lastClaimSeq: history.lastClaimSeq });
    }
    if (candidates.length === 0) return [];
    const topPriority = Math.max(...candidates.map((c) => c.head.priority));
    const byPriority = candidates.filter((c) => c.head.priority === topPriority);
    const earliest = Math.min(...byPriority.map((c) => c.readyAt));
    const tied = byPriority.filter((c) => c.readyAt === earliest);
    const byName = [...tied].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0))[0];
    const byRecency = [...tied].sort(
      (a, b) => a.lastClaimSeq - b.lastClaimSeq || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0),
    )[0];
    return [...new Set([byName?.head.key, byRecency?.head.key])].filter((k) => k !== undefined);
  }

  /** Applies a claim the adapter made (of a key {@link claimable} allowed). */
  claim(key: string, token: string, leaseMs: number, now: number): ModelRecord {
    const r = this.#must(key, now);
    r.state = 'running';
    r.attempts++;
    r.token = token;
    r.leaseExpiresAt = now + leaseMs;
    r.cancelRequested = false;
    delete r.progress;
    // Pending expiry is for requests never started: once claimed, the deadline is gone for good.
    delete r.pendingExpiresAt;
    this.#groups.set(r.group, { lastClaimAt: now, lastClaimSeq: ++this.#claimSeq });
    return r;
  }

  heartbeat(
    key: string,
    token: string,
    leaseMs: number,
    progress: number | undefined,
    now: number,
  ): ModelOutcome<{ cancelRequested: boolean; leaseExpiresAt: number }> {
    const r = this.#leased(key, token, now);
    if (r === undefined) return { ok: false, code: 'LEASE_LOST' };
    r.leaseExpiresAt = now + leaseMs;
    if (progress !== undefined) r.progress = progress;
    return { ok: true, value: { cancelRequested: r.cancelRequested, leaseExpiresAt: r.leaseExpiresAt } };
  }

  complete(key: string, token: string, retainUntil: number | undefined, now: number): ModelOutcome<ModelRecord> {
    const r = this.#leased(key, token, now);
    if (r === undefined) return { ok: false, code: 'LEASE_LOST' };
    this.#finish(r, 'completed', now, retainUntil);
    return { ok: true, value: r };
  }

  fail(
    key: string,
    token: string,
    options: { code: string; retryAt?: number; retainUntil?: number },
    now: number,
  ): ModelOutcome<ModelRecord> {
    const r = this.#leased(key, token, now);
    if (r === undefined) return { ok: false, code: 'LEASE_LOST' };
    r.errorCode = options.code;
    // A retry or a failure would lose the cancel request: the cancel wins.
    if (r.cancelRequested) this.#finish(r, 'cancelled', now, options.retainUntil);
    else if (options.retryAt === undefined) this.#finish(r, 'failed', now, options.retainUntil);
    else this.#pendingAgain(r, options.retryAt, r.attempts);
    return { ok: true, value: r };
  }

  release(
    key: string,
    token: string,
    options: { countAttempt: boolean; retainUntil?: number },
    now: number,
  ): ModelOutcome<ModelRecord> {
    const r = this.#leased(key, token, now);
    if (r === undefined) return { ok: false, code: 'LEASE_LOST' };
    if (r.cancelRequested) this.#finish(r, 'cancelled', now, options.retainUntil);
    else this.#pendingAgain(r, now, options.countAttempt ? r.attempts : Math.max(0, r.attempts - 1));
    return { ok: true, value: r };
  }

  acknowledgeCancel(
    key: string,
    token: string,
    retainUntil: number | undefined,
    now: number,
  ): ModelOutcome<ModelRecord> {
    const r = this.#leased(key, token, now);
    if (r === undefined) return { ok: false, code: 'LEASE_LOST' };
    if (!r.cancelRequested) return { ok: false, code: 'CONFLICT' };
    this.#finish(r, 'cancelled', now, retainUntil);
    return { ok: true, value: r };
  }

  cancel(
    key: string,
    retainUntil: number | undefined,
    now: number,
  ): 'cancelled' | 'requested' | 'unchanged' | 'missing' {
    const r = this.get(key, now);
    if (r === undefined) return 'missing';
    if (r.state === 'pending') {
      this.#finish(r, 'cancelled', now, retainUntil);
      return 'cancelled';
    }
    if (r.state === 'running' && !r.cancelRequested) {
      r.cancelRequested = true;
      return 'requested';
    }
    return 'unchanged';
  }

  /**
   * Lease expiry (cancel wins, then the last attempt fails, else back to pending), then pending
   * expiry (only records never claimed carry a deadline). What it finishes gets `retainUntil`.
   */
  sweep(now: number, retainUntil: number | undefined): ModelSweep {
    const out: ModelSweep = { requeued: [], failed: [], expired: [], cancelled: [] };
    const bySeq = this.all(now).sort((a, b) => a.seq - b.seq);
    for (const r of bySeq) {
      if (r.state !== 'running' || (r.leaseExpiresAt ?? Infinity) > now) continue;
      if (r.cancelRequested) {
        this.#finish(r, 'cancelled', now, retainUntil);
        out.cancelled.push(r.key);
      } else if (r.attempts >= r.maxAttempts) {
        r.errorCode = 'LEASE_EXPIRED';
        this.#finish(r, 'failed', now, retainUntil);
        out.failed.push(r.key);
      } else {
        this.#pendingAgain(r, now, r.attempts);
        out.requeued.push(r.key);
      }
    }
    for (const r of bySeq) {
      if (r.state === 'pending' && r.pendingExpiresAt !== undefined && r.pendingExpiresAt <= now) {
        this.#finish(r, 'expired', now, retainUntil);
        out.expired.push(r.key);
      }
    }
    return out;
  }

  prune(finishedBefore: number, now: number): number {
    let n = 0;
    for (const r of this.all(now)) {
      if (FINISHED.has(r.state) && (r.finishedAt ?? -Infinity) < finishedBefore) {
        this.#records.delete(r.key);
        n++;
      }
    }
    return n;
  }

  setPaused(paused: boolean): void {
    this.#paused = paused;
  }

  /**
   * 1-based place among pending records in serving order; undefined unless pending. Every ready
   * record of a higher priority is ahead. At the record's own priority, where it is the k-th ready
   * record of its group, each other group has min(its ready records there, k) ahead when its turn
   * comes first, k − 1 otherwise. Turns: a group with ready work of a higher priority comes after
   * those without any; then the least recent claim (time, then claim number), then the name.
   */
  position(key: string, now: number): number | undefined {
    const r = this.get(key, now);
    if (r?.state !== 'pending') return undefined;
    // Requests waiting out a retry backoff are not ahead of anyone.
    const ready = this.all(now).filter((p) => p.state === 'pending' && p.readyAt <= now);
    const turn = (group: string): [number, number, number, string] => {
      const history = this.#groups.get(group) ?? { lastClaimAt: -Infinity, lastClaimSeq: 0 };
      const hot = ready.some((p) => p.group === group && p.priority > r.priority);
      return [hot ? 1 : 0, history.lastClaimAt, history.lastClaimSeq, group];
    };
    const own = turn(r.group);
    const k = ready.filter((p) => p.group === r.group && p.priority === r.priority && p.seq < r.seq).length + 1;
    let ahead = ready.filter((p) => p.priority > r.priority).length + k - 1;
    for (const group of new Set(ready.map((p) => p.group))) {
      if (group === r.group) continue;
      const there = ready.filter((p) => p.group === group && p.priority === r.priority).length;
      ahead += Math.min(there, compareTurns(turn(group), own) < 0 ? k : k - 1);
    }
    return ahead + 1;
  }

  /** Counts by state, overall and per group (groups with no record left out). */
  counts(now: number): { byState: Record<QueueState, number>; byGroup: Record<string, Record<QueueState, number>> } {
    const zero = (): Record<QueueState, number> => ({
      pending: 0,
      running: 0,
      completed: 0,
      failed: 0,
      cancelled: 0,
      expired: 0,
    });
    const byState = zero();
    const byGroup: Record<string, Record<QueueState, number>> = {};
    for (const r of this.all(now)) {
      byState[r.state]++;
      (byGroup[r.group] ??= zero())[r.state]++;
    }
    return { byState, byGroup };
  }

  #must(key: string, now: number): ModelRecord {
    const r = this.get(key, now);
    if (r === undefined) throw new Error(`model has no record '${key}'`);
    return r;
  }

  #leased(key: string, token: string, now: number): ModelRecord | undefined {
    const r = this.get(key, now);
    return r?.state === 'running' && r.token === token && (r.leaseExpiresAt ?? -Infinity) > now ? r : undefined;
  }

  #pendingAgain(r: ModelRecord, readyAt: number, attempts: number): void {
    r.state = 'pending';
    r.readyAt = readyAt;
    r.attempts = attempts;
    r.cancelRequested = false;
    delete r.token;
    delete r.leaseExpiresAt;
    delete r.progress;
  }

  #finish(r: ModelRecord, state: QueueState, now: number, retainUntil: number | undefined): void {
    r.state = state;
    r.finishedAt = now;
    delete r.token;
    delete r.leaseExpiresAt;
    if (retainUntil === undefined) delete r.retainUntil;
    else r.retainUntil = retainUntil;
    if (retainUntil !== undefined && retainUntil <= now) this.#records.delete(r.key);
  }
}
