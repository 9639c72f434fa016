import type { ErrorInfo, QueueState } from '../../model.js';
import type { NewQueueEntry, QueueRecord } from '../../spi/queue.js';

type MutableRecord = { -readonly [K in keyof QueueRecord]: QueueRecord[K] };

// Every transition builds a fresh record (callers may keep the old one), always assigning fields
// in the same order so that records share a few hidden classes and stay fast to read.

// `pendingExpiresAt` is carried only by records never claimed: `base` leaves it out, so a claim
// drops it for good; only a pending record finishing (cancel, expiry) keeps it, for the history.
function base(prev: QueueRecord, state: QueueState, readyAt: number, attempts: number): MutableRecord {
  const r: MutableRecord = {
    key: prev.key,
    request: prev.request,
    state,
    group: prev.group,
    priority: prev.priority,
    seq: prev.seq,
    submittedAt: prev.submittedAt,
    readyAt,
    attempts,
    maxAttempts: prev.maxAttempts,
  };
  if (prev.owner !== undefined) r.owner = prev.owner;
  return r;
}

/** A new pending record for an enqueued entry. */
export function newPendingRecord(entry: NewQueueEntry, seq: number, now: number): QueueRecord {
  const request = entry.request;
  const expiresAt = entry.pendingExpiresAt;
  if (request.owner === undefined && expiresAt !== undefined) {
    // The usual submit, as one literal: allocated at its final size (a field added later goes to
    // a separate property store, one more object per record).
    return {
      key: entry.key,
      request,
      state: 'pending',
      group: request.group,
      priority: request.priority,
      seq,
      submittedAt: now,
      readyAt: now,
      attempts: 0,
      maxAttempts: entry.maxAttempts,
      pendingExpiresAt: expiresAt,
    };
  }
  const r: MutableRecord = {
    key: entry.key,
    request,
    state: 'pending',
    group: request.group,
    priority: request.priority,
    seq,
    submittedAt: now,
    readyAt: now,
    attempts: 0,
    maxAttempts: entry.maxAttempts,
  };
  if (request.owner !== undefined) r.owner = request.owner;
  if (entry.pendingExpiresAt !== undefined) r.pendingExpiresAt = entry.pendingExpiresAt;
  return r;
}

/**
 * pending → running under a fresh lease; progress, message and cancel request start blank, and
 * the pending deadline goes for good (only a request never started expires).
 */
export function runningRecord(
  prev: QueueRecord,
  now: number,
  token: string,
  leaseExpiresAt: number,
  workerId: string,
): QueueRecord {
  if (prev.owner === undefined && prev.error === undefined) {
    // The usual claim, as one literal (see newPendingRecord).
    return {
      key: prev.key,
      request: prev.request,
      state: 'running',
      group: prev.group,
      priority: prev.priority,
      seq: prev.seq,
      submittedAt: prev.submittedAt,
      readyAt: prev.readyAt,
      attempts: prev.attempts + 1,
      maxAttempts: prev.maxAttempts,
      startedAt: now,
      leaseToken: token,
      leaseExpiresAt,
      workerId,
    };
  }
  const r = base(prev, 'running', prev.readyAt, prev.attempts + 1);
  r.startedAt = now;
  r.leaseToken = token;
  r.leaseExpiresAt = leaseExpiresAt;
  r.workerId = workerId;
  if (prev.error !== undefined) r.error = prev.error;
  return r;
}

/** A running record with its lease extended and, when given, new progress and message. */
export function heartbeatRecord(
  prev: QueueRecord,
  leaseExpiresAt: number,
  progress: number | undefined,
  message: string | undefined,
): QueueRecord {
  const r = runningCopy(prev);
  r.leaseExpiresAt = leaseExpiresAt;
  if (progress !== undefined) r.progress = progress;
  if (message !== undefined) r.message = message;
  return r;
}

/** The live record with its request made sticky (a sticky enqueue joined it). */
export function stickyRecord(prev: QueueRecord): QueueRecord {
  return { ...prev, request: { ...prev.request, sticky: true } };
}

/** A running record whose holder is asked to stop. */
export function cancelRequestedRecord(prev: QueueRecord): QueueRecord {
  const r = runningCopy(prev);
  r.cancelRequested = true;
  return r;
}

function runningCopy(prev: QueueRecord): MutableRecord {
  const r = base(prev, 'running', prev.readyAt, prev.attempts);
  if (prev.startedAt !== undefined) r.startedAt = prev.startedAt;
  if (prev.leaseToken !== undefined) r.leaseToken = prev.leaseToken;
  if (prev.leaseExpiresAt !== undefined) r.leaseExpiresAt = prev.leaseExpiresAt;
  if (prev.workerId !== undefined) r.workerId = prev.workerId;
  if (prev.progress !== undefined) r.progress = prev.progress;
  if (prev.message !== undefined) r.message = prev.message;
  if (prev.cancelRequested !== undefined) r.cancelRequested = prev.cancelRequested;
  if (prev.error !== undefined) r.error = prev.error;
  return r;
}

/**
 * Back to pending (retry, release, lease expiry), keeping `seq` so it returns to its old place.
 * Everything about the abandoned run goes; the last error stays for the status view.
 */
export function pendingAgainRecord(
  prev: QueueRecord,
  readyAt: number,
  attempts: number,
  error: ErrorInfo | undefined,
): QueueRecord {
  const r = base(prev, 'pending', readyAt, attempts);
  const e = error ?? prev.error;
  if (e !== undefined) r.error = e;
  return r;
}

/** A terminal record; lease fields go, what the run reported (worker, progress) stays. */
export function finishedRecord(
  prev: QueueRecord,
  state: QueueState,
  now: number,
  retainUntil: number | undefined,
  error: ErrorInfo | undefined,
): QueueRecord {
  const { startedAt, workerId } = prev;
  if (
    startedAt !== undefined &&
    workerId !== undefined &&
    retainUntil !== undefined &&
    error === undefined &&
    prev.owner === undefined &&
    prev.pendingExpiresAt === undefined &&
    prev.progress === undefined &&
    prev.message === undefined &&
    prev.cancelRequested === undefined &&
    prev.error === undefined
  ) {
    // The usual completion of a run, as one literal (see newPendingRecord), same field order.
    return {
      key: prev.key,
      request: prev.request,
      state,
      group: prev.group,
      priority: prev.priority,
      seq: prev.seq,
      submittedAt: prev.submittedAt,
      readyAt: prev.readyAt,
      attempts: prev.attempts,
      maxAttempts: prev.maxAttempts,
      startedAt,
      finishedAt: now,
      workerId,
      retainUntil,
    };
  }
  const r = base(prev, state, prev.readyAt, prev.attempts);
  if (prev.pendingExpiresAt !== undefined) r.pendingExpiresAt = prev.pendingExpiresAt;
  if (prev.startedAt !== undefined) r.startedAt = prev.startedAt;
  r.finishedAt = now;
  if (prev.workerId !== undefined) r.workerId = prev.workerId;
  if (prev.progress !== undefined) r.progress = prev.progress;
  if (prev.message !== undefined) r.message = prev.message;
  if (prev.cancelRequested !== undefined) r.cancelRequested = prev.cancelRequested;
  const e = error ?? prev.error;
  if (e !== undefined) r.error = e;
  if (retainUntil !== undefined) r.retainUntil = retainUntil;
  return r;
}
