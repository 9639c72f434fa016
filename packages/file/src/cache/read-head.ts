import { checkChunk, checkSource, isSyncIterable } from './write-file.js';

/** A source that fitted within the limit: its bytes, copied. */
export interface WholeSource {
  readonly whole: true;
  readonly bytes: Buffer;
}

/** A source bigger than the limit: what was read of it, then the rest, as one source again. */
export interface LongSource {
  readonly whole: false;
  readonly source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/**
 * Reads `data` until it ends or more than `max` bytes came, so that a small result can be kept in
 * its manifest instead of a file of its own. Chunks are copied as they come (producers may reuse a
 * chunk's buffer once they get control back). A longer source is handed back whole: the chunks read
 * so far, then the unread rest (synchronously iterable when `data` was, so in-memory results keep
 * the fast path of the file writer). Invalid sources and chunks get the writer's InvalidRequestError.
 */
export async function readHead(
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  max: number,
): Promise<WholeSource | LongSource> {
  const source = checkSource(data);
  const head: Buffer[] = [];
  let size = 0;
  if (isSyncIterable(source)) {
    const iterator = source[Symbol.iterator]();
    for (let next = iterator.next(); next.done !== true; next = iterator.next()) {
      const chunk = checkChunk(next.value);
      head.push(Buffer.from(chunk));
      size += chunk.byteLength;
      if (size > max) return { whole: false, source: syncRest(head, iterator) };
    }
    return { whole: true, bytes: joined(head, size) };
  }
  const iterator = source[Symbol.asyncIterator]();
  for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
    const chunk = checkChunk(next.value);
    head.push(Buffer.from(chunk));
    size += chunk.byteLength;
    if (size > max) return { whole: false, source: asyncRest(head, iterator) };
  }
  return { whole: true, bytes: joined(head, size) };
}

function joined(chunks: Buffer[], size: number): Buffer {
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

function* syncRest(head: Buffer[], iterator: Iterator<Uint8Array>): Generator<Uint8Array> {
  let done = false;
  try {
    yield* head;
    for (let next = iterator.next(); next.done !== true; next = iterator.next()) yield next.value;
    done = true;
  } finally {
    // A writer that stops early (a failed write) must close the producer, as for-of would.
    if (!done) iterator.return?.();
  }
}

async function* asyncRest(head: Buffer[], iterator: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  let done = false;
  try {
    yield* head;
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
    done = true;
  } finally {
    if (!done) await iterator.return?.();
  }
}
