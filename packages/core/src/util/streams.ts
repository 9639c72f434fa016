import type { WriteData } from '../manager/types.js';

/** Turns anything a handler may write into a stream of byte chunks, without buffering it whole. */
export function toByteChunks(data: WriteData): AsyncIterable<Uint8Array> {
  if (typeof data === 'string') return once(Buffer.from(data, 'utf8'));
  if (data instanceof Uint8Array) return once(data);
  return normalize(data as AsyncIterable<unknown>);
}

async function* once(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  await Promise.resolve();
  yield chunk;
}

async function* normalize(source: AsyncIterable<unknown>): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    if (chunk instanceof Uint8Array) yield chunk;
    else if (typeof chunk === 'string') yield Buffer.from(chunk, 'utf8');
    else throw new TypeError(`write(): stream yielded ${typeof chunk}, expected bytes or strings`);
  }
}
