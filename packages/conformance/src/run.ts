import { cacheTests } from './cache.js';
import { cancelTests } from './cancel.js';
import { capsAndQuotaTests } from './caps-and-quota.js';
import { claimOrderTests } from './claim-order.js';
import { clockStepBackTests } from './clock-step-back.js';
import { concurrencyCapTests } from './concurrency-cap.js';
import { resolveContext } from './context.js';
import { groupFairnessTests } from './group-fairness.js';
import { keysAndDedupeTests } from './keys-and-dedupe.js';
import { leaseTests } from './lease.js';
import { modelBasedTests } from './model-based.js';
import { pauseTests } from './pause.js';
import { pendingExpiryTests } from './pending-expiry.js';
import { positionAndEtaTests } from './position-and-eta.js';
import { realConcurrencyTests } from './real-concurrency.js';
import { retentionTests } from './retention.js';
import { retryTests } from './retry.js';
import type { ConformanceOptions } from './types.js';

/** Every behaviour group, in the order `runConformance` registers them. */
export const CONFORMANCE_GROUPS = [
  keysAndDedupeTests,
  claimOrderTests,
  groupFairnessTests,
  clockStepBackTests,
  concurrencyCapTests,
  leaseTests,
  retryTests,
  cancelTests,
  pauseTests,
  pendingExpiryTests,
  retentionTests,
  capsAndQuotaTests,
  positionAndEtaTests,
  cacheTests,
  realConcurrencyTests,
  modelBasedTests,
] as const;

/**
 * Registers the whole conformance suite (mocha `describe`/`it`) for one adapter:
 * `describe('armlib conformance: <name>')` with one block per behaviour group.
 */
export function runConformance(options: ConformanceOptions): void {
  const ctx = resolveContext(options);
  describe(`armlib conformance: ${ctx.name}`, function () {
    for (const group of CONFORMANCE_GROUPS) group(ctx);
  });
}
