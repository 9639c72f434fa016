import { BackendError, QUEUE_STATES } from '@armlib/core';
import type { ErrorInfo, NormalizedRequest, QueueRecord, QueueState } from '@armlib/core';

/** One row of the `records` table, as better-sqlite3 returns it (absent fields are null). */
export interface RecordRow {
  seq: number;
  key: string;
  state: QueueState;
  grp: string;
  priority: number;
  owner: string | null;
  submitted_at: number;
  ready_at: number;
  pending_expires_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  attempts: number;
  max_attempts: number;
  lease_token: string | null;
  lease_expires_at: number | null;
  worker_id: string | null;
  progress: number | null;
  message: string | null;
  cancel_requested: number | null;
  /** ErrorInfo as JSON. */
  error: string | null;
  retain_until: number | null;
  /** Time of the next timed transition (lease expiry, pending expiry, end of retention). */
  due_at: number | null;
  /** NormalizedRequest as JSON. */
  request: string;
}

/**
 * Every column of `records`, in the order {@link rawToRow} reads them. Rows are fetched as arrays
 * (better-sqlite3's `raw` mode) and turned into objects here: building a 23-key object from
 * native code costs about twice as much as fetching the array and building it in JavaScript.
 */
export const RECORD_COLUMNS =
  'seq, key, state, grp, priority, owner, submitted_at, ready_at, pending_expires_at, started_at, finished_at, ' +
  'attempts, max_attempts, lease_token, lease_expires_at, worker_id, progress, message, cancel_requested, error, ' +
  'retain_until, due_at, request';

/** A row fetched in raw mode with {@link RECORD_COLUMNS} (in that order). */
export function rawToRow(a: readonly unknown[]): RecordRow {
  return rawToRowAt(a, 0);
}

/** {@link rawToRow} of the columns from index `o` on (after others a statement reads first). */
export function rawToRowAt(a: readonly unknown[], o: number): RecordRow {
  return {
    seq: a[o + 0] as number,
    key: a[o + 1] as string,
    state: a[o + 2] as QueueState,
    grp: a[o + 3] as string,
    priority: a[o + 4] as number,
    owner: a[o + 5] as string | null,
    submitted_at: a[o + 6] as number,
    ready_at: a[o + 7] as number,
    pending_expires_at: a[o + 8] as number | null,
    started_at: a[o + 9] as number | null,
    finished_at: a[o + 10] as number | null,
    attempts: a[o + 11] as number,
    max_attempts: a[o + 12] as number,
    lease_token: a[o + 13] as string | null,
    lease_expires_at: a[o + 14] as number | null,
    worker_id: a[o + 15] as string | null,
    progress: a[o + 16] as number | null,
    message: a[o + 17] as string | null,
    cancel_requested: a[o + 18] as number | null,
    error: a[o + 19] as string | null,
    retain_until: a[o + 20] as number | null,
    due_at: a[o + 21] as number | null,
    request: a[o + 22] as string,
  };
}

type MutableRecord = { -readonly [K in keyof QueueRecord]: QueueRecord[K] };

const KNOWN_STATES: ReadonlySet<string> = new Set(QUEUE_STATES);

/**
 * The error code a claim stores on a record it could not read and so failed at once (see
 * {@link readRow}): what a row damaged by hand, or written by another armlib version, becomes.
 */
export const UNREADABLE_RECORD = 'UNREADABLE_RECORD';

/**
 * The SPI view of a row: optional fields present only when set, exactly as the memory queue
 * builds its records (a claim drops `pendingExpiresAt`, a requeue drops what the run reported,
 * a finished record keeps it), so both adapters hand out the same shapes. Throws the
 * non-retryable `BackendError` of {@link readRow} for a row it cannot read.
 */
export function rowToRecord(row: RecordRow, request?: NormalizedRequest): QueueRecord {
  const read = readRow(row, request);
  if (read instanceof BackendError) throw read;
  return read;
}

/**
 * {@link rowToRecord}, or, for a row that cannot be read (a state outside QueueState, a request
 * or error that is not a JSON object), the `BackendError` that says which record and why:
 * returned, not thrown, so that a claim, a list or a cancel can step past the row instead of
 * failing on it every time (such a row never becomes readable by itself).
 */
export function readRow(row: RecordRow, request?: NormalizedRequest): QueueRecord | BackendError {
  let parsedRequest: NormalizedRequest;
  let error: ErrorInfo | undefined;
  try {
    if (!KNOWN_STATES.has(row.state)) throw new Error(`unknown state '${row.state}'`);
    // The caller's object when it has one: parsing the stored JSON again would give an equal copy.
    parsedRequest = request ?? (parseObject(row.request, 'request') as unknown as NormalizedRequest);
    if (row.error !== null) error = parseObject(row.error, 'error') as unknown as ErrorInfo;
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new BackendError(`file queue: the record of '${row.key}' (seq ${String(row.seq)}) cannot be read: ${why}`, {
      cause,
      retryable: false,
    });
  }
  const r: MutableRecord = {
    key: row.key,
    request: parsedRequest,
    state: row.state,
    group: row.grp,
    priority: row.priority,
    seq: row.seq,
    submittedAt: row.submitted_at,
    readyAt: row.ready_at,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
  };
  if (row.owner !== null) r.owner = row.owner;
  if (row.pending_expires_at !== null) r.pendingExpiresAt = row.pending_expires_at;
  if (row.started_at !== null) r.startedAt = row.started_at;
  if (row.finished_at !== null) r.finishedAt = row.finished_at;
  if (row.lease_token !== null) r.leaseToken = row.lease_token;
  if (row.lease_expires_at !== null) r.leaseExpiresAt = row.lease_expires_at;
  if (row.worker_id !== null) r.workerId = row.worker_id;
  if (row.progress !== null) r.progress = row.progress;
  if (row.message !== null) r.message = row.message;
  if (row.cancel_requested === 1) r.cancelRequested = true;
  if (error !== undefined) r.error = error;
  if (row.retain_until !== null) r.retainUntil = row.retain_until;
  return r;
}

/** A stored JSON column that must hold an object (a string, a number or null would make a broken record). */
function parseObject(json: string, column: string): Record<string, unknown> {
  const value: unknown = JSON.parse(json);
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${column} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** The stored form of an error: only the fields of ErrorInfo. */
export function errorJson(error: ErrorInfo): string {
  return JSON.stringify({ code: error.code, message: error.message, retryable: error.retryable });
}

/** States in which a record is finished (terminal). */
export const FINISHED_STATES: ReadonlySet<QueueState> = new Set(['completed', 'failed', 'cancelled', 'expired']);
