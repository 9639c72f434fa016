import type { Item } from './codec.js';

/** DynamoDB's limit on one item, names and values together: 400 KB. */
export const DYNAMODB_ITEM_LIMIT = 400 * 1024;

/**
 * Room an enqueued record keeps for what later transitions add to it: an error (code and a message
 * of up to 1,000 characters, up to 3 bytes each in UTF-8), a progress message (the same), the lease
 * token, worker id, times and write ids. A record at the limit could be enqueued and then fail every
 * transition; so the enqueue is refused instead.
 */
export const TRANSITION_ROOM = 16 * 1024;

/** The largest item an enqueue writes. */
export const MAX_ENQUEUE_ITEM_BYTES = DYNAMODB_ITEM_LIMIT - TRANSITION_ROOM;

/**
 * The size DynamoDB charges an item against its limit: the UTF-8 bytes of every attribute name
 * plus each value's size (strings: UTF-8 bytes; numbers: about one byte per two significant
 * digits, plus one; booleans and null: 1; maps and lists: 3 bytes plus 1 per element plus their
 * contents, map keys counted as names). See "Item sizes and formats" in the DynamoDB guide.
 */
export function itemSize(item: Item): number {
  let size = 0;
  for (const [name, value] of Object.entries(item)) {
    if (value === undefined) continue; // not written (removeUndefinedValues)
    size += Buffer.byteLength(name, 'utf8') + valueSize(value);
  }
  return size;
}

function valueSize(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') return numberSize(value);
  if (typeof value === 'boolean' || value === null) return 1;
  if (value instanceof Uint8Array) return value.byteLength;
  if (Array.isArray(value)) {
    let size = 3;
    for (const v of value as unknown[]) size += 1 + valueSize(v);
    return size;
  }
  if (value instanceof Set) {
    let size = 0;
    for (const v of value as Set<unknown>) size += valueSize(v);
    return size;
  }
  if (typeof value === 'object') {
    let size = 3;
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      size += 1 + Buffer.byteLength(k, 'utf8') + valueSize(v);
    }
    return size;
  }
  return 0;
}

/** Significant digits (leading and trailing zeros trimmed) / 2, rounded up, plus one. */
function numberSize(n: number): number {
  const mantissa = Math.abs(n).toExponential().split('e')[0] ?? '';
  const digits = mantissa.replace('.', '').replace(/0+$/, '').length;
  return Math.ceil(Math.max(digits, 1) / 2) + 1;
}
