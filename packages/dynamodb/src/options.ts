import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { checkReadable, ConfigError, readAdapterOptions, tryReadAdapterOptions } from '@armlib/core';
import type { ConfigIssue } from '@armlib/core';

/** Suffix appended to `tablePrefix` when no `tableName` is given. */
export const TABLE_SUFFIX = 'armlib-queue';

/** Options of {@link DynamoQueueManager} (`queue.options` when the adapter is `dynamodb`). */
export interface DynamoQueueManagerOptions {
  /** Full table name. Give this or `tablePrefix`; with neither the table is `armlib-queue`. */
  tableName?: string;
  /** Table name prefix: the table is `<tablePrefix>armlib-queue` (e.g. `prod-` → `prod-armlib-queue`). */
  tablePrefix?: string;
  /** AWS region of the client armlib builds (never together with `client`). */
  region?: string;
  /** Endpoint URL of the client armlib builds, e.g. DynamoDB Local (never together with `client`). */
  endpoint?: string;
  /** A ready DynamoDB client to use; never together with `clientConfig`, `region` or `endpoint`. Not closed by armlib. */
  client?: DynamoDBClient;
  /**
   * Configuration of the client armlib builds (and destroys on close); never together with `client`.
   * A `requestHandler` given here is used as it is: then its timeouts are yours to set, and
   * `connectTimeoutMs` / `requestTimeoutMs` are refused.
   */
  clientConfig?: DynamoDBClientConfig;
  /**
   * How long the client armlib builds waits for a connection to DynamoDB (DNS lookup and TCP
   * connect), ms; default 3000. An integer from 10 to 3600000. On expiry the call fails with a
   * retryable `BackendError` (after the SDK's own retries). Never together with `client` or
   * `clientConfig.requestHandler`.
   */
  connectTimeoutMs?: number;
  /**
   * How long a request of the client armlib builds may wait with nothing sent or received on its
   * connection (an idle timeout on the socket, not a limit on the whole request), ms; default
   * 10000. An integer from 10 to 3600000. A server that accepts the connection and never answers
   * fails the call with a retryable `BackendError` (after the SDK's own retries) instead of
   * hanging it. Never together with `client` or `clientConfig.requestHandler`.
   */
  requestTimeoutMs?: number;
  /** Shards of the work index (pending and running entries); default 4. Fixed for the life of a table. */
  shards?: number;
  /** Partitions the records are spread over (list, counts and prune Query each); default 16. Fixed for the life of a table. */
  recordShards?: number;
  /** Create the table at first use when it does not exist (idempotent); default false. */
  ensureTable?: boolean;
  /** How often buffered counters (activity, durations) are written, ms of real time; default 1000. */
  flushIntervalMs?: number;
  /** How long duration statistics and worker capacity read from the table are reused, ms; default 2000. */
  statsCacheMs?: number;
  /** How long the live-record counts behind `maxQueueLength` / `maxPendingPerOwner` are reused, ms; default 5000. */
  capsRefreshMs?: number;
}

/**
 * Timeouts of the client armlib builds when the options leave them out (see
 * {@link DynamoQueueManagerOptions.connectTimeoutMs} and {@link DynamoQueueManagerOptions.requestTimeoutMs}).
 */
export const DYNAMO_CLIENT_TIMEOUTS: Readonly<{ connectTimeoutMs: number; requestTimeoutMs: number }> = Object.freeze({
  connectTimeoutMs: 3000,
  requestTimeoutMs: 10_000,
});

/** Options with defaults applied (the client is resolved separately). */
export interface ResolvedDynamoOptions {
  readonly tableName: string;
  readonly shards: number;
  readonly recordShards: number;
  readonly ensureTable: boolean;
  readonly flushIntervalMs: number;
  readonly statsCacheMs: number;
  readonly capsRefreshMs: number;
}

const KNOWN = new Set([
  'tableName',
  'tablePrefix',
  'region',
  'endpoint',
  'client',
  'clientConfig',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'shards',
  'recordShards',
  'ensureTable',
  'flushIntervalMs',
  'statsCacheMs',
  'capsRefreshMs',
]);
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Whether a value can serve as the client: checked by shape, not `instanceof`, as the host's client
 * may come from another copy of the AWS SDK (its own version, or a bundled one), whose class is a
 * different object. What the adapter uses: `send`, `middlewareStack.add` (the document client and
 * the cost helper add middleware) and `config`.
 */
