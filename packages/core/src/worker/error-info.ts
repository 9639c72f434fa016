import { ArmError, BackendError, ERROR_CODES } from '../errors.js';
import type { ErrorInfo } from '../model.js';

const PERMANENT_CODES: ReadonlySet<string> = new Set([
  ERROR_CODES.PERMANENT,
  ERROR_CODES.INVALID_REQUEST,
  ERROR_CODES.CONFLICT,
]);
const MAX_MESSAGE = 1000;
/** A code a handler's error carries is kept when it looks like one (`ECONNRESET`, `ERR_…`, `Throttled`). */
const CODE_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const HANDLER_ERROR = 'HANDLER_ERROR';

/**
 * Records what a handler threw: a stable code, a bounded message, and whether a retry may help.
 * Total: whatever was thrown (a value whose `toString` throws, a non-string `message`, a getter
 * that throws), it returns, so that the run is always finished.
 */
export function toErrorInfo(error: unknown): ErrorInfo {
  try {
    return describe(error);
  } catch {
    return { code: HANDLER_ERROR, message: 'the handler threw a value that cannot be read', retryable: true };
  }
}

function describe(error: unknown): ErrorInfo {
  if (BackendError.is(error)) return { code: error.code, message: clip(error.message), retryable: error.retryable };
  if (ArmError.is(error))
    return { code: error.code, message: clip(error.message), retryable: !PERMANENT_CODES.has(error.code) };
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      code: typeof code === 'string' && CODE_PATTERN.test(code) ? code : HANDLER_ERROR,
      message: clip(text(error.message)),
      retryable: true,
    };
  }
  return { code: HANDLER_ERROR, message: clip(text(error)), retryable: true };
}

/** `String(value)`, or the object's tag for a value with no usable `toString` (a null-prototype object). */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
}
