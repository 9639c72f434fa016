// STUB — replaced by the queue implementation.
import { inject, injectable } from 'inversify';

import { SystemClock, TOKENS } from '@armlib/core';
import type { Clock } from '@armlib/core';

/** Options of {@link FileQueueManager} (the `queue.options` of a config using the `file` adapter). */
export interface FileQueueManagerOptions {
  /** Root directory shared with the file cache. Default `./var/armlib` (or `ARMLIB_DIR`). */
  dir?: string;
  /** `normal`: survives any process crash (kill -9). `full`: also an OS crash or power loss (fsync per commit). */
  durability?: 'normal' | 'full';
}

/** The durable multi-process queue. */
@injectable()
export class FileQueueManager {
  constructor(
    @inject(TOKENS.QueueOptions) readonly options: FileQueueManagerOptions = {},
    @inject(TOKENS.Clock) readonly clock: Clock = new SystemClock(),
  ) {}
}

/** Checks `queue.options` of the `file` adapter without opening anything; paths are relative to the options. */
export function checkFileQueueOptions(_options: unknown): import('@armlib/core').ConfigIssue[] {
  return _options === null ? [{ path: '', message: 'must be an object' }] : [];
}
