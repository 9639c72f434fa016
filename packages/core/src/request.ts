import { InvalidRequestError } from './errors.js';
import { cannotRead } from './util/arguments.js';
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
  /** All names and values of the params together, in characters. */
  paramsLength: 256 * 1024,
  bodyBytes: 256 * 1024,
  bodyDepth: 64,
  ownerLength: 200,
  maxPriority: 1_000_000,
  /** 30 days: a larger hint is a mistake, and would make every ETA built on it meaningless. */
  maxEstimatedMs: 30 * 24 * 3600_000,
} as const;

const KNOWN_FIELDS = new Set(['uri', 'params', 'body', 'key', 'sticky', 'group', 'priority', 'estimatedMs', 'owner']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Validates a request at the boundary and returns a normalized copy (params canonicalised, key
 * derived when absent, defaults applied). Throws {@link InvalidRequestError} naming the field.
 */
export function normalizeRequest(input: unknown): NormalizedRequest {
  try {
    return normalize(input);
  } catch (error) {
    if (InvalidRequestError.is(error)) throw error;
    // A getter that throws, a proxy trap, a value that cannot be read: still the caller's input.
    throw cannotRead('request', error);
  }
}

/**
 * {@link normalizeRequest} proper. Each field is read once and the copy is built from what was
 * checked, so a getter or proxy that answers differently on a second read cannot slip past.
 */
function normalize(input: unknown): NormalizedRequest {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidRequestError('request', 'must be an object with at least a uri');
  }
  const req: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if (!KNOWN_FIELDS.has(field)) {
      throw new InvalidRequestError(
        printable(field),
        `unknown field (expected one of ${[...KNOWN_FIELDS].join(', ')})`,
      );
    }
    req[field] = value;
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
  const body = req['body'];
  if (body !== undefined) {
    const copy = copyJson(body, 'body', 0, []);
    const size = Buffer.byteLength(JSON.stringify(copy), 'utf8');
    if (size > REQUEST_LIMITS.bodyBytes) {
      throw new InvalidRequestError(
        'body',
        `${String(size)} bytes is over the ${String(REQUEST_LIMITS.bodyBytes)} byte limit`,
      );
    }
    out.body = copy;
  }
  const key = req['key'];
  if (key !== undefined) {
    assertValidKey(key, 'key');
    out.key = key;
  } else {
    out.key = deriveKeyFromCanonical(uri, canonical, out.body);
  }
  const sticky = req['sticky'];
  if (sticky !== undefined) {
    if (typeof sticky !== 'boolean') throw new InvalidRequestError('sticky', 'must be a boolean');
    out.sticky = sticky;
  }
  const group = req['group'];
  if (group !== undefined) {
    if (typeof group !== 'string') throw new InvalidRequestError('group', `must be a string, got ${describe(group)}`);
    if (!GROUP_PATTERN.test(group)) {
      throw new InvalidRequestError('group', `'${printable(group)}' must match ${String(GROUP_PATTERN)}`);
    }
    out.group = group;
  }
  const p = req['priority'];
  if (p !== undefined) {
    if (typeof p !== 'number' || !Number.isInteger(p) || Math.abs(p) > REQUEST_LIMITS.maxPriority) {
      throw new InvalidRequestError(
        'priority',
        `must be an integer between -${String(REQUEST_LIMITS.maxPriority)} and ${String(REQUEST_LIMITS.maxPriority)}`,
      );
    }
    out.priority = p;
  }
  const e = req['estimatedMs'];
  if (e !== undefined) {
    if (typeof e !== 'number' || !Number.isFinite(e) || e < 0 || e > REQUEST_LIMITS.maxEstimatedMs) {
      throw new InvalidRequestError(
        'estimatedMs',
        `must be a number of milliseconds from 0 to ${String(REQUEST_LIMITS.maxEstimatedMs)} (30 days)`,
      );
    }
    out.estimatedMs = e;
  }
  const o = req['owner'];
  if (o !== undefined) {
    if (!isValidOwner(o)) {
      throw new InvalidRequestError(
        'owner',
        `must be a string of 1-${String(REQUEST_LIMITS.ownerLength)} printable characters`,
      );
    }
    out.owner = o;
  }
  return out;
}

