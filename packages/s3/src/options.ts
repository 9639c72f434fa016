import { constants } from 'node:buffer';

import { S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';

import { checkReadable, ConfigError, readAdapterOptions, tryReadAdapterOptions } from '@armlib/core';
import type { ConfigIssue } from '@armlib/core';

/** Options of {@link S3CacheManager} (the `cache.options` of a config using the `s3` adapter). */
export interface S3CacheManagerOptions {
  /** The bucket holding the cache (required). It must exist; see `S3CacheManager.ensureBucket`. */
  bucket: string;
  /** Prefix of every object key, e.g. `armlib/` (usually ending with `/`). Default `''`. */
  prefix?: string;
  /** AWS region of the client the adapter builds. Not allowed with `client`. */
  region?: string;
  /** Endpoint of the client the adapter builds (e.g. an emulator). Not allowed with `client`. */
  endpoint?: string;
  /** Path-style addressing for the client the adapter builds. Not allowed with `client`. */
  forcePathStyle?: boolean;
  /** A ready S3 client, shared with the application (never destroyed by the adapter). Not with `clientConfig`. */
  client?: S3Client;
  /**
   * Configuration of the client the adapter builds (and destroys on close). Not with `client`. A
   * `requestHandler` given here is used as it is: then its timeouts are yours to set, and
   * `connectTimeoutMs` / `requestTimeoutMs` are refused.
   */
  clientConfig?: S3ClientConfig;
  /**
   * How long the client the adapter builds waits for a connection to S3 (DNS lookup and TCP
   * connect), ms. An integer from 10 to 3600000; default 3000. On expiry the call fails with a
   * retryable `BackendError` (after the SDK's own retries). Not allowed with `client` or
   * `clientConfig.requestHandler`.
   */
  connectTimeoutMs?: number;
  /**
   * How long a request of the client the adapter builds may wait with nothing sent or received on
   * its connection, ms: an idle timeout on the socket, not a limit on the whole request, so a large
   * upload or download that keeps moving is never cut. An integer from 10 to 3600000; default
   * 30000. A server that accepts the connection and never answers fails the call with a retryable
   * `BackendError` (after the SDK's own retries) instead of hanging it; so does a body returned by
   * `get` that stops arriving, or that its reader leaves unread this long. Not allowed with
   * `client` or `clientConfig.requestHandler`.
   */
  requestTimeoutMs?: number;
  /**
   * Gzip formats on write and store them with `Content-Encoding: gzip` (formats written with a
   * content encoding of their own are stored as given). Reads return the original bytes. Default false.
   */
  gzip?: boolean;
  /** Part size of multipart uploads, bytes (at least 5 MiB). Default 5 MiB. */
  partSizeBytes?: number;
  /**
   * Parts uploaded in parallel per format. A write above one part holds `queueSize + 1` part
   * buffers (one filling while the others upload), allocated once and reused. Default 4.
   */
  queueSize?: number;
  /**
   * Age (ms, by S3's LastModified against the manager's clock) after which `sweep` deletes a data
   * object that its key's manifest does not name: the data of a commit that crashed before its
   * manifest, or of a replaced result whose background delete failed. A commit that has not
   * written its manifest within a quarter of this (at most 6 h) of its first data write gives up
   * (retryable `BackendError`), so that no data older than this can still become a result's. At
   * least 1 h. Default 24 h.
   */
  orphanGraceMs?: number;
}

/** The options after validation and defaults, with the client to use. */
export interface ResolvedS3CacheOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly gzip: boolean;
  readonly partSizeBytes: number;
  readonly queueSize: number;
  readonly orphanGraceMs: number;
  /** How long a commit may take from its first data write to its manifest write (see `orphanGraceMs`). */
  readonly commitDeadlineMs: number;
  readonly client: S3Client;
  /** True when the adapter built the client, and so destroys it on close. */
  readonly ownsClient: boolean;
}

const HOUR_MS = 3_600_000;

/**
 * Defaults of the optional tuning fields of {@link S3CacheManagerOptions} (the timeouts apply to a
 * client the adapter builds).
 */
