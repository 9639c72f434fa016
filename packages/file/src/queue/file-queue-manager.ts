import { randomUUID } from 'node:crypto';
import path from 'node:path';

import type Database from 'better-sqlite3';
import { inject, injectable } from 'inversify';

import {
  BackendError,
  checkClaimMax,
  ClosedError,
  ConflictError,
  InvalidRequestError,
  LeaseLostError,
  QUEUE_STATES,
  QueueFullError,
  QuotaExceededError,
  SystemClock,
  TOKENS,
} from '@armlib/core';
import type {
  ActivityBucket,
  CancelOptions,
  CancelResult,
  ClaimOptions,
  Clock,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  ErrorInfo,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  NormalizedRequest,
  QueueCapabilities,
  QueueCounts,
  QueueListPage,
  QueueListQuery,
  QueueManager,
  QueueRecord,
  QueueState,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
  UriStats,
  WorkerCapacity,
} from '@armlib/core';

import { DatabaseIdentity } from '../database-identity.js';
import { ControlStore } from './control-store.js';
import type { SweepKind } from './control-store.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { GroupCommit } from './group-commit.js';
import type { LockWait } from './group-commit.js';
import { pickHead, rebaseFutureClaims } from './group-pick.js';
import { openQueueDatabase } from './open-database.js';
import { resolveFileQueueOptions } from './options.js';
import { DB_FILE } from './schema.js';
import type { FileQueueManagerOptions } from './options.js';
import { FINISHED_STATES, readRow, rowToRecord, UNREADABLE_RECORD } from './record-row.js';
import type { RecordRow } from './record-row.js';
import { positionAt } from './fair-position.js';
import { DUE, RecordStore } from './record-store.js';
import { toArmError } from './sqlite-errors.js';
import { StatsStore } from './stats-store.js';

export { checkFileQueueOptions } from './options.js';
export type { FileQueueManagerOptions } from './options.js';

const LEASE_EXPIRED: ErrorInfo = Object.freeze({
  code: 'LEASE_EXPIRED',
  message: 'lease expired on the last attempt',
  retryable: false,
});
const STATE_SET: ReadonlySet<string> = new Set(QUEUE_STATES);
/** A record created by the transaction in progress, and the enqueue result that states its position. */
interface Unplaced {
  readonly result: { outcome: 'created'; record: QueueRecord; position?: number };
  readonly grp: string;
  readonly priority: number;
}

/**
 * Calls after which every pending record of a group and priority with a seq past one the
 * transaction created is one it created too, still followed (the claim of one forgets it): the
 * positions stated before the commit rely on it (see #statePositions). Every other call (a fail
 * may requeue a record there, a cancel removes one…) forgets the records created before it, and
 * their submits read the position once committed.
 */
const KEEP_POSITIONS: ReadonlySet<string> = new Set(['enqueue', 'claim', 'complete', 'heartbeat']);

/** Records `prune` deletes per transaction. */
const PRUNE_CHUNK = 1000;
/**
 * Transitions handed over at most by one `sweep` or `takeTransitions` (inside the caller's
 * transaction): after a long stop, they may be many more than fit in memory together.
 */
const JOURNAL_CHUNK = 1000;

/**
 * The durable queue of the `file` adapter: one SQLite database (`<dir>/queue.sqlite`, WAL mode)
 * shared by every process of one host that opens the same directory.
 *
 * Every transition runs inside a `BEGIN IMMEDIATE` transaction, so the processes are serialised
 * and each transition is atomic with its condition (dedupe, a single claim, fencing by lease
 * token). The transitions asked for during one turn of the event loop share one transaction, each
 * in its own savepoint (see {@link GroupCommit}): a call resolves once that transaction committed.
 * Transitions due by time alone (lease expiry, pending expiry, retention) are applied by whichever
 * call first finds them due, in any process, and journaled in the database so that the next
 * sweep, in any process, reports each of them exactly once (as the memory queue buffers them).
 * Reads are single statements (consistent snapshots; a position that needs more counts than its
 * first statement runs them in a read transaction) and never wait for writers, unless a timed
 * transition is due, which they apply first (one index probe tells, asked by the statement that
 * reads for `get` and `position`), or transitions of this process wait for their commit, which
 * they join (so they see them). Inside a write transaction, the calls of a batch after the first
 * answer "is anything due?" from the earliest deadline the batch knows of (see
 * `RecordStore.dueInTransaction`). Fenced heartbeats and completions check the lease token and
 * write in one `UPDATE … WHERE lease_token = ?`.
 *
 * Semantics follow `MemoryQueueManager` exactly; see the `QueueManager` SPI for the contract.
 * One difference in freshness, not in content: activity counts and run times are written in
 * batches (see `StatsStore`), so another process sees them up to a second (or a sweep interval)
 * late, and a process reuses the worker capacity and run-time statistics it read for
 * `statsCacheMs` (its own writes and expired worker reports count at once).
 *
 * Costs: every call is O(log n) but `position` (O(groups with pending work + per group, the
 * ranges of its line around the request but the longest, within a constant factor, plus those
 * waiting out a backoff; a submit states its position for one such count per group and priority
 * its transaction submitted to), `claim`
 * (O(groups with pending work), plus delayed retries at the head of a group), `prune` and `list`
 * with filters (scans), and `sweep` (O(transitions due)).
 */
