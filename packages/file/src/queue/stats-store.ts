import type Database from 'better-sqlite3';

import { InvalidRequestError } from '@armlib/core';
import type { ActivityBucket, ActivityCounts, UriStats, WorkerCapacity } from '@armlib/core';

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;

/** A transition counted per minute. */
export type ActivityKind = keyof ActivityCounts;

const MINUTE_MS = 60_000;
/** Activity counts are written at most this often by a busy process (and at every sweep and read). */
const ACTIVITY_FLUSH_MS = 1_000;
/** Minutes of activity kept, the current one included (as the memory queue). */
const KEEP_MINUTES = 10;
/** Recent samples per uri for the percentiles, weight of a new sample in the average, uris kept. */
const WINDOW = 256;
const ALPHA = 0.2;
const MAX_URIS = 10_000;
/** Percentiles are re-sorted once this many samples came in (and on every sample while few). */
const RESORT_EVERY = WINDOW / 16;

interface UriView {
  uri: string;
  count: number;
  avg: number;
  p50: number;
  p95: number;
}

interface UriRow extends UriView {
  sorted_at: number;
  next: number;
  /** Ring of recent samples, float64 in host byte order (the database never leaves its host). */
  samples: Buffer;
}

interface ActivityRow extends ActivityCounts {
  minute: number;
  grp: string;
}

interface Counted {
  readonly kind: ActivityKind;
  readonly minute: number;
  readonly group: string;
}

/**
 * Metrics the queue learns as it runs, shared by every process: per-minute activity per group,
 * run-time statistics per uri (EMA, p50/p95 over a window of recent samples, as core's
 * DurationStats) and live worker reports.
 *
 * Activity counts are batched: a transition is counted in memory and written with a later
 * transaction of the same process, at most {@link ACTIVITY_FLUSH_MS} after (and at every sweep,
 * activity read and close), so that a lifecycle does not write the activity page three times.
 * Other processes therefore see a process's counts up to a second late (or a sweep interval,
 * when it goes idle), and a process killed outright loses at most its last second of counts;
 * only these metrics are affected, never a record. Counts of a transaction that rolls back
 * are dropped with it.
 */
export class StatsStore {
  readonly #activityAdd: Stmt<[number, string, number, number, number, number]>;
  /** Counts of committed transactions not yet written, by minute and group. */
  readonly #buffered = new Map<string, { minute: number; group: string; counts: ActivityCounts }>();
  #bufferedSince: number | undefined;
  /** Counts of the transaction in progress. */
  #staged: Counted[] = [];
  /** Counts written by the transaction in progress, back to the buffer if it rolls back. */
  #inFlight: { minute: number; group: string; counts: ActivityCounts }[] = [];
  readonly #activityRange: Stmt<[number, number], ActivityRow>;
  readonly #activityTrim: Stmt<[number]>;
  readonly #uriGet: Stmt<[string], unknown[]>;
  readonly #uriView: Stmt<[string], UriView>;
  readonly #uriAll: Stmt<[], UriView>;
  readonly #uriInsert: Stmt<[string, number, number, number, number, Buffer, number]>;
  readonly #uriUpdate: Stmt<[number, number, number, number, number, number, Buffer, number, string]>;
  readonly #uriCount: Stmt<[], { n: number }>;
  readonly #uriTrim: Stmt<[number]>;
  readonly #workerSet: Stmt<[string, number, number]>;
  readonly #workerDelete: Stmt<[string]>;
  readonly #workerTrim: Stmt<[number]>;
  readonly #capacity: Stmt<[number], { workers: number; slots: number | null }>;

