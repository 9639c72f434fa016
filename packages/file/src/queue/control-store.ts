import type Database from 'better-sqlite3';

import type { QueueRecord } from '@armlib/core';

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;

/** Kinds of transitions a sweep reports. */
export type SweepKind = 'requeued' | 'failed' | 'expired' | 'cancelled';

/** One journal entry: a transition applied by time, waiting for a sweep to report it. */
export interface JournalEntry {
  readonly kind: SweepKind;
  readonly record: QueueRecord;
}

/**
 * Group histories are collected only beyond this many: forgetting one is observable (a group
 * claimed long ago then ranks like a group never claimed), so it is done only to bound storage,
 * as the memory queue does.
 */
const GROUP_GC_THRESHOLD = 1024;
/** Beyond this many unreported transitions new ones are applied but not journaled (as memory's buffers). */
const MAX_JOURNAL = 400_000;

/**
 * What the queue keeps besides records, shared by every process: the pause flag, the count of records dropped by retention,
 * each group's claim history (time and a global claim number, which orders groups whose ready times tie),
 * and the journal of transitions applied by time. A transition
 * applied lazily in one process is reported by the next sweep in any process, exactly once.
 */
export class ControlStore {
  readonly #getMeta: Stmt<[string], { value: number }>;
  readonly #setMeta: Stmt<[number, string]>;
  readonly #bumpMeta: Stmt<[number, string], { value: number }>;
  readonly #touchGroup: Stmt<[number, number, string]>;
  readonly #rebaseClaim: Stmt<[number, string, number]>;
  readonly #collectGroups: Stmt<[number]>;
  readonly #groupCount: Stmt<[], { n: number }>;
  readonly #journalSize: Stmt<[], { n: number | null }>;
  readonly #journalAdd: Stmt<[string, string]>;
  readonly #journalFirst: Stmt<[number], { id: number; kind: SweepKind; record: string }>;
  readonly #journalClear: Stmt<[number]>;

  constructor(db: Db) {
    this.#getMeta = db.prepare('SELECT value FROM meta WHERE name = ?');
    this.#setMeta = db.prepare('UPDATE meta SET value = ? WHERE name = ?');
    this.#bumpMeta = db.prepare('UPDATE meta SET value = value + ? WHERE name = ? RETURNING value');
    // The claim number is one more than any group's last: a global claim counter without a row of
    // its own. The group's row exists: it counts the pending record being claimed.
    this.#touchGroup = db.prepare(
      `UPDATE groups SET last_claim_at = ?, last_claim_seq = (SELECT max(last_claim_seq) FROM groups) + 1,
         max_interval_ms = max(max_interval_ms, ?)
       WHERE name = ?`,
    );
    // Lowers a claim time only: one at or before `now` is history the interval rightly counts from.
    this.#rebaseClaim = db.prepare('UPDATE groups SET last_claim_at = ? WHERE name = ? AND last_claim_at > ?');
    // A group's history must outlive its records by its longest interval, else a group emptied and
    // refilled at once would skip its interval.
    this.#collectGroups = db.prepare(
      `DELETE FROM groups WHERE pending + running + completed + failed + cancelled + expired = 0
         AND (last_claim_at IS NULL OR last_claim_at + max_interval_ms <= ?)`,
    );
    this.#groupCount = db.prepare('SELECT count(*) AS n FROM groups');
    // Two subqueries: SQLite reads min() and max() off the rowid b-tree only one per SELECT.
    this.#journalSize = db.prepare(
      'SELECT (SELECT max(id) FROM sweep_journal) - (SELECT min(id) FROM sweep_journal) + 1 AS n',
    );
    this.#journalAdd = db.prepare('INSERT INTO sweep_journal (kind, record) VALUES (?, ?)');
    this.#journalFirst = db.prepare('SELECT id, kind, record FROM sweep_journal ORDER BY id LIMIT ?');
    this.#journalClear = db.prepare('DELETE FROM sweep_journal WHERE id <= ?');
  }

  isPaused(): boolean {
    return this.#getMeta.get('paused')?.value === 1;
  }

  setPaused(paused: boolean): void {
    this.#setMeta.run(paused ? 1 : 0, 'paused');
  }

  /** Records a claim in `group`: its time, a fresh global claim number, the interval in force. */
  recordClaim(group: string, now: number, intervalMs: number): void {
    this.#touchGroup.run(now, intervalMs, group);
  }

  /**
   * Moves a claim time that lies after `now` (the clock stepped back) to `now`, keeping the claim
   * number and so the group's turn among groups claimed at the same time.
   */
  rebaseClaim(group: string, now: number): void {
    this.#rebaseClaim.run(now, group, now);
  }

  addDropped(n: number): void {
    if (n > 0) this.#bumpMeta.run(n, 'dropped');
  }

  /** Records dropped by retention since the last call; resets the count. */
  takeDropped(): number {
    const n = this.#getMeta.get('dropped')?.value ?? 0;
    if (n !== 0) this.#setMeta.run(0, 'dropped');
    return n;
  }

  /** Forgets groups with no records once their interval has passed, when there are many groups. */
  collectGroups(now: number): void {
    if ((this.#groupCount.get()?.n ?? 0) > GROUP_GC_THRESHOLD) this.#collectGroups.run(now);
  }

  journal(kind: SweepKind, record: QueueRecord): void {
    if ((this.#journalSize.get()?.n ?? 0) >= MAX_JOURNAL) return;
    this.#journalAdd.run(kind, JSON.stringify(record));
  }

  /**
   * The oldest `limit` journaled transitions, oldest first, removed from the journal; `more` when
   * others may follow.
   */
  takeJournal(limit: number): { entries: JournalEntry[]; more: boolean } {
    const rows = this.#journalFirst.all(limit);
    const last = rows.at(-1);
    if (last === undefined) return { entries: [], more: false };
    this.#journalClear.run(last.id);
    return {
      entries: rows.map((r) => ({ kind: r.kind, record: JSON.parse(r.record) as QueueRecord })),
      more: rows.length === limit,
    };
  }
}
