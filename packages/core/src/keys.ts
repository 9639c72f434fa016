import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';

import { InvalidRequestError } from './errors.js';
import type { BatchRequest, JsonValue, Params } from './model.js';

/** Every key, derived or chosen, matches this: safe as a URL segment, a file name and an S3 name. */
export const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** Format names (`csv`, `xlsx`, `tar.gz`). */
export const FORMAT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
/** Group names. */
export const GROUP_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const KEY_VERSION = 'armlib-key-v1';
const HASH_HEX_CHARS = 32; // 128 bits
const PREFIX_MAX = 60;

/** Checks a key against {@link KEY_PATTERN}; throws {@link InvalidRequestError} naming `field`. */
export function assertValidKey(key: unknown, field = 'key'): asserts key is string {
  // A key is checked several times in a row on the hot path (manager, then each adapter call):
  // the last valid key is remembered ('' is never valid, so the initial value passes nothing).
  if (key === lastValidKey) return;
  if (typeof key !== 'string') throw new InvalidRequestError(field, `must be a string, got ${typeof key}`);
  if (!isValidKey(key)) {
    throw new InvalidRequestError(
      field,
      `'${printable(key)}' is not a valid key: 1-200 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit, no '..' and no trailing '.'`,
    );
  }
  lastValidKey = key;
}

let lastValidKey = '';

/**
 * {@link KEY_PATTERN}, no trailing '.' and no '..', in one pass over the characters: it runs on
 * every submit and status read, and one loop costs less than a regex and two scans.
 */
export function isValidKey(key: string): boolean {
  const n = key.length;
  if (n === 0 || n > 200) return false;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122))) {
      // Dot, underscore and dash: anywhere but first; a dot never after a dot.
      if (i === 0 || (c !== 46 && c !== 95 && c !== 45) || (c === 46 && prev === 46)) return false;
    }
    prev = c;
  }
  return prev !== 46;
}

/** Checks a format name against {@link FORMAT_PATTERN}. */
export function assertValidFormat(format: unknown, field = 'format'): asserts format is string {
  // Checked by the job and again by the adapter on every write: remember the last valid one.
  if (format === lastValidFormat) return;
  if (typeof format !== 'string' || !FORMAT_PATTERN.test(format) || format.includes('..') || format.endsWith('.')) {
    throw new InvalidRequestError(
      field,
      `'${printable(String(format))}' is not a valid format: 1-32 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  lastValidFormat = format;
}

let lastValidFormat = '';

/**
 * Sorted, de-aliased parameters: names sorted, each value list sorted, single strings turned into
 * one-element lists, names with no values dropped (as an HTTP query would).
 */
export function canonicalParams(params: Params | undefined): [string, string[]][] {
  if (params === undefined) return [];
  const out: [string, string[]][] = [];
  for (const name of Object.keys(params).sort(compareStrings)) {
    const raw = params[name];
    const values = typeof raw === 'string' ? [raw] : [...(raw ?? [])].sort(compareStrings);
    if (values.length > 0) out.push([name, values]);
  }
  return out;
}

/**
 * Derives the key of a request: a readable prefix from the uri, then 128 bits of SHA-256 over a
 * canonical, unambiguous JSON encoding of (uri, sorted params with sorted values, body).
 * sticky, group, priority, estimatedMs and owner are not part of it.
 */
export function deriveKey(request: Pick<BatchRequest, 'uri' | 'params' | 'body'>): string {
  return deriveKeyFromCanonical(request.uri, canonicalParams(request.params), request.body);
}

/**
 * {@link deriveKey} for a caller that already holds the {@link canonicalParams} of the request
 * (request validation builds them anyway), so they are not sorted twice on every submit.
 */
export function deriveKeyFromCanonical(
  uri: string,
  params: readonly (readonly [string, readonly string[]])[],
  body: JsonValue | undefined,
): string {
  // Same text as canonicalJson of the tuple: params are already in canonical order, only the body needs sorting.
  const canonical = JSON.stringify([KEY_VERSION, uri, params, body === undefined ? null : sortDeep(body)]);
  const hash = sha256Hex(canonical).slice(0, HASH_HEX_CHARS);
  const prefix = readablePrefix(uri);
  return prefix === '' ? hash : `${prefix}-${hash}`;
}

/** The key a request is stored under: its own `key` if given (validated), else the derived one. */
export function keyOf(request: BatchRequest): string {
  if (request.key !== undefined) {
    assertValidKey(request.key, 'key');
    return request.key;
  }
  return deriveKey(request);
}

/** JSON with object keys sorted at every level: one text per value. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortDeep(value));
}

function sortDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep);
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    // A null-prototype target keeps a `__proto__` member as data; on `{}` it would be lost and collide with `{}`.
    const out = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(obj).sort(compareStrings)) out[k] = sortDeep(obj[k]);
    return out;
  }
  return value;
}

// One-shot hashing (Node >= 20.12) skips the Hash object; fall back where it is missing.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;
function sha256Hex(text: string): string {
  return oneShot === undefined
    ? createHash('sha256').update(text, 'utf8').digest('hex')
    : oneShot('sha256', text, 'hex');
}

// Uris repeat far more than they vary: remember recent prefixes (bounded).
const prefixes = new Map<string, string>();
const PREFIX_MEMO = 1024;

function readablePrefix(uri: string): string {
  let prefix = prefixes.get(uri);
  if (prefix === undefined) {
    if (prefixes.size >= PREFIX_MEMO) prefixes.clear();
    prefix = slugOf(uri);
    prefixes.set(uri, prefix);
  }
  return prefix;
}

function slugOf(uri: string): string {
  const slug = uri
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')
    .replace(/[?#].*$/, '')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return slug.slice(0, PREFIX_MAX).replace(/_+$/, '');
}

/** Code-unit order, independent of locale. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Shows control characters in error messages instead of printing them. */
export function printable(s: string): string {
  const shown = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  // eslint-disable-next-line no-control-regex
  return shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A short, safe rendering of any input for error messages. */
export function showValue(value: unknown): string {
  if (typeof value === 'string') return `'${printable(value)}'`;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === null) return 'null';
  return Array.isArray(value) ? 'an array' : typeof value;
}
