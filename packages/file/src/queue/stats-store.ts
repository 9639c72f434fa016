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
/** Uris whose last statistics read is kept; past this many, they are all forgotten. */
const MAX_URI_READS = 1_000;
/** Percentiles are re-sorted once this many samples came in (and on every sample while few). */
const RESORT_EVERY = WINDOW / 16;

interface UriView {
  uri: string;
  count: number;
  avg: number;
  p50: number;
  p95: number;
}

interface ActivityRow extends ActivityCounts {
  minute: number;
  grp: string;
}

/** Counts of one group in one minute, waiting to be written. */
interface ActivityEntry {
  readonly minute: number;
  readonly group: string;
  readonly counts: ActivityCounts;
}

interface Counted {
  readonly kind: ActivityKind;
  readonly minute: number;
  readonly group: string;
}

/** A run time noted by the transaction in progress. */
interface Timed {
  readonly kind: 'duration';
  readonly uri: string;
  readonly ms: number;
  readonly at: number;
}

/** Run times of one uri waiting to be written, oldest first, and the time of the last one. */
interface UriSamples {
  readonly samples: number[];
  at: number;
}

/**
 * Metrics the queue learns as it runs, shared by every process: per-minute activity per group,
 * run-time statistics per uri (EMA, p50/p95 over a window of recent samples, as core's
 * DurationStats) and live worker reports (with the running count the `groups` table keeps).
 *
 * Activity counts and run times are batched: a transition is counted (a completion's run time
 * noted) in memory and written with a later transaction of the same process, at most
 * {@link ACTIVITY_FLUSH_MS} after (and at every sweep, activity read and close; a uri statistics
 * read answers with this process's waiting run times added, without writing them), so that a
 * lifecycle does not write the activity page three times, nor a uri's 2 KiB sample ring on every
 * completion. Other processes
 * therefore see a process's counts and run times up to a second late (or a sweep interval, when
 * it goes idle), and a process killed outright loses at most its last second of them; only these
 * metrics are affected, never a record. What a transaction that rolls back noted is dropped with it.
 */
export class StatsStore {
  readonly #activityAdd: Stmt<[number, string, number, number, number, number]>;
  /** Counts of committed transactions not yet written, by minute and group. */
  #buffered = new Map<string, ActivityEntry>();
  #bufferedSince: number | undefined;
  /** Run times of committed transactions not yet written, by uri. */
  #durations = new Map<string, UriSamples>();
  /** Counts and run times of the transaction in progress. */
  #staged: (Counted | Timed)[] = [];
  /**
   * What waited to be written before the transaction in progress wrote it (a copy, without that
   * transaction's own counts): what waits again if the transaction rolls back.
   */
  #beforeFlush:
    { buffered: Map<string, ActivityEntry>; durations: Map<string, UriSamples>; since: number | undefined } | undefined;
  /**
   * Per uri, its stored statistics (read at `at`) with the first `applied` of its waiting run
   * times added: what a read of this process answers, kept so that each read adds only the run
   * times noted since (rebuilt after every write of the run times, and once `cacheMs` have passed,
   * so that other processes' run times arrive as late as the cache allows and no later).
   */
  readonly #projections = new Map<string, { state: UriState | undefined; applied: number; at: number }>();
  readonly #activityRange: Stmt<[number, number], ActivityRow>;
  readonly #activityTrim: Stmt<[number]>;
  readonly #uriGet: Stmt<[string], unknown[]>;
  readonly #uriView: Stmt<[string], UriView>;
  readonly #uriAll: Stmt<[], UriView>;
  readonly #uriInsert: Stmt<[string, number, number, number, number, number, number, Buffer, number]>;
  readonly #uriUpdate: Stmt<[number, number, number, number, number, number, Buffer, number, string]>;
  readonly #uriCount: Stmt<[], { n: number }>;
  readonly #uriTrim: Stmt<[number]>;
  readonly #workerSet: Stmt<[string, number, number]>;
  readonly #workerDelete: Stmt<[string]>;
  readonly #workerTrim: Stmt<[number]>;
  readonly #capacity: Stmt<
    [{ now: number }],
    { workers: number; slots: number | null; next: number | null; busy: number }
  >;
  /** See {@link StatsStore} (`cacheMs`). */
  readonly #cacheMs: number;
  /**
   * The last capacity read and until when it holds (a reported worker expires, or `cacheMs` pass, or
   * this process changes what runs).
   */
  #capacityRead: { value: WorkerCapacity; at: number; until: number } | undefined;
  /** The last statistics read of each uri (one without run times of this process waiting). */
  readonly #uriReads = new Map<string, { stats: UriStats | undefined; at: number }>();