/** True for an owner a request may name: 1-200 printable characters. */
export function isValidOwner(owner: unknown): owner is string {
  return (
    typeof owner === 'string' && owner.length > 0 && owner.length <= REQUEST_LIMITS.ownerLength && !CONTROL.test(owner)
  );
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
  // URLSearchParams, a Map or a class instance keeps its pairs out of its own properties: read as
  // an object it would be empty, and different requests would share one key.
  const proto: unknown = Object.getPrototypeOf(params);
  if (proto !== Object.prototype && proto !== null) {
    throw new InvalidRequestError(
      'params',
      `must be a plain object of name -> string | string[], got ${Object.prototype.toString.call(params).slice(8, -1)} (for URLSearchParams, build one: each name with searchParams.getAll(name))`,
    );
  }
  const entries = Object.entries(params as Record<string, unknown>);
  if (entries.length > REQUEST_LIMITS.paramNames) {
    throw new InvalidRequestError('params', `more than ${String(REQUEST_LIMITS.paramNames)} names`);
  }
  let length = 0;
  for (const entry of entries) {
    const [name, value] = entry;
    if (name.length === 0 || name.length > REQUEST_LIMITS.paramLength || CONTROL.test(name)) {
      throw new InvalidRequestError(
        `params['${printable(name)}']`,
        'parameter names must be 1-4096 printable characters',
      );
    }
    length += name.length;
    if (typeof value === 'string') {
      checkValue(value, name, -1);
      length += value.length;
    } else if (Array.isArray(value)) {
      const count = value.length;
      if (count > REQUEST_LIMITS.paramValues) {
        throw new InvalidRequestError(`params.${name}`, `more than ${String(REQUEST_LIMITS.paramValues)} values`);
      }
      // Copied as checked: the stored values and the key come from this copy, not a second read.
      const copy = new Array<string>(count);
      for (let i = 0; i < count; i++) {
        const item: unknown = value[i];
        checkValue(item, name, i);
        copy[i] = item as string;
        length += (item as string).length;
      }
      entry[1] = copy;
    } else {
      throw new InvalidRequestError(
        `params.${name}`,
        `must be a string or an array of strings, got ${describe(value)}`,
      );
    }
  }
  if (length > REQUEST_LIMITS.paramsLength) {
    throw new InvalidRequestError(
      'params',
      `${String(length)} characters of names and values in all, over the ${String(REQUEST_LIMITS.paramsLength)} limit`,
    );
  }
  // Own property names are unique, so ordering the pairs by name is canonicalParams' order.
  sortByName(entries);
  const canonical: [string, string[]][] = [];
  const stored: Record<string, string | string[]> = {};
  for (const [name, value] of entries) {
    const single = typeof value === 'string';
    // The array is this function's own copy (see above): sorted in place.
    const values = single ? [value] : (value as string[]).sort(compareStrings);
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

/**
 * Checks a JSON value and copies it in the same walk (the copy is what is stored and hashed), with
 * `ancestors` to tell a cycle from deep nesting.
 */
function copyJson(value: unknown, field: string, depth: number, ancestors: object[]): JsonValue {
  if (depth > REQUEST_LIMITS.bodyDepth)
    throw new InvalidRequestError(field, `nested deeper than ${String(REQUEST_LIMITS.bodyDepth)}`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidRequestError(field, 'numbers must be finite');
    return value;
  }
  if (typeof value !== 'object') throw new InvalidRequestError(field, `is not JSON (${describe(value)})`);
  if (ancestors.includes(value)) throw new InvalidRequestError(field, 'is cyclic (refers to an object that holds it)');
  ancestors.push(value);
  try {
    if (Array.isArray(value)) {
      const items: unknown[] = value;
      return items.map((v, i) => copyJson(v, `${field}[${String(i)}]`, depth + 1, ancestors));
    }
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null)
      throw new InvalidRequestError(field, 'must be a plain JSON object');
    const copy: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(value)) {
      // A member named `__proto__` stays a member, as in params.
      Object.defineProperty(copy, k, {
        value: copyJson(v, `${field}.${printable(k)}`, depth + 1, ancestors),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return copy;
  } finally {
    ancestors.pop();
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
