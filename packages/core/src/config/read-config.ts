import type { ConfigIssue } from '../errors.js';
import type { ConfigSchema } from './schema.js';
import { pointerSegment } from './validate.js';

/**
 * A config object read into plain data before anything checks it. A config given in code can hold
 * values whose reading throws (a getter, a proxy trap, a revoked proxy): each is reported at its
 * own path rather than failing the whole config at the root, and each field is read once, so that
 * what the schema checks is what is used.
 */
export interface ReadConfig {
  /** The config, each object the schema describes copied field by field; an unreadable field is left out. */
  readonly config: unknown;
  /** One issue per value that could not be read, at its own JSON-pointer path, its error as cause. */
  readonly unreadable: ConfigIssue[];
}

/** Reads `raw` as `schema` describes it (see {@link ReadConfig}). */
export function readConfig(raw: unknown, schema: ConfigSchema): ReadConfig {
  const unreadable: ConfigIssue[] = [];
  const config = readValue(raw, schema, '', unreadable);
  return { config: config === UNREADABLE ? undefined : config, unreadable };
}

/**
 * The own enumerable string-keyed fields of `value`, each read once into a plain object (values
 * kept by reference, unchecked). A field that throws when read is left out and reported at
 * `path/<name>`; an object whose fields cannot be listed, at `path`.
 */
export function readFields(value: object, path: string, unreadable: ConfigIssue[]): Record<string, unknown> {
  const copy = readObject(value, undefined, path, unreadable);
  return copy === UNREADABLE ? {} : copy;
}

/** True when an issue at `path` is about a value at or inside `unreadablePath`. */
export function isInside(path: string, unreadablePath: string): boolean {
  return path === unreadablePath || path.startsWith(`${unreadablePath}/`);
}

/** The message and cause of a value that threw when read. */
export function cannotReadIssue(path: string, error: unknown): ConfigIssue {
  return { path, message: `cannot be read: ${thrownText(error)}`, cause: error };
}

/** Stands for a value that could not be read (undefined is a value a config may hold). */
const UNREADABLE: unique symbol = Symbol('unreadable');

function readValue(value: unknown, schema: ConfigSchema | undefined, path: string, unreadable: ConfigIssue[]): unknown {
  let isObject: boolean;
  try {
    // Array.isArray throws on a revoked proxy; every later check would too.
    isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch (error) {
    unreadable.push(cannotReadIssue(path, error));
    return UNREADABLE;
  }
  // Only the objects armlib owns are copied; an adapter's options are its own (kept by reference).
  if (!isObject || schema === undefined || !describesFields(schema)) return value;
  return readObject(value as object, schema, path, unreadable);
}

/** Whether the schema of an object names its fields (or the schema of every field), so armlib reads them. */
function describesFields(schema: ConfigSchema): boolean {
  return schema.properties !== undefined || typeof schema.additionalProperties === 'object';
}

/**
 * The readable fields of `value`, each read once; with a `schema`, each value is read as its own
 * schema describes it, else kept as it is.
 */
function readObject(
  value: object,
  schema: ConfigSchema | undefined,
  path: string,
  unreadable: ConfigIssue[],
): Record<string, unknown> | typeof UNREADABLE {
  let names: string[];
  try {
    names = Object.keys(value);
  } catch (error) {
    unreadable.push(cannotReadIssue(path, error));
    return UNREADABLE;
  }
  const entries: [string, unknown][] = [];
  for (const name of names) {
    const fieldPath = `${path}/${pointerSegment(name)}`;
    let field: unknown;
    try {
      field = (value as Record<string, unknown>)[name];
    } catch (error) {
      unreadable.push(cannotReadIssue(fieldPath, error));
      continue;
    }
    const read = schema === undefined ? field : readValue(field, fieldSchema(schema, name), fieldPath, unreadable);
    if (read !== UNREADABLE) entries.push([name, read]);
  }
  // From entries, not by assignment: a field named '__proto__' stays a field (as JSON.parse makes it).
  return Object.fromEntries(entries);
}

function fieldSchema(schema: ConfigSchema, name: string): ConfigSchema | undefined {
  const own =
    schema.properties !== undefined && Object.hasOwn(schema.properties, name) ? schema.properties[name] : undefined;
  if (own !== undefined) return own;
  return typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined;
}

/** What was thrown, as text; never throws (a thrown object may have no or a throwing toString). */
function thrownText(error: unknown): string {
  try {
    return String(error);
  } catch {
    return 'an unprintable value';
  }
}
