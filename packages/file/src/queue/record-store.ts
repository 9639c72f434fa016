import type Database from 'better-sqlite3';

import type { ErrorInfo, NewQueueEntry, QueueRecord, QueueState } from '@armlib/core';

import { errorJson, RECORD_COLUMNS, rawToRow, rawToRowAt } from './record-row.js';
import type { RecordRow } from './record-row.js';
import { PositionReader } from './fair-position.js';
import type { Placement } from './fair-position.js';

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;
type Nullable = number | string | null;

/**
 * The head (best pending record in claim order) of a group with ready work, and the group's state:
 * what a claim chooses by, not the whole record (only the chosen one is read whole, by its claim).
 */
export interface GroupHead {
  seq: number;
  grp: string;
  priority: number;
  /** Running records of the group. */
  running: number;
  /** Null when the group was never claimed from (or its history was collected). */
  last_claim_at: number | null;
  /** 0 when never claimed from. */
  last_claim_seq: number;
}

/** What a read fused with the due probe answers when a timed transition is due: its answer would be stale. */
export const DUE: unique symbol = Symbol('due');

/** Whether a transition is due at the first parameter: the probe a read runs in its own statement. */
const DUE_PROBE = 'EXISTS (SELECT 1 FROM records WHERE due_at <= ?)';

/** Live records overall, in a group, and pending of an owner (0 without one). */
export interface Occupancy {
  live: number;
  group_live: number;
  owner_pending: number;
}

/** Record counts of one group by state. */
export type CountRow = Record<QueueState, number> & { grp: string };

/**
 * The `records` table: one prepared statement per access, each transition writing only the
 * columns it changes (so only the indexes over those columns are touched). Every method returns
 * the row as it now is; callers run them inside the transaction that checked the condition.
 */
export class RecordStore {
  readonly #byKey: Stmt<[string], unknown[]>;
  readonly #lookup: Stmt<[string], unknown[]>;
  readonly #insert: Stmt<Nullable[], { seq: number }>;
  readonly #delete: Stmt<[number]>;
  readonly #setRequest: Stmt<[string, number]>;
  readonly #claim: Stmt<Nullable[], unknown[]>;
  readonly #heartbeat: Stmt<Nullable[], number | null>;
  readonly #requestCancel: Stmt<[number]>;
  readonly #pendingAgain: Stmt<Nullable[]>;
  readonly #finish: Stmt<Nullable[]>;
  readonly #complete: Stmt<Nullable[], unknown[]>;
  readonly #setRetention: Stmt<[number, number, number, string, number]>;
  readonly #dropUnretained: Stmt<[number, string, number]>;
  readonly #positions: PositionReader;
  readonly #getUnlessDue: Stmt<[number, string], unknown[]>;
  readonly #due: Stmt<[number], { due: number }>;
  readonly #minDue: Stmt<[], number | null>;
  /**
   * Inside a write transaction, a lower bound of the earliest `due_at` (Infinity: none), kept by
   * every write that sets one: no other process writes meanwhile, so the calls of a batch after
   * the first need no index probe. Undefined when unknown (outside a write transaction).
   */
  #nextDue: number | undefined;
  readonly #dueSeqs: Stmt<[number], number>;
  readonly #bySeq: Stmt<[number], unknown[]>;
  readonly #prune: Stmt<[number, number, number], number>;
  readonly #heads: Stmt<[number], unknown[]>;
  readonly #counts: Stmt<[], CountRow>;
  readonly #occupancy: Stmt<[{ grp: string; owner: string | null }], Occupancy>;
  readonly #list: Stmt<Nullable[], unknown[]>;

