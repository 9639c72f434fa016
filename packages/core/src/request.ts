import { InvalidRequestError } from './errors.js';
import { assertValidKey, compareStrings, deriveKeyFromCanonical, GROUP_PATTERN, printable } from './keys.js';
import type { BatchRequest, JsonValue, Params } from './model.js';

/** A validated request with its key, group and priority filled in. */
export interface NormalizedRequest extends BatchRequest {
  key: string;
  group: string;
  priority: number;
}

/** Limits applied when a request is validated. */
export const REQUEST_LIMITS = {
  uriLength: 2048,
  paramNames: 256,
  paramValues: 1024,
  paramLength: 4096,
  bodyBytes: 256 * 1024,
  bodyDepth: 64,
  ownerLength: 200,
  maxPriority: 1_000_000,
} as const;

const KNOWN_FIELDS = new Set(['uri', 'params', 'body', 'key', 'sticky', 'group', 'priority', 'estimatedMs', 'owner']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Validates a request at the boundary and returns a normalized copy (params canonicalised, key
 * derived when absent, defaults applied). Throws {@link InvalidRequestError} naming the field.
 */
export function normalizeRequest(input: unknown): NormalizedRequest {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidRequestError('request', 'must be an object with at least a uri');
  }
  const req = input as Record<string, unknown>;
  for (const field of Object.keys(req)) {
    if (!KNOWN_FIELDS.has(field) && req[field] !== undefined) {
      throw new InvalidRequestError(field, `unknown field (expected one of ${[...KNOWN_FIELDS].join(', ')})`);
    }
  }
  const uri = req['uri'];
  if (typeof uri !== 'string' || uri.length === 0) throw new InvalidRequestError('uri', 'must be a non-empty string');
  if (uri.length > REQUEST_LIMITS.uriLength) {
    throw new InvalidRequestError('uri', `longer than ${String(REQUEST_LIMITS.uriLength)} characters`);
  }
  if (CONTROL.test(uri)) throw new InvalidRequestError('uri', `contains control characters: '${printable(uri)}'`);

  const out: NormalizedRequest = { uri, key: '', group: 'default', priority: 0 };
  const params = req['params'];
  let canonical: [string, string[]][] = [];
  if (params !== undefined) {
    // Canonicalised once: the stored params and the key are both built from it.
    const checked = checkParams(params);
    canonical = checked.canonical;
    out.params = checked.stored;
  }
  if (req['body'] !== undefined) {
    validateJson(req['body'], 'body', 0);
    const size = Buffer.byteLength(JSON.stringify(req['body']), 'utf8');
    if (size > REQUEST_LIMITS.bodyBytes) {
      throw new InvalidRequestError(
        'body',
        `${String(size)} bytes is over the ${String(REQUEST_LIMITS.bodyBytes)} byte limit`,
      );
    }
    out.body = structuredClone(req['body']) as JsonValue;
  }
  if (req['key'] !== undefined) {
    assertValidKey(req['key'], 'key');
    out.key = req['key'];
  } else {
    out.key = deriveKeyFromCanonical(uri, canonical, out.body);
  }
  if (req['sticky'] !== undefined) {
    if (typeof req['sticky'] !== 'boolean') throw new InvalidRequestError('sticky', 'must be a boolean');
    out.sticky = req['sticky'];
  }
  if (req['group'] !== undefined) {
    const group = req['group'];
    if (typeof group !== 'string') throw new InvalidRequestError('group', `must be a string, got ${describe(group)}`);
    if (!GROUP_PATTERN.test(group)) {
      throw new InvalidRequestError('group', `'${printable(group)}' must match ${String(GROUP_PATTERN)}`);
    }
    out.group = group;
  }
  if (req['priority'] !== undefined) {
    const p = req['priority'];
    if (typeof p !== 'number' || !Number.isInteger(p) || Math.abs(p) > REQUEST_LIMITS.maxPriority) {
      throw new InvalidRequestError(
        'priority',
        `must be an integer between -${String(REQUEST_LIMITS.maxPriority)} and ${String(REQUEST_LIMITS.maxPriority)}`,
      );
    }
    out.priority = p;
  }
  if (req['estimatedMs'] !== undefined) {
    const e = req['estimatedMs'];
    if (typeof e !== 'number' || !Number.isFinite(e) || e < 0) {
      throw new InvalidRequestError('estimatedMs', 'must be a finite number of milliseconds >= 0');
    }
    out.estimatedMs = e;
  }
  if (req['owner'] !== undefined) {
    const o = req['owner'];
    if (typeof o !== 'string' || o.length === 0 || o.length > REQUEST_LIMITS.ownerLength || CONTROL.test(o)) {
      throw new InvalidRequestError(
        'owner',
        `must be a string of 1-${String(REQUEST_LIMITS.ownerLength)} printable characters`,
      );
    }
    out.owner = o;
  }
  return out;
}

