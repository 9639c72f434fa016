import { ContainerModule } from 'inversify';

import { ManualClock } from '../clock.js';
import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { MemoryCacheManager } from '../memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../memory/memory-queue-manager.js';
import type { AdapterPlugin } from '../spi/plugin.js';
import { TOKENS } from '../tokens.js';

/**
 * Runs a constructor for its option checks only; the adapters are the single source of truth for
 * their options. A manual clock keeps the throw-away instance from scheduling anything real.
 */
function issuesOf(construct: () => unknown): ConfigIssue[] {
  try {
    construct();
    return [];
  } catch (error) {
    if (ConfigError.is(error)) {
      return error.issues.length > 0 ? [...error.issues] : [{ path: '', message: error.message }];
    }
    throw error;
  }
}

/**
 * The built-in `memory` adapter: {@link MemoryQueueManager} and {@link MemoryCacheManager}, each a
 * singleton reading its options from `TOKENS.QueueOptions` / `TOKENS.CacheOptions`.
 */
export const memoryAdapter: AdapterPlugin = Object.freeze({
  name: 'memory',
  queueModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.QueueManager).to(MemoryQueueManager).inSingletonScope();
    });
  },
  cacheModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.CacheManager).to(MemoryCacheManager).inSingletonScope();
    });
  },
  validateQueueOptions(options: unknown): ConfigIssue[] {
    return issuesOf(
      () => new MemoryQueueManager(options as ConstructorParameters<typeof MemoryQueueManager>[0], new ManualClock()),
    );
  },
  validateCacheOptions(options: unknown): ConfigIssue[] {
    return issuesOf(
      () => new MemoryCacheManager(options as ConstructorParameters<typeof MemoryCacheManager>[0], new ManualClock()),
    );
  },
});
