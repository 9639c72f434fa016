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
import { commandTally, conformanceFactory, useBackend } from './harness/fixture.js';

/** Per test: every step is a round trip to another process on a shared, busy CI machine. */
const TEST_TIMEOUT_MS = 120_000;
/**
 * Model-based sequences. Each one makes a table and compares every key, position, list and count
 * after every step (some 30 requests a step): 1.5–2.2 s a sequence on either emulator on a busy
 * two-core machine, so the suite's 1,000 would take 25–40 minutes, and exceed the suite's own
 * timeout for that test (200 s); below 300 runs that timeout is 60 s, which 10 sequences came
 * close to under load. Raise it with ARMLIB_DYNAMODB_PROPERTY_RUNS.
 */
const PROPERTY_RUNS = Number(process.env['ARMLIB_DYNAMODB_PROPERTY_RUNS'] ?? '5');
const backends = selectedBackends();

for (const kind of backends) {
  describe(`dynamodb on ${kind}`, function () {
    this.timeout(TEST_TIMEOUT_MS);
    const backend = useBackend(kind);
    const options: ConformanceOptions = {
      name: `dynamodb (${kind}) + memory cache`,
      create: conformanceFactory(backend),
      capabilities: { propertyRuns: PROPERTY_RUNS },
    };
    // The whole suite on the first backend (DynamoDB Local when Java is present); the groups that
    // exercise the adapter's own code paths hardest on the second, to keep the run under a few
    // minutes. ARMLIB_DYNAMODB_EMULATOR=dynalite runs the whole suite on dynalite.
    if (kind === backends[0]) {
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