  /**
   * @param cacheMs - how long a capacity or uri statistics read is answered again without reading
   *   the database (0: never). What this process writes is seen at once, and a worker report stops
   *   counting when it expires; what other processes write, up to `cacheMs` late. They only feed
   *   ETAs and metrics.
   */
  constructor(db: Db, cacheMs: number) {
    this.#cacheMs = cacheMs;
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
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
    this.#capacity = db.prepare(
      // Running leases: the per-group counts the triggers keep, O(groups), read with the reports,
      // less the running records whose lease has expired but which no call has requeued yet (a
      // crashed worker's): their due_at is the lease's expiry, so the due index finds them.
      `SELECT count(*) AS workers, sum(slots) AS slots, min(expires_at) AS next,
         (SELECT coalesce(sum(running), 0) FROM groups)
           - (SELECT count(*) FROM records WHERE due_at <= @now AND state = 'running') AS busy
       FROM workers WHERE expires_at > @now`,
    );
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
    // Kept before this transaction's own counts join the rest: if it rolls back (even halfway
    // through these writes), its counts go and what waited before waits again, once.
    this.#beforeFlush ??= {
      buffered: new Map(
        [...this.#buffered].map(([id, { minute, group, counts }]) => [id, { minute, group, counts: { ...counts } }]),
      ),
      durations: new Map([...this.#durations].map(([uri, { samples, at }]) => [uri, { samples: [...samples], at }])),
      since: this.#bufferedSince,
    };
    this.#merge();
    for (const { minute, group, counts } of this.#buffered.values()) {
      this.#activityAdd.run(minute, group, counts.submitted, counts.claimed, counts.completed, counts.failed);
    }
    this.#buffered.clear();
    for (const [uri, waiting] of this.#durations) this.#writeDurations(uri, waiting.samples, waiting.at);
    this.#durations.clear();
    this.#projections.clear();
    this.#bufferedSince = undefined;
  }

  /** The transaction in progress committed: what it wrote is done, what it counted since waits. */
  committed(now: number): void {
    this.#beforeFlush = undefined;
    this.#merge();
    if (this.#buffered.size > 0 || this.#durations.size > 0) this.#bufferedSince ??= now;
  }

  /** The transaction in progress rolled back: its counts go with it, what it wrote waits again. */
  rolledBack(now: number): void {
    this.#staged = [];
    // A read inside the transaction may have seen what it wrote.
    this.#forgetReads();
    const before = this.#beforeFlush;
    if (before !== undefined) {
      this.#beforeFlush = undefined;
      this.#buffered = before.buffered;
      this.#durations = before.durations;
      this.#bufferedSince = before.since;
      this.#projections.clear();
    }
    const waiting = this.#buffered.size > 0 || this.#durations.size > 0;
    this.#bufferedSince = waiting ? (this.#bufferedSince ?? now) : undefined;
  }

  #merge(): void {
    for (const noted of this.#staged) {
      if (noted.kind === 'duration') this.#wait(noted.uri, [noted.ms], noted.at);
      else this.#entry(noted.minute, noted.group).counts[noted.kind]++;
    }
    this.#staged = [];
  }

  /** Adds run times of `uri` (noted last at `at`) after those already waiting. */
  #wait(uri: string, samples: number[], at: number): void {
    const waiting = this.#durations.get(uri);
    if (waiting === undefined) {
      this.#durations.set(uri, { samples, at });
    } else {
      for (const ms of samples) waiting.samples.push(ms);
      waiting.at = at;
    }
  }

  #entry(minute: number, group: string): ActivityEntry {
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

  /**
   * Notes one run time of `uri` (kept with the transaction in progress, written later with the
   * counts). Non-finite values are ignored; negative ones count as 0.
   */
  recordDuration(uri: string, durationMs: number, now: number): void {
    if (!Number.isFinite(durationMs)) return;
    this.#staged.push({ kind: 'duration', uri, ms: durationMs < 0 ? 0 : durationMs, at: now });
  }

  /** Adds run times of `uri` (oldest first) to its row: one read and one write for all of them. */
  #writeDurations(uri: string, added: readonly number[], now: number): void {
    this.#uriReads.delete(uri);
    const raw = this.#uriGet.get(uri);
    let state = raw === undefined ? undefined : rowState(raw);
    for (const ms of added) state = addSample(state, ms);
    if (state === undefined) return;
    const { count, avg, p50, p95, sortedAt, next, samples } = state;
    if (raw === undefined) this.#uriInsert.run(uri, count, avg, p50, p95, sortedAt, next, encodeSamples(samples), now);
    else this.#uriUpdate.run(count, avg, p50, p95, sortedAt, next, encodeSamples(samples), now, uri);
  }

