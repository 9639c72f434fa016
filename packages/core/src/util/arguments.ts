import { ConfigError, InvalidRequestError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { showValue } from '../keys.js';

/**
 * An options argument of a public call: undefined means none, anything but a plain object (a
 * `null`, a string, an array) is refused with {@link InvalidRequestError} naming the parameter,
 * rather than failing as a TypeError deep inside the call.
 */
export function optionsArgument<T extends object>(value: T | undefined, name: string): T {
  const error = optionsArgumentError(value, name);
  if (error !== undefined) throw error;
  return value ?? ({} as T);
}

/**
 * The error {@link optionsArgument} throws for `value`, or undefined when it is fine (for calls
 * that reject instead). An object that cannot even be looked at (a revoked proxy, which
 * `Array.isArray` throws on) is refused as one that cannot be read.
 */
export function optionsArgumentError(value: unknown, name: string): InvalidRequestError | undefined {
  if (value === undefined) return undefined;
  let isArray: boolean;
  try {
    isArray = Array.isArray(value);
  } catch (error) {
    return cannotRead(name, error);
  }
  if (value === null || typeof value !== 'object' || isArray) {
    return new InvalidRequestError(name, `must be an object of options, got ${showValue(value)}`);
  }
  return undefined;
}

/**
 * `options[field]`, read once: a getter or proxy trap that throws is still the caller's input, and
 * is refused with {@link InvalidRequestError} naming the field (`name`), not passed on raw. Read
 * once so that what is checked is what is used.
 */
export function readOption<T extends object, K extends keyof T & (string | number)>(
  options: T,
  field: K,
  name = String(field),
): T[K] {
  try {
    return options[field];
  } catch (error) {
    throw cannotRead(name, error);
  }
}

/** The refusal of an argument that threw when read (a getter, a proxy trap), with the error as cause. */
export function cannotRead(field: string, error: unknown): InvalidRequestError {
  return new InvalidRequestError(field, `cannot be read: ${errorText(error)}`, { cause: error });
}

/** A thrown value's message, for an error about it; never throws. */
export function errorText(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return 'unknown error';
  }
}

/**
 * An adapter's options object read once, for its constructor to check and use: each `known` field
 * (inherited ones too) and each other own enumerable name is read once into a plain object, so a
 * getter or proxy trap that throws is refused with {@link ConfigError} (`message`, an issue
 * `/<field>: cannot be read: …` with the error as cause) instead of escaping raw, and what is checked
 * is what is used. A field read as undefined is left out (undefined keeps the default). An object
 * that cannot even be looked at (a revoked proxy, an `ownKeys` trap that throws) is refused with an
 * issue at path `''`. Anything else that is not an object (undefined, null, `5`, an array) is
 * returned as it is, for the adapter's own check to accept or refuse as before.
 *
 * @param options - the options as given to the constructor.
 * @param known - the adapter's option names.
 * @param message - the message of the `ConfigError`, e.g. `'invalid file queue options'`.
 */
export function readAdapterOptions(options: unknown, known: Iterable<string>, message: string): unknown {
  const { value, issues } = tryReadAdapterOptions(options, known);
  if (issues.length === 0) return value;
  const causes = issues.map((issue) => issue.cause);
  throw new ConfigError(message, issues, { cause: causes.length === 1 ? causes[0] : new AggregateError(causes) });
}

/** What {@link tryReadAdapterOptions} read. */
export interface ReadAdapterOptions {
  /** The plain copy (or the value itself when it is not an object, or an array); undefined when `issues` is not empty. */
  readonly value: unknown;
  /** One issue per field that threw when read (path `/<field>`), or one at path `''`; empty when all was read. */
  readonly issues: ConfigIssue[];
}

/**
 * {@link readAdapterOptions} for an adapter's check function, which returns issues instead of
 * throwing: the fields that cannot be read come back as issues (`cannot be read: …`, the error as
 * cause), and the check goes on with `value` only when there are none.
 *
 * @param options - the options as given.
 * @param known - the adapter's option names.
 */
export function tryReadAdapterOptions(options: unknown, known: Iterable<string>): ReadAdapterOptions {
  if (typeof options !== 'object' || options === null) return { value: options, issues: [] };
  const given = options as Record<string, unknown>;
  let names: string[];
  try {
    if (Array.isArray(options)) return { value: options, issues: [] };
    names = Object.keys(given);
  } catch (error) {
    return { value: undefined, issues: [unreadable('', error)] };
  }
  const issues: ConfigIssue[] = [];
  const copy = Object.create(null) as Record<string, unknown>;
  for (const name of new Set([...known, ...names])) {
    try {
      const value = given[name];
      if (value !== undefined) copy[name] = value;
    } catch (error) {
      issues.push(unreadable(`/${name}`, error));
    }
  }
  return issues.length === 0 ? { value: copy, issues } : { value: undefined, issues };
}

/**
 * `check()` of a nested option value (a client, a client config), or undefined when a getter or
 * proxy trap in it throws: that is then a {@link ConfigIssue} at `path` (`cannot be read: …`, the
 * error as cause), for the adapter's {@link ConfigError}.
 *
 * @param path - the option's JSON-pointer path, e.g. `/client`.
 * @param issues - where the issue goes.
 * @param check - reads and checks the value; true when it is acceptable.
 */
export function checkReadable(path: string, issues: ConfigIssue[], check: () => boolean): boolean | undefined {
  try {
    return check();
  } catch (error) {
    issues.push(unreadable(path, error));
    return undefined;
  }
}

/** The issue of an option at `path` that threw when read, with the error as cause. */
function unreadable(path: string, error: unknown): ConfigIssue {
  return { path, message: `cannot be read: ${errorText(error)}`, cause: error };
}
