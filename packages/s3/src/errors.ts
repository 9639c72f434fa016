import { ArmError, BackendError } from '@armlib/core';

// S3 error names (and a few SDK / Node ones) after which the same call may succeed.
const RETRYABLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'NetworkingError',
  // Temporary credentials ran out (HTTP 400): the SDK's provider refreshes them, so a retry
  // succeeds (as the DynamoDB adapter reads ExpiredTokenException).
  'ExpiredToken',
  'ExpiredTokenException',
]);

// Node / undici socket errors: the connection failed, not the request.
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  cause?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

function shapeOf(error: unknown): SdkErrorShape {
  return typeof error === 'object' && error !== null ? error : {};
}

function statusOf(error: unknown): number | undefined {
  const status = shapeOf(error).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function namesOf(error: unknown): string[] {
  const e = shapeOf(error);
  return [e.name, e.code, e.Code].filter((n): n is string => typeof n === 'string');
}

/**
 * True when S3 says the object is not there (GetObject `NoSuchKey`, HeadObject `NotFound`). A
 * missing bucket is not an absent result: it is a configuration error, reported as such.
 */
export function isNotFound(error: unknown): boolean {
  const names = namesOf(error);
  if (names.includes('NoSuchBucket')) return false;
  return names.includes('NoSuchKey') || names.includes('NotFound') || statusOf(error) === 404;
}

/** True when retrying the call may succeed: throttling, timeouts, 5xx, dropped connections. */
export function isRetryable(error: unknown): boolean {
  // Wrapped errors (lib-storage, stream pipelines) keep the interesting one as cause.
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const status = statusOf(e);
    if (status !== undefined) return status === 429 || status >= 500 || namesOf(e).some((n) => RETRYABLE_NAMES.has(n));
    if (namesOf(e).some((n) => RETRYABLE_NAMES.has(n) || RETRYABLE_CODES.has(n))) return true;
    if (shapeOf(e).$retryable !== undefined && shapeOf(e).$retryable !== false) return true;
    e = shapeOf(e).cause;
  }
  return false;
}

/**
 * Translates anything an S3 call threw into an armlib error: armlib errors pass through, the rest
 * become a {@link BackendError} with `retryable` set and the original kept as `cause`.
 */
export function toBackendError(error: unknown, operation: string): ArmError {
  if (ArmError.is(error)) return error;
  const names = namesOf(error);
  const status = statusOf(error);
  const message = typeof shapeOf(error).message === 'string' ? String(shapeOf(error).message) : String(error);
  const what = [names[0], status === undefined ? undefined : `HTTP ${status}`].filter(Boolean).join(', ');
  return new BackendError(`S3 ${operation} failed${what === '' ? '' : ` (${what})`}: ${message}`, {
    retryable: isRetryable(error),
    cause: error,
  });
}