@injectable()
export class FileQueueManager implements QueueManager {
  /** Exact positions, shared across processes, 1 ms resolution, running leases counted. */
  readonly capabilities: QueueCapabilities = Object.freeze({
    exactPosition: true,
    sharedAcrossProcesses: true,
    clockGranularityMs: 1,
    reportsBusy: true,
  });

  /** Absolute directory holding `queue.sqlite`. */
  readonly dir: string;

  readonly #clock: Clock;
  readonly #db: Database.Database;
  readonly #records: RecordStore;
  readonly #control: ControlStore;
  readonly #stats: StatsStore;
  readonly #tx: Database.Transaction<(fn: () => unknown) => unknown>;
  readonly #group: GroupCommit;
  #closed = false;
  /** Records the transaction in progress created, by seq, whose position is stated before it commits. */
  readonly #unplaced = new Map<number, Unplaced>();
  /** The time of the latest call of the transaction in progress: what the positions it states are read at. */
  #lastCallAt = 0;
  /** Transitions this process journaled since the last sweep or take (see takeTransitions). */
  #journaled = 0;
  readonly #busyTimeoutMs: number;
  /** The open database file is still the one at its path (see {@link DatabaseIdentity}). */
  readonly #identity: DatabaseIdentity;

  /**
   * Opens (creating when needed) the queue database under `options.dir`.
   *
   * @param options - see {@link FileQueueManagerOptions}; invalid values (or a symlinked
   *   directory or database file) throw `ConfigError`, a database that cannot be opened throws
   *   `BackendError`.
   * @param clock - time source of every timestamp and expiry.
   */
  constructor(
    @inject(TOKENS.QueueOptions) options: FileQueueManagerOptions = {},
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    const resolved = resolveFileQueueOptions(options);
    this.#busyTimeoutMs = resolved.busyTimeoutMs;
    this.dir = resolved.dir;
    this.#clock = clock;
    const db = openQueueDatabase(resolved);
    try {
      this.#identity = new DatabaseIdentity(path.join(resolved.dir, DB_FILE), 'file queue', clock.now());
      this.#records = new RecordStore(db);
      this.#control = new ControlStore(db);
      this.#stats = new StatsStore(db, resolved.statsCacheMs);
      this.#tx = db.transaction((fn: () => unknown) => fn());
      const stats = this.#stats;
      this.#group = new GroupCommit(
        db,
        {
          mark: () => stats.mark(),
          undo: (mark) => {
            stats.undo(mark);
          },
          beforeCommit: () => {
            const now = this.#clock.now();
            // The calls a batch took before one of them found the file gone must not be
            // acknowledged either: the whole batch rolls back with the error.
            this.#identity.check(now);
            if (stats.activityDue(now)) stats.flushActivity();
            this.#statePositions();
          },
          committed: () => {
            this.#unplaced.clear();
            this.#records.forgetDue();
            stats.committed(this.#clock.now());
          },
          rolledBack: () => {
            this.#unplaced.clear();
            this.#records.forgetDue();
            stats.rolledBack(this.#clock.now());
          },
        },
        toArmError,
        lockWait(db, resolved.busyTimeoutMs),
      );
    } catch (error) {
      db.close();
      throw toArmError(error, 'preparing statements');
    }
    this.#db = db;
  }

  enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    return settle(() => this.#write('enqueue', (now) => this.#enqueue(entry, options, now)));
  }

  #enqueue(entry: NewQueueEntry, options: EnqueueOptions, now: number): EnqueueResult {
    // The key's state first: only a live record (dedupe) is read whole.
    const existing = this.#records.lookup(entry.key);
    if (existing !== undefined && (existing.state === 'pending' || existing.state === 'running')) {
      let row = this.#records.get(entry.key);
      if (row === undefined) throw new Error(`file queue: record '${entry.key}' vanished inside its transaction`);
      if (entry.request.sticky === true) {
        const request = JSON.parse(row.request) as NormalizedRequest;
        if (request.sticky !== true) row = this.#records.setRequest(row, JSON.stringify({ ...request, sticky: true }));
      }
      return { outcome: 'existing', record: rowToRecord(row) };
    }
    if (existing !== undefined && options.keepFinishedSince !== undefined) {
      // Read whole only on this rare path: a re-submit of a key that has finished.
      const row = this.#records.get(entry.key);
      const finished = row === undefined ? undefined : rowToRecord(row);
      if (finished !== undefined && (finished.finishedAt ?? -Infinity) >= options.keepFinishedSince) {
        return { outcome: 'existing', record: finished };
      }
    }
    if (!Number.isSafeInteger(entry.maxAttempts) || entry.maxAttempts < 1) {
      throw new InvalidRequestError('maxAttempts', `must be an integer >= 1, got ${String(entry.maxAttempts)}`);
    }
    const request = entry.request;
    const limits = options.limits;
    const owner = request.owner;
    if (
      limits.maxQueueLength !== undefined ||
      limits.groupMaxQueueLength !== undefined ||
      (owner !== undefined && limits.maxPendingPerOwner !== undefined)
    ) {
      const occupancy = this.#records.occupancy(request.group, owner);
      if (limits.maxQueueLength !== undefined && occupancy.live >= limits.maxQueueLength) {
        throw new QueueFullError(limits.maxQueueLength);
      }
      if (limits.groupMaxQueueLength !== undefined && occupancy.group_live >= limits.groupMaxQueueLength) {
        throw new QueueFullError(limits.groupMaxQueueLength, request.group);
      }
      if (
        owner !== undefined &&
        limits.maxPendingPerOwner !== undefined &&
        occupancy.owner_pending >= limits.maxPendingPerOwner
      ) {
        throw new QuotaExceededError(owner, limits.maxPendingPerOwner);
      }
    }
    // A finished record of the key is replaced: the new one gets a new, larger seq.
    if (existing !== undefined) this.#records.delete(existing.seq);
    const row = this.#records.insert(entry, now);
    this.#stats.count('submitted', request.group, now);
    // The position, stated by the enqueue, spares the submit's status a read of its own: worked
    // out once the transaction's last call ran (see #statePositions).
    const result: Unplaced['result'] = { outcome: 'created', record: rowToRecord(row, request) };
    if (entry.pendingExpiresAt !== undefined && entry.pendingExpiresAt <= now) {
      // It expires before anything reads it, by the next call or read: until then the records
      // counted around it would not be those read once committed.
      this.#unplaced.clear();
    } else {
      this.#unplaced.set(row.seq, { result, grp: request.group, priority: request.priority });
    }
    return result;
  }

