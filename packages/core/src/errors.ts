const BRAND: unique symbol = Symbol.for('@armlib/core/ArmError');

/** Stable error codes carried by every {@link ArmError}. */
export const ERROR_CODES = {
  INVALID_REQUEST: 'INVALID_REQUEST',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  LEASE_LOST: 'LEASE_LOST',
  QUEUE_FULL: 'QUEUE_FULL',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  CONFIG: 'CONFIG',
  BACKEND: 'BACKEND',
  PERMANENT: 'PERMANENT',
  TIMEOUT: 'TIMEOUT',
  CLOSED: 'CLOSED',
  ABORTED: 'ABORTED',
} as const;

/** One of the stable codes of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** Options common to every armlib error. */
export interface ArmErrorOptions {
  /** The underlying error (SDK, fs, handler) kept for diagnosis. */
  cause?: unknown;
}

/**
 * Root of armlib's error hierarchy. Every error carries a stable `code`, keeps the original
 * error as `cause`, and is branded with a `Symbol.for` key so that `ArmError.is()` (and each
 * subclass's `is()`) works even when two copies of `@armlib/core` are installed.
 */
export class ArmError extends Error {
  /** The code subclasses stamp on their instances; `undefined` on the root. */
  static readonly code: ErrorCode | undefined = undefined;
  readonly [BRAND] = true as const;
  /** Stable, machine-readable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: ArmErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }

  /** True when `value` is an armlib error of this class (by brand and code, not `instanceof`). */
  static is<T extends abstract new (...args: never[]) => ArmError>(
    this: T & { readonly code: ErrorCode | undefined },
    value: unknown,
  ): value is InstanceType<T> {
    if (typeof value !== 'object' || value === null) return false;
    if ((value as Record<symbol, unknown>)[BRAND] !== true) return false;
    return this.code === undefined || (value as { code?: unknown }).code === this.code;
  }

  /** A plain object for logs and HTTP bodies. */
  toJSON(): { name: string; code: ErrorCode; message: string } {
    return { name: this.name, code: this.code, message: this.message };
  }
}

/** A request, key, format or argument is malformed. `field` names the offending input. */
export class InvalidRequestError extends ArmError {
  static override readonly code = ERROR_CODES.INVALID_REQUEST;
  /** Path of the offending field, e.g. `params.region[1]` or `key`. */
  readonly field: string;
  constructor(field: string, message: string, options?: ArmErrorOptions) {
    super(ERROR_CODES.INVALID_REQUEST, `${field}: ${message}`, options);
    this.field = field;
  }
}

/** The key is neither queued nor cached where the operation needs it to be. */
export class NotFoundError extends ArmError {
  static override readonly code = ERROR_CODES.NOT_FOUND;
  constructor(message: string, options?: ArmErrorOptions) {
    super(ERROR_CODES.NOT_FOUND, message, options);
  }
}

/** The operation conflicts with the current state (e.g. writing after a job finished). */
export class ConflictError extends ArmError {
  static override readonly code = ERROR_CODES.CONFLICT;
  constructor(message: string, options?: ArmErrorOptions) {
    super(ERROR_CODES.CONFLICT, message, options);
  }
}

/** The caller's lease token is no longer the current one: another worker may hold the request. */
export class LeaseLostError extends ArmError {
  static override readonly code = ERROR_CODES.LEASE_LOST;
  /** The request whose lease was lost. */
  readonly key: string;
  constructor(key: string, message = `lease on '${key}' was lost`, options?: ArmErrorOptions) {
    super(ERROR_CODES.LEASE_LOST, message, options);
    this.key = key;
  }
}

/** The queue (globally or for one group) is at its `maxQueueLength`. */
export class QueueFullError extends ArmError {
  static override readonly code = ERROR_CODES.QUEUE_FULL;
  /** The group whose cap was hit, or undefined for the global cap. */
  readonly group: string | undefined;
  /** The cap that was reached. */
  readonly limit: number;
  constructor(limit: number, group?: string, options?: ArmErrorOptions) {
    super(
      ERROR_CODES.QUEUE_FULL,
      group === undefined
        ? `queue is full (maxQueueLength ${String(limit)})`
        : `group '${group}' is full (maxQueueLength ${String(limit)})`,
      options,
    );
    this.group = group;
    this.limit = limit;
  }
}

