import * as fs from 'node:fs';

import { InvalidRequestError } from '@armlib/core';

import { CREATE_FLAGS, fsError, syncFd } from './fs-util.js';

/**
 * Bytes gathered before one write call: large enough that per-call overhead vanishes. Also the
 * most one call writes of a big chunk, so that an abort stops it within a slice, not a gigabyte.
 */
const BLOCK_BYTES = 1024 * 1024;
/**
 * Bytes of an in-memory (synchronously iterable) source written with blocking calls, which skips a
 * thread-pool round trip per chunk for the small results most jobs write; beyond it the rest
 * goes asynchronously so that a big buffer does not hold the event loop.
 */
const SYNC_BYTES = 256 * 1024;
/**
 * Blocks kept for the next writes: allocating two fresh 1 MiB blocks per write cost more than a
 * small result's whole write (page faults, then garbage collection), and reuse keeps the resident
 * memory of a long stream flat.
 */
const POOLED_BLOCKS = 4;
const blockPool: Buffer[] = [];

function takeBlock(): Buffer {
  return blockPool.pop() ?? Buffer.allocUnsafe(BLOCK_BYTES);
}

function giveBlock(block: Buffer | undefined): void {
  if (block !== undefined && blockPool.length < POOLED_BLOCKS) blockPool.push(block);
}

/** Options of {@link writeNewFile}. */
export interface WriteFileOptions {
  /** fsync the file before returning. */
  readonly durable: boolean;
  /** Polled between blocks: an error returned stops the write with it (e.g. the staging was aborted meanwhile). */
  readonly stopped: () => Error | undefined;
}

/**
 * Streams `data` into a new file at `path` (never an existing file, never through a symlink) and
 * returns its size. Memory stays constant: small chunks are gathered into two alternating 1 MiB
 * blocks (one filling while the other is written), big chunks are written from their own memory,
 * 1 MiB per call. Errors of the source pass through as they are; file system errors become
 * BackendErrors. A failed write closes the source (see {@link closeSource}).
 */
export async function writeNewFile(
  path: string,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteFileOptions,
): Promise<number> {
  const source = checkSource(data);
  let fd: number;
  try {
    fd = fs.openSync(path, CREATE_FLAGS, 0o644);
  } catch (error) {
    await closeSource(source);
    throw fsError(error, `creating ${path}`);
  }
  const writer = new BlockWriter(fd, path, options.stopped);
  // What a failed write closes: the iterator once there is one.
  let reading: unknown = source;
  try {
    if (isSyncIterable(source)) {
      const iterator = source[Symbol.iterator]();
      reading = iterator;
      // In-memory chunks: written at once while their total is small, the rest asynchronously from
      // the first chunk that would go beyond (so that one big buffer never blocks the event loop).
      let beyond: Uint8Array | undefined;
      for (let next = iterator.next(); next.done !== true; next = iterator.next()) {
        const chunk = checkChunk(next.value);
        if (writer.position + chunk.byteLength > SYNC_BYTES) {
          beyond = chunk;
          break;
        }
        writer.writeSync(chunk);
      }
      if (beyond !== undefined) {
        await writer.writeAll([beyond]);
        await writer.writeAll({ [Symbol.iterator]: () => iterator });
      }
    } else {
      await writer.writeAll(source);
    }
    await writer.finish();
    if (options.durable) await syncFd(fd).catch((error: unknown) => Promise.reject(fsError(error, `syncing ${path}`)));
    return writer.position;
  } catch (error) {
    await closeSource(reading);
    throw error;
  } finally {
    // A block write may still be in flight when the source failed: the descriptor must outlive
    // it, or the write could land in whatever file reuses the number.
    await writer.drain();
    fs.closeSync(fd);
    // Only now: no write of a block is in flight any more.
    writer.releaseBlocks();
  }
}

/** Gathers chunks into blocks and keeps at most one block write in flight. */
class BlockWriter {
  position = 0;
  // Taken on the first small chunk of an asynchronous source: in-memory results never need them.
  #block: Buffer | undefined;
  #spare: Buffer | undefined;
  #filled = 0;
  #inFlight: Promise<void> | undefined;
  readonly #fd: number;
  readonly #path: string;
  readonly #stopped: () => Error | undefined;

  constructor(fd: number, path: string, stopped: () => Error | undefined) {
    this.#fd = fd;
    this.#path = path;
    this.#stopped = stopped;
  }

