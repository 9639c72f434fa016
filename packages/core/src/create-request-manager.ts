import type { Clock } from './clock.js';
import { loadConfig } from './config/load.js';
import type { ArmConfig } from './config/types.js';
import { buildContainer, resolveRequestManager } from './container/build-container.js';
import { InvalidRequestError } from './errors.js';
import type { RequestManager } from './manager/types.js';

/** Options of {@link createRequestManager}. */
export interface CreateRequestManagerOptions {
  /** Environment to read `ARMLIB_*` variables from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Clock for the manager and its adapters (default: the system clock). */
  clock?: Clock;
  /** Directory relative config paths resolve against (default `process.cwd()`). */
  cwd?: string;
}

/**
 * Loads a configuration (an object, a JSON file path, else `ARMLIB_CONFIG`, else the default
 * configuration), applies environment overrides, validates everything, builds the container and
 * returns its request manager. An invalid configuration rejects with one `ConfigError` listing
 * every bad field, before any adapter is constructed. An adapter that fails to start (its
 * constructor throws) rejects the call after closing what was already started; an error of its
 * own that is not an armlib error arrives as a `ConfigError` naming the adapter, with the
 * original as `cause`.
 */
export async function createRequestManager(
  config?: ArmConfig | string,
  options: CreateRequestManagerOptions = {},
): Promise<RequestManager> {
  const given: unknown = options;
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidRequestError(
      'options',
      `must be an object ({ env?, clock?, cwd? }), got ${given === null ? 'null' : typeof given}`,
    );
  }
  const loadOptions = {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  };
  const resolved = await loadConfig(config, loadOptions);
  const container = await buildContainer(resolved, options.clock === undefined ? {} : { clock: options.clock });
  return resolveRequestManager(container, resolved);
}
