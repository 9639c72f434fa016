import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ManualClock, MemoryCacheManager } from '@armlib/core';
import type { CacheManager, Clock } from '@armlib/core';
import type { AdapterFactory } from '@armlib/conformance';

import { attachCommandCounter, deleteTable, DynamoQueueManager, ensureTable } from '../../src/index.js';
import type { CommandCounter, CostTally } from '../../src/index.js';
import type { DynamoQueueManagerOptions } from '../../src/index.js';
import { InFlight, settleWithRequests } from './in-flight.js';
import { acquireBackend, releaseBackend, uniqueTableName } from './emulator.js';
import type { Backend, BackendKind } from './emulator.js';

const counters = new Map<BackendKind, CommandCounter[]>();

/** Counts every command of the client (for the no-Scan checks over whole suites). */
function countCommands(kind: BackendKind, client: DynamoDBClient): void {
  const list = counters.get(kind) ?? [];
  list.push(attachCommandCounter(client));
  counters.set(kind, list);
}

/** Every command sent by the test tables' clients on one backend so far. */
export function commandTally(kind: BackendKind): CostTally {
  let requests = 0;
  let scans = 0;
  const commands: Record<string, number> = {};
  for (const c of counters.get(kind) ?? []) {
    const t = c.snapshot();
    requests += t.requests;
    scans += t.scans;
    for (const [op, n] of Object.entries(t.commands)) commands[op] = (commands[op] ?? 0) + n;
  }
  return { commands, requests, scans, readUnits: 0, writeUnits: 0 };
}

/** Registers before/after hooks that start and stop a backend; returns a getter for it. */
export function useBackend(kind: BackendKind): () => Backend {
  let backend: Backend | undefined;
  before(async function () {
    this.timeout(90_000);
    backend = await acquireBackend(kind);
  });
  after(async function () {
    this.timeout(30_000);
    await releaseBackend(kind);
  });
  return () => {
    if (backend === undefined) throw new Error(`backend ${kind} is not started`);
    return backend;
  };
}

/** A fresh table on the backend, with a client; `drop()` deletes the table and destroys the client. */
export interface TestTable {
  readonly name: string;
  readonly client: DynamoDBClient;
  /** The client's requests in flight (a conformance clock waits for them before it moves). */
  readonly inFlight: InFlight;
  queue(clock: Clock, options?: Partial<DynamoQueueManagerOptions>): DynamoQueueManager;
  drop(): Promise<void>;
}

/** Creates a uniquely named table on the backend. */
export async function createTestTable(
  backend: Backend,
  defaults: Partial<DynamoQueueManagerOptions> = {},
): Promise<TestTable> {
  const client = backend.client();
  const inFlight = new InFlight();
  inFlight.track(client);
  countCommands(backend.kind, client);
  const name = uniqueTableName();
  await ensureTable(client, name);
  return {
    name,
    client,
    inFlight,
    queue: (clock, options = {}) => new DynamoQueueManager({ client, tableName: name, ...defaults, ...options }, clock),
    drop: async () => {
      try {
        await deleteTable(client, name);
      } finally {
        client.destroy();
      }
    },
  };
}

/** The cache with `close` made a no-op (a peer shares the instance's memory cache). */
function shared(cache: CacheManager): CacheManager {
  return new Proxy(cache, {
    get(target, prop) {
      if (prop === 'close') return () => Promise.resolve();
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Conformance factory: a DynamoQueueManager on its own table with a memory cache; peers share both. */
export function conformanceFactory(backend: () => Backend): AdapterFactory {
  return async ({ clock }) => {
    // Fewer shards than the default: the same code paths, fewer requests per step (the suite runs on
    // busy two-core CI machines); the adapter's own tests use the defaults.
    const table = await createTestTable(backend(), { shards: 2, recordShards: 1 });
    if (clock instanceof ManualClock) settleWithRequests(clock, table.inFlight);
    const cache = new MemoryCacheManager({}, clock);
    return {
      queue: table.queue(clock),
      cache,
      peer: () => Promise.resolve({ queue: table.queue(clock), cache: shared(cache) }),
      close: () => table.drop(),
    };
  };
}
