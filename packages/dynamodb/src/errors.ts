import { ArmError, BackendError } from '@armlib/core';

const RETRYABLE_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'TransactionInProgressException',
  'ItemCollectionSizeLimitExceededException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'AbortError',
  // Temporary credentials ran out (HTTP 400): the SDK's provider refreshes them, so a retry succeeds.
  'ExpiredTokenException',
]);

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function field(error: unknown, name: string): unknown {
  return typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[name] : undefined;
}

/** The SDK's error name (`ConditionalCheckFailedException`, …), or undefined. */
export function errorName(error: unknown): string | undefined {
  const name = field(error, 'name');
  return typeof name === 'string' ? name : undefined;
}

/** True for a failed condition of a conditional write. */
export function isConditionFailed(error: unknown): boolean {
  return errorName(error) === 'ConditionalCheckFailedException';
}

function httpStatus(error: unknown): number | undefined {
  const meta = field(error, '$metadata');
  const status = field(meta, 'httpStatusCode');
  return typeof status === 'number' ? status : undefined;
}

/**
 * Whether an SDK or network error is worth retrying: throttling, capacity, 5xx, timeouts, dropped
 * connections and expired credentials are; validation, access, missing tables and other 4xx are not.
 */
export function isRetryable(error: unknown): boolean {
  const name = errorName(error);
  if (name !== undefined && RETRYABLE_NAMES.has(name)) return true;
  const code = field(error, 'code');
  if (typeof code === 'string' && RETRYABLE_CODES.has(code)) return true;
  const retryable = field(error, '$retryable');
  if (typeof retryable === 'object' && retryable !== null) return true;
  const status = httpStatus(error);
  if (status !== undefined) return status >= 500 || status === 429;
  // A network failure below HTTP carries no status; its cause often has the errno code.
  const cause = field(error, 'cause');
  if (cause !== undefined && cause !== error) {
    const causeCode = field(cause, 'code');
    if (typeof causeCode === 'string' && RETRYABLE_CODES.has(causeCode)) return true;
  }
  return false;
}

/**
 * An armlib error for anything thrown by the SDK: armlib's own errors pass through, the rest
 * become {@link BackendError} with `retryable` set and the original kept as `cause`.
 */
export function translateError(error: unknown, operation: string): ArmError {
  if (ArmError.is(error)) return error;
  const name = errorName(error) ?? 'Error';
  const message = error instanceof Error ? error.message : String(error);
  return new BackendError(`DynamoDB ${operation} failed: ${name}: ${message}`, {
    retryable: isRetryable(error),
    cause: error,
  });
}
