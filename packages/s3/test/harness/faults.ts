import { Readable } from 'node:stream';

import type { S3Client } from '@aws-sdk/client-s3';

/** A canned S3 error reply: the SDK's own deserializer turns it into the service exception. */
export interface FaultReply {
  readonly status: number;
  /** S3 error code, e.g. `AccessDenied`, `SlowDown`. */
  readonly code: string;
}

/**
 * Makes `client` answer the next calls of `command` (e.g. `GetObjectCommand`, or `*` for any)
 * with `reply` instead of sending them, for as long as `active()` says so. The reply is
 * installed in place of the HTTP handler (after the deserializer), so the error is built by the
 * SDK exactly as for a real S3 reply; use a client with `maxAttempts: 1` to see it unretried.
 */
export function injectFault(client: S3Client, command: string, reply: FaultReply, active: () => boolean): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!active() || (command !== '*' && context.commandName !== command)) return next(args);
      const xml =
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${reply.code}</Code>` +
        `<Message>injected ${reply.code}</Message><RequestId>test</RequestId></Error>`;
      const response = {
        statusCode: reply.status,
        reason: reply.code,
        headers: { 'content-type': 'application/xml', 'x-amz-request-id': 'test' },
        body: Readable.from([Buffer.from(xml)]),
      };
      return { response, output: undefined as never };
    },
    { step: 'deserialize', priority: 'low', name: `armlibFault${reply.code}` },
  );
}

/** Records every command `client` sends, in order, as `<CommandName> <Key>` (or the name alone). */
export function recordCommands(client: S3Client): string[] {
  const seen: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      const key = (args.input as { Key?: unknown }).Key;
      seen.push(`${context.commandName ?? 'unknown'}${typeof key === 'string' ? ` ${key}` : ''}`);
      return next(args);
    },
    { step: 'initialize', name: 'armlibRecordCommands' },
  );
  return seen;
}
