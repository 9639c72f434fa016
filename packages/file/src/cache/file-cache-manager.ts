// STUB — replaced by the cache implementation.
import { inject, injectable } from 'inversify';

import { SystemClock, TOKENS } from '@armlib/core';
import type { Clock } from '@armlib/core';

/** Options of {@link FileCacheManager} (the `cache.options` of a config using the `file` adapter). */
export interface FileCacheManagerOptions {
  /** Root directory shared with the file queue. Default `./var/armlib` (or `ARMLIB_DIR`). */
  dir?: string;
  /** `normal`: survives any process crash (kill -9). `full`: also an OS crash or power loss (fsync). */
  durability?: 'normal' | 'full';
}

/** The file cache. */
@injectable()
export class FileCacheManager {
  constructor(
    @inject(TOKENS.CacheOptions) readonly options: FileCacheManagerOptions = {},
    @inject(TOKENS.Clock) readonly clock: Clock = new SystemClock(),
  ) {}
}

/** Checks `cache.options` of the `file` adapter without touching the disk; paths are relative to the options. */
export function checkFileCacheOptions(_options: unknown): import('@armlib/core').ConfigIssue[] {
  return _options === null ? [{ path: '', message: 'must be an object' }] : [];
}