export const S3_CACHE_DEFAULTS = Object.freeze({
  prefix: '',
  gzip: false,
  partSizeBytes: 5 * 1024 * 1024,
  queueSize: 4,
  orphanGraceMs: 24 * HOUR_MS,
  connectTimeoutMs: 3000,
  requestTimeoutMs: 30_000,
});

/** Shortest `orphanGraceMs`: commits need room to finish, and hosts' clocks to disagree. */
const MIN_ORPHAN_GRACE_MS = HOUR_MS;
/** Longest commit deadline, whatever the grace period. */
const MAX_COMMIT_DEADLINE_MS = 6 * HOUR_MS;

/** Smallest part S3 accepts in a multipart upload (except the last part). */
const MIN_PART_BYTES = 5 * 1024 * 1024;
/**
 * Largest part: S3 accepts 5 GiB, but a part is held in one buffer while it uploads, and Node 20
 * caps a buffer at 4 GiB (`buffer.constants.MAX_LENGTH`).
 */
const MAX_PART_BYTES = Math.min(5 * 1024 * 1024 * 1024, constants.MAX_LENGTH);
/** Room left in S3's 1024-byte key limit for `<area>/<key>/<commitId>/<format>`. */
const MAX_PREFIX_LENGTH = 512;
// S3's rules for general purpose bucket names (3-63 chars, lowercase, digits, dots, hyphens).
const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// Options that configure a client the adapter builds, so they make no sense next to `client`.
const CLIENT_FIELDS = [
  'region',
  'endpoint',
  'forcePathStyle',
  'clientConfig',
  'connectTimeoutMs',
  'requestTimeoutMs',
] as const;
/** The timeout options, with the field of the SDK's node HTTP handler each one sets. */
const TIMEOUT_FIELDS = [
  ['connectTimeoutMs', 'connectionTimeout'],
  ['requestTimeoutMs', 'socketTimeout'],
] as const;
/** Bounds of the timeout options (ms). */
const MIN_TIMEOUT_MS = 10;
const MAX_TIMEOUT_MS = HOUR_MS;
/** Every option name of {@link S3CacheManagerOptions}. */
const KNOWN: ReadonlySet<string> = new Set<keyof S3CacheManagerOptions>([
  'bucket',
  'prefix',
  'region',
  'endpoint',
  'forcePathStyle',
  'client',
  'clientConfig',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'gzip',
  'partSizeBytes',
  'queueSize',
  'orphanGraceMs',
]);

/**
 * Checks `cache.options` of the `s3` adapter without any I/O. Each issue's path is relative to
 * the options object (`/bucket`, `/client`…). An unknown name is an issue too, so that a typo
 * (`keyPrefx`) is not silently dropped; options left for another adapter do not reach this
 * check, since switching `cache.adapter` by environment variable drops the file's options.
 */