  /**
   * States, before the transaction commits, the position of each record it created and still
   * follows: what `position` reads once it has committed (at the time of the last call). One
   * placement per group and priority, of the newest such record (at the tail of its line: the
   * cheap side of the count), gives them all: the records of that line ahead of it with a larger
   * seq than another are the ones this transaction created (see {@link KEEP_POSITIONS}), so the
   * k-th from the end is the k-th behind it, and the groups' turns around them are the same.
   * Working each out on its own instead would count, for each, the records the batch added behind it.
   */
  #statePositions(): void {
    if (this.#unplaced.size === 0) return;
    // Seqs grow within a transaction: each line's records are in seq order.
    const lines = new Map<string, Unplaced[]>();
    for (const u of this.#unplaced.values()) {
      const id = `${String(u.priority)}\u0000${u.grp}`;
      const line = lines.get(id);
      if (line === undefined) lines.set(id, [u]);
      else line.push(u);
    }
    this.#unplaced.clear();
    try {
      for (const line of lines.values()) {
        const last = line.at(-1);
        const placement =
          last === undefined ? undefined : this.#records.placement(last.result.record.key, this.#lastCallAt);
        if (placement === undefined) continue;
        for (const [i, u] of line.entries())
          u.result.position = positionAt(placement, placement.k - (line.length - 1 - i));
      }
    } catch {
      // Positions are an extra: the submits read theirs once committed (the commit reports any failure).
    }
  }