  /** Run times of `uri` noted by the transaction in progress, oldest first. */
  #stagedSamples(uri: string): number[] {
    const staged: number[] = [];
    for (const noted of this.#staged) if (noted.kind === 'duration' && noted.uri === uri) staged.push(noted.ms);
    return staged;
  }

  /** The statistics of `uri` with this process's waiting run times added, as if they were written. */
  #withWaiting(uri: string, now: number): UriStats | undefined {
    const waiting = this.#durations.get(uri)?.samples ?? [];
    let projection = this.#projections.get(uri);
    if (projection === undefined || !(now >= projection.at && now - projection.at < this.#cacheMs)) {
      const raw = this.#uriGet.get(uri);
      projection = { state: raw === undefined ? undefined : rowState(raw), applied: 0, at: now };
      this.#projections.set(uri, projection);
    }
    for (; projection.applied < waiting.length; projection.applied++) {
      projection.state = addSample(projection.state, waiting[projection.applied] as number);
    }
    let state = projection.state;
    const staged = this.#stagedSamples(uri);
    // The transaction in progress may still roll back: its run times go on a copy.
    if (staged.length > 0 && state !== undefined) state = { ...state, samples: Float64Array.from(state.samples) };
    for (const ms of staged) state = addSample(state, ms);
    return state === undefined
      ? undefined
      : { uri, count: state.count, avgMs: state.avg, p50Ms: state.p50, p95Ms: state.p95 };
  }

