import type Database from 'better-sqlite3';

import { isBusyError } from './sqlite-errors.js';

/** One call waiting for the next group commit. */
interface PendingCall {
  readonly what: string;
  readonly body: () => unknown;
  /** Writes nothing (or guards its own writes): runs without a savepoint of its own. */
  readonly readOnly: boolean;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** How one call of a batch ended (inside the transaction; it counts only if the transaction commits). */
interface Outcome {
  readonly ok: boolean;
  readonly value: unknown;
}

/**
 * How a batch waits for the write lock another process holds: not inside SQLite's busy handler,
 * which sleeps the whole event loop in steps of 1, 2, 5, 10… ms, when a transaction holds the
 * lock for a fraction of a millisecond. The batch is tried again from the event loop instead:
 * at once a few times, then on short timers, for at most `busyTimeoutMs` in all.
 */
export interface LockWait {
  /** Longest wait for the lock, ms; then the batch fails with SQLite's busy error. */
  readonly busyTimeoutMs: number;
  /** Sets the connection's busy timeout (0 while a batch tries the lock, restored after). */
  setBusyTimeout(ms: number): void;
}

/** Tries of a waiting batch from `setImmediate`, before it waits on timers. */
const IMMEDIATE_TRIES = 8;
/** Timer waits between tries, ms, the last one repeated. */
const TIMER_STEPS_MS = [1, 1, 2, 2, 4];

/** What the owner of a {@link GroupCommit} keeps alongside each transaction (batched metrics). */
export interface GroupCommitHooks {
  /** A mark of the owner's per-transaction bookkeeping, taken before a call runs. */
  mark(): number;
  /** The call that ran since `mark` was rolled back to its savepoint: forget what it noted. */
  undo(mark: number): void;
  /** Runs inside the transaction after every call, right before COMMIT. */
  beforeCommit(): void;
  /** The transaction committed. */
  committed(): void;
  /** The transaction rolled back (as a whole). */
  rolledBack(): void;
}

/**
 * Group commit: the calls made during one turn of the event loop (concurrent workers completing
 * and claiming, a batch of submits) run in one `BEGIN IMMEDIATE … COMMIT`, each inside its own
 * SAVEPOINT, in the order they were made.
 *
 * - A call that throws is rolled back to its savepoint; the others are not affected.
 * - Every call's promise settles only after the transaction committed (or failed as a whole, in
 *   which case every call of it fails with that error and none of their changes stays).
 * - Each call is still atomic with its condition: nothing runs between its check and its write.
 *
 * A commit costs the same few WAL frames (pages) whether it carries one transition or twenty
 * touching the same pages (group counts, the uri's statistics, neighbouring index pages), and
 * the write lock is taken once: that is the whole gain.
 */
export class GroupCommit {
  readonly #db: Database.Database;
  readonly #hooks: GroupCommitHooks;
  readonly #toError: (error: unknown, what: string) => Error;
  readonly #savepoint: Database.Transaction<(fn: () => unknown) => unknown>;
  readonly #transaction: Database.Transaction<(calls: readonly PendingCall[], outcomes: Outcome[]) => void>;
  readonly #lockWait: LockWait | undefined;
  #calls: PendingCall[] = [];
  #scheduled = false;
  /** Transactions begun (counted inside, once BEGIN got the lock): tells a busy BEGIN from a later failure. */
  #begun = 0;
  /** While the batch waits for the lock: when it first found it busy, and how often. */
  #waitingSince: number | undefined;
  #tries = 0;

  /**
   * @param lockWait - when given, a batch that finds the write lock held waits for it from the
   *   event loop (see {@link LockWait}); without it, inside SQLite's busy handler.
   */
  constructor(
    db: Database.Database,
    hooks: GroupCommitHooks,
    toError: (error: unknown, what: string) => Error,
    lockWait?: LockWait,
  ) {
    this.#db = db;
    this.#hooks = hooks;
    this.#toError = toError;
    this.#lockWait = lockWait;
    // Called inside the batch's transaction, better-sqlite3 runs it as SAVEPOINT … RELEASE, and
    // rolls back to the savepoint when it throws.
    this.#savepoint = db.transaction((fn: () => unknown) => fn());
    this.#transaction = db.transaction((calls: readonly PendingCall[], outcomes: Outcome[]) => {
      this.#begun++;
      // A call alone needs no savepoint: the transaction is its own.
      if (calls.length === 1 && calls[0] !== undefined) outcomes.push({ ok: true, value: calls[0].body() });
      else for (const call of calls) outcomes.push(this.#run(call));
      this.#hooks.beforeCommit();
    });
  }