  get(key: string): Promise<QueueRecord | undefined> {
    return settle(() =>
      this.#read(
        'get',
        () => this.#records.get(key),
        (now) => this.#records.getUnlessDue(key, now),
        (row) => (row === undefined ? undefined : rowToRecord(row)),
      ),
    );
  }

  position(key: string): Promise<number | undefined> {
    return settle(() =>
      this.#read(
        'position',
        (now) => this.#records.position(key, now),
        (now) => this.#records.positionUnlessDue(key, now),
      ),
    );
  }

  claim(options: ClaimOptions): Promise<Lease | undefined> {
    return settle(() => {
      checkLeaseMs(options.leaseMs);
      return this.#write('claim', (now) => this.#claim(options, now));
    });
  }

  /** Claims up to `max` in one transaction (one savepoint): all of them commit, or none. */
  claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    return settle(() => {
      checkClaimMax(max);
      checkLeaseMs(options.leaseMs);
      return this.#write('claim', (now) => {
        const leases: Lease[] = [];
        while (leases.length < max) {
          const lease = this.#claim(options, now);
          if (lease === undefined) break;
          leases.push(lease);
        }
        return leases;
      });
    });
  }

  #claim(options: ClaimOptions, now: number): Lease | undefined {
    for (;;) {
      // A paused queue has no heads (the pause check is part of that statement).
      const heads = this.#records.heads(now);
      rebaseFutureClaims(heads, now, (group) => {
        this.#control.rebaseClaim(group, now);
      });
      const picked = pickHead(heads, options, now);
      if (picked === undefined) return undefined;
      const token = randomUUID();
      const row = this.#records.claim(picked.head.seq, now, token, now + options.leaseMs, options.workerId);
      this.#stats.runningChanged();
      this.#unplaced.delete(row.seq);
      const record = readRow(row);
      if (record instanceof BackendError) {
        // Left pending, it would stay its group's head and fail every claim (the records behind it
        // would never run): it fails at once instead, in this transaction, and the choice is made
        // again. Not a claim of its group (no interval spent on it) nor a transition to report.
        this.#setAside(row, now, record);
        continue;
      }
      this.#control.recordClaim(row.grp, now, picked.intervalMs);
      this.#stats.count('claimed', row.grp, now);
      return { token, record };
    }
  }

  /**
   * Fails a pending or running record that cannot be read, with {@link UNREADABLE_RECORD}: it
   * leaves the claim order and the deadline index, and keeps no retention (`prune` removes it, a
   * submit of its key replaces it). It stays unreadable: `get` reports it as a `BackendError`.
   */
  #setAside(row: RecordRow, now: number, error: BackendError): void {
    this.#records.finish(row, 'failed', now, undefined, {
      code: UNREADABLE_RECORD,
      message: error.message,
      retryable: false,
    });
    this.#stats.runningChanged();
    this.#stats.count('failed', row.grp, now);
  }

  heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    return settle(() => {
      checkLeaseMs(options.leaseMs);
      return this.#write('heartbeat', (now) => {
        const leaseExpiresAt = now + options.leaseMs;
        const beat = this.#records.heartbeatLeased(key, token, now, leaseExpiresAt, options.progress, options.message);
        if (beat === undefined) throw new LeaseLostError(key);
        return { cancelRequested: beat.cancelRequested, leaseExpiresAt };
      });
    });
  }

  complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return settle(() =>
      this.#write('complete', (now) => {
        const retainUntil = options.retainUntil;
        let record: QueueRecord;
        let group: string;
        if (retainUntil === undefined || retainUntil > now) {
          // The usual case: checked and written by one statement.
          const row = this.#records.completeLeased(key, token, now, retainUntil);
          if (row === undefined) throw new LeaseLostError(key);
          this.#stats.runningChanged();
          record = rowToRecord(row);
          group = row.grp;
        } else {
          const row = this.#leased(key, token, now);
          record = this.#finish(row, 'completed', now, retainUntil, undefined);
          group = row.grp;
        }
        this.#stats.recordDuration(record.request.uri, options.durationMs, now);
        this.#stats.count('completed', group, now);
        return record;
      }),
    );
  }

  fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return settle(() =>
      this.#write('fail', (now) => {
        const row = this.#leased(key, token, now);
        if (options.retryAt !== undefined && Number.isNaN(options.retryAt)) {
          throw new InvalidRequestError('retryAt', 'must be a time in epoch ms');
        }
        // A retry or a failure would drop the cancel request: the cancel wins.
        if (row.cancel_requested === 1) return this.#finish(row, 'cancelled', now, options.retainUntil, options.error);
        if (options.retryAt !== undefined) {
          return this.#requeue(row, options.retryAt, row.attempts, options.error);
        }
        const record = this.#finish(row, 'failed', now, options.retainUntil, options.error);
        this.#stats.count('failed', row.grp, now);
        return record;
      }),
    );
  }

  release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return settle(() =>
      this.#write('release', (now) => {
        const row = this.#leased(key, token, now);
        if (row.cancel_requested === 1) return this.#finish(row, 'cancelled', now, options.retainUntil, undefined);
        const attempts = options.countAttempt ? row.attempts : Math.max(0, row.attempts - 1);
        return this.#requeue(row, now, attempts, undefined);
      }),
    );
  }

  acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return settle(() =>
      this.#write('acknowledgeCancel', (now) => {
        const row = this.#leased(key, token, now);
        if (row.cancel_requested !== 1) {
          throw new ConflictError(`cannot acknowledge a cancel of '${key}': no cancel was requested`);
        }
        return this.#finish(row, 'cancelled', now, options.retainUntil, undefined);
      }),
    );
  }

  cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    return settle(() =>
      this.#write('cancel', (now): CancelResult => {
        const row = this.#records.get(key);
        if (row === undefined) return { outcome: 'missing' };
        if (readRow(row) instanceof BackendError) {
          // Nothing can be done with a record that cannot be read but take it away: its key is
          // free again (a submit makes a fresh record), as if it had never been there.
          this.#records.delete(row.seq);
          if (row.state === 'running') this.#stats.runningChanged();
          return { outcome: 'missing' };
        }
        if (row.state === 'pending') {
          return { outcome: 'cancelled', record: this.#finish(row, 'cancelled', now, options.retainUntil, undefined) };
        }
        if (row.state !== 'running' || row.cancel_requested === 1) {
          return { outcome: 'unchanged', record: rowToRecord(row) };
        }
        return { outcome: 'requested', record: rowToRecord(this.#records.requestCancel(row)) };
      }),
    );
  }

  list(query: QueueListQuery): Promise<QueueListPage> {
    return settle(() => {
      const limit = query.limit;
      if (!Number.isSafeInteger(limit) || limit < 1) {
        throw new InvalidRequestError('limit', `must be an integer >= 1, got ${String(limit)}`);
      }
      let states: string | null = null;
      if (query.states !== undefined && query.states.length > 0) {
        for (const s of query.states) {
          if (!STATE_SET.has(s)) throw new InvalidRequestError('states', `unknown state '${s}'`);
        }
        states = `,${query.states.join(',')},`;
      }
      const after = query.cursor === undefined ? 0 : decodeCursor(query.cursor);
      return this.#read('list', () => {
        const rows = this.#records.list(after, states, query.group ?? null, query.owner ?? null, limit + 1);
        const more = rows.length > limit;
        const page = more ? rows.slice(0, limit) : rows;
        // A record that cannot be read is left out (`get` of its key reports it), not the whole
        // page: the page may then hold fewer than `limit`; the cursor still moves past it.
        const items: QueueRecord[] = [];
        for (const row of page) {
          const record = readRow(row);
          if (!(record instanceof BackendError)) items.push(record);
        }
        const last = page[page.length - 1];
        return more && last !== undefined ? { items, cursor: encodeCursor(last.seq) } : { items };
      });
    });
  }

  counts(): Promise<QueueCounts> {
    return settle(() =>
      this.#read('counts', () => {
        const byState = zeroCounts();
        const byGroup: Record<string, Record<QueueState, number>> = {};
        for (const row of this.#records.counts()) {
          const counts = zeroCounts();
          for (const state of QUEUE_STATES) {
            counts[state] = row[state];
            byState[state] += row[state];
          }
          byGroup[row.grp] = counts;
        }
        return { byState, byGroup };
      }),
    );
  }

  sweep(options: SweepOptions = {}): Promise<SweepResult> {
    return settle(() => {
      const retainUntil = options.retainUntil;
      if (retainUntil !== undefined && Number.isNaN(retainUntil)) {
        throw new InvalidRequestError('retainUntil', 'must be a time in epoch ms');
      }
      // Compared at every sweep, whatever the interval: a process whose only call is the request
      // manager's periodic sweep reports a removed directory on its error event.
      this.#assertOpen();
      this.#identity.checkNow(this.#clock.now());
      return this.#solo('sweep', () => {
        const now = this.#clock.now();
        this.#advance(now, retainUntil);
        this.#control.collectGroups(now);
        this.#stats.flushActivity();
        this.#stats.trim(now);
        const { more, ...part } = this.#takeJournal(retainUntil, now);
        // The rest: the next sweep (the request manager sweeps again at once), or a take.
        this.#journaled = more ? 1 : 0;
        return { ...part, dropped: this.#control.takeDropped(), ...(more ? { more } : {}) };
      });
    });
  }

  takeTransitions(options: SweepOptions = {}): SweepResult | undefined {
    // Only after this process journaled a transition (rare: an expiry seen by one of its calls),
    // so that the calls of every lifecycle pay nothing for it; and never waiting for the write
    // lock on the event loop: with another process holding it, the next sweep reports them
    // instead. Other calls of this process waiting for their group commit are no reason to wait:
    // no transaction is open between batches, and the worker takes right after a claim that
    // applied an expiry, so that the `requeued` of the old attempt is told before the new `claimed`.
    // Nor into a file found removed: the call just made failed, and nothing it reports is shared.
    if (this.#journaled === 0 || this.#closed || this.#identity.lost) return undefined;
    this.#db.exec('PRAGMA busy_timeout = 0');
    try {
      const { more, ...part } = this.#immediate(() => this.#takeJournal(options.retainUntil, this.#clock.now()));
      // A long journal goes in parts, one per take (the request manager takes until none is left).
      this.#journaled = more ? 1 : 0;
      return { ...part, dropped: 0 };
    } catch {
      // Rolled back (the write lock was busy, say): the journal keeps them for the next take or
      // sweep, and the next call tries again.
      return undefined;
    } finally {
      this.#db.exec(`PRAGMA busy_timeout = ${String(this.#busyTimeoutMs)}`);
    }
  }

  /** The oldest part of the journal ({@link JOURNAL_CHUNK} records), and whether more follow. */
  #takeJournal(retainUntil: number | undefined, now: number): Omit<SweepResult, 'dropped'> & { more: boolean } {
    const result = { requeued: [], failed: [], expired: [], cancelled: [] } as {
      requeued: QueueRecord[];
      failed: QueueRecord[];
      expired: QueueRecord[];
      cancelled: QueueRecord[];
    };
    const { entries, more } = this.#control.takeJournal(JOURNAL_CHUNK);
    for (const { kind, record } of entries) {
      // Transitions applied lazily by earlier calls did not know this retention; they get it now.
      result[kind].push(
        kind === 'requeued' || retainUntil === undefined ? record : this.#retain(record, retainUntil, now),
      );
    }
    return { ...result, more };
  }

  prune(finishedBefore: number): Promise<number> {
    return settle(() => {
      if (Number.isNaN(finishedBefore)) throw new InvalidRequestError('finishedBefore', 'must be a time in epoch ms');
      return this.#pruneInChunks(finishedBefore);
    });
  }

  /**
   * Prunes {@link PRUNE_CHUNK} records per transaction, in seq order: the database keeps the pages
   * a transaction changes in memory until it ends (temp_store, see openDatabase), so one statement
   * over a few hundred thousand records held them all; a chunk holds a bounded few.
   */
  async #pruneInChunks(finishedBefore: number): Promise<number> {
    let total = 0;
    let from = 0;
    for (;;) {
      const { count, last } = await this.#write('prune', () =>
        this.#records.pruneSome(finishedBefore, from, PRUNE_CHUNK),
      );
      total += count;
      from = last;
      if (count < PRUNE_CHUNK) return total;
    }
  }

  setPaused(paused: boolean): Promise<void> {
    return settle(() =>
      this.#write('setPaused', () => {
        this.#control.setPaused(paused);
      }),
    );
  }

  isPaused(): Promise<boolean> {
    return settle(() => this.#plainRead('isPaused', () => this.#control.isPaused()));
  }

  activity(minutes: number): Promise<ActivityBucket[]> {
    return settle(() => {
      // This process's own counts first (they are batched), with whatever is due.
      this.#solo('activity', () => {
        const now = this.#clock.now();
        if (this.#records.due(now)) this.#advance(now, undefined);
        this.#stats.flushActivity();
      });
      return this.#plainRead('activity', () => this.#stats.buckets(minutes, this.#clock.now()));
    });
  }

  uriStats(uri?: string): Promise<UriStats[]> {
    return settle(() => this.#plainRead('uriStats', () => this.#stats.uriStats(uri, this.#clock.now())));
  }

  reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void> {
    return settle(() => {
      if (!Number.isSafeInteger(slots) || slots < 0) {
        throw new InvalidRequestError('slots', `must be an integer >= 0, got ${String(slots)}`);
      }
      if (!(ttlMs > 0)) throw new InvalidRequestError('ttlMs', `must be a positive number of ms, got ${String(ttlMs)}`);
      return this.#write('reportWorker', (now) => {
        this.#stats.reportWorker(workerId, slots, now + ttlMs);
      });
    });
  }

  removeWorker(workerId: string): Promise<void> {
    return settle(() =>
      this.#write('removeWorker', () => {
        this.#stats.removeWorker(workerId);
      }),
    );
  }

  capacity(): Promise<WorkerCapacity> {
    return settle(() => this.#plainRead('capacity', () => this.#stats.capacity(this.#clock.now())));
  }

  /**
   * Writes this process's batched activity counts and closes the database (SQLite checkpoints
   * the WAL when the last connection goes). Idempotent. A database found removed or replaced is
   * closed without them, and without an error: closing is the remedy for that.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      this.#solo('close', () => {
        this.#stats.flushActivity();
      });
    } catch (error) {
      if (!this.#identity.lost) throw error;
      // Found removed or replaced (now or before): closing is the remedy, not a failure. The
      // calls still waiting for their group commit fail at it with that error (see beforeCommit).
      this.#group.flush();
    } finally {
      this.#closed = true;
      try {
        this.#db.close();
      } catch (error) {
        // eslint-disable-next-line no-unsafe-finally -- the close failure is the one to report
        throw toArmError(error, 'close');
      }
    }
  }

  /**
   * A transition: `fn` joins the next group commit (see {@link GroupCommit}), after the
   * transitions due at its own time are applied, so its condition is checked against the state as
   * of that time. Resolves once its transaction committed.
   */
  #write<T>(what: string, fn: (now: number) => T): Promise<T> {
    this.#assertOpen();
    return this.#group.add(what, () => {
      const now = this.#clock.now();
      this.#lastCallAt = now;
      if (this.#records.dueInTransaction(now)) this.#advance(now, undefined);
      if (!KEEP_POSITIONS.has(what)) this.#unplaced.clear();
      try {
        return fn(now);
      } catch (error) {
        // Rolled back to its savepoint: what it changed before it threw is undone, and not followed.
        this.#unplaced.clear();
        throw error;
      }
    });
  }

  /**
   * A read that must not see transitions that are due (applied first, in a transaction, when any).
   * While transitions of this process wait for their group commit, the read joins them, so it
   * sees every call made before it (program order).
   *
   * `unlessDue`, when given, is `fn` and the due probe in one statement (for the hot reads): it
   * answers {@link DUE} instead when a transition is due, and `fn` runs once they are applied.
   * `shape` turns what either read into the answer.
   */
  #read<R, T = R>(
    what: string,
    fn: (now: number) => R,
    unlessDue?: (now: number) => R | typeof DUE,
    shape: (value: R) => T = (value) => value as unknown as T,
  ): T | Promise<T> {
    this.#assertOpen();
    if (this.#group.pending) {
      return this.#group.add(
        what,
        () => {
          const now = this.#clock.now();
          if (this.#records.dueInTransaction(now)) this.#advanceAlone(now);
          return shape(fn(now));
        },
        true,
      );
    }
    try {
      const now = this.#clock.now();
      if (unlessDue !== undefined) {
        const value = unlessDue(now);
        if (value !== DUE) return shape(value);
      } else if (!this.#records.due(now)) {
        return shape(fn(now));
      }
      this.#immediate(() => {
        this.#advance(now, undefined);
      });
      return shape(fn(now));
    } catch (error) {
      throw toArmError(error, what);
    }
  }

  /** A read of something time-driven transitions do not change (after the calls made before it). */
  #plainRead<T>(what: string, fn: () => T): T | Promise<T> {
    this.#assertOpen();
    if (this.#group.pending) return this.#group.add(what, fn, true);
    try {
      return fn();
    } catch (error) {
      throw toArmError(error, what);
    }
  }

  /**
   * Applies the transitions due at `now` in a savepoint of their own, inside a batch: for a read,
   * which runs without one. Their counts go with them if they roll back.
   */
  #advanceAlone(now: number): void {
    const mark = this.#stats.mark();
    try {
      this.#tx(() => {
        this.#advance(now, undefined);
      });
    } catch (error) {
      this.#stats.undo(mark);
      throw error;
    }
  }

  /**
   * A transaction of its own, run at once, after the calls waiting for their group commit (which
   * commit first): for the rare calls that write this process's batched counts themselves.
   */
  #solo<T>(what: string, fn: () => T): T {
    this.#assertOpen();
    this.#group.flush();
    try {
      return this.#immediate(fn);
    } catch (error) {
      throw toArmError(error, what);
    }
  }

  /** One `BEGIN IMMEDIATE` transaction; the batched activity counts follow its outcome. */
  #immediate<T>(fn: () => T): T {
    let result: T;
    try {
      result = this.#tx.immediate(fn) as T;
    } catch (error) {
      this.#records.forgetDue();
      this.#stats.rolledBack(this.#clock.now());
      throw error;
    }
    this.#records.forgetDue();
    this.#stats.committed(this.#clock.now());
    return result;
  }

  /**
   * Every call's first step: the queue is open, and its database file is still the one at its
   * path, compared once per interval (a clock read and a comparison on the other calls; see
   * {@link DatabaseIdentity}).
   */
  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('file queue is closed');
    this.#identity.check(this.#clock.now());
  }

  /** Journals a transition applied by time, for the next sweep or take to report. */
  #journal(kind: SweepKind, record: QueueRecord): void {
    this.#control.journal(kind, record);
    this.#journaled++;
  }

  /**
   * Applies every transition due at `now` (inside the caller's transaction): expired leases,
   * expired pending records, retention drops. Records it finishes get `retainUntil`.
   */
  #advance(now: number, retainUntil: number | undefined): void {
    // Requeued and expired records may move the ones this transaction created.
    this.#unplaced.clear();
    let dropped = 0;
    // One record at a time, in seq order: after a long stop, the records due at once may be many
    // more than fit in memory together (each read whole, its request included).
    for (const seq of this.#records.dueSeqs(now)) {
      const row = this.#records.bySeq(seq);
      if (row === undefined) continue;
      if (row.state === 'running' || row.state === 'pending') {
        // Its transition reads it: failing on a record that cannot be read would fail every write for good.
        const read = readRow(row);
        if (read instanceof BackendError) {
          this.#setAside(row, now, read);
          continue;
        }
      }
      if (row.state === 'running') this.#leaseExpired(row, now, retainUntil);
      else if (row.state === 'pending') {
        // Only never-claimed records carry a deadline: a claim clears it for good.
        this.#journal('expired', this.#finish(row, 'expired', now, retainUntil, undefined));
      } else {
        this.#records.delete(row.seq);
        dropped++;
      }
    }
    this.#control.addDropped(dropped);
    // Records left the deadline index: the batch's bound of the earliest deadline is read again.
    this.#records.forgetDue();
  }

  #leaseExpired(row: RecordRow, now: number, retainUntil: number | undefined): void {
    if (row.cancel_requested === 1) {
      // The holder was asked to stop and then vanished: the cancel wins.
      this.#journal('cancelled', this.#finish(row, 'cancelled', now, retainUntil, undefined));
    } else if (row.attempts >= row.max_attempts) {
      const record = this.#finish(row, 'failed', now, retainUntil, LEASE_EXPIRED);
      this.#stats.count('failed', row.grp, now);
      this.#journal('failed', record);
    } else {
      // The claim already counted the attempt.
      this.#journal('requeued', this.#requeue(row, now, row.attempts, undefined));
    }
  }

  #finish(
    row: RecordRow,
    state: QueueState,
    now: number,
    retainUntil: number | undefined,
    error: ErrorInfo | undefined,
  ): QueueRecord {
    const finished = this.#records.finish(row, state, now, retainUntil, error);
    if (row.state === 'running') this.#stats.runningChanged();
    if (finished.dropped) this.#control.addDropped(1);
    return rowToRecord(finished.row);
  }

  /** running → pending at `readyAt` (retry, release, lease expiry). */
  #requeue(row: RecordRow, readyAt: number, attempts: number, error: ErrorInfo | undefined): QueueRecord {
    const record = rowToRecord(this.#records.pendingAgain(row, readyAt, attempts, error));
    this.#stats.runningChanged();
    return record;
  }

  /**
   * A record finished lazily before this sweep, given the sweep's retention when it is still kept
   * without one (dropped at once when that retention has passed). Returned as is otherwise.
   */
  #retain(record: QueueRecord, retainUntil: number, now: number): QueueRecord {
    if (record.retainUntil !== undefined || !FINISHED_STATES.has(record.state)) return record;
    if (retainUntil <= now) {
      if (!this.#records.dropUnretained(record)) return record;
      this.#control.addDropped(1);
    } else if (!this.#records.setRetention(record, retainUntil)) {
      return record;
    }
    return { ...record, retainUntil };
  }

  /** The row when `token` is its current, unexpired lease; else LeaseLostError. */
  #leased(key: string, token: string, now: number): RecordRow {
    const row = this.#records.get(key);
    if (
      row === undefined ||
      row.state !== 'running' ||
      row.lease_token !== token ||
      !((row.lease_expires_at ?? -Infinity) > now)
    ) {
      throw new LeaseLostError(key);
    }
    return row;
  }
}

