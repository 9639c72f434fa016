import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { NormalizedRequest } from '@armlib/core';

import type { DynamoQueueManager } from './dynamo-queue-manager.js';

const READ_OPS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);

/** Requests and capacity units seen by a {@link CommandCounter}. */
export interface CostTally {
  /** Requests sent, by DynamoDB operation name (`PutItem`, `Query`, …; retries not counted twice). */
  readonly commands: Readonly<Record<string, number>>;
  /** Total requests. */
  readonly requests: number;
  /** Read capacity units reported by `ConsumedCapacity` (reads and queries). */
  readonly readUnits: number;
  /** Write capacity units reported by `ConsumedCapacity` (table and index writes). */
  readonly writeUnits: number;
  /** Scans sent (must stay 0). */
  readonly scans: number;
}

/** Counts every command a client sends and the capacity its responses report. */
export interface CommandCounter {
  /** What was seen since the counter was attached or last reset. */
  snapshot(): CostTally;
  /** Starts again from zero. */
  reset(): void;
  /** Removes the middleware from the client. */
  detach(): void;
}

let counterSeq = 0;

function operationOf(request: unknown): string | undefined {
  const headers = (request as { headers?: Record<string, string> } | undefined)?.headers;
  if (headers === undefined) return undefined;
  const target = headers['x-amz-target'] ?? headers['X-Amz-Target'];
  return typeof target === 'string' ? target.slice(target.lastIndexOf('.') + 1) : undefined;
}

function unitsOf(output: unknown): number {
  const consumed = (output as { ConsumedCapacity?: unknown } | undefined)?.ConsumedCapacity;
  const list = Array.isArray(consumed) ? (consumed as unknown[]) : consumed === undefined ? [] : [consumed];
  let units = 0;
  for (const c of list) {
    const n = (c as { CapacityUnits?: unknown }).CapacityUnits;
    if (typeof n === 'number') units += n;
  }
  return units;
}

/**
 * Attaches a middleware that counts every command by operation name (from the `X-Amz-Target`
 * header, so document-client commands count as the operation they send) and sums the capacity
 * units of the responses (the adapter asks for `ReturnConsumedCapacity` on every call).
 */
export function attachCommandCounter(client: DynamoDBClient): CommandCounter {
  const name = `armlibCommandCounter${String(++counterSeq)}`;
  let commands: Record<string, number> = {};
  let readUnits = 0;
  let writeUnits = 0;
  client.middlewareStack.add(
    (next) => async (args) => {
      const op = operationOf(args.request) ?? 'Unknown';
      commands[op] = (commands[op] ?? 0) + 1;
      const result = await next(args);
      const units = unitsOf(result.output);
      if (READ_OPS.has(op)) readUnits += units;
      else writeUnits += units;
      return result;
    },
    { step: 'build', name, override: true },
  );
  return {
    snapshot(): CostTally {
      const requests = Object.values(commands).reduce((a, b) => a + b, 0);
      return { commands: { ...commands }, requests, readUnits, writeUnits, scans: commands['Scan'] ?? 0 };
    },
    reset(): void {
      commands = {};
      readUnits = 0;
      writeUnits = 0;
    },
    detach(): void {
      client.middlewareStack.remove(name);
    },
  };
}

/** Cost of one lifecycle, step by step and in total. */
export interface LifecycleCost {
  readonly steps: Readonly<Record<'enqueue' | 'claim' | 'heartbeat' | 'complete' | 'status', CostTally>>;
  readonly total: CostTally;
  /** The periodic flush of buffered counters this lifecycle added to (amortised over every request of the interval). */
  readonly flush: CostTally;
  /** A status read of a pending request (get, position, uriStats, capacity), for comparison. */
  readonly pendingStatus: CostTally;
}

function sum(tallies: CostTally[]): CostTally {
  const commands: Record<string, number> = {};
  let requests = 0;
  let readUnits = 0;
  let writeUnits = 0;
  let scans = 0;
  for (const t of tallies) {
    for (const [op, n] of Object.entries(t.commands)) commands[op] = (commands[op] ?? 0) + n;
    requests += t.requests;
    readUnits += t.readUnits;
    writeUnits += t.writeUnits;
    scans += t.scans;
  }
  return { commands, requests, readUnits, writeUnits, scans };
}

/** Options of {@link measureLifecycleCost}. */
export interface MeasureOptions {
  /** Key of the measured request (must not be queued); default a fresh random one. */
  readonly key?: string;
  /** Lease length, ms; default 30000. */
  readonly leaseMs?: number;
}

/**
 * Runs one lifecycle on `queue` — enqueue, claim, one heartbeat, complete, and the status read the
 * manager makes of a finished request (`get`) — and reports the requests and capacity units of
 * each step from `ReturnConsumedCapacity` and a command counter. The queue should be otherwise
 * idle (nothing else pending), so that the claim takes the measured request.
 */
export async function measureLifecycleCost(
  queue: DynamoQueueManager,
  options: MeasureOptions = {},
): Promise<LifecycleCost> {
  const key = options.key ?? `cost-${String(Date.now())}-${String(Math.floor(Math.random() * 1e9))}`;
  const leaseMs = options.leaseMs ?? 30_000;
  const request: NormalizedRequest = { uri: '/cost/lifecycle', key, group: 'default', priority: 0 };
  const counter = attachCommandCounter(queue.client);
  const step = async (run: () => Promise<unknown>): Promise<CostTally> => {
    counter.reset();
    await run();
    return counter.snapshot();
  };
  try {
    // Flush anything older first, so that it is not counted here.
    await queue.flush();
    const enqueue = await step(() => queue.enqueue({ key, request, maxAttempts: 3 }, { limits: {} }));
    let token = '';
    const claim = await step(async () => {
      const lease = await queue.claim({ workerId: 'cost', leaseMs, policies: {} });
      if (lease?.record.key !== key)
        throw new Error(`measureLifecycleCost: the claim took ${lease?.record.key ?? 'nothing'}, not ${key}`);
      token = lease.token;
    });
    const heartbeat = await step(() => queue.heartbeat(key, token, { leaseMs, progress: 50 }));
    const complete = await step(() => queue.complete(key, token, { durationMs: 1000 }));
    const status = await step(() => queue.get(key));
    const flush = await step(() => queue.flush());
    const pendingKey = `${key}-p`;
    await queue.enqueue({ key: pendingKey, request: { ...request, key: pendingKey }, maxAttempts: 3 }, { limits: {} });
    await queue.flush();
    const pendingStatus = await step(async () => {
      await queue.get(pendingKey);
      await queue.position(pendingKey);
      await queue.uriStats(request.uri);
      await queue.capacity();
    });
    await queue.cancel(pendingKey, {});
    const steps = { enqueue, claim, heartbeat, complete, status };
    return { steps, total: sum(Object.values(steps)), flush, pendingStatus };
  } finally {
    counter.detach();
  }
}