export function checkS3CacheOptions(given: unknown): ConfigIssue[] {
  // Each field read once: a getter or proxy trap that throws is an issue naming it, not a throw.
  const read = tryReadAdapterOptions(given, KNOWN);
  if (read.issues.length > 0) return read.issues;
  const options = read.value;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return [{ path: '', message: `must be an object with at least a bucket, got ${describe(options)}` }];
  }
  const o = options as Record<string, unknown>;
  const issues: ConfigIssue[] = [];
  for (const name of Object.keys(o)) {
    // An option given as undefined is an option left out (as for the known ones).
    if (!KNOWN.has(name) && o[name] !== undefined) {
      issues.push({ path: `/${name}`, message: `unknown option (expected one of ${[...KNOWN].join(', ')})` });
    }
  }
  if (typeof o['bucket'] !== 'string' || !BUCKET_PATTERN.test(o['bucket']) || o['bucket'].includes('..')) {
    issues.push({
      path: '/bucket',
      message: `must be an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens), got ${describe(o['bucket'])}`,
    });
  }
  const prefix = o['prefix'];
  if (
    prefix !== undefined &&
    (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.length > MAX_PREFIX_LENGTH || !isSafePrefix(prefix))
  ) {
    issues.push({
      path: '/prefix',
      message: `must be a string of at most ${MAX_PREFIX_LENGTH} characters not starting with '/', without '.' or '..' segments, control characters or unpaired surrogates, got ${describe(prefix)}`,
    });
  }
  for (const field of ['region', 'endpoint'] as const) {
    const value = o[field];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      issues.push({ path: `/${field}`, message: `must be a non-empty string, got ${describe(value)}` });
    }
  }
  const endpoint = o['endpoint'];
  if (typeof endpoint === 'string' && endpoint !== '' && !URL.canParse(endpoint)) {
    issues.push({
      path: '/endpoint',
      message: `must be a URL such as http://127.0.0.1:4568, got ${describe(endpoint)}`,
    });
  }
  for (const field of ['forcePathStyle', 'gzip'] as const) {
    const value = o[field];
    if (value !== undefined && typeof value !== 'boolean') {
      issues.push({ path: `/${field}`, message: `must be true or false, got ${describe(value)}` });
    }
  }
  const part = o['partSizeBytes'];
  if (
    part !== undefined &&
    !(Number.isSafeInteger(part) && Number(part) >= MIN_PART_BYTES && Number(part) <= MAX_PART_BYTES)
  ) {
    issues.push({
      path: '/partSizeBytes',
      message: `must be an integer from ${MIN_PART_BYTES} (5 MiB) to ${MAX_PART_BYTES} (S3's 5 GiB, or the largest buffer node holds), got ${describe(part)}`,
    });
  }
  const queue = o['queueSize'];
  if (queue !== undefined && !(Number.isSafeInteger(queue) && Number(queue) >= 1 && Number(queue) <= 64)) {
    issues.push({ path: '/queueSize', message: `must be an integer from 1 to 64, got ${describe(queue)}` });
  }
  const grace = o['orphanGraceMs'];
  if (grace !== undefined && !(Number.isSafeInteger(grace) && Number(grace) >= MIN_ORPHAN_GRACE_MS)) {
    issues.push({
      path: '/orphanGraceMs',
      message: `must be an integer number of ms, at least ${MIN_ORPHAN_GRACE_MS} (1 h), got ${describe(grace)}`,
    });
  }
  for (const [field] of TIMEOUT_FIELDS) {
    const value = o[field];
    if (
      value !== undefined &&
      !(Number.isSafeInteger(value) && Number(value) >= MIN_TIMEOUT_MS && Number(value) <= MAX_TIMEOUT_MS)
    ) {
      issues.push({
        path: `/${field}`,
        message: `must be an integer number of ms from ${MIN_TIMEOUT_MS} to ${MAX_TIMEOUT_MS} (1 h), got ${describe(value)}`,
      });
    }
  }
  issues.push(...clientIssues(o));
  return issues;
}

function clientIssues(o: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const client = o['client'];
  const config = o['clientConfig'];
  if (client !== undefined && checkReadable('/client', issues, () => isS3Client(client)) === false) {
    issues.push({ path: '/client', message: 'must be an S3Client from @aws-sdk/client-s3' });
  }
  const configIsObject =
    config === undefined
      ? false
      : checkReadable(
          '/clientConfig',
          issues,
          () => typeof config === 'object' && config !== null && !Array.isArray(config),
        );
  if (config !== undefined && configIsObject === false) {
    issues.push({ path: '/clientConfig', message: `must be an S3ClientConfig object, got ${describe(config)}` });
  }
  if (client !== undefined) {
    // A given client is used as it is: settings for a client the adapter would build are a mistake.
    for (const field of CLIENT_FIELDS) {
      if (o[field] !== undefined) {
        issues.push({
          path: `/${field}`,
          message: `cannot be combined with /client: give either a client or the settings to build one (/${field})`,
        });
      }
    }
  }
  // A request handler of the user's is used as it is: the timeouts would be silently dropped.
  const ownHandler =
    configIsObject === true &&
    checkReadable('/clientConfig', issues, () => (config as S3ClientConfig).requestHandler !== undefined);
  if (ownHandler === true) {
    for (const [field, handlerField] of TIMEOUT_FIELDS) {
      if (o[field] !== undefined) {
        issues.push({
          path: `/${field}`,
          message: `cannot be combined with /clientConfig/requestHandler, which is used as given: set its ${handlerField} instead`,
        });
      }
    }
  }
  return issues;
}