  /** Statistics of one uri (read again after `cacheMs`), or of every uri (by uri) when none is given. */
  uriStats(uri: string | undefined, now: number): UriStats[] {
    if (uri !== undefined) {
      if (this.#durations.has(uri) || this.#staged.some((noted) => noted.kind === 'duration' && noted.uri === uri)) {
        const stats = this.#withWaiting(uri, now);
        return stats === undefined ? [] : [stats];
      }
      const read = this.#uriReads.get(uri);
      if (read !== undefined && now >= read.at && now - read.at < this.#cacheMs) {
        return read.stats === undefined ? [] : [read.stats];
      }
      const row = this.#uriView.get(uri);
      const stats = row === undefined ? undefined : toStats(row);
      if (this.#cacheMs > 0) {
        if (this.#uriReads.size >= MAX_URI_READS) this.#uriReads.clear();
        this.#uriReads.set(uri, { stats, at: now });
      }
      return stats === undefined ? [] : [stats];
    }
    const byUri = new Map<string, UriStats>();
    for (const row of this.#uriAll.all()) byUri.set(row.uri, toStats(row));
    const pending = new Set(this.#durations.keys());
    for (const noted of this.#staged) if (noted.kind === 'duration') pending.add(noted.uri);
    for (const name of pending) {
      const stats = this.#withWaiting(name, now);
      if (stats !== undefined) byUri.set(name, stats);
    }
    // Sorted here by UTF-16 code units, as the memory queue does (SQLite would compare UTF-8 bytes).
    return [...byUri.values()].sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
  }

  reportWorker(workerId: string, slots: number, expiresAt: number): void {
    this.#workerSet.run(workerId, slots, expiresAt);
    this.#capacityRead = undefined;
  }

  removeWorker(workerId: string): void {
    this.#workerDelete.run(workerId);
    this.#capacityRead = undefined;
  }

  /**
   * This process claimed a record or ended a run (in the transaction in progress): the next
   * capacity read counts the running leases again.
   */
  runningChanged(): void {
    this.#capacityRead = undefined;
  }

  /**
   * Live worker reports at `now`, with the running leases (read again after `cacheMs`, once one of
   * the reports expires, or after {@link runningChanged}). A lease past its expiry is not counted,
   * whether or not a call has applied the expiry yet.
   */
  capacity(now: number): WorkerCapacity {
    const read = this.#capacityRead;
    if (read !== undefined && now >= read.at && now < read.until) return read.value;
    const row = this.#capacity.get({ now });
    const value: WorkerCapacity = { workers: row?.workers ?? 0, slots: row?.slots ?? 0, busy: row?.busy ?? 0 };
    const until = Math.min(now + this.#cacheMs, row?.next ?? Number.POSITIVE_INFINITY);
    this.#capacityRead = until > now ? { value, at: now, until } : undefined;
    return value;
  }

  #forgetReads(): void {
    this.#capacityRead = undefined;
    this.#uriReads.clear();
  }

  /** Forgets activity older than the window, expired worker reports and the least recent uris beyond the cap. */
  trim(now: number): void {
    this.#activityTrim.run(Math.floor(now / MINUTE_MS) * MINUTE_MS - (KEEP_MINUTES - 1) * MINUTE_MS);
    this.#workerTrim.run(now);
    const uris = this.#uriCount.get()?.n ?? 0;
    if (uris > MAX_URIS) {
      this.#uriTrim.run(uris - MAX_URIS);
      this.#uriReads.clear();
    }
  }
}

function zero(): ActivityCounts {
  return { submitted: 0, claimed: 0, completed: 0, failed: 0 };
}

/** The statistics of a uri as one sample after another changes them. */
interface UriState {
  readonly count: number;
  readonly avg: number;
  readonly p50: number;
  readonly p95: number;
  readonly sortedAt: number;
  /** Where the next sample goes once the ring is full. */
  readonly next: number;
  readonly samples: Float64Array;
}

/** A row of `#uriGet` as a state. */
function rowState(raw: unknown[]): UriState {
  return {
    count: raw[1] as number,
    avg: raw[2] as number,
    p50: raw[3] as number,
    p95: raw[4] as number,
    sortedAt: raw[5] as number,
    next: raw[6] as number,
    samples: decodeSamples(raw[7] as Buffer),
  };
}

/**
 * The state after one more sample, as core's DurationStats learns it. Once the ring is full the
 * sample goes into `state.samples` itself: the caller owns that array.
 */
function addSample(state: UriState | undefined, ms: number): UriState {
  if (state === undefined) {
    return { count: 1, avg: ms, p50: ms, p95: ms, sortedAt: 1, next: 1 % WINDOW, samples: Float64Array.of(ms) };
  }
  const count = state.count + 1;
  const avg = state.avg + ALPHA * (ms - state.avg);
  // The ring grows up to the window, then wraps at `next`.
  const old = state.samples;
  const samples = old.length < WINDOW ? new Float64Array(old.length + 1) : old;
  if (samples !== old) samples.set(old);
  samples[old.length < WINDOW ? old.length : state.next] = ms;
  let { p50, p95, sortedAt } = state;
  if (count - sortedAt >= RESORT_EVERY || count < 16) {
    const sorted = Float64Array.from(samples).sort();
    p50 = percentile(sorted, 0.5);
    p95 = percentile(sorted, 0.95);
    sortedAt = count;
  }
  return { count, avg, p50, p95, sortedAt, next: (state.next + 1) % WINDOW, samples };
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
