import { InvalidRequestError } from '../errors.js';
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
