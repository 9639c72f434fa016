import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { CONFIG_SCHEMA } from './schema.js';
import type { ConfigSchema } from './schema.js';

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  // Compiled on first use so that importing core stays cheap.
  compiled ??= new Ajv({ allErrors: true, verbose: true, strict: true }).compile(CONFIG_SCHEMA);
  return compiled;
}

/** Escapes one JSON-pointer segment (RFC 6901). */
export function pointerSegment(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Joins JSON-pointer segments: `pointer('manager', 'leaseMs')` is `/manager/leaseMs`. */
export function pointer(...segments: string[]): string {
  return segments.map((s) => `/${pointerSegment(s)}`).join('');
}

/** Shows a configured value in a message, briefly. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  // JSON.parse turns 1e400 into Infinity, which JSON.stringify would show as null.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  // JSON.stringify throws on a BigInt and gives undefined for a symbol or a function.
  if (typeof value === 'bigint') return `${String(value)}n`;
  if (typeof value === 'symbol' || typeof value === 'function') return `a ${typeof value}`;
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** Says in words what a schema accepts, e.g. `an integer >= 1`. */
export function describeSchema(schema: ConfigSchema): string {
  if (schema.description !== undefined) return schema.description;
  switch (schema.type) {
    case 'integer': {
      const { minimum: min, maximum: max } = schema;
      // Every integer setting is bounded by exactness (2^53 - 1): said after the real bound.
      if (min !== undefined && max === Number.MAX_SAFE_INTEGER) return `an integer >= ${min} (at most 2^53 - 1)`;
      if (min !== undefined && max !== undefined) return `an integer from ${min} to ${max}`;
      if (min !== undefined) return `an integer >= ${min}`;
      return 'an integer';
    }
    case 'string':
      if (schema.pattern !== undefined) return `a string matching ${schema.pattern}`;
      return schema.minLength === 1 ? 'a non-empty string' : 'a string';
    case 'object':
      return 'an object';
    case undefined:
      return schema.pattern === undefined ? 'a valid value' : `a string matching ${schema.pattern}`;
  }
  return 'a valid value';
}

/** Edit distance, to suggest the intended key for a typo. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}

function unknownKeyMessage(key: string, known: string[]): string {
  const close = known.filter((k) => distance(key, k) <= Math.max(1, Math.floor(k.length / 4)));
  const hint = close.length > 0 ? `did you mean ${close.map((k) => `'${k}'`).join(' or ')}? ` : '';
  return `unknown field; ${hint}expected one of: ${known.join(', ')}`;
}

function toIssue(error: ErrorObject): ConfigIssue | undefined {
  const parent = error.parentSchema as ConfigSchema | undefined;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(params['additionalProperty']);
      return {
        path: `${error.instancePath}/${pointerSegment(key)}`,
        message: unknownKeyMessage(key, Object.keys(parent?.properties ?? {})),
      };
    }
    case 'required': {
      const key = String(params['missingProperty']);
      const expected = parent?.properties?.[key];
      return {
        path: `${error.instancePath}/${pointerSegment(key)}`,
        message: `is required: must be ${expected === undefined ? 'given' : describeSchema(expected)}`,
      };
    }
    case 'propertyNames':
      // Reported by the nested error, which carries the offending name.
      return undefined;
    default: {
      if (error.propertyName !== undefined) {
        return {
          path: `${error.instancePath}/${pointerSegment(error.propertyName)}`,
          message: `name must be ${parent === undefined ? 'valid' : describeSchema(parent)}, got ${showValue(error.propertyName)}`,
        };
      }
      return {
        path: error.instancePath,
        message: `must be ${parent === undefined ? 'valid' : describeSchema(parent)}, got ${showValue(error.data)}`,
      };
    }
  }
}

/** Checks a raw config against {@link CONFIG_SCHEMA}; returns one issue per bad field (none when valid). */
export function validateConfigShape(config: unknown): ConfigIssue[] {
  const validate = validator();
  if (validate(config)) return [];
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  for (const error of validate.errors ?? []) {
    const issue = toIssue(error);
    // A value breaking two keywords (e.g. type and minimum) is reported once, with the full expectation.
    if (issue === undefined || seen.has(issue.path)) continue;
    seen.add(issue.path);
    issues.push(issue);
  }
  return issues;
}

/**
 * Checks manager settings given in code (`buildRequestManager`, the DI binding) as the config
 * file's `manager` section is checked; settings left undefined keep their defaults.
 */
export function assertManagerSettings(settings: unknown): void {
  const issues = validateConfigShape({ manager: definedOnly(settings) });
  if (issues.length > 0) throw new ConfigError('invalid request manager settings', issues);
}

/** The issues of one group policy, as the config file's `groups` section is checked (paths `/groups/<group>/…`). */
export function groupPolicyIssues(group: string, policy: unknown): ConfigIssue[] {
  return validateConfigShape({ groups: { [group]: definedOnly(policy) } });
}

/** A plain object without its undefined fields (which mean "the default"); anything else as it is. */
function definedOnly(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}
