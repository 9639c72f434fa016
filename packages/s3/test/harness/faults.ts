import { Readable } from 'node:stream';

import type { DeleteObjectsCommandInput, DeleteObjectsCommandOutput, S3Client } from '@aws-sdk/client-s3';

/** A canned S3 error reply: the SDK's own deserializer turns it into the service exception. */
export interface FaultReply {
  readonly status: number;
  /** S3 error code, e.g. `AccessDenied`, `SlowDown`. */
  readonly code: string;
}

/** Numbers the middleware this module adds: each needs a name of its own. */
let faults = 0;

/** The input of a command (`Key`, `Delete`…), as middleware sees it. */
export type CommandInput = Readonly<Record<string, unknown>>;

/**
 * Makes `client` answer the next calls of `command` (e.g. `GetObjectCommand`, or `*` for any)
 * with `reply` instead of sending them, for as long as `active(input)` says so. The reply is
 * installed in place of the HTTP handler (after the deserializer), so the error is built by the
 * SDK exactly as for a real S3 reply; use a client with `maxAttempts: 1` to see it unretried.
 * With `afterSending`, the request is sent first and its answer replaced by the error: a call
 * that took effect although the caller heard it fail (a connection lost on the way back).
 */
export function injectFault(
  client: S3Client,
  command: string,
  reply: FaultReply,
  active: (input: CommandInput) => boolean,
  options: { afterSending?: boolean } = {},
): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as CommandInput;
      if ((command !== '*' && context.commandName !== command) || !active(input)) return next(args);
      if (options.afterSending === true) await next(args);
      return { response: errorResponse(reply), output: undefined as never };
    },
    { step: 'deserialize', priority: 'low', name: `armlibFault${reply.code}${String(++faults)}` },
  );
}

/**
 * Makes DeleteObjects refuse (per key, with `code`) the keys `refuse` picks, as S3 does for a key
 * it could not delete; the other keys of the call are deleted. The refused keys are never sent.
 */
export function refuseDeletes(client: S3Client, code: string, refuse: (key: string) => boolean): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'DeleteObjectsCommand') return next(args);
      const input = args.input as DeleteObjectsCommandInput;
      const objects = input.Delete?.Objects ?? [];
      const refused = objects.filter((o) => refuse(o.Key ?? ''));
      const sent = objects.filter((o) => !refuse(o.Key ?? ''));
      const errors = refused.map((o) => ({ Key: o.Key, Code: code, Message: `injected ${code}` }));
      if (sent.length === 0) return { response: {}, output: { Errors: errors, $metadata: {} } as never };
      const result = await next({ ...args, input: { ...input, Delete: { ...input.Delete, Objects: sent } } });
      const output = result.output as DeleteObjectsCommandOutput;
      return { ...result, output: { ...output, Errors: [...(output.Errors ?? []), ...errors] } as never };
    },
    { step: 'initialize', name: `armlibRefuseDeletes${String(++faults)}` },
  );
}

/**
 * Replaces the body of every GetObject answer `active(input)` picks by `replace(body)`: e.g. a
 * body that fails halfway, as one does when the connection drops while it streams.
 */
export function replaceBodies(
  client: S3Client,
  active: (input: CommandInput) => boolean,
  replace: (body: Readable) => Readable,
): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName !== 'GetObjectCommand' || !active(args.input as CommandInput)) return result;
      const output = result.output as { Body?: unknown };
      if (!(output.Body instanceof Readable)) return result;
      return { ...result, output: { ...output, Body: replace(output.Body) } as never };
    },
    { step: 'initialize', name: `armlibReplaceBodies${String(++faults)}` },
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

/**
 * Makes `client` answer with `reply` every attempt of each call of `command` that `pick()` chose:
 * `pick` is asked once per call (not per SDK retry), in the order the calls are made, so a test
 * can fail e.g. the second DeleteObjects of an operation. See {@link injectFault}.
 */
export function failCalls(client: S3Client, command: string, reply: FaultReply, pick: () => boolean): void {
  const failing = new WeakSet<object>();
  client.middlewareStack.add(
    (next, context) => (args) => {
      if (context.commandName === command && pick()) failing.add(context);
      return next(args);
    },
    { step: 'initialize', name: `armlibFailCalls${String(++faults)}` },
  );
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!failing.has(context)) return next(args);
      return { response: errorResponse(reply), output: undefined as never };
    },
    { step: 'deserialize', priority: 'low', name: `armlibFailCallsReply${String(++faults)}` },
  );
}

/** Makes every ListObjectsV2 of `client` ask for pages of at most `maxKeys` objects. */
export function smallPages(client: S3Client, maxKeys: number): void {
  client.middlewareStack.add(
    (next, context) => (args) =>
      next(
        context.commandName === 'ListObjectsV2Command' ? { ...args, input: { ...args.input, MaxKeys: maxKeys } } : args,
      ),
    { step: 'initialize', name: `armlibSmallPages${String(++faults)}` },
  );
}

/**
 * A client whose first call `matches` picks waits until the returned `release` is called;
 * `reached` resolves when it starts waiting. Armed once.
 */
export function holdOnce(
  client: S3Client,
  matches: (command: string, input: CommandInput) => boolean,
): { reached: Promise<void>; release: () => void } {
  let reach!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (armed && matches(context.commandName ?? '', args.input as CommandInput)) {
        armed = false;
        reach();
        await released;
      }
      return next(args);
    },
    { step: 'initialize', name: `armlibHoldOnce${String(++faults)}` },
  );
  return { reached, release };
}

/** The HTTP response S3 sends for an error `reply`, for the deserializer to turn into an exception. */
function errorResponse(reply: FaultReply): {
  statusCode: number;
  reason: string;
  headers: Record<string, string>;
  body: Readable;
} {
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${reply.code}</Code>` +
    `<Message>injected ${reply.code}</Message><RequestId>test</RequestId></Error>`;
  return {
    statusCode: reply.status,
    reason: reply.code,
    headers: { 'content-type': 'application/xml', 'x-amz-request-id': 'test' },
    body: Readable.from([Buffer.from(xml)]),
  };
}