/** Validates `options` and builds (or takes) the client. Throws {@link ConfigError} naming every bad field. */
export function resolveS3CacheOptions(options: unknown): ResolvedS3CacheOptions {
  // Each field read once: a getter or proxy trap that throws is a ConfigError naming it.
  const raw = readAdapterOptions(options, KNOWN, 'invalid s3 cache options');
  const issues = checkS3CacheOptions(raw);
  if (issues.length > 0) throw new ConfigError('invalid s3 cache options', issues);
  const o = raw as S3CacheManagerOptions;
  const given = o.client;
  const client = given ?? new S3Client(clientConfigOf(o));
  const orphanGraceMs = o.orphanGraceMs ?? S3_CACHE_DEFAULTS.orphanGraceMs;
  return Object.freeze({
    bucket: o.bucket,
    prefix: o.prefix ?? S3_CACHE_DEFAULTS.prefix,
    gzip: o.gzip ?? S3_CACHE_DEFAULTS.gzip,
    partSizeBytes: o.partSizeBytes ?? S3_CACHE_DEFAULTS.partSizeBytes,
    queueSize: o.queueSize ?? S3_CACHE_DEFAULTS.queueSize,
    orphanGraceMs,
    commitDeadlineMs: commitDeadlineOf(orphanGraceMs),
    client,
    ownsClient: given === undefined,
  });
}

/**
 * The commit deadline of a grace period: a quarter of it, at most 6 h. The rest of the grace
 * period (at least three quarters) is the margin for a manifest PUT already under way when the
 * deadline was checked, and for the skew between the hosts' clocks and S3's.
 */
export function commitDeadlineOf(orphanGraceMs: number): number {
  return Math.min(Math.floor(orphanGraceMs / 4), MAX_COMMIT_DEADLINE_MS);
}

/**
 * `clientConfig` with the top-level `region`, `endpoint` and `forcePathStyle` laid over it and,
 * unless `clientConfig` has a `requestHandler` of its own, the timeouts. They go to the SDK's node
 * HTTP handler as its options: `connectionTimeout`, and `socketTimeout` (the idle timeout, which
 * also covers a body `get` streams that stops arriving). Not the handler's `requestTimeout`: it
 * only logs a warning unless `throwOnRequestTimeout` is set, ends at the response headers, and
 * counts the upload of the request body, so it would cut a large part on a slow link.
 */
export function clientConfigOf(o: S3CacheManagerOptions): S3ClientConfig {
  return {
    ...o.clientConfig,
    ...(o.region === undefined ? {} : { region: o.region }),
    ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
    ...(o.forcePathStyle === undefined ? {} : { forcePathStyle: o.forcePathStyle }),
    requestHandler: o.clientConfig?.requestHandler ?? {
      connectionTimeout: o.connectTimeoutMs ?? S3_CACHE_DEFAULTS.connectTimeoutMs,
      socketTimeout: o.requestTimeoutMs ?? S3_CACHE_DEFAULTS.requestTimeoutMs,
    },
  };
}

/** True for an S3Client, also one from another copy of the SDK (duck-typed on what the adapter uses). */
function isS3Client(value: unknown): value is S3Client {
  if (value instanceof S3Client) return true;
  const v = value as Partial<S3Client> | null;
  return typeof v === 'object' && v !== null && typeof v.send === 'function' && typeof v.config === 'object';
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === undefined || typeof value === 'function' || typeof value === 'bigint' || typeof value === 'symbol') {
    return String(value);
  }
  try {
    return JSON.stringify(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return typeof value; // a revoked proxy
    }
  }
}

/**
 * Whether a prefix names one place: no `.` or `..` segment (an S3-compatible server that
 * normalises paths would put the objects outside the prefix, where another cache's clear would
 * reach them and this cache's would not), no control character (NUL fails every request), and
 * well-formed UTF-16 (a lone surrogate cannot be encoded into a request).
 */
function isSafePrefix(prefix: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(prefix) || !isWellFormed(prefix)) return false;
  return !prefix.split('/').some((segment) => segment === '.' || segment === '..');
}

function isWellFormed(text: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}
