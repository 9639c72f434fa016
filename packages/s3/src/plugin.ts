import { ContainerModule } from 'inversify';

import { TOKENS } from '@armlib/core';
import type { AdapterPlugin, ConfigIssue } from '@armlib/core';

import { checkS3CacheOptions } from './options.js';
import { S3CacheManager } from './s3-cache-manager.js';

/**
 * The `s3` adapter plugin (cache only): binds {@link S3CacheManager} as the singleton
 * `TOKENS.CacheManager`, reading `TOKENS.CacheOptions` and `TOKENS.Clock`. Core loads it for
 * `"cache": { "adapter": "s3", "options": { "bucket": "…" } }`.
 */
export const s3Adapter: AdapterPlugin = Object.freeze({
  name: 's3',
  cacheModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.CacheManager).to(S3CacheManager).inSingletonScope();
    });
  },
  validateCacheOptions(options: unknown): ConfigIssue[] {
    // No I/O and no client is built: the check runs before anything starts.
    return checkS3CacheOptions(options);
  },
});
