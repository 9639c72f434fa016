import * as fs from 'node:fs';
import { promisify } from 'node:util';

import { InvalidRequestError } from '@armlib/core';

import { CREATE_FLAGS, fsError, syncFd } from './fs-util.js';

const writeAsync = promisify(fs.write);

/** Bytes gathered before one write call: large enough that per-call overhead vanishes. */
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
 * blocks (one filling while the other is written), big chunks are written as they are.
 * Errors of the source pass through as they are; file system errors become BackendErrors.
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
    throw fsError(error, `creating ${path}`);
  }
  const writer = new BlockWriter(fd, path, options.stopped);
  try {
    if (isSyncIterable(source)) {
      const iterator = source[Symbol.iterator]();
      // In-memory chunks: written at once while small, the remainder (if any) asynchronously.
      let rest = false;
      for (let next = iterator.next(); next.done !== true; next = iterator.next()) {
        writer.writeSync(checkChunk(next.value));
        if (writer.position > SYNC_BYTES) {
          rest = true;
          break;
        }
      }
      if (rest) await writer.writeAll({ [Symbol.iterator]: () => iterator });
    } else {
      await writer.writeAll(source);
    }
    await writer.finish();
    if (options.durable) await syncFd(fd).catch((error: unknown) => Promise.reject(fsError(error, `syncing ${path}`)));
    return writer.position;
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
        // Big chunks go out as they are (no copy); the producer gets control back only once they
        // are written, so it may reuse its buffer.
        await this.#flush();
        await this.#settle();
        await this.#writeFully(chunk, this.position);
        this.position += chunk.byteLength;
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
        const { bytesWritten } = await writeAsync(this.#fd, bytes, done, bytes.byteLength - done, at + done);
        done += bytesWritten;
      }
    } catch (error) {
      throw fsError(error, `writing ${this.#path}`);
    }
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
