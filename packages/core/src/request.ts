import { InvalidRequestError } from './errors.js';
import { assertValidKey, canonicalParams, deriveKey, GROUP_PATTERN, printable } from './keys.js';
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
  if (params !== undefined) out.params = validateParams(params);
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
    out.key = deriveKey(out);
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

function validateParams(params: unknown): Params {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new InvalidRequestError('params', 'must be an object of name -> string | string[]');
  }
  const entries = Object.entries(params as Record<string, unknown>);
  if (entries.length > REQUEST_LIMITS.paramNames) {
    throw new InvalidRequestError('params', `more than ${String(REQUEST_LIMITS.paramNames)} names`);
  }
  // Null prototype: a parameter named `__proto__` must stay a parameter, not vanish into the prototype slot.
  const checked = Object.create(null) as Record<string, string | string[]>;
  for (const [name, value] of entries) {
    if (name.length === 0 || name.length > REQUEST_LIMITS.paramLength || CONTROL.test(name)) {
      throw new InvalidRequestError(
        `params['${printable(name)}']`,
        'parameter names must be 1-4096 printable characters',
      );
    }
    if (typeof value === 'string') {
      checkValue(value, `params.${name}`);
      checked[name] = value;
    } else if (Array.isArray(value)) {
      if (value.length > REQUEST_LIMITS.paramValues) {
        throw new InvalidRequestError(`params.${name}`, `more than ${String(REQUEST_LIMITS.paramValues)} values`);
      }
      value.forEach((v: unknown, i) => {
        checkValue(v, `params.${name}[${String(i)}]`);
      });
      checked[name] = [...(value as string[])];
    } else {
      throw new InvalidRequestError(
        `params.${name}`,
        `must be a string or an array of strings, got ${describe(value)}`,
      );
    }
  }
  // Store in canonical order so equal requests look equal when listed.
  return Object.fromEntries(
    canonicalParams(checked).map(([n, v]) => [n, v.length === 1 && typeof checked[n] === 'string' ? (v[0] ?? '') : v]),
  );
}

function checkValue(value: unknown, field: string): void {
  if (typeof value !== 'string') throw new InvalidRequestError(field, `must be a string, got ${describe(value)}`);
  if (value.length > REQUEST_LIMITS.paramLength) {
    throw new InvalidRequestError(field, `longer than ${String(REQUEST_LIMITS.paramLength)} characters`);
  }
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
