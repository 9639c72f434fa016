import type { DynamoQueueManagerOptions } from '../../../src/index.js';

/**
 * Queue options of a worker or API host built the way a deployment configures it: table name,
 * region, endpoint and a client config (armlib builds and owns the client). The emulators take
 * any credentials; real AWS (no endpoint) uses the SDK's default chain. More sockets than the
 * SDK's default 50: a host submitting a burst has a hundred calls in flight.
 */
export function hostQueueOptions(
  endpoint: string | undefined,
  region: string,
  tableName: string,
): DynamoQueueManagerOptions {
  const requestHandler = { httpAgent: { keepAlive: true, maxSockets: 128 } };
  return endpoint === undefined
    ? { tableName, region, clientConfig: { requestHandler } }
    : {
        tableName,
        region,
        endpoint,
        clientConfig: { credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' }, requestHandler },
      };
}