  writeSync(chunk: Uint8Array): void {
    let done = 0;
    try {
      while (done < chunk.byteLength) {
        done += fs.writeSync(this.#fd, chunk, done, chunk.byteLength - done, this.position + done);
      }
    } catch (error) {
      throw fsError(error, `writing ${this.#path}`);
    }
    this.position += done;
  }

  async writeAll(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    for await (const raw of source) {
      const chunk = checkChunk(raw);
      if (chunk.byteLength >= BLOCK_BYTES) {
        // Big chunks go out as they are (no copy), a slice per call; the producer is asked for the
        // next chunk only once this one is written, so it may reuse its buffer then.
        await this.#flush();
        await this.#settle();
        for (let done = 0; done < chunk.byteLength; done += BLOCK_BYTES) {
          const stop = this.#stopped();
          if (stop !== undefined) throw stop;
          const slice = chunk.subarray(done, done + BLOCK_BYTES);
          await this.#writeFully(slice, this.position);
          this.position += slice.byteLength;
        }
        continue;
      }
      let taken = 0;
      while (taken < chunk.byteLength) {
        const n = Math.min(chunk.byteLength - taken, BLOCK_BYTES - this.#filled);
        this.#block ??= takeBlock();
        // Copied, because producers may reuse a chunk's buffer once they get control back.
        this.#block.set(chunk.subarray(taken, taken + n), this.#filled);
        this.#filled += n;
        taken += n;
        if (this.#filled === BLOCK_BYTES) await this.#flush();
      }
    }
  }

  async finish(): Promise<void> {
    await this.#flush();
    await this.#settle();
  }

  /** Starts writing the filled block (after the previous one is done) and switches to the spare. */
  async #flush(): Promise<void> {
    if (this.#filled === 0 || this.#block === undefined) return;
    await this.#settle();
    const stop = this.#stopped();
    if (stop !== undefined) throw stop;
    const block = this.#block.subarray(0, this.#filled);
    const write = this.#writeFully(block, this.position);
    // Observed later by #settle; a rejection must not count as unhandled in between.
    write.catch(() => undefined);
    this.#inFlight = write;
    this.position += this.#filled;
    [this.#block, this.#spare] = [this.#spare, this.#block];
    this.#filled = 0;
  }

  /** Returns the blocks to the pool (once no write of them is in flight). */
  releaseBlocks(): void {
    giveBlock(this.#block);
    giveBlock(this.#spare);
    this.#block = undefined;
    this.#spare = undefined;
  }

  /** Waits for the write in flight, if any, ignoring its outcome (for clean-up after a failure). */
  async drain(): Promise<void> {
    await this.#inFlight?.catch(() => undefined);
    this.#inFlight = undefined;
  }

  async #settle(): Promise<void> {
    const pending = this.#inFlight;
    this.#inFlight = undefined;
    if (pending !== undefined) await pending;
  }

  async #writeFully(bytes: Uint8Array, at: number): Promise<void> {
    let done = 0;
    try {
      while (done < bytes.byteLength) {
        done += await writeAt(this.#fd, bytes, done, bytes.byteLength - done, at + done);
      }
    } catch (error) {
      throw fsError(error, `writing ${this.#path}`);
    }
  }
}

/** `fs.write` off the event loop; looked up at each call, so that tests can watch the calls. */
function writeAt(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, bytes, offset, length, position, (error, written) => {
      if (error === null) resolve(written);
      else reject(error);
    });
  });
}

/**
 * Closes a source (or its iterator) that a failed write will not read to its end, so that what it
 * holds (the descriptor of a file stream, say) goes now rather than whenever it is collected: a
 * Node stream is destroyed, an iterator returned. Safe on one already closed or finished. Its own
 * failure is ignored: the write's error is the one to report.
 */
export async function closeSource(source: unknown): Promise<void> {
  if (typeof source !== 'object' || source === null) return;
  const { destroy, return: end } = source as { destroy?: unknown; return?: unknown };
  try {
    if (typeof destroy === 'function') (destroy as () => unknown).call(source);
    else if (typeof end === 'function') await (end as () => unknown).call(source);
  } catch {
    // The write failed already; that is what its caller hears of.
  }
}

/** The source of a write, refused with an InvalidRequestError when it is not iterable. */
export function checkSource(
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncIterable<Uint8Array> | Iterable<Uint8Array> {
  // Callers outside TypeScript may pass anything. A source iterable both ways (chunks already in
  // memory) is taken synchronously; streams only have the async iterator.
  const s = data as Partial<AsyncIterable<Uint8Array> & Iterable<Uint8Array>> | null | undefined;
  if (typeof s === 'object' && s !== null) {
    if (typeof s[Symbol.iterator] === 'function' || typeof s[Symbol.asyncIterator] === 'function') return data;
  }
  throw new InvalidRequestError('data', 'must be an iterable or async iterable of Uint8Array chunks');
}

/** One chunk of a source, refused with an InvalidRequestError when it is not a Uint8Array. */
export function checkChunk(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new InvalidRequestError('data', `chunks must be Uint8Array (Buffer), got ${typeof chunk}`);
}

/** True for a source whose chunks are already in memory (iterable synchronously). */
export function isSyncIterable(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): source is Iterable<Uint8Array> {
  return typeof (source as Partial<Iterable<Uint8Array>>)[Symbol.iterator] === 'function';
}