function isDynamoClient(value: unknown): boolean {
  if (!isObject(value)) return false;
  const stack = value['middlewareStack'];
  return (
    typeof value['send'] === 'function' &&
    isObject(stack) &&
    typeof stack['add'] === 'function' &&
    isObject(value['config'])
  );
}

function checkInteger(o: Record<string, unknown>, name: string, min: number, max: number, issues: ConfigIssue[]): void {
  const v = o[name];
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    issues.push({ path: `/${name}`, message: `must be an integer from ${min} to ${max}, got ${describe(v)}` });
  }
}

function checkString(o: Record<string, unknown>, name: string, issues: ConfigIssue[]): void {
  const v = o[name];
  if (v !== undefined && (typeof v !== 'string' || v.length === 0)) {
    issues.push({ path: `/${name}`, message: `must be a non-empty string, got ${describe(v)}` });
  }
}

/**
 * Checks DynamoDB queue options without any I/O; each issue's path is relative to the options
 * object (`/clientConfig`, `/shards`, …). An empty list means the options are usable.
 */
export function checkDynamoQueueOptions(given: unknown): ConfigIssue[] {
  // Each field read once: a getter or proxy trap that throws is an issue naming it, not a throw.
  const read = tryReadAdapterOptions(given, KNOWN);
  if (read.issues.length > 0) return read.issues;
  const options = read.value;
  if (options === undefined || options === null) return [];
  if (!isObject(options)) return [{ path: '', message: 'must be an object' }];
  const issues: ConfigIssue[] = [];
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name) && options[name] !== undefined) {
      issues.push({ path: `/${name}`, message: `unknown option (expected one of ${[...KNOWN].join(', ')})` });
    }
  }
  checkString(options, 'tableName', issues);
  checkString(options, 'tablePrefix', issues);
  checkString(options, 'region', issues);
  checkString(options, 'endpoint', issues);
  if (options['tableName'] !== undefined && options['tablePrefix'] !== undefined) {
    issues.push({ path: '/tablePrefix', message: 'give either /tableName or /tablePrefix, not both' });
  }
  const name = tableNameOf(options);
  if (name !== undefined && !TABLE_NAME.test(name)) {
    issues.push({
      path: options['tableName'] === undefined ? '/tablePrefix' : '/tableName',
      message: `table name '${name}' must be 3 to 255 characters of A-Z a-z 0-9 _ . -`,
    });
  }
  if (typeof options['endpoint'] === 'string') {
    try {
      new URL(options['endpoint']);
    } catch {
      issues.push({ path: '/endpoint', message: `must be a URL, got ${describe(options['endpoint'])}` });
    }
  }
  if (options['client'] !== undefined && options['clientConfig'] !== undefined) {
    issues.push({
      path: '/client',
      message: 'give either /client or /clientConfig, not both (/client and /clientConfig are both set)',
    });
  }
  if (
    options['client'] !== undefined &&
    checkReadable('/client', issues, () => isDynamoClient(options['client'])) === false
  ) {
    issues.push({ path: '/client', message: 'must be a DynamoDBClient (send, middlewareStack and config)' });
  }
  // A ready client carries its own region, endpoint and timeouts: these would be ignored, and a
  // config that points at an emulator would then write wherever the client points (real AWS, say).
  for (const name of ['region', 'endpoint', 'connectTimeoutMs', 'requestTimeoutMs'] as const) {
    if (options['client'] !== undefined && options[name] !== undefined) {
      issues.push({
        path: `/${name}`,
        message: `applies only to the client armlib builds: with /client set, give it to that client instead`,
      });
    }
  }
  const config = options['clientConfig'];
  const configIsObject = config === undefined ? false : checkReadable('/clientConfig', issues, () => isObject(config));
  if (config !== undefined && configIsObject === false) {
    issues.push({ path: '/clientConfig', message: 'must be an object (a DynamoDBClientConfig)' });
  }
  // A request handler of the user's is used as it is: the timeouts would be silently dropped.
  const ownHandler =
    configIsObject === true &&
    checkReadable('/clientConfig', issues, () => (config as Record<string, unknown>)['requestHandler'] !== undefined);
  if (ownHandler === true) {
    for (const [name, field] of [
      ['connectTimeoutMs', 'connectionTimeout'],
      ['requestTimeoutMs', 'socketTimeout'],
    ] as const) {
      if (options[name] !== undefined) {
        issues.push({
          path: `/${name}`,
          message: `cannot be combined with /clientConfig/requestHandler, which is used as given: set its ${field} instead`,
        });
      }
    }
  }
  checkInteger(options, 'shards', 1, 256, issues);
  checkInteger(options, 'recordShards', 1, 1024, issues);
  checkInteger(options, 'flushIntervalMs', 10, 3_600_000, issues);
  checkInteger(options, 'statsCacheMs', 0, 3_600_000, issues);
  checkInteger(options, 'capsRefreshMs', 0, 3_600_000, issues);
  checkInteger(options, 'connectTimeoutMs', 10, 3_600_000, issues);
  checkInteger(options, 'requestTimeoutMs', 10, 3_600_000, issues);
  if (options['ensureTable'] !== undefined && typeof options['ensureTable'] !== 'boolean') {
    issues.push({ path: '/ensureTable', message: 'must be a boolean' });
  }
  return issues;
}

