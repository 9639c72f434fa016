import type { BatchRequest, RequestStatus, ResultInfo } from '../model.js';
import type { ResultManifest } from '../spi/cache.js';
import type { QueueRecord } from '../spi/queue.js';

/** ISO 8601 UTC text of an epoch-ms time. */
export function iso(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  // Formatting a Date is costly and many transitions share a millisecond under load: memoise the last few.
  const slot = ms & (ISO_SLOTS - 1);
  if (isoKeys[slot] === ms) return isoValues[slot];
  const text = isoText(ms);
  isoKeys[slot] = ms;
  isoValues[slot] = text;
  return text;
}

/**
 * `new Date(ms).toISOString()`, from a memoised per-second prefix ('…T12:34:56.') plus the
 * milliseconds. Reads of a long queue hit records submitted over many distinct milliseconds but
 * few seconds, so the millisecond memo above misses and this one does not.
 */
function isoText(ms: number): string {
  // Only whole milliseconds split exactly (Date truncates fractions toward zero; NaN throws).
  if (!Number.isInteger(ms)) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  const slot = second & (ISO_SLOTS - 1);
  let prefix = prefixValues[slot];
  if (prefixKeys[slot] !== second || prefix === undefined) {
    // Drop 'sssZ'; the text before the milliseconds depends on the second only.
    prefix = new Date(second * 1000).toISOString().slice(0, -4);
    prefixKeys[slot] = second;
    prefixValues[slot] = prefix;
  }
  const milli = ms - second * 1000;
  return `${prefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${String(milli)}Z`;
}

const ISO_SLOTS = 64;
const isoKeys = new Float64Array(ISO_SLOTS).fill(Number.NaN);
const isoValues: (string | undefined)[] = new Array<string | undefined>(ISO_SLOTS);
const prefixKeys = new Float64Array(ISO_SLOTS).fill(Number.NaN);
const prefixValues: (string | undefined)[] = new Array<string | undefined>(ISO_SLOTS);

/** The public view of a manifest. */
export function resultInfo(manifest: ResultManifest): ResultInfo {
  // A frozen manifest (as the memory cache keeps them) can be shared; anything else is copied.
  if (Object.isFrozen(manifest.formats)) {
    return { area: manifest.area, formats: manifest.formats };
  }
  const formats: ResultInfo['formats'] = {};
  for (const [name, info] of Object.entries(manifest.formats)) formats[name] = { ...info };
  return { area: manifest.area, formats };
}

/** The parts of a status that come straight from a queue record. */
export function recordStatus(record: QueueRecord): RequestStatus {
  const status: RequestStatus = {
    key: record.key,
    state: record.state,
    request: record.request,
    attempts: record.attempts,
  };
  assign(status, 'submittedAt', iso(record.submittedAt));
  assign(status, 'startedAt', iso(record.startedAt));
  assign(status, 'finishedAt', iso(record.finishedAt));
  assign(status, 'progress', record.progress);
  assign(status, 'message', record.message);
  if (record.cancelRequested === true) status.cancelRequested = true;
  if (record.error !== undefined) status.error = { ...record.error };
  return status;
}

/**
 * Status of a pending record in line: {@link recordStatus} plus position and ETA. A record never
 * started (the usual case: every submit) is built as one literal, so the object is allocated
 * once at its final size instead of growing field by field.
 */
export function queuedStatus(record: QueueRecord, position: number, etaMs: number | undefined): RequestStatus {
  if (
    etaMs !== undefined &&
    record.startedAt === undefined &&
    record.finishedAt === undefined &&
    record.progress === undefined &&
    record.message === undefined &&
    record.cancelRequested !== true &&
    record.error === undefined
  ) {
    return {
      key: record.key,
      state: record.state,
      request: record.request,
      attempts: record.attempts,
      submittedAt: iso(record.submittedAt) ?? '',
      position,
      etaMs,
    };
  }
  const status = recordStatus(record);
  status.position = position;
  if (etaMs !== undefined) status.etaMs = etaMs;
  return status;
}

/**
 * Status of a key whose result is in the cache; the queue record adds history when it still exists.
 * `submitted`: the request of a submit this status answers, which describes the request when the
 * record is not the run that made the result.
 */
export function completedStatus(
  record: QueueRecord | undefined,
  manifest: ResultManifest,
  submitted?: BatchRequest,
): RequestStatus {
  if (record?.state === 'completed' && record.startedAt !== undefined && record.finishedAt !== undefined) {
    // The usual case (every completion event, every read of a finished key): one literal in the
    // same field order as the general path below, instead of a copy grown field by field and then
    // pruned with deletes.
    return {
      key: record.key,
      state: 'completed',
      request: record.request,
      attempts: record.attempts,
      submittedAt: iso(record.submittedAt) ?? '',
      startedAt: iso(record.startedAt) ?? '',
      finishedAt: iso(record.finishedAt) ?? '',
      progress: 100,
      result: resultInfo(manifest),
    };
  }
  if (record?.state === 'completed') {
    const status: RequestStatus = {
      key: record.key,
      state: 'completed',
      request: record.request,
      attempts: record.attempts,
    };
    assign(status, 'submittedAt', iso(record.submittedAt));
    assign(status, 'startedAt', iso(record.startedAt));
    assign(status, 'finishedAt', iso(record.finishedAt));
    status.progress = 100;
    status.result = resultInfo(manifest);
    return status;
  }
  // The record describes a later run (a forced rebuild that failed, …) or is gone: the cache
  // speaks, and of the record only what the runs share (the request) is kept; its times and
  // attempts belong to the other run. Its sticky, group, priority and owner (not part of the key)
  // are that run's too: a submit served here is described by its own request instead.
  const request = submitted ?? record?.request;
  const status: RequestStatus =
    request === undefined
      ? { key: manifest.key, state: 'completed', attempts: 0 }
      : { key: manifest.key, state: 'completed', request, attempts: 0 };
  status.finishedAt = iso(manifest.createdAt) ?? '';
  status.progress = 100;
  status.result = resultInfo(manifest);
  return status;
}

function assign<K extends keyof RequestStatus>(
  status: RequestStatus,
  key: K,
  value: RequestStatus[K] | undefined,
): void {
  if (value !== undefined) status[key] = value;
}
