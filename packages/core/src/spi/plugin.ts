import type { ContainerModule } from 'inversify';

import type { ConfigIssue } from '../errors.js';

/**
 * What an adapter package exports (as `armlibAdapter`, or as its default export) so that
 * `createRequestManager` can load it by name or module specifier. Each module binds
 * `TOKENS.QueueManager` or `TOKENS.CacheManager` (singleton) and may read `TOKENS.QueueOptions`
 * / `TOKENS.CacheOptions` and `TOKENS.Clock`.
 */
export interface AdapterPlugin {
  /** Name used in messages, e.g. `file`. */
  readonly name: string;
  /** Builds the container module binding the queue adapter; absent if the plugin has no queue. */
  queueModule?(options: unknown): ContainerModule;
  /** Builds the container module binding the cache adapter; absent if the plugin has no cache. */
  cacheModule?(options: unknown): ContainerModule;
  /** Checks `queue.options`; each issue's path is relative to the options object. */
  validateQueueOptions?(options: unknown): ConfigIssue[];
  /** Checks `cache.options`; each issue's path is relative to the options object. */
  validateCacheOptions?(options: unknown): ConfigIssue[];
}
