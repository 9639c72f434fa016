import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { errorName, translateError } from './errors.js';
import { KEY_ATTRS, TTL_ATTR, WORK_INDEX, WORK_PROJECTION } from './layout.js';

/** What {@link ensureTable} did. */
export interface EnsureTableResult {
  /** The table was created by this call (false: it existed). */
  readonly created: boolean;
  /** TTL on the `xt` attribute is enabled (false where the backend has no TTL, e.g. dynalite). */
  readonly ttlEnabled: boolean;
}

/** Options of {@link ensureTable}. */
export interface EnsureTableOptions {
  /** Longest wait for the table to become active, seconds; default 120. */
  readonly maxWaitSeconds?: number;
}

/**
 * Creates the queue table when it does not exist (on-demand billing, the `work` index with an
 * INCLUDE projection of stable attributes only), waits until it is active and enables TTL on
 * `xt`. Idempotent: on an existing table it only checks TTL. A backend without the TTL API
 * (dynalite) is tolerated: reads ignore expired records anyway.
 */
export async function ensureTable(
  client: DynamoDBClient,
  tableName: string,
  options: EnsureTableOptions = {},
): Promise<EnsureTableResult> {
  const maxWaitTime = options.maxWaitSeconds ?? 120;
  let created = false;
  try {
    if (!(await tableExists(client, tableName))) {
      try {
        await client.send(
          new CreateTableCommand({
            TableName: tableName,
            BillingMode: 'PAY_PER_REQUEST',
            AttributeDefinitions: [
              { AttributeName: KEY_ATTRS.pk, AttributeType: 'S' },
              { AttributeName: KEY_ATTRS.sk, AttributeType: 'S' },
              { AttributeName: KEY_ATTRS.workPk, AttributeType: 'S' },
              { AttributeName: KEY_ATTRS.workSk, AttributeType: 'S' },
            ],
            KeySchema: [
              { AttributeName: KEY_ATTRS.pk, KeyType: 'HASH' },
              { AttributeName: KEY_ATTRS.sk, KeyType: 'RANGE' },
            ],
            GlobalSecondaryIndexes: [
              {
                IndexName: WORK_INDEX,
                KeySchema: [
                  { AttributeName: KEY_ATTRS.workPk, KeyType: 'HASH' },
                  { AttributeName: KEY_ATTRS.workSk, KeyType: 'RANGE' },
                ],
                Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...WORK_PROJECTION] },
              },
            ],
          }),
        );
        created = true;
      } catch (error) {
        // Another process created it meanwhile: that is the idempotent outcome.
        if (errorName(error) !== 'ResourceInUseException') throw error;
      }
    }
    await waitActive(client, tableName, maxWaitTime);
    const ttlEnabled = await enableTtl(client, tableName);
    return { created, ttlEnabled };
  } catch (error) {
    throw translateError(error, 'ensureTable');
  }
}

/** Deletes the table and waits until it is gone (tests and tear-down; absent is fine). */
export async function deleteTable(client: DynamoDBClient, tableName: string, maxWaitSeconds = 60): Promise<void> {
  try {
    await client.send(new DeleteTableCommand({ TableName: tableName }));
    const deadline = Date.now() + maxWaitSeconds * 1000;
    // Polls a short while: emulators delete at once, AWS within seconds.
    while (await tableExists(client, tableName)) {
      if (Date.now() > deadline) throw new Error(`table ${tableName} still exists after ${String(maxWaitSeconds)} s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (error) {
    if (errorName(error) === 'ResourceNotFoundException') return;
    throw translateError(error, 'deleteTable');
  }
}

async function tableExists(client: DynamoDBClient, tableName: string): Promise<boolean> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return true;
  } catch (error) {
    if (errorName(error) === 'ResourceNotFoundException') return false;
    throw error;
  }
}

async function waitActive(client: DynamoDBClient, tableName: string, maxWaitSeconds: number): Promise<void> {
  // The table and its index must both be active before claims query it. (The SDK's waiter
  // sleeps before its first check; emulators are active at once.)
  const deadline = Date.now() + maxWaitSeconds * 1000;
  let delay = 50;
  for (;;) {
    let Table;
    try {
      ({ Table } = await client.send(new DescribeTableCommand({ TableName: tableName })));
    } catch (error) {
      // Just created: AWS may not list it for a moment.
      if (errorName(error) !== 'ResourceNotFoundException' || Date.now() > deadline) throw error;
    }
    const indexes = Table?.GlobalSecondaryIndexes ?? [];
    if (
      Table?.TableStatus === 'ACTIVE' &&
      indexes.every((i) => i.IndexStatus === undefined || i.IndexStatus === 'ACTIVE')
    ) {
      return;
    }
    if (Date.now() > deadline) throw new Error(`table ${tableName} not active after ${String(maxWaitSeconds)} s`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(2000, delay * 2);
  }
}

async function enableTtl(client: DynamoDBClient, tableName: string): Promise<boolean> {
  try {
    const current = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
    const status = current.TimeToLiveDescription?.TimeToLiveStatus;
    if ((status === 'ENABLED' || status === 'ENABLING') && current.TimeToLiveDescription?.AttributeName === TTL_ATTR) {
      return true;
    }
  } catch (error) {
    if (errorName(error) !== 'UnknownOperationException') throw error;
  }
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TTL_ATTR, Enabled: true },
      }),
    );
    return true;
  } catch (error) {
    const name = errorName(error);
    // dynalite has no TTL API; a concurrent ensureTable may have enabled it already.
    if (name === 'UnknownOperationException') return false;
    if (name === 'ValidationException' && error instanceof Error && /already enabled/i.test(error.message)) return true;
    throw error;
  }
}
