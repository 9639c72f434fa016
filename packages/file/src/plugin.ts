import { ContainerModule } from 'inversify';

import { TOKENS } from '@armlib/core';
import type { AdapterPlugin, ConfigIssue } from '@armlib/core';

import { checkFileCacheOptions, FileCacheManager } from './cache/file-cache-manager.js';
import { checkFileQueueOptions, FileQueueManager } from './queue/file-queue-manager.js';

/**
 * The built-in `file` adapter: {@link FileQueueManager} and {@link FileCacheManager}, each a
 * singleton reading its options from `TOKENS.QueueOptions` / `TOKENS.CacheOptions`. Core loads it
 * by name (`"adapter": "file"`) through this package's `armlibAdapter` export.
 */
export const fileAdapter: AdapterPlugin = Object.freeze({
  name: 'file',
  queueModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.QueueManager).to(FileQueueManager).inSingletonScope();
    });
  },
  cacheModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.CacheManager).to(FileCacheManager).inSingletonScope();
    });
  },
  validateQueueOptions(options: unknown): ConfigIssue[] {
    return checkFileQueueOptions(options);
  },
  validateCacheOptions(options: unknown): ConfigIssue[] {
    return checkFileCacheOptions(options);
  },
});

/** The name core's adapter registry looks for. */
export const armlibAdapter: AdapterPlugin = fileAdapter;
