import type { JsonValue } from '../../model.js';
import type { QueueRecord } from '../../spi/queue.js';

/**
 * Heap bytes of a finished record with a minimal request, bookkeeping included (entry, record,
 * request object, LRU and index slots); measured on Node 20 (a few hundred bytes).
 */
const RECORD_OVERHEAD = 400;
/** A string's header beyond its characters. */
const STRING = 20;
/** A property or element slot. */
const SLOT = 8;
/** Stop walking a body after this many bytes: the estimate only needs to be about right. */
const BODY_WALK_LIMIT = 1 << 22;

/**
 * Approximate heap memory of a finished record, in bytes, for the byte-sized LRU: a calibrated
 * constant plus the request's strings and body, computed by a walk that allocates nothing (no
 * serialisation). Within a small factor of what the heap really holds, which is all a memory
 * bound needs.
 */
export function estimateRecordBytes(record: QueueRecord): number {
  const request = record.request;
  let n = RECORD_OVERHEAD + record.key.length + request.uri.length + record.group.length;
  if (record.owner !== undefined) n += record.owner.length + STRING;
  if (request.params !== undefined) {
    for (const name in request.params) {
      const value = request.params[name];
      n += name.length + STRING + SLOT;
      if (typeof value === 'string') n += value.length + STRING;
      else if (value !== undefined) {
        n += 3 * SLOT;
        for (const v of value) n += v.length + STRING + SLOT;
      }
    }
  }
  if (request.body !== undefined) n += SLOT + jsonBytes(request.body, BODY_WALK_LIMIT);
  if (record.error !== undefined) n += record.error.code.length + record.error.message.length + 4 * SLOT + 2 * STRING;
  if (record.message !== undefined) n += record.message.length + STRING;
  return n;
}

function jsonBytes(value: JsonValue, budget: number): number {
  if (value === null || typeof value === 'boolean') return 0;
  if (typeof value === 'number') return 12;
  if (typeof value === 'string') return value.length + STRING;
  let n = 4 * SLOT;
  if (Array.isArray(value)) {
    for (const v of value as readonly JsonValue[]) {
      n += SLOT + jsonBytes(v, budget - n);
      if (n >= budget) return n;
    }
    return n;
  }
  const obj = value as { readonly [key: string]: JsonValue };
  for (const k in obj) {
    n += SLOT + jsonBytes(obj[k] as JsonValue, budget - n);
    if (n >= budget) return n;
  }
  return n;
}