  constructor(db: Db) {
    // Rows come as arrays (see RECORD_COLUMNS); calls that need a few columns read only those.
    this.#byKey = db.prepare<[string], unknown[]>(`SELECT ${RECORD_COLUMNS} FROM records WHERE key = ?`).raw();
    this.#lookup = db.prepare<[string], unknown[]>('SELECT seq, state FROM records WHERE key = ?').raw();
    this.#insert = db.prepare(
      `INSERT INTO records (key, state, grp, priority, owner, submitted_at, ready_at, pending_expires_at, due_at,
         attempts, max_attempts, request)
       VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING seq`,
    );
    this.#delete = db.prepare('DELETE FROM records WHERE seq = ?');
    this.#setRequest = db.prepare('UPDATE records SET request = ? WHERE seq = ?');
    // The claimed record is read whole only here, as it now is (the heads carry what the choice needs).
    this.#claim = db
      .prepare<Nullable[], unknown[]>(
        `UPDATE records SET state = 'running', attempts = attempts + 1, started_at = ?, lease_token = ?,
           lease_expires_at = ?, due_at = ?, worker_id = ?, pending_expires_at = NULL, progress = NULL,
           message = NULL, cancel_requested = NULL
         WHERE seq = ? RETURNING ${RECORD_COLUMNS}`,
      )
      .raw();
    // The fence and the new lease in one statement: no row back means the lease is not held.
    // (SET expressions read the old row: the new lease is bound twice.)
    this.#heartbeat = db
      .prepare<Nullable[], number | null>(
        `UPDATE records SET lease_expires_at = ?, due_at = ?, progress = CASE WHEN ? THEN ? ELSE progress END,
           message = CASE WHEN ? THEN ? ELSE message END
         WHERE key = ? AND state = 'running' AND lease_token = ? AND lease_expires_at > ?
         RETURNING cancel_requested`,
      )
      .pluck();
    this.#requestCancel = db.prepare('UPDATE records SET cancel_requested = 1 WHERE seq = ?');
    this.#pendingAgain = db.prepare(
      `UPDATE records SET state = 'pending', ready_at = ?, attempts = ?, error = ?, started_at = NULL,
         lease_token = NULL, lease_expires_at = NULL, due_at = NULL, worker_id = NULL, progress = NULL,
         message = NULL, cancel_requested = NULL
       WHERE seq = ?`,
    );
    this.#finish = db.prepare(
      `UPDATE records SET state = ?, finished_at = ?, lease_token = NULL, lease_expires_at = NULL, error = ?,
         retain_until = ?, due_at = ?
       WHERE seq = ?`,
    );
    // The fence and the transition in one statement: no row back means the lease is not held.
    this.#complete = db
      .prepare<Nullable[], unknown[]>(
        `UPDATE records SET state = 'completed', finished_at = ?, lease_token = NULL, lease_expires_at = NULL,
           retain_until = ?, due_at = ?
         WHERE key = ? AND state = 'running' AND lease_token = ? AND lease_expires_at > ?
         RETURNING ${RECORD_COLUMNS}`,
      )
      .raw();
    // A journaled record is matched by seq, key and finish time: only that very record qualifies.
    this.#setRetention = db.prepare(
      `UPDATE records SET retain_until = ?, due_at = ?
       WHERE seq = ? AND key = ? AND finished_at = ? AND retain_until IS NULL`,
    );
    this.#dropUnretained = db.prepare(
      'DELETE FROM records WHERE seq = ? AND key = ? AND finished_at = ? AND retain_until IS NULL',
    );
    this.#positions = new PositionReader(db);
    // Reads outside a transaction ask whether a transition is due in the statement that reads
    // (one snapshot, one statement fewer); the row is null when the key has none.
    this.#getUnlessDue = db
      .prepare<[number, string], unknown[]>(
        `SELECT ${DUE_PROBE}, r.* FROM (SELECT 1) LEFT JOIN (SELECT ${RECORD_COLUMNS} FROM records) r ON r.key = ?`,
      )
      .raw();
    this.#due = db.prepare('SELECT 1 AS due FROM records WHERE due_at <= ? LIMIT 1');
    this.#minDue = db.prepare<[], number | null>('SELECT min(due_at) FROM records WHERE due_at IS NOT NULL').pluck();
    // The seqs only, off the index (INDEXED BY: left alone, the planner walks the whole table in
    // seq order to spare a sort); the rows are read one by one, in seq order, by the caller.
    this.#dueSeqs = db
      .prepare<[number], number>('SELECT seq FROM records INDEXED BY records_due WHERE due_at <= ?')
      .pluck();
    this.#bySeq = db.prepare<[number], unknown[]>(`SELECT ${RECORD_COLUMNS} FROM records WHERE seq = ?`).raw();
    // A scan in seq order from where the last chunk stopped: prune is an occasional clean-up, not
    // worth an index written on every completion.
    this.#prune = db
      .prepare<[number, number, number], number>(
        `DELETE FROM records WHERE seq IN (
           SELECT seq FROM records WHERE seq > ? AND finished_at < ?
             AND state IN ('completed', 'failed', 'cancelled', 'expired')
           ORDER BY seq LIMIT ?)
         RETURNING seq`,
      )
      .pluck();
    // None while the queue is paused: the claim's pause check rides along (one statement fewer).
    this.#heads = db
      .prepare<[number], unknown[]>(
        `SELECT h.seq, h.grp, h.priority, g.running, g.last_claim_at, g.last_claim_seq
         FROM groups g
         JOIN records h ON h.seq = (SELECT seq FROM records WHERE state = 'pending' AND grp = g.name AND ready_at <= ?
                                    ORDER BY priority DESC, seq LIMIT 1)
         WHERE g.pending > 0 AND NOT EXISTS (SELECT 1 FROM meta WHERE name = 'paused' AND value = 1)`,
      )
      .raw();
    this.#counts = db.prepare(
      `SELECT name AS grp, pending, running, completed, failed, cancelled, expired FROM groups
       WHERE pending + running + completed + failed + cancelled + expired > 0`,
    );
    this.#occupancy = db.prepare(
      `SELECT coalesce((SELECT sum(pending + running) FROM groups), 0) AS live,
              coalesce((SELECT pending + running FROM groups WHERE name = @grp), 0) AS group_live,
              CASE WHEN @owner IS NULL THEN 0
                   ELSE (SELECT count(*) FROM records WHERE state = 'pending' AND owner = @owner) END AS owner_pending`,
    );
    this.#list = db
      .prepare<Nullable[], unknown[]>(
        `SELECT ${RECORD_COLUMNS} FROM records
         WHERE seq > ? AND (? IS NULL OR instr(?, ',' || state || ',') > 0) AND (? IS NULL OR grp = ?)
           AND (? IS NULL OR owner = ?)
         ORDER BY seq LIMIT ?`,
      )
      .raw();
  }

  get(key: string): RecordRow | undefined {
    const raw = this.#byKey.get(key);
    return raw === undefined ? undefined : rawToRow(raw);
  }

  /** The seq and state of the record of `key`, if any (what an enqueue decides by). */
  lookup(key: string): { seq: number; state: QueueState } | undefined {
    const raw = this.#lookup.get(key);
    return raw === undefined ? undefined : { seq: raw[0] as number, state: raw[1] as QueueState };
  }

  /** A new pending record; `seq` comes from the database, larger than any ever handed out. */
  insert(entry: NewQueueEntry, now: number): RecordRow {
    const request = entry.request;
    const json = JSON.stringify(request);
    const owner = request.owner ?? null;
    const expires = entry.pendingExpiresAt ?? null;
    const inserted = this.#insert.get(
      entry.key,
      request.group,
      request.priority,
      owner,
      now,
      now,
      expires,
      expires,
      entry.maxAttempts,
      json,
    ) as { seq: number };
    if (expires !== null) this.#noteDue(expires);
    return {
      seq: inserted.seq,
      key: entry.key,
      state: 'pending',
      grp: request.group,
      priority: request.priority,
      owner,
      submitted_at: now,
      ready_at: now,
      pending_expires_at: expires,
      started_at: null,
      finished_at: null,
      attempts: 0,
      max_attempts: entry.maxAttempts,
      lease_token: null,
      lease_expires_at: null,
      worker_id: null,
      progress: null,
      message: null,
      cancel_requested: null,
      error: null,
      retain_until: null,
      due_at: expires,
      request: json,
    };
  }

  delete(seq: number): void {
    this.#delete.run(seq);
  }

  setRequest(row: RecordRow, request: string): RecordRow {
    this.#setRequest.run(request, row.seq);
    return { ...row, request };
  }

  /** pending → running: the record (a head) as it now is. */
  claim(seq: number, now: number, token: string, leaseExpiresAt: number, workerId: string): RecordRow {
    const raw = this.#claim.get(now, token, leaseExpiresAt, leaseExpiresAt, workerId, seq);
    if (raw === undefined) throw new Error(`file queue: the head ${String(seq)} to claim is gone`);
    this.#noteDue(leaseExpiresAt);
    return rawToRow(raw);
  }

  /**
   * Extends the lease when `token` is the record's current, unexpired lease (progress and message
   * are kept when not given): whether a cancel was requested, or undefined (nothing written) when
   * the lease is not held.
   */
  heartbeatLeased(
    key: string,
    token: string,
    now: number,
    leaseExpiresAt: number,
    progress: number | undefined,
    message: string | undefined,
  ): { cancelRequested: boolean } | undefined {
    const cancel = this.#heartbeat.get(
      leaseExpiresAt,
      leaseExpiresAt,
      progress === undefined ? 0 : 1,
      progress ?? null,
      message === undefined ? 0 : 1,
      message ?? null,
      key,
      token,
      now,
    );
    if (cancel === undefined) return undefined;
    this.#noteDue(leaseExpiresAt);
    return { cancelRequested: cancel === 1 };
  }

  requestCancel(row: RecordRow): RecordRow {
    this.#requestCancel.run(row.seq);
    return { ...row, cancel_requested: 1 };
  }

  /** running → pending (retry, release, lease expiry), keeping its seq and so its place in line. */
  pendingAgain(row: RecordRow, readyAt: number, attempts: number, error: ErrorInfo | undefined): RecordRow {
    const e = error === undefined ? row.error : errorJson(error);
    this.#pendingAgain.run(readyAt, attempts, e, row.seq);
    return {
      ...row,
      state: 'pending',
      ready_at: readyAt,
      attempts,
      error: e,
      started_at: null,
      lease_token: null,
      lease_expires_at: null,
      due_at: null,
      worker_id: null,
      progress: null,
      message: null,
      cancel_requested: null,
    };
  }

  /**
   * pending/running → a terminal state. A record already past its retention is deleted at once
   * (reads would not see it anyway); `dropped` tells.
   */
  finish(
    row: RecordRow,
    state: QueueState,
    now: number,
    retainUntil: number | undefined,
    error: ErrorInfo | undefined,
  ): { row: RecordRow; dropped: boolean } {
    const e = error === undefined ? row.error : errorJson(error);
    const next: RecordRow = {
      ...row,
      state,
      finished_at: now,
      lease_token: null,
      lease_expires_at: null,
      error: e,
      retain_until: retainUntil ?? null,
      due_at: retainUntil ?? null,
    };
    if (retainUntil !== undefined && retainUntil <= now) {
      this.#delete.run(row.seq);
      return { row: next, dropped: true };
    }
    this.#finish.run(state, now, e, next.retain_until, next.retain_until, row.seq);
    if (retainUntil !== undefined) this.#noteDue(retainUntil);
    return { row: next, dropped: false };
  }

  /**
   * running → completed when `token` is the record's current, unexpired lease: the record as it
   * now is, or undefined (nothing written) when the lease is not held. For a retention still
   * ahead (or none); one already past drops the record, which {@link finish} does.
   */
  completeLeased(key: string, token: string, now: number, retainUntil: number | undefined): RecordRow | undefined {
    const retain = retainUntil ?? null;
    const raw = this.#complete.get(now, retain, retain, key, token, now);
    if (raw === undefined) return undefined;
    if (retain !== null) this.#noteDue(retain);
    return rawToRow(raw);
  }

  /** Gives a finished record without retention one; false when it is gone or has one. */
  setRetention(record: QueueRecord, retainUntil: number): boolean {
    const { seq, key, finishedAt } = record;
    this.#noteDue(retainUntil);
    return this.#setRetention.run(retainUntil, retainUntil, seq, key, finishedAt ?? Number.NaN).changes > 0;
  }

  /** Deletes a finished record without retention (its retention, just given, has passed); false when gone or retained. */
  dropUnretained(record: QueueRecord): boolean {
    return this.#dropUnretained.run(record.seq, record.key, record.finishedAt ?? Number.NaN).changes > 0;
  }

  /** The record of `key`, if any, or {@link DUE} (and nothing read) when a transition is due at `now`. */
  getUnlessDue(key: string, now: number): RecordRow | undefined | typeof DUE {
    const a = this.#getUnlessDue.get(now, key);
    if (a === undefined || a[0] === 1) return DUE;
    return a[1] === null ? undefined : rawToRowAt(a, 1);
  }

  /**
   * Where a pending record stands in serving order among the records ready at `now` (see
   * {@link PositionReader}); undefined unless pending.
   */
  placement(key: string, now: number): Placement | undefined {
    const placed = this.#positions.place(key, now, false);
    return placed === 'due' ? undefined : placed;
  }

  /** 1-based place of a pending record among those ready at `now`; undefined unless pending. */
  position(key: string, now: number): number | undefined {
    return this.placement(key, now)?.position;
  }

  /** {@link position}, or {@link DUE} (and nothing else read) when a transition is due at `now`. */
  positionUnlessDue(key: string, now: number): number | undefined | typeof DUE {
    const placed = this.#positions.place(key, now, true);
    return placed === 'due' ? DUE : placed?.position;
  }

  /** Whether some timed transition is due at `now` (one index probe). */
  due(now: number): boolean {
    return this.#due.get(now) !== undefined;
  }

  /**
   * {@link due}, for a caller inside a write transaction: answered from the bound kept since the
   * transaction's first probe. Only while this process holds the write lock, and
   * {@link forgetDue} must be called when the transaction ends (and after transitions applied).
   */
  dueInTransaction(now: number): boolean {
    this.#nextDue ??= this.#minDue.get() ?? Infinity;
    return this.#nextDue <= now;
  }

  /** The transaction ended, or records changed in ways the bound does not follow: probe again next time. */
  forgetDue(): void {
    this.#nextDue = undefined;
  }

  /** A write set a `due_at`: the bound follows it (clearing one leaves the bound low, which is safe). */
  #noteDue(dueAt: number): void {
    if (this.#nextDue !== undefined && dueAt < this.#nextDue) this.#nextDue = dueAt;
  }

  /**
   * The seqs of the records with a timed transition due at `now`, ascending: 8 bytes each, where
   * the records themselves (requests included) may not fit in memory together.
   */
  dueSeqs(now: number): number[] {
    return this.#dueSeqs.all(now).sort((a, b) => a - b);
  }

  /** The record of a seq, if it is still there. */
  bySeq(seq: number): RecordRow | undefined {
    const raw = this.#bySeq.get(seq);
    return raw === undefined ? undefined : rawToRow(raw);
  }

  /**
   * Deletes at most `limit` finished records that finished before `time`, the first ones in seq
   * order after seq `after`: how many, and the highest seq deleted (`after` when none), where the
   * next chunk starts.
   */
  pruneSome(time: number, after: number, limit: number): { count: number; last: number } {
    const seqs = this.#prune.all(after, time, limit);
    let last = after;
    for (const seq of seqs) if (seq > last) last = seq;
    return { count: seqs.length, last };
  }

  /**
   * Every group with a ready pending record: its head (best in claim order) and claim history.
   * None while the queue is paused.
   */
  heads(now: number): GroupHead[] {
    return this.#heads.all(now).map((a) => ({
      seq: a[0] as number,
      grp: a[1] as string,
      priority: a[2] as number,
      running: a[3] as number,
      last_claim_at: a[4] as number | null,
      last_claim_seq: a[5] as number,
    }));
  }

  counts(): CountRow[] {
    return this.#counts.all();
  }

  /** What the caps are checked against, in one statement. */
  occupancy(group: string, owner: string | undefined): Occupancy {
    return this.#occupancy.get({ grp: group, owner: owner ?? null }) ?? { live: 0, group_live: 0, owner_pending: 0 };
  }

  /**
   * Records after `afterSeq` in seq order, filtered; `states` is a comma-wrapped list
   * (`,pending,running,`) or null for all.
   */
  list(
    afterSeq: number,
    states: string | null,
    group: string | null,
    owner: string | null,
    limit: number,
  ): RecordRow[] {
    return this.#list.all(afterSeq, states, states, group, group, owner, owner, limit).map(rawToRow);
  }
}