  constructor(db: Db) {
    this.#activityAdd = db.prepare(
      `INSERT INTO activity (minute, grp, submitted, claimed, completed, failed) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (minute, grp) DO UPDATE SET submitted = submitted + excluded.submitted,
         claimed = claimed + excluded.claimed, completed = completed + excluded.completed,
         failed = failed + excluded.failed`,
    );
    this.#activityRange = db.prepare('SELECT * FROM activity WHERE minute >= ? AND minute <= ? ORDER BY minute, grp');
    this.#activityTrim = db.prepare('DELETE FROM activity WHERE minute < ?');
    // An array, not an object: read on every completion, and cheaper so (see RECORD_COLUMNS).
    this.#uriGet = db
      .prepare<[string], unknown[]>(
        'SELECT uri, count, avg, p50, p95, sorted_at, next, samples FROM uri_stats WHERE uri = ?',
      )
      .raw();
    // Reads leave the samples out: they only serve the next sample's percentiles.
    this.#uriView = db.prepare('SELECT uri, count, avg, p50, p95 FROM uri_stats WHERE uri = ?');
    this.#uriAll = db.prepare('SELECT uri, count, avg, p50, p95 FROM uri_stats');
    this.#uriInsert = db.prepare(
      `INSERT INTO uri_stats (uri, count, avg, p50, p95, sorted_at, next, samples, updated_at)
       VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?)`,
    );
    this.#uriUpdate = db.prepare(
      `UPDATE uri_stats SET count = ?, avg = ?, p50 = ?, p95 = ?, sorted_at = ?, next = ?, samples = ?, updated_at = ?
       WHERE uri = ?`,
    );
    this.#uriCount = db.prepare('SELECT count(*) AS n FROM uri_stats');
    this.#uriTrim = db.prepare(
      'DELETE FROM uri_stats WHERE uri IN (SELECT uri FROM uri_stats ORDER BY updated_at, uri LIMIT ?)',
    );
    this.#workerSet = db.prepare(
      `INSERT INTO workers (id, slots, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET slots = excluded.slots, expires_at = excluded.expires_at`,
    );
    this.#workerDelete = db.prepare('DELETE FROM workers WHERE id = ?');
    this.#workerTrim = db.prepare('DELETE FROM workers WHERE expires_at <= ?');
    this.#capacity = db.prepare('SELECT count(*) AS workers, sum(slots) AS slots FROM workers WHERE expires_at > ?');
  }

  /** Counts one transition of a kind in a group at `now` (kept with the transaction in progress). */
  count(kind: ActivityKind, group: string, now: number): void {
    this.#staged.push({ kind, minute: Math.floor(now / MINUTE_MS) * MINUTE_MS, group });
  }

  /** How many counts the transaction in progress has noted so far (see {@link undo}). */
  mark(): number {
    return this.#staged.length;
  }

  /** A call of the transaction in progress rolled back to its savepoint: its counts (noted after `mark`) go. */
  undo(mark: number): void {
    this.#staged.length = Math.min(mark, this.#staged.length);
  }

  /**
   * Whether counts should be written by the transaction in progress: the oldest waiting one
   * waited long enough (or the clock went back).
   */
  activityDue(now: number): boolean {
    const since = this.#bufferedSince ?? (this.#staged.length > 0 ? now : undefined);
    return since !== undefined && (now - since >= ACTIVITY_FLUSH_MS || now < since);
  }

  /** Writes every waiting count (committed and staged) inside the transaction in progress. */
  flushActivity(): void {
    this.#merge();
    for (const entry of this.#buffered.values()) {
      const { minute, group, counts } = entry;
      this.#activityAdd.run(minute, group, counts.submitted, counts.claimed, counts.completed, counts.failed);
      this.#inFlight.push(entry);
    }
    this.#buffered.clear();
    this.#bufferedSince = undefined;
  }

  /** The transaction in progress committed: what it wrote is done, what it counted since waits. */
  committed(now: number): void {
    this.#inFlight = [];
    this.#merge();
    if (this.#buffered.size > 0) this.#bufferedSince ??= now;
  }

  /** The transaction in progress rolled back: its counts go with it, what it wrote waits again. */
  rolledBack(now: number): void {
    this.#staged = [];
    for (const { minute, group, counts } of this.#inFlight.splice(0)) {
      const entry = this.#entry(minute, group);
      for (const kind of KINDS) entry.counts[kind] += counts[kind];
    }
    this.#bufferedSince = this.#buffered.size > 0 ? (this.#bufferedSince ?? now) : undefined;
  }

  #merge(): void {
    for (const { kind, minute, group } of this.#staged) this.#entry(minute, group).counts[kind]++;
    this.#staged = [];
  }

  #entry(minute: number, group: string): { minute: number; group: string; counts: ActivityCounts } {
    const id = `${String(minute)}\u0000${group}`;
    let entry = this.#buffered.get(id);
    if (entry === undefined) {
      entry = { minute, group, counts: zero() };
      this.#buffered.set(id, entry);
    }
    return entry;
  }

  /** The last `minutes` minutes (at most ten) up to the one holding `now`, oldest first, zeros included. */
  buckets(minutes: number, now: number): ActivityBucket[] {
    if (!Number.isSafeInteger(minutes) || minutes < 0) {
      throw new InvalidRequestError('minutes', `must be an integer >= 0, got ${String(minutes)}`);
    }
    const n = Math.min(minutes, KEEP_MINUTES);
    const current = Math.floor(now / MINUTE_MS) * MINUTE_MS;
    const first = current - (n - 1) * MINUTE_MS;
    const out: { minute: number; total: ActivityCounts; byGroup: Record<string, ActivityCounts> }[] = [];
    for (let minute = first; minute <= current && n > 0; minute += MINUTE_MS) {
      out.push({ minute, total: zero(), byGroup: {} });
    }
    if (n === 0) return out;
    for (const row of this.#activityRange.all(first, current)) {
      const bucket = out[(row.minute - first) / MINUTE_MS];
      if (bucket === undefined) continue;
      const counts: ActivityCounts = {
        submitted: row.submitted,
        claimed: row.claimed,
        completed: row.completed,
        failed: row.failed,
      };
      bucket.byGroup[row.grp] = counts;
      bucket.total.submitted += counts.submitted;
      bucket.total.claimed += counts.claimed;
      bucket.total.completed += counts.completed;
      bucket.total.failed += counts.failed;
    }
    return out;
  }

  /** Adds one run time of `uri`. Non-finite values are ignored; negative ones count as 0. */
  recordDuration(uri: string, durationMs: number, now: number): void {
    if (!Number.isFinite(durationMs)) return;
    const ms = durationMs < 0 ? 0 : durationMs;
    const raw = this.#uriGet.get(uri);
    const row: UriRow | undefined =
      raw === undefined
        ? undefined
        : {
            uri: raw[0] as string,
            count: raw[1] as number,
            avg: raw[2] as number,
            p50: raw[3] as number,
            p95: raw[4] as number,
            sorted_at: raw[5] as number,
            next: raw[6] as number,
            samples: raw[7] as Buffer,
          };
    if (row === undefined) {
      this.#uriInsert.run(uri, ms, ms, ms, 1 % WINDOW, encodeSamples(Float64Array.of(ms)), now);
      return;
    }
    const count = row.count + 1;
    const avg = row.avg + ALPHA * (ms - row.avg);
    // The ring grows up to the window, then wraps at `next`.
    const old = decodeSamples(row.samples);
    const samples = old.length < WINDOW ? new Float64Array(old.length + 1) : old;
    if (samples !== old) samples.set(old);
    samples[old.length < WINDOW ? old.length : row.next] = ms;
    let { p50, p95, sorted_at: sortedAt } = row;
    if (count - sortedAt >= RESORT_EVERY || count < 16) {
      const sorted = Float64Array.from(samples).sort();
      p50 = percentile(sorted, 0.5);
      p95 = percentile(sorted, 0.95);
      sortedAt = count;
    }
    this.#uriUpdate.run(count, avg, p50, p95, sortedAt, (row.next + 1) % WINDOW, encodeSamples(samples), now, uri);
  }

  /** Statistics of one uri, or of every uri (by uri) when none is given. */
  uriStats(uri?: string): UriStats[] {
    // Sorted here by UTF-16 code units, as the memory queue does (SQLite would compare UTF-8 bytes).
    if (uri === undefined)
      return this.#uriAll
        .all()
        .map(toStats)
        .sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
    const row = this.#uriView.get(uri);
    return row === undefined ? [] : [toStats(row)];
  }

  reportWorker(workerId: string, slots: number, expiresAt: number): void {
    this.#workerSet.run(workerId, slots, expiresAt);
  }

  removeWorker(workerId: string): void {
    this.#workerDelete.run(workerId);
  }

  capacity(now: number): WorkerCapacity {
    const row = this.#capacity.get(now);
    return { workers: row?.workers ?? 0, slots: row?.slots ?? 0 };
  }

  /** Forgets activity older than the window, expired worker reports and the least recent uris beyond the cap. */
  trim(now: number): void {
    this.#activityTrim.run(Math.floor(now / MINUTE_MS) * MINUTE_MS - (KEEP_MINUTES - 1) * MINUTE_MS);
    this.#workerTrim.run(now);
    const uris = this.#uriCount.get()?.n ?? 0;
    if (uris > MAX_URIS) this.#uriTrim.run(uris - MAX_URIS);
  }
}

const KINDS: readonly ActivityKind[] = ['submitted', 'claimed', 'completed', 'failed'];

function zero(): ActivityCounts {
  return { submitted: 0, claimed: 0, completed: 0, failed: 0 };
}

function toStats(row: UriView): UriStats {
  return { uri: row.uri, count: row.count, avgMs: row.avg, p50Ms: row.p50, p95Ms: row.p95 };
}

function encodeSamples(samples: Float64Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}

function decodeSamples(blob: Buffer): Float64Array {
  // A copy: the blob's bytes need not be 8-byte aligned.
  const out = new Float64Array(blob.byteLength / 8);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: Float64Array, p: number): number {
  const i = Math.max(0, Math.ceil(p * sorted.length) - 1);
  return sorted[i] ?? 0;
}