/** A value for an error message; never throws (a bigint, a toJSON that throws). */
function describe(value: unknown): string {
  if (value === undefined || typeof value === 'symbol' || typeof value === 'function') return typeof value;
  try {
    return JSON.stringify(value);
  } catch {
    return typeof value;
  }
}

function tableNameOf(o: Record<string, unknown>): string | undefined {
  const name = o['tableName'];
  if (typeof name === 'string') return name;
  const prefix = o['tablePrefix'];
  if (typeof prefix === 'string') return `${prefix}${TABLE_SUFFIX}`;
  return undefined;
}

/**
 * The options as given to the constructor, each field read once into a plain object (see
 * `readAdapterOptions`): a getter or proxy trap that throws is a {@link ConfigError} naming the
 * field. What {@link resolveDynamoOptions} and {@link resolveClient} are given.
 */
export function readDynamoOptions(options: unknown): DynamoQueueManagerOptions | undefined {
  return readAdapterOptions(options, KNOWN, 'invalid dynamodb queue options') as DynamoQueueManagerOptions | undefined;
}

/** Validates (throwing {@link ConfigError} with every issue) and applies defaults. */
export function resolveDynamoOptions(options: DynamoQueueManagerOptions | undefined): ResolvedDynamoOptions {
  const issues = checkDynamoQueueOptions(options);
  if (issues.length > 0) throw new ConfigError('invalid dynamodb queue options', issues);
  const o = options ?? {};
  return {
    tableName: tableNameOf(o as Record<string, unknown>) ?? TABLE_SUFFIX,
    shards: o.shards ?? 4,
    recordShards: o.recordShards ?? 16,
    ensureTable: o.ensureTable ?? false,
    flushIntervalMs: o.flushIntervalMs ?? 1000,
    statsCacheMs: o.statsCacheMs ?? 2000,
    capsRefreshMs: o.capsRefreshMs ?? 5000,
  };
}

/**
 * The configuration of the client armlib builds: `clientConfig` with `region` and `endpoint` laid
 * over it and, unless `clientConfig` has a `requestHandler` of its own, the timeouts. They go to
 * the SDK's node HTTP handler as its options: `connectionTimeout`, and `socketTimeout` (the idle
 * timeout, which also covers a response body that stops arriving). Not the handler's
 * `requestTimeout`: it only logs a warning unless `throwOnRequestTimeout` is set, and ends at the
 * response headers.
 */
export function clientConfigOf(options: DynamoQueueManagerOptions | undefined): DynamoDBClientConfig {
  const o = options ?? {};
  const config: DynamoDBClientConfig = { ...(o.clientConfig ?? {}) };
  if (o.region !== undefined) config.region = o.region;
  if (o.endpoint !== undefined) config.endpoint = o.endpoint;
  config.requestHandler ??= {
    connectionTimeout: o.connectTimeoutMs ?? DYNAMO_CLIENT_TIMEOUTS.connectTimeoutMs,
    socketTimeout: o.requestTimeoutMs ?? DYNAMO_CLIENT_TIMEOUTS.requestTimeoutMs,
  };
  return config;
}

/** The client to use and whether armlib owns it (built here, destroyed on close). */
export function resolveClient(options: DynamoQueueManagerOptions | undefined): {
  client: DynamoDBClient;
  owned: boolean;
} {
  const o = options ?? {};
  if (o.client !== undefined) return { client: o.client, owned: false };
  return { client: new DynamoDBClient(clientConfigOf(o)), owned: true };
}
