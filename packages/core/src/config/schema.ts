import { FORMAT_PATTERN, GROUP_PATTERN } from '../keys.js';
import { LEASE_MS_BOUNDS, POLL_MS_BOUNDS } from '../settings.js';
import type { ManagerSettings } from '../settings.js';
import type { GroupPolicy } from '../spi/queue.js';

/** The subset of JSON Schema that armlib's config schema uses. */
export interface ConfigSchema {
  type?: 'object' | 'string' | 'integer';
  description?: string;
  properties?: Record<string, ConfigSchema>;
  required?: string[];
  additionalProperties?: boolean | ConfigSchema;
  propertyNames?: ConfigSchema;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
}

/** Longest delay Node timers honour; longer ones fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/** An integer setting; beyond 2^53 numbers are no longer exact, so every one is bounded. */
function int(minimum: number, maximum = Number.MAX_SAFE_INTEGER): ConfigSchema {
  return { type: 'integer', minimum, maximum };
}

// Typed by the settings' keys so that adding a setting without a schema entry fails to compile.
const MANAGER_PROPERTIES: Record<keyof ManagerSettings, ConfigSchema> = {
  leaseMs: int(LEASE_MS_BOUNDS.min, LEASE_MS_BOUNDS.max),
  maxAttempts: int(1),
  retryBaseMs: int(0, MAX_TIMER_MS),
  retryMaxMs: int(0, MAX_TIMER_MS),
  pendingTtlMs: int(0),
  finishedRetentionMs: int(0),
  defaultFormat: {
    type: 'string',
    // FORMAT_PATTERN, and (as assertValidFormat) no '..' and no trailing '.'.
    pattern: `^(?!.*\\.\\.)(?!.*\\.$)${FORMAT_PATTERN.source.slice(1)}`,
    description: "a format name (1-32 of A-Z a-z 0-9 . _ -, starting with a letter or digit, e.g. 'csv')",
  },
  maxQueueLength: int(0),
  maxPendingPerOwner: int(0),
  pollMs: int(POLL_MS_BOUNDS.min, POLL_MS_BOUNDS.max),
  sweepMs: int(1, MAX_TIMER_MS),
  targetWaitMs: int(1),
  defaultEstimatedMs: int(0),
};

const GROUP_PROPERTIES: Record<keyof GroupPolicy, ConfigSchema> = {
  minIntervalMs: int(0, MAX_TIMER_MS),
  maxConcurrent: int(1),
  maxQueueLength: int(1),
};

function adapterSchema(): ConfigSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['adapter'],
    properties: {
      adapter: {
        type: 'string',
        minLength: 1,
        description: 'an adapter name (memory, file, dynamodb, s3) or a module specifier',
      },
      // The adapter owns its options and checks them itself.
      options: { type: 'object' },
    },
  };
}

/**
 * JSON schema of {@link ArmConfig}. Every object armlib owns rejects unknown keys, so a typo is
 * an error rather than a silently ignored setting. Durations are integer milliseconds.
 */
export const CONFIG_SCHEMA: ConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    queue: adapterSchema(),
    cache: adapterSchema(),
    manager: { type: 'object', additionalProperties: false, properties: MANAGER_PROPERTIES },
    groups: {
      type: 'object',
      propertyNames: {
        pattern: GROUP_PATTERN.source,
        description: 'a group name (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)',
      },
      additionalProperties: { type: 'object', additionalProperties: false, properties: GROUP_PROPERTIES },
    },
  },
};

/** The schema of one manager setting (used to coerce environment variables to the right type). */
export function settingSchema(key: keyof ManagerSettings): ConfigSchema {
  return MANAGER_PROPERTIES[key];
}
