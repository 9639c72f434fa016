import { SystemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { GroupPolicies, ManagerSettings } from '../settings.js';
import type { CacheManager } from '../spi/cache.js';
import type { QueueManager } from '../spi/queue.js';
import { DefaultRequestManager } from './default-request-manager.js';
import type { RequestManager } from './types.js';

/** The parts {@link buildRequestManager} assembles. */
export interface RequestManagerParts {
  queue: QueueManager;
  cache: CacheManager;
  /** Defaults to the system clock; tests pass a ManualClock. */
  clock?: Clock;
  settings?: Partial<ManagerSettings>;
  groups?: GroupPolicies;
}

/**
 * Builds a request manager from adapter instances without a container or config file: for
 * tests, the conformance suite and hosts that construct adapters themselves.
 */
export function buildRequestManager(parts: RequestManagerParts): RequestManager {
  return new DefaultRequestManager(
    parts.queue,
    parts.cache,
    parts.clock ?? new SystemClock(),
    parts.settings ?? {},
    parts.groups ?? {},
  );
}
