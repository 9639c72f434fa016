import { InvalidRequestError } from '../errors.js';
import { assertValidKey, showValue } from '../keys.js';
import { CACHE_AREAS } from '../model.js';
import type { CacheArea } from '../model.js';

/**
 * Checks a cache area argument at an adapter's boundary (the SPI is typed, but JavaScript callers
 * and configuration are not); throws `InvalidRequestError` naming `area`.
 */
export function assertCacheArea(area: unknown): CacheArea {
  if (!CACHE_AREAS.includes(area as CacheArea)) {
    const shown = typeof area === 'string' ? `'${area}'` : String(area);
    throw new InvalidRequestError('area', `must be 'persistent' or 'temporary', got ${shown}`);
  }
  return area as CacheArea;
}

/**
 * An opaque `list()` cursor resuming after `lastKey`. `tag` names the adapter and its cursor
 * version, so that a cursor of another cache is refused rather than misread.
 */
export function encodeKeyCursor(tag: string, lastKey: string): string {
  return Buffer.from(`${tag}:${lastKey}`, 'utf8').toString('base64url');
}

/** The key a cursor of {@link encodeKeyCursor} resumes after; `InvalidRequestError` naming `cursor` otherwise. */
export function decodeKeyCursor(tag: string, cursor: unknown): string {
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const prefix = `${tag}:`;
  const key = text.startsWith(prefix) ? text.slice(prefix.length) : '';
  try {
    assertValidKey(key);
  } catch {
    throw new InvalidRequestError('cursor', 'is not a cursor returned by list() of this cache');
  }
  return key;
}

/**
 * The fence of a commit's options, checked at an adapter's boundary: undefined, or a finite
 * number. Anything else (`NaN` would pass every fence check, `Infinity` would fence the key off
 * for good, a string would be stored where a number is read back) is an `InvalidRequestError`
 * naming `fence`, thrown before anything is published: the staged result stays open.
 */
export function commitFence(options: unknown): number | undefined {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object') throw new InvalidRequestError('options', 'must be an object');
  return checkFence((options as { fence?: unknown }).fence);
}

/** {@link commitFence} of the fence alone (no options object to build on a synchronous commit). */
export function checkFence(fence: unknown): number | undefined {
  if (fence === undefined) return undefined;
  if (typeof fence !== 'number' || !Number.isFinite(fence)) {
    throw new InvalidRequestError('fence', `must be a finite number, got ${showValue(fence)}`);
  }
  return fence;
}
