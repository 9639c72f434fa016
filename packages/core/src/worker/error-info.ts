import { ArmError, BackendError, ERROR_CODES } from '../errors.js';
import type { ErrorInfo } from '../model.js';

const PERMANENT_CODES: ReadonlySet<string> = new Set([
  ERROR_CODES.PERMANENT,
  ERROR_CODES.INVALID_REQUEST,
  ERROR_CODES.CONFLICT,
]);
const MAX_MESSAGE = 1000;

/** Records what a handler threw: a stable code, a bounded message, and whether a retry may help. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (BackendError.is(error)) return { code: error.code, message: clip(error.message), retryable: error.retryable };
  if (ArmError.is(error))
    return { code: error.code, message: clip(error.message), retryable: !PERMANENT_CODES.has(error.code) };
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      code: typeof code === 'string' && code !== '' ? code : 'HANDLER_ERROR',
      message: clip(error.message),
      retryable: true,
    };
  }
  return { code: 'HANDLER_ERROR', message: clip(String(error)), retryable: true };
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
}
