import type Database from 'better-sqlite3';

type Db = Database.Database;
type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;

/**
 * The first statement counts every range up to this many records: most are empty or short (a
 * fresh submit has nobody behind it, a single priority nobody above or below), and known exactly.
 */
const FIRST_CAP = 16;
/**
 * Caps of the counts that follow while no range is known to be the short one; past the last, a
 * range is counted whole. Literal caps: a bound LIMIT parameter costs the statement about 5 µs.
 */
const CAPS: readonly number[] = [128, 1024, 8192, 65536];

/** Ranges of a group's pending records, relative to the record placed (priority, then seq). */
type Range = 'above' | 'below' | 'at' | 'before' | 'after';
const RANGES: Readonly<Record<Range, string>> = {
  above: 'priority > @p',
  below: 'priority < @p',
  at: 'priority = @p',
  before: 'priority = @p AND seq < @seq',
  after: 'priority = @p AND seq > @seq',
};

/** The pending record to place. */
interface PendingRef {
  readonly seq: number;
  readonly grp: string;
  readonly priority: number;
}

/**
 * Where a pending record stands in serving order, as counts: its position, and what gives the
 * position of each record of its group and priority ahead of it too (see {@link positionAt}).
 */
export interface Placement {
  /** 1-based place in serving order. */
  readonly position: number;
  /** 1 + the ready records of its group and priority that arrived before it. */
  readonly k: number;
  /** Ready records of a higher priority, every group's. */
  readonly above: number;
  /** Per other group whose turn at this priority comes first: min(its ready records there, k). */
  readonly first: readonly number[];
  /** Per other group whose turn comes later: min(its ready records there, k − 1). */
  readonly later: readonly number[];
}

/**
 * The position of the record of the same group and priority that is the `k`-th ready one there,
 * for `k` up to the placed record's own: the other groups' counts are capped at the placed
 * record's k, which is no less than this one's.
 */
export function positionAt(placement: Placement, k: number): number {
  let position = placement.above + k;
  for (const n of placement.first) position += Math.min(n, k);
  for (const n of placement.later) position += Math.min(n, k - 1);
  return position;
}

/** A range count: exact, or (the cap reached) a lower bound. */
interface Count {
  n: number;
  exact: boolean;
}

/** A group with pending records, as the first statement reads it. */
interface GroupRow {
  readonly name: string;
  readonly pending: number;
  readonly lastClaimAt: number;
  readonly lastClaimSeq: number;
  /** Pending records waiting out a retry backoff. */
  readonly waiting: number;
}

/** Per range, the group's records waiting out a backoff (they are in the range counts, and not ready). */
type Waiting = Readonly<Record<Range, number>>;
const NONE_WAITING: Waiting = { above: 0, below: 0, at: 0, before: 0, after: 0 };

/**
 * Positions in serving order, as claims take records (see `pickHead`): the highest priority
 * first; within a priority the groups in turn, the one claimed least recently first (a group
 * that still has ready work of a higher priority takes its turns there first, so comes after
 * those without any), each group in arrival order. For a record r of priority p, the k-th ready
 * one of its group there: every ready record of a higher priority is ahead, and at p each other
 * group has min(its ready records at p, k) ahead when its turn comes first, k − 1 otherwise: the
 * memory queue's `fairPosition`, from SQL counts.
 *
 * SQLite counts an index range by walking it, so only short ranges are walked: a group's pending
 * records split into ranges around r (above, below, at p; in r's own group, at p before and after
 * r) whose sum the groups table keeps, so the longest is never counted but derived. Every range
 * is first counted up to a few records in one statement over all groups, which settles the usual
 * cases (a fresh submit, one priority); the others are counted with growing caps until all but the
 * longest are known, at most a constant factor more than counting the shorter ones. Waiting
 * records are counted in the ranges (a filter on ready_at would read a column per record walked)
 * and taken away, found in the small records_backoff index.
 */
export class PositionReader {
  readonly #db: Db;
  readonly #first: Stmt<[{ key: string; now: number }], unknown[]>;
  readonly #snapshot: Database.Transaction<(fn: () => unknown) => unknown>;
  /** Whether statements after the first may run: only on one snapshot (inside a transaction). */
  #mayCount = false;
  readonly #waiting: Stmt<[Record<string, unknown>], number[]>;
  readonly #bounds: Stmt<[Record<string, unknown>], (number | null)[]>;
  /** Range counts by range and cap (undefined: whole), prepared when first needed. */
  readonly #counts = new Map<string, Stmt<[Record<string, unknown>], number>>();

