import { InvalidRequestError } from '../errors.js';
import type { WriteData } from '../manager/types.js';

/**
 * Chunks already in memory, iterable both ways. Adapters that can take bytes synchronously
 * (memory, file) use the sync iterator and skip a promise per chunk; others see a normal stream.
 */
export class ByteChunks implements AsyncIterable<Uint8Array>, Iterable<Uint8Array> {
  constructor(readonly chunks: readonly Uint8Array[]) {}

  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.chunks[Symbol.iterator]();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const inner = this.chunks[Symbol.iterator]();
    return {
      next: () => Promise.resolve(inner.next()),
    };
  }
}

/** Turns anything a handler may write into a stream of byte chunks, without buffering it whole. */
export function toByteChunks(data: WriteData): AsyncIterable<Uint8Array> {
  if (typeof data === 'string') return new ByteChunks([Buffer.from(data, 'utf8')]);
  if (data instanceof Uint8Array) return new ByteChunks([data]);
  return normalize(data as AsyncIterable<unknown>);
}

async function* normalize(source: AsyncIterable<unknown>): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    if (chunk instanceof Uint8Array) yield chunk;
    else if (typeof chunk === 'string') yield Buffer.from(chunk, 'utf8');
    // The handler's mistake, the same on every attempt: final (not retried), naming what it wrote.
    else throw new InvalidRequestError('data', `the stream yielded ${describeChunk(chunk)}, expected bytes or strings`);
  }
}

function describeChunk(chunk: unknown): string {
  if (chunk === null) return 'null';
  if (Array.isArray(chunk)) return 'an array';
  return typeof chunk === 'object' ? 'an object' : typeof chunk;
}
