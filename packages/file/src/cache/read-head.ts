import { checkChunk, checkSource, closeSource, isSyncIterable } from './write-file.js';

/** A source that fitted within the limit: its bytes, copied. */
export interface WholeSource {
  readonly whole: true;
  readonly bytes: Buffer;
}

/** A source bigger than the limit: what was read of it, then the rest, as one source again. */
export interface LongSource {
  readonly whole: false;
  /** Returning its iterator closes the source, even before the first chunk was asked for. */
  readonly source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/**
 * Reads `data` until it ends or more than `max` bytes came, so that a small result can be kept in
 * its manifest instead of a file of its own. A longer source is handed back whole: the chunks read
 * so far, then the unread rest (synchronously iterable when `data` was, so in-memory results keep
 * the fast path of the file writer). Chunks within the limit are copied, since producers may reuse
 * a chunk's buffer once the next one is asked for; the chunk that goes beyond it is not (it may be
 * a huge buffer), as the rest hands it on before asking for another. Invalid sources and chunks get
 * the writer's InvalidRequestError, and any failure closes what was opened of the source.
 */
export async function readHead(
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  max: number,
): Promise<WholeSource | LongSource> {
  const source = checkSource(data);
  const head: Uint8Array[] = [];
  let size = 0;
  if (isSyncIterable(source)) {
    const iterator = source[Symbol.iterator]();
    try {
      for (let next = iterator.next(); next.done !== true; next = iterator.next()) {
        const chunk = checkChunk(next.value);
        size += chunk.byteLength;
        if (size > max) {
          head.push(chunk);
          return { whole: false, source: new SyncRest(head, iterator) };
        }
        head.push(Buffer.from(chunk));
      }
    } catch (error) {
      await closeSource(iterator);
      throw error;
    }
    return { whole: true, bytes: joined(head, size) };
  }
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      const chunk = checkChunk(next.value);
      size += chunk.byteLength;
      if (size > max) {
        head.push(chunk);
        return { whole: false, source: new AsyncRest(head, iterator) };
      }
      head.push(Buffer.from(chunk));
    }
  } catch (error) {
    await closeSource(iterator);
    throw error;
  }
  return { whole: true, bytes: joined(head, size) };
}

function joined(chunks: Uint8Array[], size: number): Buffer {
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/*
 * The rests are iterators rather than generators: `return()` on a generator not started yet does
 * not run its `finally`, and a write that fails before it reads (its file cannot be created, say)
 * must still close the source.
 */

/** The chunks read, then the rest of a synchronous source. */
class SyncRest implements IterableIterator<Uint8Array> {
  readonly #head: Uint8Array[];
  readonly #iterator: Iterator<Uint8Array>;
  #done = false;

  constructor(head: Uint8Array[], iterator: Iterator<Uint8Array>) {
    this.#head = head;
    this.#iterator = iterator;
  }

  next(): IteratorResult<Uint8Array> {
    // Shifted, so that a big chunk is let go of once written.
    const chunk = this.#head.shift();
    if (chunk !== undefined) return { done: false, value: chunk };
    if (this.#done) return { done: true, value: undefined };
    try {
      const next = this.#iterator.next();
      if (next.done === true) this.#done = true;
      return next;
    } catch (error) {
      // A source that threw is finished: nothing to close.
      this.#done = true;
      throw error;
    }
  }

  return(): IteratorResult<Uint8Array> {
    this.#head.length = 0;
    if (!this.#done) {
      this.#done = true;
      this.#iterator.return?.();
    }
    return { done: true, value: undefined };
  }

  [Symbol.iterator](): this {
    return this;
  }
}

/** The chunks read, then the rest of an asynchronous source. */
class AsyncRest implements AsyncIterableIterator<Uint8Array> {
  readonly #head: Uint8Array[];
  readonly #iterator: AsyncIterator<Uint8Array>;
  #done = false;

  constructor(head: Uint8Array[], iterator: AsyncIterator<Uint8Array>) {
    this.#head = head;
    this.#iterator = iterator;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.#head.shift();
    if (chunk !== undefined) return { done: false, value: chunk };
    if (this.#done) return { done: true, value: undefined };
    try {
      const next = await this.#iterator.next();
      if (next.done === true) this.#done = true;
      return next;
    } catch (error) {
      this.#done = true;
      throw error;
    }
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.#head.length = 0;
    if (!this.#done) {
      this.#done = true;
      await this.#iterator.return?.();
    }
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
