import type { ArmConfig } from './types.js';

/**
 * The default configuration: what `createRequestManager()` uses when given no config and no
 * `ARMLIB_CONFIG`, and where a config without `queue` or `cache` takes them from.
 * The only place that decides the default backend (memory until `@armlib/file` exists).
 */
export const DEFAULT_CONFIG: Readonly<ArmConfig> = Object.freeze({
  queue: Object.freeze({ adapter: 'memory' }),
  cache: Object.freeze({ adapter: 'memory' }),
});