  constructor(db: Db) {
    this.#db = db;
    // Whether a transition is due, the record, and per group with pending records its claim
    // history and first counts: one statement, one snapshot, enough in the usual cases. Each count
    // costs, so two are left out: another group's records at the priority (found from the others
    // when those are short), and the own group's before the record when none is after it.
    const where = (range: string): string =>
      `FROM records x WHERE x.state = 'pending' AND x.grp = g.name
         AND ${range.replaceAll(/(?<!@)\b(priority|seq)\b/g, 'x.$1').replaceAll(/@(p|seq)\b/g, (_, c: string) => (c === 'p' ? 'r.priority' : 'r.seq'))}`;
    const capped = (range: string): string =>
      `(SELECT count(*) FROM (SELECT 1 ${where(range)} LIMIT ${String(FIRST_CAP)}))`;
    this.#first = db
      .prepare<[{ key: string; now: number }], unknown[]>(
        `SELECT EXISTS (SELECT 1 FROM records WHERE due_at <= @now), r.seq, r.grp, r.priority,
           g.name, g.pending, g.last_claim_at, g.last_claim_seq,
           (SELECT count(*) FROM records x INDEXED BY records_backoff
            WHERE x.state = 'pending' AND x.ready_at > x.submitted_at AND x.grp = g.name AND x.ready_at > @now),
           ${capped(RANGES.above)}, ${capped(RANGES.below)},
           CASE WHEN g.name = r.grp AND EXISTS (SELECT 1 ${where(RANGES.after)}) THEN ${capped(RANGES.before)} END,
           CASE WHEN g.name = r.grp THEN ${capped(RANGES.after)} END
         FROM (SELECT 1) LEFT JOIN records r ON r.key = @key AND r.state = 'pending'
           LEFT JOIN groups g ON r.seq IS NOT NULL AND g.pending > 0`,
      )
      .raw();
    this.#snapshot = db.transaction((fn: () => unknown) => fn());
    this.#waiting = db
      .prepare<[Record<string, unknown>], number[]>(
        `SELECT coalesce(sum(priority > @p), 0), coalesce(sum(priority < @p), 0), coalesce(sum(priority = @p), 0),
           coalesce(sum(priority = @p AND seq < @seq), 0), coalesce(sum(priority = @p AND seq > @seq), 0)
         FROM records INDEXED BY records_backoff
         WHERE state = 'pending' AND ready_at > submitted_at AND grp = @grp AND ready_at > @now`,
      )
      .raw();
    // Two subqueries: SQLite reads min() and max() off the index only one per SELECT.
    this.#bounds = db
      .prepare<[Record<string, unknown>], (number | null)[]>(
        `SELECT (SELECT min(seq) FROM records WHERE state = 'pending' AND grp = @grp AND priority = @p),
                (SELECT max(seq) FROM records WHERE state = 'pending' AND grp = @grp AND priority = @p)`,
      )
      .raw();
  }

  /**
   * Where the record of `key` stands among the records ready at `now` (it may itself be waiting);
   * undefined unless pending, `'due'` (and nothing else read) when `unlessDue` and a timed
   * transition is due.
   */
  place(key: string, now: number, unlessDue: boolean): Placement | undefined | 'due' {
    type Placed = Placement | undefined | 'due';
    if (this.#db.inTransaction) return this.#placeFirst(key, now, unlessDue, true) as Placed;
    // Outside a transaction the first statement alone is a snapshot: when it is not enough, the
    // whole read runs again in a read transaction.
    const quick = this.#placeFirst(key, now, unlessDue, false);
    if (quick !== NEEDS_COUNTS) return quick;
    return this.#snapshot(() => this.#placeFirst(key, now, unlessDue, true)) as Placed;
  }

  #placeFirst(
    key: string,
    now: number,
    unlessDue: boolean,
    mayCount: boolean,
  ): Placement | undefined | 'due' | typeof NEEDS_COUNTS {
    const rows = this.#first.all({ key, now });
    const [head] = rows;
    if (unlessDue && head?.[0] === 1) return 'due';
    if (head === undefined || head[1] === null) return undefined;
    this.#mayCount = mayCount;
    try {
      const r: PendingRef = { seq: head[1] as number, grp: head[2] as string, priority: head[3] as number };
      return this.#place(r, rows, now);
    } catch (error) {
      if (error === NEEDS_COUNTS) return NEEDS_COUNTS;
      throw error;
    } finally {
      this.#mayCount = false;
    }
  }