  /** True while calls wait for the next commit. */
  get pending(): boolean {
    return this.#calls.length > 0;
  }

  /**
   * Queues `body` for the next group commit; resolves with its result once committed.
   * `readOnly` bodies write nothing (or only inside savepoints of their own): they skip the
   * savepoint a transition needs.
   */
  add<T>(what: string, body: () => T, readOnly = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#calls.push({ what, body, readOnly, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After the current turn: every call made by the callbacks and promise jobs of this turn
        // joins the same transaction.
        setImmediate(() => {
          this.#flushOrWait();
        });
      }
    });
  }

  /**
   * Runs every waiting call now, in one transaction (synchronously; their promises settle later),
   * waiting for the write lock inside SQLite if another process holds it: for callers that need
   * the calls committed before they go on.
   */
  flush(): void {
    this.#commit(false);
  }

  /** The scheduled flush: a batch that finds the lock held tries again from the event loop. */
  #flushOrWait(): void {
    this.#commit(this.#lockWait !== undefined);
  }

  #commit(mayWait: boolean): void {
    this.#scheduled = false;
    const calls = this.#calls;
    if (calls.length === 0) return;
    this.#calls = [];
    const outcomes: Outcome[] = [];
    const lockWait = this.#lockWait;
    const begun = this.#begun;
    try {
      if (mayWait) lockWait?.setBusyTimeout(0);
      this.#transaction.immediate(calls, outcomes);
    } catch (error) {
      if (mayWait && this.#begun === begun && isBusyError(error) && this.#waitForLock(calls)) return;
      this.#settleWait();
      this.#hooks.rolledBack();
      // The whole transaction is gone: no call of it took effect.
      for (const call of calls) call.reject(this.#toError(error, call.what));
      return;
    } finally {
      if (mayWait && lockWait !== undefined) lockWait.setBusyTimeout(lockWait.busyTimeoutMs);
    }
    this.#settleWait();
    this.#hooks.committed();
    calls.forEach((call, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok === true) call.resolve(outcome.value);
      else call.reject(outcome?.value);
    });
  }

  /**
   * BEGIN found the lock held and nothing ran: puts the calls back ahead of any made since and
   * schedules the next try. False once the batch has waited `busyTimeoutMs`.
   */
  #waitForLock(calls: PendingCall[]): boolean {
    const limit = this.#lockWait?.busyTimeoutMs ?? 0;
    const now = performance.now();
    this.#waitingSince ??= now;
    if (now - this.#waitingSince >= limit) return false;
    this.#calls = calls.concat(this.#calls);
    this.#scheduled = true;
    const tries = this.#tries++;
    if (tries < IMMEDIATE_TRIES) {
      setImmediate(() => {
        this.#flushOrWait();
      });
    } else {
      const step = TIMER_STEPS_MS[Math.min(tries - IMMEDIATE_TRIES, TIMER_STEPS_MS.length - 1)] ?? 1;
      setTimeout(
        () => {
          this.#flushOrWait();
        },
        Math.min(step, Math.max(0, limit - (now - this.#waitingSince))),
      );
    }
    return true;
  }

  #settleWait(): void {
    this.#waitingSince = undefined;
    this.#tries = 0;
  }

  /** One call in its savepoint. Throws (failing the batch) only when SQLite dropped the whole transaction. */
  #run(call: PendingCall): Outcome {
    const mark = this.#hooks.mark();
    try {
      return { ok: true, value: call.readOnly ? call.body() : this.#savepoint(call.body) };
    } catch (error) {
      this.#hooks.undo(mark);
      // Some errors (SQLITE_FULL, SQLITE_IOERR…) make SQLite roll back the transaction itself.
      if (!this.#db.inTransaction) throw error;
      return { ok: false, value: this.#toError(error, call.what) };
    }
  }
}
