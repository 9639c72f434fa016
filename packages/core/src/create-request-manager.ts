import type { Clock } from './clock.js';
import { loadConfig } from './config/load.js';
import type { ArmConfig } from './config/types.js';
import { buildContainer } from './container/build-container.js';
import type { RequestManager } from './manager/types.js';
import { TOKENS } from './tokens.js';

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
 * every bad field, before any adapter is constructed.
 */
export async function createRequestManager(
  config?: ArmConfig | string,
  options: CreateRequestManagerOptions = {},
): Promise<RequestManager> {
  const loadOptions = {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  };
  const resolved = await loadConfig(config, loadOptions);
  const container = await buildContainer(resolved, options.clock === undefined ? {} : { clock: options.clock });
  return container.get(TOKENS.RequestManager);
}
