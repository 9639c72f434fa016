import { assertValidContentType, MAX_CONTENT_TYPE_LENGTH } from '../content-type.js';
import { InvalidRequestError, LeaseLostError } from '../errors.js';
import { assertValidKey, showValue } from '../keys.js';
import { CACHE_AREAS } from '../model.js';
import type { CacheArea } from '../model.js';
import type { CacheGetOptions, CacheWriteOptions, CommitOptions } from '../spi/cache.js';
import { optionsArgumentError } from './arguments.js';
import { checkByteRange } from './bytes.js';

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
  const { fence, stillHeld } = options as { fence?: unknown; stillHeld?: unknown };
  if (stillHeld !== undefined && typeof stillHeld !== 'function') {
    throw new InvalidRequestError('stillHeld', `must be a function, got ${showValue(stillHeld)}`);
  }
  return checkFence(fence);
}

/**
 * At the commit point: throws `LeaseLostError` when a commit's `stillHeld` (see `CommitOptions`)
 * says the committing worker's lease ran out. The options are checked by {@link commitFence} first.
 */
export function assertStillHeld(key: string, stillHeld: CommitOptions['stillHeld']): void {
  if (stillHeld !== undefined && !stillHeld()) {
    throw new LeaseLostError(key, `commit of '${key}' refused: the lease of the worker committing it ran out first`);
  }
}

/** {@link commitFence} of the fence alone (no options object to build on a synchronous commit). */
export function checkFence(fence: unknown): number | undefined {
  if (fence === undefined) return undefined;
  if (typeof fence !== 'number' || !Number.isFinite(fence)) {
    throw new InvalidRequestError('fence', `must be a finite number, got ${showValue(fence)}`);
  }
  return fence;
}

/*
 * The options arguments of the CacheManager calls, checked at an adapter's boundary. The SPI is
 * typed, but JavaScript callers are not: a `null` or a string must be an InvalidRequestError
 * naming the parameter, not a TypeError from deep inside the adapter, and every adapter must
 * say the same thing (the conformance suite checks it). Each runs before any lookup, so an
 * absent key does not hide a malformed call.
 */

/** The options of `get`: an object (undefined for none) whose `range` has the shape of one. */
export function cacheGetOptions(options: unknown): CacheGetOptions {
  const range = checkByteRange(cacheOptions(options).range);
  return range === undefined ? {} : { range };
}

/**
 * The `expiresInSec` of `url`'s options: a positive, finite number of seconds (an adapter may
 * narrow it further, as presigned URLs do).
 */
export function cacheUrlExpiry(options: unknown): number {
  const expires = cacheOptions(options).expiresInSec;
  if (typeof expires !== 'number' || !(expires > 0) || !Number.isFinite(expires)) {
    throw new InvalidRequestError('expiresInSec', `must be a positive number of seconds, got ${showValue(expires)}`);
  }
  return expires;
}

/**
 * The options of `list`: `limit` a positive integer (also when the options are missing: it is
 * required), `cursor` absent or one that {@link encodeKeyCursor} made with `tag`. Returns the
 * limit and the key the page starts after.
 */
export function cacheListOptions(tag: string, options: unknown): { limit: number; after: string | undefined } {
  const { limit, cursor } = cacheOptions(options);
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidRequestError('limit', `must be a positive integer, got ${showValue(limit)}`);
  }
  return { limit, after: cursor === undefined ? undefined : decodeKeyCursor(tag, cursor) };
}

/** The `olderThan` of `sweep`: a time in epoch ms (any number but NaN: infinities sweep all or nothing). */
export function checkOlderThan(olderThan: unknown): number {
  if (typeof olderThan !== 'number' || Number.isNaN(olderThan)) {
    throw new InvalidRequestError('olderThan', `must be a time in epoch ms, got ${showValue(olderThan)}`);
  }
  return olderThan;
}

function cacheOptions(options: unknown): Record<string, unknown> {
  const error = optionsArgumentError(options, 'options');
  if (error !== undefined) throw error;
  return (options ?? {}) as Record<string, unknown>;
}

/** Comma-separated content-coding tokens (RFC 9110 §8.4), printable ASCII only. */
const CONTENT_CODING = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;

/**
 * The options of a staged result's `write`, checked at an adapter's boundary: a media type and
 * content codings as an HTTP header carries them. Results are served with these as headers (by the
 * host, or by an object store's signed URL), so a CR/LF, NUL, non-ASCII or oversized value must
 * never be stored; throws `InvalidRequestError` naming `contentType` or `contentEncoding`.
 */
export function cacheWriteOptions(options: unknown): CacheWriteOptions {
  const { contentType, contentEncoding } = (options as Partial<CacheWriteOptions> | undefined) ?? {};
  if (typeof contentType !== 'string' || contentType.trim() === '') {
    throw new InvalidRequestError('contentType', 'must be a non-empty string');
  }
  assertValidContentType(contentType, 'contentType');
  if (contentEncoding === undefined) return { contentType };
  if (
    typeof contentEncoding !== 'string' ||
    contentEncoding.trim() === '' ||
    contentEncoding.length > MAX_CONTENT_TYPE_LENGTH ||
    !CONTENT_CODING.test(contentEncoding)
  ) {
    throw new InvalidRequestError(
      'contentEncoding',
      'must be content codings as an HTTP header carries them (e.g. "gzip", "gzip, br")',
    );
  }
  return { contentType, contentEncoding };
}
