import { ArmError, BackendError } from '@armlib/core';

/**
 * Storage failures of the file backend, the queue's and the cache's alike: whether one is worth
 * retrying is decided here, once, from SQLite's result code or the file system's errno code.
 *
 * The rule: a passing condition (a lock held by another process, a full disk, an I/O error,
 * exhausted memory or descriptors) is retryable: the same call may succeed later, and a failed
 * call changed nothing (SQLite rolls the statement or the whole transaction back, and the cache
 * puts the files a failed commit moved in back in staging). Damage (a corrupt or foreign file), misuse, a
 * constraint, a permission or a path that cannot be opened is not: the same call fails again
 * until someone acts. Anything unknown is not retryable either.
 */

/**
 * errno codes of the file system after which the same call may succeed later: contention,
 * exhausted descriptors, memory or space, an interrupted call, an I/O error.
 */
const RETRYABLE_ERRNO = new Set([
  'EAGAIN',
  'EBUSY',
  'EMFILE',
  'ENFILE',
  'ENOMEM',
  'ENOSPC',
  'EDQUOT',
  'EINTR',
  'EIO',
  'ETIMEDOUT',
]);

/**
 * SQLite's primary result codes (an extended code starts with its primary one) that report a
 * passing condition:
 * - `SQLITE_BUSY`, `SQLITE_LOCKED`: another connection holds the lock past the busy timeout, or a
 *   snapshot went stale under a concurrent writer;
 * - `SQLITE_FULL`: the disk (or the quota) is full: `ENOSPC` and `EDQUOT` of the data files;
 * - `SQLITE_IOERR`: the operating system failed a read, write, fsync, truncate, lock or mapping
 *   (`SQLITE_IOERR_WRITE`, `_FSYNC`, `_SHORT_READ`…): `EIO` of the data files. SQLite reports
 *   damage it recognises as `SQLITE_CORRUPT`; see {@link PERMANENT_IOERR} for the two that are not;
 * - `SQLITE_PROTOCOL`: a race on the WAL's locks that SQLite's own retries did not outlast;
 * - `SQLITE_NOMEM`: memory ran out, as `ENOMEM` of the data files (whose `EMFILE` and `ENFILE`,
 *   descriptors running out, are retryable too).
 *
 * `SQLITE_CANTOPEN` is not among them: SQLite reports it without the errno, so a passing
 * `EMFILE` cannot be told from the permission, missing directory, directory at the path or
 * refused symlink that cause it far more often; and here it arises only when a manager opens its
 * database (a connection keeps the database, its WAL and its shared memory open until it
 * closes), where retrying would hide a configuration error as a hiccup.
 */
const RETRYABLE_SQLITE = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_FULL',
  'SQLITE_IOERR',
  'SQLITE_PROTOCOL',
  'SQLITE_NOMEM',
]);

/**
 * Extended I/O error codes that report damage, not a passing failure: the file system said the
 * data is corrupt (`SQLITE_IOERR_CORRUPTFS`), or a checksum did not match (`SQLITE_IOERR_DATA`).
 */
const PERMANENT_IOERR = new Set(['SQLITE_IOERR_CORRUPTFS', 'SQLITE_IOERR_DATA']);

/** The `code` of an error (SQLite's `SQLITE_…`, or an errno code such as `ENOSPC`), if it has one. */
function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? code : undefined;
}

/** SQLite's primary result code of `code` (`SQLITE_IOERR` for `SQLITE_IOERR_FSYNC`). */
function primaryCode(code: string): string {
  const second = code.indexOf('_', 'SQLITE_'.length);
  return second === -1 ? code : code.slice(0, second);
}

/** SQLITE_BUSY or one of its extended codes: another connection holds the lock. */
export function isBusyError(error: unknown): boolean {
  return codeOf(error)?.startsWith('SQLITE_BUSY') === true;
}

/**
 * Whether a failure of the file backend's storage (an error thrown by `better-sqlite3` or by
 * `node:fs`) may succeed when the same call is made again later: true for the passing conditions
 * listed in {@link RETRYABLE_SQLITE} and {@link RETRYABLE_ERRNO}, false for everything else
 * (damage, misuse, constraints, permissions, errors without a code).
 */
export function isRetryableStorageError(error: unknown): boolean {
  const code = codeOf(error);
  if (code === undefined) return false;
  if (!code.startsWith('SQLITE_')) return RETRYABLE_ERRNO.has(code);
  return RETRYABLE_SQLITE.has(primaryCode(code)) && !PERMANENT_IOERR.has(code);
}

/**
 * The {@link BackendError} the file backend throws for a failure below it: armlib errors pass
 * unchanged; others (SQLite's, the file system's, anything else) become a `BackendError` whose
 * message names the code, keeping the original as `cause`, retryable as
 * {@link isRetryableStorageError} says.
 *
 * @param backend - who failed, first in the message: `file queue` or `file cache`.
 * @param what - what failed (`claim`, `opening /var/armlib/cache.sqlite`…).
 */
export function storageError(error: unknown, backend: 'file queue' | 'file cache', what: string): ArmError {
  if (ArmError.is(error)) return error;
  const code = codeOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  // Node's errors start with their code already ("ENOSPC: no space left on device, write").
  const named = code === undefined || detail.startsWith(`${code}:`) ? '' : ` (${code})`;
  return new BackendError(`${backend}: ${what} failed${named}: ${detail}`, {
    retryable: isRetryableStorageError(error),
    cause: error,
  });
}

/**
 * What the file queue throws for a failure below it: {@link storageError} as the `file queue`.
 */
export function toArmError(error: unknown, what: string): ArmError {
  return storageError(error, 'file queue', what);
}