  /** Places `r` from the rows of the first statement (their group columns from index 4 on). */
  #place(r: PendingRef, rows: readonly unknown[][], now: number): Placement {
    const params = { grp: r.grp, p: r.priority, seq: r.seq, now };
    let own: { row: GroupRow; counts: Record<Range, Count> } | undefined;
    const others: { row: GroupRow; counts: Record<Range, Count> }[] = [];
    for (const a of rows) {
      const row: GroupRow = {
        name: a[4] as string,
        pending: a[5] as number,
        lastClaimAt: (a[6] as number | null) ?? -Infinity,
        lastClaimSeq: a[7] as number,
        waiting: a[8] as number,
      };
      // Null: not counted (nothing known but that it is not negative).
      const first = (n: unknown): Count =>
        n === null ? { n: 0, exact: false } : { n: n as number, exact: (n as number) < FIRST_CAP };
      if (row.name === r.grp) {
        own = {
          row,
          counts: {
            above: first(a[9]),
            below: first(a[10]),
            before: first(a[11]),
            after: first(a[12]),
            at: { n: 0, exact: false },
          },
        };
      } else if (row.pending > row.waiting) {
        const none = { n: 0, exact: false };
        const counts = { above: first(a[9]), below: first(a[10]), at: none, before: none, after: none };
        others.push({ row, counts });
      }
    }
    if (own === undefined) throw new Error(`file queue: the group of pending record ${String(r.seq)} is not counted`);

    // Its own group: the ready records above its priority, and k.
    const ownWaiting = this.#waitingOf(own.row, params);
    const ownAbove = this.#solveOwn(own.row, own.counts, params) - ownWaiting.above;
    const k = own.counts.before.n - ownWaiting.before + 1;
    const ownHot = ownAbove > 0;

