import { ArmError, BackendError } from '@armlib/core';

/**
 * SQLite result codes (extended ones start with these) worth retrying: another process holds a
 * lock longer than the busy timeout, or a snapshot went stale under a concurrent writer.
 */
const RETRYABLE_PREFIXES = ['SQLITE_BUSY', 'SQLITE_LOCKED'];

function sqliteCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** SQLITE_BUSY or one of its extended codes: another connection holds the lock. */
export function isBusyError(error: unknown): boolean {
  return sqliteCode(error)?.startsWith('SQLITE_BUSY') === true;
}

/**
 * What the file queue throws for a failure below it: armlib errors pass unchanged; SQLite
 * errors (and anything else the driver or the file system throws) become a `BackendError`
 * keeping the original as `cause`, retryable for lock contention only.
 */
export function toArmError(error: unknown, what: string): ArmError {
  if (ArmError.is(error)) return error;
  const code = sqliteCode(error);
  const retryable = code !== undefined && RETRYABLE_PREFIXES.some((p) => code.startsWith(p));
  const detail = error instanceof Error ? error.message : String(error);
  return new BackendError(`file queue: ${what} failed${code === undefined ? '' : ` (${code})`}: ${detail}`, {
    retryable,
    cause: error,
  });
}
