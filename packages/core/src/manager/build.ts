import { SystemClock } from '../clock.js';
import { InvalidRequestError } from '../errors.js';
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
  assertParts(parts);
  return new DefaultRequestManager(
    parts.queue,
    parts.cache,
    parts.clock ?? new SystemClock(),
    parts.settings ?? {},
    parts.groups ?? {},
  );
}

/** The methods each part must have: checked by their shape, as plain JavaScript can pass anything. */
const REQUIRED_METHODS = {
  queue: ['enqueue', 'get', 'position', 'claim', 'heartbeat', 'complete', 'fail', 'release', 'cancel', 'list', 'close'],
  cache: ['stage', 'head', 'get', 'url', 'promote', 'delete', 'clear', 'sweep', 'list', 'close'],
  clock: ['now', 'setTimeout', 'clearTimeout'],
} as const;

/** Throws {@link InvalidRequestError} naming the first part that is missing or lacks a method. */
function assertParts(parts: unknown): asserts parts is RequestManagerParts {
  if (parts === null || typeof parts !== 'object') {
    throw new InvalidRequestError('parts', 'must be an object ({ queue, cache, clock?, settings?, groups? })');
  }
  const given = parts as Record<string, unknown>;
  for (const [name, methods] of Object.entries(REQUIRED_METHODS)) {
    const part = given[name];
    if (part === undefined && name === 'clock') continue;
    if (part === null || typeof part !== 'object') {
      throw new InvalidRequestError(
        name,
        `must be a ${name === 'clock' ? 'Clock' : `${name} adapter instance`}, got ${part === null ? 'null' : typeof part}`,
      );
    }
    const missing = methods.find((method) => typeof (part as Record<string, unknown>)[method] !== 'function');
    if (missing !== undefined) throw new InvalidRequestError(`${name}.${missing}`, 'must be a function');
  }
}
