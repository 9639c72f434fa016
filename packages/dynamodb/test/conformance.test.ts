import {
  cancelTests,
  claimOrderTests,
  leaseTests,
  modelBasedTests,
  realConcurrencyTests,
  runConformance,
} from '@armlib/conformance';
import type { ConformanceOptions } from '@armlib/conformance';
import { expect } from 'chai';

import { selectedBackends } from './harness/emulator.js';
import type { BackendKind } from './harness/emulator.js';
import { commandTally, conformanceFactory, useBackend } from './harness/fixture.js';

/** Per test: every step is a round trip to another process on a shared, busy CI machine. */
const TEST_TIMEOUT_MS = 120_000;
/**
 * Model-based sequences: the suite's full 1,000 queue sequences (and 200 cache ones) on DynamoDB
 * Local. Each sequence makes a table and compares every key, position, list and count after every
 * step (some 14 requests a step, 250 a sequence). One at a time that is 1.2–2.7 s a sequence on a
 * busy two-core machine, the test process and DynamoDB Local taking turns on one core; three side by
 * side on their own tables keep both cores busy (with DynamoDB Local's JIT limited to C1, see
 * emulator.ts): about 0.5 s a sequence, some 8 minutes for the 1,000. `propertyRunMs` bounds the
 * test at 1.2 s a sequence (20 minutes). dynalite runs in this process (side by side gains nothing)
 * and real AWS creates a table in seconds: they run a few, as a cross-check of the same code paths.
 * ARMLIB_DYNAMODB_PROPERTY_RUNS and ARMLIB_DYNAMODB_PROPERTY_CONCURRENCY override the count and
 * concurrency of the backend that runs the whole suite.
 */
function propertyRuns(kind: BackendKind): number {
  return Number(process.env['ARMLIB_DYNAMODB_PROPERTY_RUNS'] ?? (kind === 'local' ? '1000' : '5'));
}
const PROPERTY_CONCURRENCY = Number(process.env['ARMLIB_DYNAMODB_PROPERTY_CONCURRENCY'] ?? '3');
const SUBSET_PROPERTY_RUNS = 5;
const backends = selectedBackends();

for (const kind of backends) {
  describe(`dynamodb on ${kind}`, function () {
    this.timeout(TEST_TIMEOUT_MS);
    const backend = useBackend(kind);
    const full = kind === backends[0];
    const options: ConformanceOptions = {
      name: `dynamodb (${kind}) + memory cache`,
      create: conformanceFactory(backend),
      capabilities: full
        ? {
            propertyRuns: propertyRuns(kind),
            propertyConcurrency: PROPERTY_CONCURRENCY,
            propertyRunMs: { queue: 1_200 },
          }
        : { propertyRuns: SUBSET_PROPERTY_RUNS },
    };
    // The whole suite on the first backend (DynamoDB Local when Java is present); the groups that
    // exercise the adapter's own code paths hardest on the second, to keep the run under a few
    // minutes. ARMLIB_DYNAMODB_EMULATOR=dynalite runs the whole suite on dynalite.
    if (full) {
      runConformance(options);
    } else {
      describe(`armlib conformance (subset): ${options.name}`, function () {
        claimOrderTests(options);
        leaseTests(options);
        cancelTests(options);
        realConcurrencyTests(options);
        modelBasedTests(options);
      });
    }

    // Declared last, so it runs after every suite above (mocha runs nested suites in order).
    describe('command count', function () {
      it('sent no Scan during the suite', function () {
        const tally = commandTally(kind);
        expect(tally.requests, 'requests counted').to.be.greaterThan(0);
        expect(tally.scans).to.equal(0);
      });
    });
  });
}
