/**
 * `@armlib/dynamodb`: the production queue adapter on one DynamoDB table — sharded sparse work
 * index, conditional writes, fenced leases, TTL on finished records, and no Scan anywhere.
 *
 * @packageDocumentation
 */
export { DynamoQueueManager } from './dynamo-queue-manager.js';
export { checkDynamoQueueOptions, DYNAMO_CLIENT_TIMEOUTS, TABLE_SUFFIX } from './options.js';
export type { DynamoQueueManagerOptions } from './options.js';
export { deleteTable, ensureTable } from './table.js';
export type { EnsureTableOptions, EnsureTableResult } from './table.js';
export { isRetryable, translateError } from './errors.js';
export { attachCommandCounter, measureLifecycleCost } from './cost.js';
export type { CommandCounter, CostTally, LifecycleCost, MeasureOptions } from './cost.js';
export { dynamodbAdapter } from './plugin.js';
import { dynamodbAdapter } from './plugin.js';

/** The adapter plugin under the name core's adapter registry looks for (same object as {@link dynamodbAdapter}). */
export const armlibAdapter = dynamodbAdapter;
export default dynamodbAdapter;
