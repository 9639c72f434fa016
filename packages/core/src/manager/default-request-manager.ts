// Placeholder so that other parts compile while the manager is written.
import { inject, injectable } from 'inversify';

import type { Clock } from '../clock.js';
import type { GroupPolicies, ManagerSettings } from '../settings.js';
import type { CacheManager } from '../spi/cache.js';
import type { QueueManager } from '../spi/queue.js';
import { TOKENS } from '../tokens.js';

@injectable()
export class DefaultRequestManager {
  constructor(
    @inject(TOKENS.QueueManager) readonly queue: QueueManager,
    @inject(TOKENS.CacheManager) readonly cache: CacheManager,
    @inject(TOKENS.Clock) readonly clock: Clock,
    @inject(TOKENS.Settings) readonly settings: ManagerSettings,
    @inject(TOKENS.GroupPolicies) readonly groups: GroupPolicies,
  ) {}
}