/** The owner already has `maxPendingPerOwner` requests pending. */
export class QuotaExceededError extends ArmError {
  static override readonly code = ERROR_CODES.QUOTA_EXCEEDED;
  /** The owner whose quota was hit. */
  readonly owner: string;
  /** The quota. */
  readonly limit: number;
  constructor(owner: string, limit: number, options?: ArmErrorOptions) {
    super(
      ERROR_CODES.QUOTA_EXCEEDED,
      `owner '${owner}' already has ${String(limit)} pending requests (maxPendingPerOwner)`,
      options,
    );
    this.owner = owner;
    this.limit = limit;
  }
}

/** One problem found in a configuration. */
export interface ConfigIssue {
  /** JSON-pointer-like path of the field, e.g. `/manager/leaseMs`. */
  path: string;
  /** What was expected there. */
  message: string;
  /**
   * The error behind the issue, when one was thrown (an adapter that failed to load, a plugin's
   * factory that threw): kept for its stack. The {@link ConfigError} carries it as its `cause`
   * (an `AggregateError` when several issues have one).
   */
  cause?: unknown;
}

/** The configuration is invalid; `issues` names every bad field by its path. */
export class ConfigError extends ArmError {
  static override readonly code = ERROR_CODES.CONFIG;
  /** Every problem found, each with its path. */
  readonly issues: readonly ConfigIssue[];
  constructor(message: string, issues: readonly ConfigIssue[] = [], options?: ArmErrorOptions) {
    super(
      ERROR_CODES.CONFIG,
      issues.length === 0
        ? message
        : `${message}\n${issues.map((i) => `  - ${i.path || '/'}: ${i.message}`).join('\n')}`,
      options,
    );
    this.issues = issues;
  }
}

/** A storage backend failed. `retryable` tells whether the same call may succeed later. */
export class BackendError extends ArmError {
  static override readonly code = ERROR_CODES.BACKEND;
  /** Whether retrying the operation may succeed (throttling, timeouts, 5xx). */
  readonly retryable: boolean;
  constructor(message: string, options: ArmErrorOptions & { retryable?: boolean } = {}) {
    super(ERROR_CODES.BACKEND, message, options);
    this.retryable = options.retryable ?? false;
  }
}

/** Thrown by a handler to fail the request at once, without retries. */
export class PermanentError extends ArmError {
  static override readonly code = ERROR_CODES.PERMANENT;
  constructor(message: string, options?: ArmErrorOptions) {
    super(ERROR_CODES.PERMANENT, message, options);
  }
}

/** `waitFor` ran out of time before the request reached a terminal state. */
export class TimeoutError extends ArmError {
  static override readonly code = ERROR_CODES.TIMEOUT;
  constructor(message: string, options?: ArmErrorOptions) {
    super(ERROR_CODES.TIMEOUT, message, options);
  }
}

/** The manager or worker was closed and cannot take the call. */
export class ClosedError extends ArmError {
  static override readonly code = ERROR_CODES.CLOSED;
  constructor(message = 'request manager is closed', options?: ArmErrorOptions) {
    super(ERROR_CODES.CLOSED, message, options);
  }
}

/** Why a job's signal aborted. */
export type AbortReason = 'cancelled' | 'lease-lost' | 'shutdown';

/**
 * The `reason` of an aborted `job.signal`: the request was cancelled, the worker lost its lease,
 * or the worker is shutting down. A handler may let it propagate (`signal.throwIfAborted()`).
 */
export class AbortedError extends ArmError {
  static override readonly code = ERROR_CODES.ABORTED;
  /** Which of the three causes it was. */
  readonly reason: AbortReason;
  /** The request whose job was aborted. */
  readonly key: string;
  constructor(key: string, reason: AbortReason, options?: ArmErrorOptions) {
    super(ERROR_CODES.ABORTED, `job '${key}' aborted: ${reason}`, options);
    this.key = key;
    this.reason = reason;
  }
}
