import { InvalidRequestError } from '@armlib/core';

/** The cursor of a list page: the seq of its last record (opaque to callers, as the memory queue's). */
export function encodeCursor(seq: number): string {
  return Buffer.from(String(seq), 'utf8').toString('base64url');
}

/** The seq a cursor stands for; `InvalidRequestError` for anything no list call returned. */
export function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const seq = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(seq) || encodeCursor(seq) !== cursor) {
    throw new InvalidRequestError('cursor', 'is not a cursor returned by a previous list call');
  }
  return seq;
}
