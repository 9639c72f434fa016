import fs from 'node:fs';

import { BackendError } from '@armlib/core';

import { storageError } from './queue/sqlite-errors.js';

/**
 * Longest time, ms of the manager's clock, between two checks that a database file is still the
 * one at its path. A check is one `lstat` (about 3 µs); once per 100 ms that is 0.003 % of a
 * core, whatever the call rate, while a call that finds the check due pays it (a process idle for
 * longer checks on its next call, so a developer's `rm -rf` is noticed by the first call after
 * it). The interval is also the longest a busy process may go on writing into a removed file
 * after its removal (what it acknowledges then is lost): short enough to be a race with the
 * removal, not a state.
 */
export const IDENTITY_CHECK_INTERVAL_MS = 100;

/** Who owns the database, first in the messages: the queue's or the cache's. */
type Backend = 'file queue' | 'file cache';

/**
 * Notices that the database file a manager holds open is no longer the file at its path: the
 * shared directory was removed (`rm -rf var/armlib` while processes run) or the file moved or
 * replaced. SQLite keeps reading and writing the open (now unlinked or moved) file without a
 * word, in WAL mode too, while every process that opens the path from then on gets a different,
 * fresh database: the old process's writes would be acknowledged and seen by nobody else.
 *
 * The open file's identity (device and inode) is recorded when the database is opened and
 * compared with the path's, with `lstat`, at most once per {@link IDENTITY_CHECK_INTERVAL_MS}
 * ({@link check}, on every call: a clock read and a comparison otherwise) and on every sweep
 * ({@link checkNow}). better-sqlite3 does not hand out its descriptor, so the open file cannot
 * be `fstat`ed; the identity read right after the open stands for it. SQLite changes neither:
 * checkpoints, WAL truncation, VACUUM and schema migrations write the database file in place,
 * so an intact database is never reported.
 *
 * Once lost, it stays lost: every check throws a non-retryable {@link BackendError} naming the
 * path, until the manager is closed and a new one opens the path again (a new process does).
 */
export class DatabaseIdentity {
  readonly #path: string;
  readonly #backend: Backend;
  readonly #dev: bigint;
  readonly #ino: bigint;
  /** When the path was last compared, by the manager's clock. */
  #checkedAt: number;
  /** What happened to the file, once noticed (then every check throws). */
  #lost: string | undefined;

  /**
   * Records the identity of the file at `path`: call right after opening the database there.
   *
   * @param now - the manager's clock: the first periodic check is due an interval later.
   */
  constructor(path: string, backend: Backend, now: number) {
    this.#path = path;
    this.#backend = backend;
    const stat = lstatOrMissing(path, backend);
    if (stat === undefined) {
      throw new BackendError(`${backend}: ${path} vanished right after it was opened`);
    }
    this.#dev = stat.dev;
    this.#ino = stat.ino;
    this.#checkedAt = now;
  }

  /** True once the file was found removed or replaced. */
  get lost(): boolean {
    return this.#lost !== undefined;
  }

  /**
   * Throws once the file is known to be removed or replaced; compares the path again when the
   * last comparison is {@link IDENTITY_CHECK_INTERVAL_MS} old (or in the future: a clock that
   * stepped back checks at once rather than never).
   */
  check(now: number): void {
    if (this.#lost !== undefined) throw this.#error();
    const since = now - this.#checkedAt;
    if (since >= 0 && since < IDENTITY_CHECK_INTERVAL_MS) return;
    this.checkNow(now);
  }

  /** Compares the path now (the sweep's check, whatever the interval); throws as {@link check}. */
  checkNow(now: number): void {
    if (this.#lost !== undefined) throw this.#error();
    this.#checkedAt = now;
    let stat: fs.BigIntStats | undefined;
    try {
      stat = lstatOrMissing(this.#path, this.#backend);
    } catch {
      // Cannot tell (no permission on the directory any more, an I/O error): the database is
      // left to report its own failures, and the next check asks again.
      return;
    }
    if (stat === undefined) this.#lost = 'was removed (its directory deleted, or the file moved away)';
    else if (stat.dev !== this.#dev || stat.ino !== this.#ino) {
      this.#lost = 'was replaced by another file (its directory deleted and created again, or the file swapped)';
    } else return;
    throw this.#error();
  }

  /** A new error for each call, so that its stack names the call that failed. */
  #error(): BackendError {
    return new BackendError(
      `${this.#backend}: ${this.#path} ${String(this.#lost)} after this process opened it; its writes would go to a ` +
        'file no other process sees. Close this manager and open a new one (restart the process) to use the ' +
        'database at that path',
      { retryable: false },
    );
  }
}

/** The path's lstat with 64-bit device and inode numbers, or undefined when nothing is there. */
function lstatOrMissing(path: string, backend: Backend): fs.BigIntStats | undefined {
  try {
    return fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    // A component of the path is no longer a directory (the directory was replaced by a file).
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw storageError(error, backend, `inspecting ${path}`);
  }
}
