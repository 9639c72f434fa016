import type { ErrorInfo, NormalizedRequest, QueueRecord, QueueState } from '@armlib/core';

import { TTL_ATTR } from './layout.js';

/** An item as the document client reads and writes it. */
export type Item = Record<string, unknown>;

/**
 * Short attribute names of a record item (every expression goes through `#names`, so reserved
 * words are no concern; short names keep items, and so write units, small).
 */
export const A = Object.freeze({
  key: 'k',
  request: 'rq',
  sticky: 'sty',
  state: 'st',
  group: 'g',
  priority: 'pr',
  owner: 'ow',
  seq: 'sq',
  submittedAt: 'sa',
  readyAt: 'ra',
  pendingExpiresAt: 'pe',
  startedAt: 'sta',
  finishedAt: 'fa',
  attempts: 'at',
  maxAttempts: 'ma',
  leaseToken: 'tok',
  leaseExpiresAt: 'le',
  workerId: 'wid',
  progress: 'pg',
  message: 'msg',
  cancelRequested: 'cr',
  error: 'err',
  retainUntil: 'ru',
  groupSlot: 'gsl',
  /**
   * Id of the call that made the last fenced transition: a call whose write landed but whose answer
   * was lost (the SDK retried it and met the failed condition) recognises its own write by it.
   */
  writeId: 'wi',
  /**
   * Id of the enqueue that made the record, kept through every later write: a retried enqueue whose
   * first attempt landed, and whose record has since run and finished, must not replace it.
   */
  enqueueId: 'ei',
  ttl: TTL_ATTR,
});

/** ExpressionAttributeNames for every record attribute: `#k` → `k`, and so on. */
export const NAMES: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.values(A).map((a) => [`#${a}`, a])),
);

function num(item: Item, name: string): number | undefined {
  const v = item[name];
  return typeof v === 'number' ? v : undefined;
}

function str(item: Item, name: string): string | undefined {
  const v = item[name];
  return typeof v === 'string' ? v : undefined;
}

/** TTL value (epoch seconds) for a retention time in epoch ms; DynamoDB deletes the item some time after. */
export function ttlSeconds(retainUntil: number): number {
  return Math.ceil(retainUntil / 1000);
}

/** The request as stored: sticky lives in its own attribute so that it can be upgraded in place. */
export function encodeRequest(request: NormalizedRequest): string {
  const rest: Partial<NormalizedRequest> = { ...request };
  delete rest.sticky;
  return JSON.stringify(rest);
}

function decodeError(v: unknown): ErrorInfo | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const e = v as Record<string, unknown>;
  return {
    code: typeof e['code'] === 'string' ? e['code'] : 'UNKNOWN',
    message: typeof e['message'] === 'string' ? e['message'] : '',
    retryable: e['retryable'] === true,
  };
}

/** The stored form of an error. */
export function encodeError(error: ErrorInfo): Item {
  return { code: error.code, message: error.message, retryable: error.retryable };
}

/** A record item back to a {@link QueueRecord}, or undefined when the item is not a record. */
export function decodeRecord(item: Item | undefined): QueueRecord | undefined {
  if (item === undefined) return undefined;
  const key = str(item, A.key);
  const rq = str(item, A.request);
  const state = str(item, A.state) as QueueState | undefined;
  if (key === undefined || rq === undefined || state === undefined) return undefined;
  const request = JSON.parse(rq) as NormalizedRequest;
  if (item[A.sticky] === true) request.sticky = true;
  const r: { -readonly [K in keyof QueueRecord]: QueueRecord[K] } = {
    key,
    request,
    state,
    group: str(item, A.group) ?? request.group,
    priority: num(item, A.priority) ?? request.priority,
    seq: num(item, A.seq) ?? 0,
    submittedAt: num(item, A.submittedAt) ?? 0,
    readyAt: num(item, A.readyAt) ?? 0,
    attempts: num(item, A.attempts) ?? 0,
    maxAttempts: num(item, A.maxAttempts) ?? 1,
  };
  const owner = str(item, A.owner);
  if (owner !== undefined) r.owner = owner;
  const optionalNumbers = [
    ['pendingExpiresAt', A.pendingExpiresAt],
    ['startedAt', A.startedAt],
    ['finishedAt', A.finishedAt],
    ['leaseExpiresAt', A.leaseExpiresAt],
    ['progress', A.progress],
    ['retainUntil', A.retainUntil],
  ] as const;
  for (const [field, attr] of optionalNumbers) {
    const v = num(item, attr);
    if (v !== undefined) r[field] = v;
  }
  const token = str(item, A.leaseToken);
  if (token !== undefined) r.leaseToken = token;
  const worker = str(item, A.workerId);
  if (worker !== undefined) r.workerId = worker;
  const message = str(item, A.message);
  if (message !== undefined) r.message = message;
  if (item[A.cancelRequested] === true) r.cancelRequested = true;
  const error = decodeError(item[A.error]);
  if (error !== undefined) r.error = error;
  return r;
}

/** Whether a record is hidden from reads: finished and past its retention. */
export function isExpired(record: QueueRecord, now: number): boolean {
  return record.retainUntil !== undefined && record.retainUntil <= now && isFinished(record.state);
}

/**
 * Whether a pending record's pending deadline has passed: exactly what the sweep's expiry writes
 * (never claimed: the first claim removes the deadline; `attempts` 0, as the sweep's condition has it).
 */
export function isLapsed(record: QueueRecord, now: number): boolean {
  return (
    record.state === 'pending' &&
    record.pendingExpiresAt !== undefined &&
    record.pendingExpiresAt <= now &&
    record.attempts === 0
  );
}

/**
 * The record as reads see it at `now`. A pending record past its deadline is expired, as the memory
 * and file queues report it (they apply due transitions at every call), though no sweep wrote it
 * yet: `expired`, with its deadline as `finishedAt` and no retention. The sweep that writes it
 * gives it the sweep's time and retention, as memory and file give the time of the call that
 * applied it: so `finishedAt` of an expired record may move from the deadline to a later time once.
 */
export function asSeenAt(record: QueueRecord, now: number): QueueRecord {
  return isLapsed(record, now) ? lapsedView(record) : record;
}

/** A lapsed pending record as the expired record it is (see {@link asSeenAt}). */
export function lapsedView(record: QueueRecord): QueueRecord {
  return { ...record, state: 'expired', finishedAt: record.pendingExpiresAt ?? record.submittedAt };
}

/** Whether a state is terminal. */
export function isFinished(state: QueueState): boolean {
  return state !== 'pending' && state !== 'running';
}
