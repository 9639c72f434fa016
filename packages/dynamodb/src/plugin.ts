import { ContainerModule } from 'inversify';
import { TOKENS } from '@armlib/core';
import type { AdapterPlugin, ConfigIssue } from '@armlib/core';

import { DynamoQueueManager } from './dynamo-queue-manager.js';
import { checkDynamoQueueOptions } from './options.js';

/**
 * The `dynamodb` adapter plugin: binds {@link DynamoQueueManager} (singleton) as the queue,
 * reading its options from `TOKENS.QueueOptions` and its clock from `TOKENS.Clock`.
 */
export const dynamodbAdapter: AdapterPlugin = Object.freeze({
  name: 'dynamodb',
  queueModule(): ContainerModule {
    return new ContainerModule(({ bind }) => {
      bind(TOKENS.QueueManager).to(DynamoQueueManager).inSingletonScope();
    });
  },
  validateQueueOptions(options: unknown): ConfigIssue[] {
    return checkDynamoQueueOptions(options);
  },
});
