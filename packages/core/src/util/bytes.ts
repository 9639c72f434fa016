import { InvalidRequestError } from '../errors.js';
import { showValue } from '../keys.js';
import type { ByteRange } from '../spi/cache.js';

/** A validated, inclusive byte range of an object; `length` is 0 only for an empty object. */
export interface ResolvedRange {
  readonly start: number;
  /** Inclusive; `start - 1` when the range is empty. */
  readonly end: number;
  readonly length: number;
}

/**
 * Reads a whole byte stream into one Buffer. Each chunk is copied as it arrives, because
 * producers may reuse their buffer for the next chunk. Meant for tests and small data only.
 */
export async function readAll(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const checked = checkIterable(source);
  if (Symbol.iterator in checked) {
    // In-memory chunks: no promise per chunk.
    for (const chunk of checked) total += pushCopy(chunks, chunk);
  } else {
    for await (const chunk of checked) total += pushCopy(chunks, chunk);
  }
  return chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks, total);
}

/**
 * The synchronous half of {@link readAll}: an iterable of chunks already in memory (as jobs
 * write them) read at once, so adapters that keep bytes in memory need no promise per write.
 */
export function readAllSync(source: Iterable<Uint8Array>): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (const chunk of source) total += pushCopy(chunks, chunk);
  return chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks, total);
}

/** True for an object that can be iterated synchronously (strings excluded: they are not byte chunks). */
export function isSyncIterable<T>(source: AsyncIterable<T> | Iterable<T>): source is Iterable<T> {
  // Callers outside TypeScript may pass anything, strings and null included.
  const s: unknown = source;
  return typeof s === 'object' && s !== null && typeof (s as Partial<Iterable<T>>)[Symbol.iterator] === 'function';
}

function pushCopy(chunks: Buffer[], chunk: unknown): number {
  const view = checkChunk(chunk);
  // allocUnsafe draws small copies from Node's pool; every byte is overwritten at once.
  const copy = Buffer.allocUnsafe(view.byteLength);
  copy.set(view);
  chunks.push(copy);
  return view.byteLength;
}

/**
 * Checks the shape of an optional range (undefined, or `{ start, end? }` of non-negative integers
 * with `start <= end`), before the size of the object is known: a lookup that finds nothing still
 * refuses a malformed range. Throws {@link InvalidRequestError} on field `range`.
 */
export function checkByteRange(range: unknown): ByteRange | undefined {
  if (range === undefined) return undefined;
  if (range === null || typeof range !== 'object' || Array.isArray(range)) {
    throw new InvalidRequestError('range', `must be an object { start, end? }, got ${showValue(range)}`);
  }
  const { start, end } = range as { start?: unknown; end?: unknown };
  if (!isOffset(start))
    throw new InvalidRequestError('range', `start must be a non-negative integer, got ${showValue(start)}`);
  if (end !== undefined) {
    if (!isOffset(end))
      throw new InvalidRequestError('range', `end must be a non-negative integer, got ${showValue(end)}`);
    if (start > end) throw new InvalidRequestError('range', `start ${start} is after end ${end}`);
  }
  return end === undefined ? { start } : { start, end };
}

/**
 * Resolves an optional inclusive range against an object of `totalSize` bytes: `end` is clamped
 * to the last byte. Throws {@link InvalidRequestError} on field `range` for a range that is not
 * one (see {@link checkByteRange}), or a start past the end (only `start: 0` fits an empty object).
 */
export function sliceRange(totalSize: number, range?: ByteRange): ResolvedRange {
  const last = totalSize - 1;
  const checked = checkByteRange(range);
  if (checked === undefined) return { start: 0, end: last, length: totalSize };
  const { start, end } = checked;
  if (start > last && !(start === 0 && totalSize === 0)) {
    throw new InvalidRequestError('range', `start ${start} is past the end of the ${totalSize}-byte object`);
  }
  const clamped = Math.min(end ?? last, last);
  return { start, end: clamped, length: clamped - start + 1 };
}

/** A byte stream that counts what passes through it (e.g. to learn a size while uploading). */
export interface CountingIterable extends AsyncIterable<Uint8Array> {
  /** Bytes yielded so far. */
  readonly bytes: number;
}

/** Wraps `source` so that the bytes it yields are counted; chunks pass through uncopied. */
export function countingIterable(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): CountingIterable {
  let bytes = 0;
  const checked = checkIterable(source);
  return {
    get bytes() {
      return bytes;
    },
    async *[Symbol.asyncIterator]() {
      for await (const chunk of checked) {
        bytes += checkChunk(chunk).byteLength;
        yield chunk;
      }
    },
  };
}

/** Views of `buffer` at most `chunkSize` bytes long (no copies), so a stream over it keeps backpressure. */
export function* chunksOf(buffer: Buffer, chunkSize = 64 * 1024): Generator<Buffer> {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError('chunkSize must be a positive integer');
  for (let at = 0; at < buffer.byteLength; at += chunkSize) yield buffer.subarray(at, at + chunkSize);
}

function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function checkIterable<T>(source: AsyncIterable<T> | Iterable<T>): AsyncIterable<T> | Iterable<T> {
  const s = source as Partial<AsyncIterable<T> & Iterable<T>> | null | undefined;
  if (typeof s?.[Symbol.asyncIterator] === 'function' || typeof s?.[Symbol.iterator] === 'function') return source;
  throw new InvalidRequestError('data', 'must be an iterable or async iterable of Uint8Array chunks');
}

function checkChunk(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  // Strings would otherwise be spread into numbers or silently re-encoded; the caller must choose the encoding.
  throw new InvalidRequestError('data', `chunks must be Uint8Array (Buffer), got ${typeof chunk}`);
}