    let above = ownAbove;
    const first: number[] = [];
    const later: number[] = [];
    for (const { row, counts } of others) {
      const p = { ...params, grp: row.name };
      const waiting = this.#waitingOf(row, p);
      // Its turn comes first when it alone has no higher-priority work left, or, alike in that,
      // when it was claimed less recently (then by name), as pickHead orders heads.
      const turn = (hot: boolean): number => ((hot !== ownHot ? ownHot : turnsBefore(row, own.row)) ? k : k - 1);
      const { above: a, atCapped } = this.#solveOther(row, counts, waiting, turn, p);
      above += a;
      if (atCapped > 0) (turn(a > 0) === k ? first : later).push(atCapped);
    }
    const placement: Placement = { position: 0, k, above, first, later };
    return { ...placement, position: positionAt(placement, k) };
  }

  #waitingOf(row: GroupRow, params: Record<string, unknown>): Waiting {
    if (row.waiting === 0) return NONE_WAITING;
    this.#mustCount();
    const a = this.#waiting.get(params) ?? [0, 0, 0, 0, 0];
    return { above: a[0] ?? 0, below: a[1] ?? 0, at: a[2] ?? 0, before: a[3] ?? 0, after: a[4] ?? 0 };
  }

  /**
   * Completes the own group's counts until `above` and `before` are exact (pending records,
   * waiting ones included); returns `above`.
   */
  #solveOwn(row: GroupRow, c: Record<Range, Count>, params: Record<string, unknown>): number {
    const ranges: readonly Range[] = ['above', 'below', 'before', 'after'];
    // Every pending record of the group but itself is in exactly one of them.
    const total = row.pending - 1;
    const solved = (): boolean => {
      if (c.above.exact && c.before.exact) return true;
      const missing = ranges.filter((x) => !c[x].exact);
      const [only] = missing;
      if (missing.length !== 1 || only === undefined) return false;
      let rest = total;
      for (const x of ranges) if (x !== only) rest -= c[x].n;
      c[only] = { n: rest, exact: true };
      return true;
    };
    for (let round = 0; !solved(); round++) {
      if (c.above.exact && c.below.exact) {
        // Before and after add up to the rest: one count, of the side the seqs suggest is shorter.
        this.#mustCount();
        const [min, max] = this.#bounds.get(params) ?? [null, null];
        const seq = params.seq as number;
        const side = seq - (min ?? seq) <= (max ?? seq) - seq ? 'before' : 'after';
        c[side] = this.#count(side, undefined, params);
        continue;
      }
      for (const x of ranges) {
        if (c[x].exact) continue;
        c[x] = this.#count(x, CAPS[round], params);
        if (solved()) break;
      }
    }
    return c.above.n;
  }

  /**
   * Completes another group's counts until its ready records above, and its ready records at the
   * priority up to the limit its turn sets, are known; returns both.
   */
  #solveOther(
    row: GroupRow,
    c: Record<Range, Count>,
    waiting: Waiting,
    turn: (hot: boolean) => number,
    params: Record<string, unknown>,
  ): { above: number; atCapped: number } {
    const ranges: readonly Range[] = ['above', 'below', 'at'];
    const total = row.pending;
    const limit = (): number => turn(c.above.n - waiting.above > 0) + waiting.at;
    const solved = (): boolean => {
      const missing = ranges.filter((x) => !c[x].exact);
      const [only] = missing;
      if (missing.length === 1 && only !== undefined) {
        let rest = total;
        for (const x of ranges) if (x !== only) rest -= c[x].n;
        c[only] = { n: rest, exact: true };
        return true;
      }
      // Above known, and at least as many at the priority as its turn lets ahead.
      return missing.length === 0 || (c.above.exact && c.at.n >= limit());
    };
    for (let round = 0; !solved(); round++) {
      const cap = CAPS[round];
      for (const x of ranges) {
        if (c[x].exact) continue;
        if (x === 'at' && c.above.exact && (cap === undefined || limit() < cap)) {
          // Counted no further than its turn needs.
          const n = this.#countUpTo('at', limit(), params);
          c.at = { n, exact: n < limit() };
        } else {
          c[x] = this.#count(x, cap, params);
        }
        if (solved()) break;
      }
    }
    const above = c.above.n - waiting.above;
    const at = c.at.exact ? c.at.n - waiting.at : Infinity;
    return { above, atCapped: Math.max(0, Math.min(at, turn(above > 0))) };
  }

  #mustCount(): void {
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a signal to place(), never seen outside
    if (!this.#mayCount) throw NEEDS_COUNTS;
  }

  /** Pending records of a range, up to `cap` (undefined: all). */
  #count(range: Range, cap: number | undefined, params: Record<string, unknown>): Count {
    this.#mustCount();
    const id = `${range}:${String(cap)}`;
    let stmt = this.#counts.get(id);
    if (stmt === undefined) {
      const where = `state = 'pending' AND grp = @grp AND ${RANGES[range]}`;
      stmt = this.#db
        .prepare<[Record<string, unknown>], number>(
          cap === undefined
            ? `SELECT count(*) FROM records WHERE ${where}`
            : `SELECT count(*) FROM (SELECT 1 FROM records WHERE ${where} LIMIT ${String(cap)})`,
        )
        .pluck();
      this.#counts.set(id, stmt);
    }
    const n = stmt.get(params) ?? 0;
    return { n, exact: cap === undefined || n < cap };
  }

  /** Pending records of a range, up to `limit`. */
  #countUpTo(range: Range, limit: number, params: Record<string, unknown>): number {
    this.#mustCount();
    const id = `${range}:limit`;
    let stmt = this.#counts.get(id);
    if (stmt === undefined) {
      stmt = this.#db
        .prepare<[Record<string, unknown>], number>(
          `SELECT count(*) FROM (SELECT 1 FROM records WHERE state = 'pending' AND grp = @grp AND ${RANGES[range]}
             LIMIT @limit)`,
        )
        .pluck();
      this.#counts.set(id, stmt);
    }
    return stmt.get({ ...params, limit }) ?? 0;
  }
}

/** Thrown where a placement needs more statements than the first, outside a snapshot. */
const NEEDS_COUNTS: unique symbol = Symbol('needs counts');

/** Whether group `g` takes its turn before `other` among groups alike in higher-priority work. */
function turnsBefore(g: GroupRow, other: GroupRow): boolean {
  if (g.lastClaimAt !== other.lastClaimAt) return g.lastClaimAt < other.lastClaimAt;
  if (g.lastClaimSeq !== other.lastClaimSeq) return g.lastClaimSeq < other.lastClaimSeq;
  return g.name < other.name;
}