function checkLeaseMs(leaseMs: number): void {
  if (!(leaseMs > 0) || !Number.isFinite(leaseMs)) {
    throw new InvalidRequestError('leaseMs', `must be a positive number of ms, got ${String(leaseMs)}`);
  }
}

function zeroCounts(): Record<QueueState, number> {
  return { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0, expired: 0 };
}

/**
 * The SPI's promise around a body that is synchronous or hands back its group commit's promise:
 * an async method would cost a frame and a promise more on every call.
 */
function settle<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what was thrown, as an async method would
    return Promise.reject(error);
  }
}

/**
 * Switches the connection's busy timeout between 0 and the configured one. Through `exec()` each
 * time, not a statement prepared once: SQLite applies this pragma when the statement is prepared,
 * and running a prepared one again does not apply it again. `exec()` rather than `pragma()`, which
 * also builds the result row in JavaScript: 1.7 µs a pair of switches against 9.8 µs (measured
 * with a loop of 200,000 pairs), paid on every scheduled commit.
 */
function lockWait(db: Database.Database, busyTimeoutMs: number): LockWait {
  return {
    busyTimeoutMs,
    setBusyTimeout(ms) {
      // ms is an integer: 0, or busyTimeoutMs, validated with the options.
      db.exec(`PRAGMA busy_timeout = ${String(ms)}`);
    },
  };
}
