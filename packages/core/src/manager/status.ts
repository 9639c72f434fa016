import type { RequestStatus, ResultInfo } from '../model.js';
import type { ResultManifest } from '../spi/cache.js';
import type { QueueRecord } from '../spi/queue.js';

/** ISO 8601 UTC text of an epoch-ms time. */
export function iso(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  // Formatting a Date is costly and many transitions share a millisecond under load: memoise the last few.
  const slot = ms & (ISO_SLOTS - 1);
  if (isoKeys[slot] === ms) return isoValues[slot];
  const text = new Date(ms).toISOString();
  isoKeys[slot] = ms;
  isoValues[slot] = text;
  return text;
}

const ISO_SLOTS = 64;
const isoKeys = new Float64Array(ISO_SLOTS).fill(Number.NaN);
const isoValues: (string | undefined)[] = new Array<string | undefined>(ISO_SLOTS);

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

/** Status of a key whose result is in the cache; the queue record adds history when it still exists. */
export function completedStatus(record: QueueRecord | undefined, manifest: ResultManifest): RequestStatus {
  const base: RequestStatus =
    record === undefined ? { key: manifest.key, state: 'completed', attempts: 0 } : recordStatus(record);
  base.state = 'completed';
  delete base.cancelRequested;
  delete base.error;
  delete base.progress;
  delete base.message;
  if (record === undefined || record.state !== 'completed') {
    // The record describes a later run (forced rebuild that failed, …) or is gone: the cache speaks.
    base.finishedAt = iso(manifest.createdAt) ?? '';
  }
  base.progress = 100;
  base.result = resultInfo(manifest);
  return base;
}

function assign<K extends keyof RequestStatus>(
  status: RequestStatus,
  key: K,
  value: RequestStatus[K] | undefined,
): void {
  if (value !== undefined) status[key] = value;
}
