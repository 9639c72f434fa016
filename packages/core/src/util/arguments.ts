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

/** The error {@link optionsArgument} throws for `value`, or undefined when it is fine (for calls that reject instead). */
export function optionsArgumentError(value: unknown, name: string): InvalidRequestError | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return new InvalidRequestError(name, `must be an object of options, got ${showValue(value)}`);
  }
  return undefined;
}
