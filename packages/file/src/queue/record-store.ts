import type Database from 'better-sqlite3';

import type { ErrorInfo, NewQueueEntry, QueueRecord, QueueState } from '@armlib/core';

import { errorJson } from './record-row.js';
import type { RecordRow } from './record-row.js';

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;
type Nullable = number | string | null;

/** The head (best pending record in claim order) of a group with ready work, and the group's state. */
export interface GroupHead extends RecordRow {
  /** Running records of the group. */
  running: number;
  /** Null when the group was never claimed from (or its history was collected). */
  last_claim_at: number | null;
  /** 0 when never claimed from. */
  last_claim_seq: number;
}

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
  readonly #byKey: Stmt<[string], RecordRow>;
  readonly #insert: Stmt<Nullable[], { seq: number }>;
  readonly #delete: Stmt<[number]>;
  readonly #setRequest: Stmt<[string, number]>;
  readonly #claim: Stmt<Nullable[]>;
  readonly #heartbeat: Stmt<Nullable[]>;
  readonly #requestCancel: Stmt<[number]>;
  readonly #pendingAgain: Stmt<Nullable[]>;
  readonly #finish: Stmt<Nullable[]>;
  readonly #setRetention: Stmt<[number, number, number, string, number]>;
  readonly #dropUnretained: Stmt<[number, string, number]>;
  readonly #position: Stmt<[string], { pos: number }>;
  readonly #due: Stmt<[number], { due: number }>;
  readonly #dueRows: Stmt<[number], RecordRow>;
  readonly #prune: Stmt<[number]>;
  readonly #heads: Stmt<[number], GroupHead>;
  readonly #counts: Stmt<[], CountRow>;
  readonly #occupancy: Stmt<[{ grp: string; owner: string | null }], Occupancy>;
  readonly #list: Stmt<Nullable[], RecordRow>;

  constructor(db: Db) {
    this.#byKey = db.prepare('SELECT * FROM records WHERE key = ?');
    this.#insert = db.prepare(
      `INSERT INTO records (key, state, grp, priority, owner, submitted_at, ready_at, pending_expires_at, due_at,
         attempts, max_attempts, request)
       VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING seq`,
    );
    this.#delete = db.prepare('DELETE FROM records WHERE seq = ?');
    this.#setRequest = db.prepare('UPDATE records SET request = ? WHERE seq = ?');
    this.#claim = db.prepare(
      `UPDATE records SET state = 'running', attempts = ?, started_at = ?, lease_token = ?, lease_expires_at = ?,
         due_at = ?, worker_id = ?, pending_expires_at = NULL, progress = NULL, message = NULL,
         cancel_requested = NULL
       WHERE seq = ?`,
    );
    this.#heartbeat = db.prepare(
      // (SET expressions read the old row: the new lease is bound twice.)
      'UPDATE records SET lease_expires_at = ?, due_at = ?, progress = ?, message = ? WHERE seq = ?',
    );
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
    // A journaled record is matched by seq, key and finish time: only that very record qualifies.
    this.#setRetention = db.prepare(
      `UPDATE records SET retain_until = ?, due_at = ?
       WHERE seq = ? AND key = ? AND finished_at = ? AND retain_until IS NULL`,
    );
    this.#dropUnretained = db.prepare(
      'DELETE FROM records WHERE seq = ? AND key = ? AND finished_at = ? AND retain_until IS NULL',
    );
    // Records ahead in serving order, group by group: range counts on the claim index per group
    // with pending work, so no second index over all pending records is written on every claim.
    // Every other pending record is either ahead or behind, and the groups table counts them all:
    // so the shorter side is counted, as the record's place among its group and priority suggests
    // (a fresh submit, at the tail, counts next to nothing instead of the whole queue). Exact
    // either way; the guess only decides the cost.
    this.#position = db.prepare(
      `SELECT CASE
         WHEN r.seq - (SELECT min(seq) FROM records
                       WHERE state = 'pending' AND grp = r.grp AND priority = r.priority)
              <= (SELECT max(seq) FROM records
                  WHERE state = 'pending' AND grp = r.grp AND priority = r.priority) - r.seq
         THEN coalesce((SELECT sum(
                  (SELECT count(*) FROM records x
                   WHERE x.state = 'pending' AND x.grp = g.name AND x.priority > r.priority)
                + (SELECT count(*) FROM records x
                   WHERE x.state = 'pending' AND x.grp = g.name AND x.priority = r.priority AND x.seq < r.seq))
                FROM groups g WHERE g.pending > 0), 0) + 1
         ELSE coalesce((SELECT sum(g.pending
                - (SELECT count(*) FROM records x
                   WHERE x.state = 'pending' AND x.grp = g.name AND x.priority < r.priority)
                - (SELECT count(*) FROM records x
                   WHERE x.state = 'pending' AND x.grp = g.name AND x.priority = r.priority AND x.seq > r.seq))
                FROM groups g WHERE g.pending > 0), 0)
       END AS pos
       FROM records r WHERE r.key = ? AND r.state = 'pending'`,
    );
    this.#due = db.prepare('SELECT 1 AS due FROM records WHERE due_at <= ? LIMIT 1');
    // INDEXED BY: left alone, the planner walks the whole table in seq order to spare a sort.
    this.#dueRows = db.prepare('SELECT * FROM records INDEXED BY records_due WHERE due_at <= ? ORDER BY seq');
    this.#prune = db.prepare(
      // A scan: prune is an occasional clean-up, not worth an index written on every completion.
      `DELETE FROM records WHERE finished_at < ? AND state IN ('completed', 'failed', 'cancelled', 'expired')`,
    );
    this.#heads = db.prepare(
      `SELECT h.*, g.running AS running, g.last_claim_at AS last_claim_at, g.last_claim_seq AS last_claim_seq
       FROM groups g
       JOIN records h ON h.seq = (SELECT seq FROM records WHERE state = 'pending' AND grp = g.name AND ready_at <= ?
                                  ORDER BY priority DESC, seq LIMIT 1)
       WHERE g.pending > 0`,
    );
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
    this.#list = db.prepare(
      `SELECT * FROM records
       WHERE seq > ? AND (? IS NULL OR instr(?, ',' || state || ',') > 0) AND (? IS NULL OR grp = ?)
         AND (? IS NULL OR owner = ?)
       ORDER BY seq LIMIT ?`,
    );
  }

  get(key: string): RecordRow | undefined {
    return this.#byKey.get(key);
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

  claim(row: RecordRow, now: number, token: string, leaseExpiresAt: number, workerId: string): RecordRow {
    const attempts = row.attempts + 1;
    this.#claim.run(attempts, now, token, leaseExpiresAt, leaseExpiresAt, workerId, row.seq);
    return {
      ...row,
      state: 'running',
      attempts,
      started_at: now,
      lease_token: token,
      lease_expires_at: leaseExpiresAt,
      worker_id: workerId,
      due_at: leaseExpiresAt,
      pending_expires_at: null,
      progress: null,
      message: null,
      cancel_requested: null,
    };
  }

  heartbeat(row: RecordRow, leaseExpiresAt: number, progress?: number, message?: string): RecordRow {
    const next: RecordRow = {
      ...row,
      lease_expires_at: leaseExpiresAt,
      due_at: leaseExpiresAt,
      progress: progress ?? row.progress,
      message: message ?? row.message,
    };
    this.#heartbeat.run(leaseExpiresAt, leaseExpiresAt, next.progress, next.message, row.seq);
    return next;
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
    return { row: next, dropped: false };
  }

  /** Gives a finished record without retention one; false when it is gone or has one. */
  setRetention(record: QueueRecord, retainUntil: number): boolean {
    const { seq, key, finishedAt } = record;
    return this.#setRetention.run(retainUntil, retainUntil, seq, key, finishedAt ?? Number.NaN).changes > 0;
  }

  /** Deletes a finished record without retention (its retention, just given, has passed); false when gone or retained. */
  dropUnretained(record: QueueRecord): boolean {
    return this.#dropUnretained.run(record.seq, record.key, record.finishedAt ?? Number.NaN).changes > 0;
  }

  position(key: string): number | undefined {
    return this.#position.get(key)?.pos;
  }

  /** Whether some timed transition is due at `now` (one index probe). */
  due(now: number): boolean {
    return this.#due.get(now) !== undefined;
  }

  /** Every record with a timed transition due at `now`, in seq order. */
  dueRows(now: number): RecordRow[] {
    return this.#dueRows.all(now);
  }

  /** Deletes finished records that finished before `time`; returns how many. */
  prune(time: number): number {
    return this.#prune.run(time).changes;
  }

  /** Every group with a ready pending record: its head (best in claim order) and claim history. */
  heads(now: number): GroupHead[] {
    return this.#heads.all(now);
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
    return this.#list.all(afterSeq, states, states, group, group, owner, owner, limit);
  }
}
