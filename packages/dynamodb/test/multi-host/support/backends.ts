import { selectedBackends } from '../../harness/emulator.js';
import type { BackendKind } from '../../harness/emulator.js';

/**
 * Backends for the long multi-process and fault runs: the first selected one (DynamoDB Local when
 * Java is present, else dynalite, or the one forced by ARMLIB_DYNAMODB_EMULATOR / an endpoint), or
 * every selected one with ARMLIB_DYNAMODB_HEAVY_ALL_BACKENDS=1. They take tens of seconds each,
 * and the conformance suite already covers both emulators.
 */
export function heavyTestBackends(): BackendKind[] {
  const all = selectedBackends();
  return process.env['ARMLIB_DYNAMODB_HEAVY_ALL_BACKENDS'] === '1' ? all : all.slice(0, 1);
}
