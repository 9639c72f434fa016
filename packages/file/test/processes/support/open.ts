import { buildRequestManager, SystemClock } from '@armlib/core';
import type { CacheManager, ManagerSettings, QueueManager, RequestManager } from '@armlib/core';

import { FileCacheManager, FileQueueManager } from '../../../src/index.js';
import type { EventLog } from './event-log.js';
import { LoggingCache } from './logging-cache.js';
import { LoggingQueue } from './logging-queue.js';
import type { PhaseListener } from './logging-queue.js';

/** The file adapters of one process on a shared directory (real time: several processes share it). */
export interface FileBackend {
  readonly queue: QueueManager;
  readonly cache: CacheManager;
}

/** Opens the file queue and cache on `dir`, wrapped in logging when a log is given. */
export function openBackend(dir: string, log?: EventLog, onPhase?: PhaseListener): FileBackend {
  const clock = new SystemClock();
  // Through `unknown`: the adapters are typed by their own module; the SPI is what these tests use.
  const rawQueue: unknown = new FileQueueManager({ dir }, clock);
  const rawCache: unknown = new FileCacheManager({ dir }, clock);
  const queue = rawQueue as QueueManager;
  const cache = rawCache as CacheManager;
  if (log === undefined) return { queue, cache };
  return { queue: new LoggingQueue(queue, log, onPhase), cache: new LoggingCache(cache, log, onPhase) };
}

/** A request manager over the file backend with the system clock. */
export function openManager(backend: FileBackend, settings: Partial<ManagerSettings>): RequestManager {
  return buildRequestManager({ queue: backend.queue, cache: backend.cache, clock: new SystemClock(), settings });
}
