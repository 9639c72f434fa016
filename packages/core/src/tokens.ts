import type { ServiceIdentifier } from 'inversify';

import type { Clock } from './clock.js';
import type { RequestManager } from './manager/types.js';
import type { GroupPolicies, ManagerSettings } from './settings.js';
import type { CacheManager } from './spi/cache.js';
import type { QueueManager } from './spi/queue.js';

/**
 * Service identifiers of armlib's inversify container. They are `Symbol.for` keys, so modules
 * from separately installed copies of an adapter still meet the same tokens.
 */
export const TOKENS = {
  /** The {@link QueueManager} adapter. */
  QueueManager: Symbol.for('@armlib/core/QueueManager') as ServiceIdentifier<QueueManager>,
  /** The {@link CacheManager} adapter. */
  CacheManager: Symbol.for('@armlib/core/CacheManager') as ServiceIdentifier<CacheManager>,
  /** The {@link Clock}. */
  Clock: Symbol.for('@armlib/core/Clock') as ServiceIdentifier<Clock>,
  /** The resolved {@link ManagerSettings}. */
  Settings: Symbol.for('@armlib/core/Settings') as ServiceIdentifier<ManagerSettings>,
  /** Group policies by name. */
  GroupPolicies: Symbol.for('@armlib/core/GroupPolicies') as ServiceIdentifier<GroupPolicies>,
  /** Options object of the queue adapter, as given in config (`queue.options`). */
  QueueOptions: Symbol.for('@armlib/core/QueueOptions') as ServiceIdentifier,
  /** Options object of the cache adapter, as given in config (`cache.options`). */
  CacheOptions: Symbol.for('@armlib/core/CacheOptions') as ServiceIdentifier,
  /** The {@link RequestManager}. */
  RequestManager: Symbol.for('@armlib/core/RequestManager') as ServiceIdentifier<RequestManager>,
} as const;
