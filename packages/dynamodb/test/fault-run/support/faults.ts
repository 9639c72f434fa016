import { Readable } from 'node:stream';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Faults injected into DynamoDB SDK calls. `-after` kinds let the request reach the server (the
 * write is applied) and then lose the answer: the dangerous case for conditional writes, since a
 * retry of the same write finds its own effect and fails its condition.
 */
export type TransientFault =
  | 'throttling'
  | 'throughput'
  | 'internal-500'
  | 'unavailable-503'
  | 'internal-500-after'
  | 'timeout'
  | 'timeout-after'
  | 'reset'
  | 'reset-after';

/** Faults a retry cannot cure. */
export type PermanentFault = 'access-denied' | 'validation';

/** Any injectable fault. */
export type Fault = TransientFault | PermanentFault;

/** Mix of transient faults (weights, out of 100): about 40% of them after the request was applied. */
export const TRANSIENT_MIX: readonly (readonly [TransientFault, number])[] = [
  ['throttling', 12],
  ['throughput', 8],
  ['internal-500', 10],
  ['unavailable-503', 5],
  ['internal-500-after', 10],
  ['timeout', 10],
  ['timeout-after', 15],
  ['reset', 15],
  ['reset-after', 15],
];

/** A small seeded PRNG (mulberry32): the same seed gives the same fault sequence per client. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An HTTP response as the SDK's deserializer reads it (DynamoDB's JSON error shape). */
function errorResponse(status: number, type: string | undefined, message: string): unknown {
  const body =
    type === undefined ? '' : JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message });
  return {
    statusCode: status,
    reason: 'injected',
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': 'injected-fault' },
    body: Readable.from([Buffer.from(body, 'utf8')]),
  };
}

function networkError(kind: 'timeout' | 'reset'): Error {
  if (kind === 'timeout')
    return Object.assign(new Error('injected: socket timed out waiting for the response'), { name: 'TimeoutError' });
  return Object.assign(new Error('injected: socket hang up'), { code: 'ECONNRESET' });
}

/** Throws the unread body of a real response away (the connection is considered dropped). */
function discard(response: unknown): void {
  const body = typeof response === 'object' && response !== null ? (response as { body?: unknown }).body : undefined;
  if (body instanceof Readable) body.destroy();
}

/**
 * Injects faults into every call of the clients it is attached to: at random with `rate`
 * (seeded), and on demand with {@link FaultInjector.failNext}. Counts what it injected, by fault
 * and command.
 */
export class FaultInjector {
  /** Probability that a call fails (0 disables the random faults). */
  rate: number;
  /** Calls seen. */
  calls = 0;
  readonly injected = new Map<string, number>();
  readonly #random: () => number;
  readonly #queued: { fault: Fault; command: RegExp | undefined }[] = [];

  constructor(seed: number, rate: number) {
    this.#random = prng(seed);
    this.rate = rate;
  }

  /** The next call (of a command whose name matches `command`, when given) fails with `fault`, whatever the rate. */
  failNext(fault: Fault, command?: RegExp): void {
    this.#queued.push({ fault, command });
  }

  /** Total injected faults of the given kinds (all kinds when none are given). */
  count(...faults: Fault[]): number {
    let n = 0;
    for (const [name, c] of this.injected) {
      const fault = name.split(' ')[0] as Fault;
      if (faults.length === 0 || faults.includes(fault)) n += c;
    }
    return n;
  }

  /**
   * Adds the middleware in the `deserialize` step, below the SDK's retry (finalizeRequest) and
   * right above the HTTP handler: each attempt the SDK makes passes through it, and fake
   * responses go through the real deserializer, so the errors are the SDK's own exception types.
   */
  attach(client: DynamoDBClient): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        this.calls++;
        const command = context.commandName ?? 'unknown';
        const fault = this.#pick(command);
        if (fault === undefined) return next(args);
        const name = `${fault} ${command}`;
        this.injected.set(name, (this.injected.get(name) ?? 0) + 1);
        type Out = Awaited<ReturnType<typeof next>>;
        const fake = (status: number, type: string | undefined, message: string): Out =>
          ({ response: errorResponse(status, type, message), output: {} }) as unknown as Out;
        switch (fault) {
          case 'throttling':
            return fake(400, 'ThrottlingException', 'injected: rate of requests exceeds the allowed throughput');
          case 'throughput':
            return fake(400, 'ProvisionedThroughputExceededException', 'injected: provisioned throughput exceeded');
          case 'internal-500':
            return fake(500, 'InternalServerError', 'injected: internal server error');
          case 'unavailable-503':
            return fake(503, undefined, '');
          case 'access-denied':
            return fake(400, 'AccessDeniedException', 'injected: not authorized to perform this action');
          case 'validation':
            return fake(400, 'ValidationException', 'injected: one or more parameter values were invalid');
          case 'timeout':
          case 'reset':
            throw networkError(fault);
          case 'internal-500-after': {
            discard((await next(args)).response);
            return fake(500, 'InternalServerError', 'injected: internal server error after the write');
          }
          case 'timeout-after':
          case 'reset-after': {
            discard((await next(args)).response);
            throw networkError(fault === 'timeout-after' ? 'timeout' : 'reset');
          }
        }
      },
      { step: 'deserialize', priority: 'low', name: 'armlibFaultInjection', override: true },
    );
  }

  #pick(command: string): Fault | undefined {
    const i = this.#queued.findIndex((q) => q.command === undefined || q.command.test(command));
    const queued = i < 0 ? undefined : this.#queued.splice(i, 1)[0];
    if (queued !== undefined) return queued.fault;
    if (this.rate <= 0 || this.#random() >= this.rate) return undefined;
    let r = this.#random() * 100;
    for (const [fault, weight] of TRANSIENT_MIX) {
      r -= weight;
      if (r < 0) return fault;
    }
    return 'reset';
  }
}
