import type { ArmConfig } from './types.js';

/** Directory of the default configuration's file backend (relative to the working directory). */
export const DEFAULT_DIR = './var/armlib';

/**
 * The default configuration: what `createRequestManager()` uses when given no config and no
 * `ARMLIB_CONFIG` (a config that is given but leaves out `queue` or `cache` gets the memory
 * adapter there, not this). The only place that decides the default backend: the file backend
 * (`@armlib/file`) under `./var/armlib`, which `ARMLIB_DIR` moves.
 */
export const DEFAULT_CONFIG: Readonly<ArmConfig> = Object.freeze({
  queue: Object.freeze({ adapter: 'file', options: Object.freeze({ dir: DEFAULT_DIR }) }),
  cache: Object.freeze({ adapter: 'file', options: Object.freeze({ dir: DEFAULT_DIR }) }),
});
