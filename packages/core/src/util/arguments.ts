import { InvalidRequestError } from '../errors.js';
import { showValue } from '../keys.js';

/**
 * An options argument of a public call: undefined means none, anything but a plain object (a
 * `null`, a string, an array) is refused with {@link InvalidRequestError} naming the parameter,
 * rather than failing as a TypeError deep inside the call.
 */
export function optionsArgument<T extends object>(value: T | undefined, name: string): T {
  if (value === undefined) return {} as T;
  const given: unknown = value;
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidRequestError(name, `must be an object of options, got ${showValue(given)}`);
  }
  return value;
}
