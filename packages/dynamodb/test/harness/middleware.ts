import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

let added = 0;

/**
 * Runs `around` for every command `client` sends until `remove()`: it gets the command's target
 * (`DynamoDB_20120810.UpdateItem`), its input as JSON text (enough to pick out a write by its key
 * or condition) and `send`, which passes the command on and resolves with its answer. In the
 * deserialize step: after signing and the SDK's retries loop, so what `around` holds back has not
 * reached the table, and each retry comes through again.
 */
export function addMiddleware(
  client: DynamoDBClient,
  around: (target: string, body: string, send: () => Promise<unknown>) => Promise<unknown>,
): { remove(): void } {
  const name = `armlibTestMiddleware${String(++added)}`;
  client.middlewareStack.add(
    (next) => async (args) => {
      const target = (args.request as { headers?: Record<string, string> }).headers?.['x-amz-target'] ?? '';
      const body = JSON.stringify((args as { input?: unknown }).input ?? null);
      return (await around(target, body, () => next(args))) as Awaited<ReturnType<typeof next>>;
    },
    { step: 'deserialize', name, override: true },
  );
  return { remove: () => client.middlewareStack.remove(name) };
}