/** Validated params: the canonical pairs the key is derived from, and the object stored with the request. */
interface CheckedParams {
  readonly canonical: [string, string[]][];
  readonly stored: Params;
}

/**
 * Validates params and canonicalises them in one pass (this runs on every submit): names sorted,
 * value lists copied and sorted, names without values dropped. The stored object keeps a name
 * given as one string as one string, in canonical order so equal requests look equal when listed.
 */
function checkParams(params: unknown): CheckedParams {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new InvalidRequestError('params', 'must be an object of name -> string | string[]');
  }
  const entries = Object.entries(params as Record<string, unknown>);
  if (entries.length > REQUEST_LIMITS.paramNames) {
    throw new InvalidRequestError('params', `more than ${String(REQUEST_LIMITS.paramNames)} names`);
  }
  for (const [name, value] of entries) {
    if (name.length === 0 || name.length > REQUEST_LIMITS.paramLength || CONTROL.test(name)) {
      throw new InvalidRequestError(
        `params['${printable(name)}']`,
        'parameter names must be 1-4096 printable characters',
      );
    }
    if (typeof value === 'string') {
      checkValue(value, name, -1);
    } else if (Array.isArray(value)) {
      if (value.length > REQUEST_LIMITS.paramValues) {
        throw new InvalidRequestError(`params.${name}`, `more than ${String(REQUEST_LIMITS.paramValues)} values`);
      }
      for (let i = 0; i < value.length; i++) checkValue(value[i], name, i);
    } else {
      throw new InvalidRequestError(
        `params.${name}`,
        `must be a string or an array of strings, got ${describe(value)}`,
      );
    }
  }
  // Own property names are unique, so ordering the pairs by name is canonicalParams' order.
  sortByName(entries);
  const canonical: [string, string[]][] = [];
  const stored: Record<string, string | string[]> = {};
  for (const [name, value] of entries) {
    const single = typeof value === 'string';
    const values = single ? [value] : [...(value as string[])].sort(compareStrings);
    if (values.length === 0) continue;
    canonical.push([name, values]);
    setParam(stored, name, single ? value : values);
  }
  return { canonical, stored };
}

/** Sorts pairs by name; requests have a few params, and Array#sort allocates a work area on every call. */
function sortByName(entries: [string, unknown][]): void {
  if (entries.length > INSERTION_SORT_MAX) {
    entries.sort((a, b) => compareStrings(a[0], b[0]));
    return;
  }
  for (let i = 1; i < entries.length; i++) {
    const item = entries[i] as [string, unknown];
    let j = i - 1;
    for (; j >= 0 && (entries[j] as [string, unknown])[0] > item[0]; j--)
      entries[j + 1] = entries[j] as [string, unknown];
    entries[j + 1] = item;
  }
}

const INSERTION_SORT_MAX = 16;

function setParam(target: Record<string, string | string[]>, name: string, value: string | string[]): void {
  // A parameter named `__proto__` must stay a parameter, not vanish into the prototype slot.
  if (name === '__proto__')
    Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
  else target[name] = value;
}

/** Checks one value of param `name` (`index` -1 for a single string); the field name is built only on error. */
function checkValue(value: unknown, name: string, index: number): void {
  if (typeof value === 'string' && value.length <= REQUEST_LIMITS.paramLength) return;
  const field = index < 0 ? `params.${name}` : `params.${name}[${String(index)}]`;
  if (typeof value !== 'string') throw new InvalidRequestError(field, `must be a string, got ${describe(value)}`);
  throw new InvalidRequestError(field, `longer than ${String(REQUEST_LIMITS.paramLength)} characters`);
}

function validateJson(value: unknown, field: string, depth: number): void {
  if (depth > REQUEST_LIMITS.bodyDepth)
    throw new InvalidRequestError(field, `nested deeper than ${String(REQUEST_LIMITS.bodyDepth)}`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidRequestError(field, 'numbers must be finite');
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v: unknown, i) => {
      validateJson(v, `${field}[${String(i)}]`, depth + 1);
    });
    return;
  }
  if (typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null)
      throw new InvalidRequestError(field, 'must be a plain JSON object');
    for (const [k, v] of Object.entries(value)) validateJson(v, `${field}.${k}`, depth + 1);
    return;
  }
  throw new InvalidRequestError(field, `is not JSON (${describe(value)})`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
