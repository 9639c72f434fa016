import { Readable, pipeline } from 'node:stream';
import { promisify } from 'node:util';
import { createGzip, gzip as gzipCallback } from 'node:zlib';

import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';

import { BackendError, countingIterable } from '@armlib/core';
import type { ArmError } from '@armlib/core';

import { toBackendError } from './errors.js';
import { releaseBuffer } from './release-buffer.js';

const gzipAsync = promisify(gzipCallback);

/** S3's limit on the parts of one multipart upload. */
const MAX_PARTS = 10_000;

/** What {@link uploadStream} needs besides the data. */
export interface UploadTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly contentType: string;
  /** The caller's own content encoding, stored as given. */
  readonly contentEncoding?: string;
  /** Compress with gzip and store with `Content-Encoding: gzip` (ignored when `contentEncoding` is set). */
  readonly gzip: boolean;
  readonly partSizeBytes: number;
  readonly queueSize: number;
  /**
   * Stops the upload (the cache manager's close()): the data is read no further, the parts in
   * flight are cut off, the multipart upload is aborted, and the upload fails with the signal's
   * reason. Creations, completions and single PutObjects are never cut off (whether S3 stored
   * them would be unknown): the upload stops right before or after them.
   */
  readonly signal?: AbortSignal;
}

/** Sizes of an uploaded object. */
export interface UploadResult {
  /** Bytes the caller wrote. */
  readonly size: number;
  /** Bytes stored (after compression). */
  readonly storedSize: number;
  /** True when the adapter gzipped the data. */
  readonly gzipped: boolean;
}

/**
 * Streams `data` into one object: a single PutObject when it fits in one part, a multipart upload
 * above, with at most `queueSize` parts in flight. Each chunk is copied into one of at most
 * `queueSize + 1` part buffers allocated once per upload and reused (see {@link PartWriter}), so
 * the memory a write holds is fixed and it leaves no part-sized garbage behind. A failed multipart
 * upload is aborted (no orphaned parts are left behind by armlib itself); an error of the
 * producer's own stream is reported as it is.
 */
export async function uploadStream(
  target: UploadTarget,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<UploadResult> {
  const counted = countingIterable(data);
  const gzipped = target.gzip && target.contentEncoding === undefined;
  const encoding = gzipped ? 'gzip' : target.contentEncoding;
  const writer = new PartWriter(target, encoding);
  try {
    // Each chunk is copied into a part buffer before the next is asked for: producers may reuse
    // their buffers. Errors of the producer (or of gzip) come out of this loop as they are.
    for await (const chunk of gzipped ? gzipChunks(counted) : counted) await writer.write(chunk);
    await writer.finish();
  } catch (error) {
    await writer.abort();
    // Stopped by the signal: its reason, whatever the stop broke on the way.
    throw target.signal?.aborted === true ? reasonOf(target.signal) : error;
  }
  return { size: counted.bytes, storedSize: writer.bytes, gzipped };
}

/**
 * The gzip of `chunks`. Each chunk is copied on its way in, since zlib reads it after `write`
 * returns while the producer may already be reusing it. Breaking off the iteration destroys the
 * pipeline, which lets the producer release what it holds.
 */
function gzipChunks(chunks: AsyncIterable<Uint8Array>): AsyncIterable<Buffer> {
  const source = Readable.from(copies(chunks), { objectMode: false, highWaterMark: 64 * 1024 });
  return pipeline(source, createGzip(), () => {
    // Errors surface through the iteration of the returned stream.
  }) as AsyncIterable<Buffer>;
}

async function* copies(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const chunk of chunks) yield Buffer.from(chunk);
}

/**
 * Cuts a byte stream into parts and uploads them. lib-storage's `Upload` was used before; it
 * builds every part with `Buffer.concat` and drops it once sent, so a 200 MiB stream left 40 parts'
 * worth of dead buffers for V8 to find (measured: 55 MiB above the process's baseline, where this
 * writer adds about the size of its part buffers). The first full part is held back until more
 * bytes arrive, so data of one part or less is a single PutObject.
 */
class PartWriter {
  /** Bytes stored so far. */
  bytes = 0;
  readonly #target: UploadTarget;
  readonly #encoding: string | undefined;
  readonly #free: Buffer[] = [];
  #allocated = 0;
  #current: Buffer | undefined;
  #filled = 0;
  /** A full part not yet sent: sent once more bytes arrive, or alone by PutObject at the end. */
  #held: Buffer | undefined;
  #uploadId: string | undefined;
  #partNumber = 0;
  readonly #parts: CompletedPart[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #failure: ArmError | undefined;

  constructor(target: UploadTarget, encoding: string | undefined) {
    this.#target = target;
    this.#encoding = encoding;
  }

  async write(chunk: Uint8Array): Promise<void> {
    const size = this.#target.partSizeBytes;
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.#current === undefined) {
        this.#throwIfStopped();
        if (this.#held !== undefined) {
          const held = this.#held;
          this.#held = undefined;
          await this.#send(held, size);
        }
        this.#current = await this.#take();
        this.#filled = 0;
      }
      const copied = Math.min(size - this.#filled, chunk.byteLength - offset);
      this.#current.set(chunk.subarray(offset, offset + copied), this.#filled);
      this.#filled += copied;
      offset += copied;
      this.bytes += copied;
      if (this.#filled === size) {
        this.#held = this.#current;
        this.#current = undefined;
      }
    }
  }

  /** Sends what is left: one PutObject if no part went out, else the last parts and the completion. */
  async finish(): Promise<void> {
    const { client, bucket, key } = this.#target;
    this.#throwIfStopped();
    if (this.#uploadId === undefined) {
      const body = this.#held ?? (this.#current ?? Buffer.alloc(0)).subarray(0, this.#filled);
      try {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...this.#headers() }));
      } catch (error) {
        throw toBackendError(error, `upload of ${key}`);
      }
      this.#releaseBuffers();
      return;
    }
    if (this.#held !== undefined) await this.#send(this.#held, this.#target.partSizeBytes);
    this.#held = undefined;
    if (this.#current !== undefined && this.#filled > 0) await this.#send(this.#current, this.#filled);
    this.#current = undefined;
    await Promise.all(this.#inFlight);
    this.#throwIfFailed();
    this.#throwIfStopped();
    const parts = this.#parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: this.#uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      throw toBackendError(error, `completion of the multipart upload of ${key}`);
    }
    this.#uploadId = undefined;
    this.#releaseBuffers();
  }

  /**
   * Frees the part buffers once the object is stored (see {@link releaseBuffer}). Only after a
   * success: every request that read them has answered. After a failure a request may have been
   * cut off mid-send, so those buffers are left to the garbage collector.
   */
  #releaseBuffers(): void {
    const buffers = new Set(this.#free.splice(0));
    if (this.#current !== undefined) buffers.add(this.#current);
    if (this.#held !== undefined) buffers.add(this.#held);
    this.#current = undefined;
    this.#held = undefined;
    for (const buffer of buffers) releaseBuffer(buffer);
  }

  /**
   * After a failure: waits for the parts in flight, then aborts the multipart upload so that its
   * parts stop costing storage. A failed abort is left to the bucket's
   * `AbortIncompleteMultipartUpload` lifecycle rule (docs/operations.md).
   */
  async abort(): Promise<void> {
    await Promise.all(this.#inFlight);
    const uploadId = this.#uploadId;
    this.#uploadId = undefined;
    if (uploadId === undefined) return;
    const { client, bucket, key } = this.#target;
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    } catch {
      // The upload's own error is the one to report.
    }
  }

  #headers(): { ContentType: string; ContentEncoding?: string } {
    return {
      ContentType: this.#target.contentType,
      ...(this.#encoding === undefined ? {} : { ContentEncoding: this.#encoding }),
    };
  }

  /** A free part buffer: a recycled one, a new one while fewer than `queueSize + 1` exist, or the next one a part frees. */
  async #take(): Promise<Buffer> {
    for (;;) {
      this.#throwIfFailed();
      const free = this.#free.pop();
      if (free !== undefined) return free;
      // Never more than queueSize parts are in flight, so one of queueSize + 1 buffers is free;
      // a new one is the fallback should that ever not hold, rather than waiting on nothing.
      if (this.#allocated <= this.#target.queueSize || this.#inFlight.size === 0) {
        this.#allocated++;
        // Outside node's shared pool: the buffer is part-sized and lives for the whole upload.
        return Buffer.allocUnsafeSlow(this.#target.partSizeBytes);
      }
      await Promise.race(this.#inFlight);
    }
  }

  /** Starts the upload of one part once fewer than `queueSize` are in flight; its buffer is freed when it settles. */
  async #send(buffer: Buffer, length: number): Promise<void> {
    while (this.#inFlight.size >= this.#target.queueSize) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
    this.#throwIfStopped();
    const { client, bucket, key, signal } = this.#target;
    this.#uploadId ??= await this.#create();
    this.#throwIfStopped();
    const partNumber = ++this.#partNumber;
    if (partNumber > MAX_PARTS) {
      throw new BackendError(
        `'${key}' needs more than ${String(MAX_PARTS)} parts of ${String(this.#target.partSizeBytes)} bytes; raise partSizeBytes`,
        { retryable: false },
      );
    }
    const uploadId = this.#uploadId;
    const task = client
      .send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: buffer.subarray(0, length),
        }),
        // A part cut off is harmless: the multipart upload is aborted next.
        signal === undefined ? {} : { abortSignal: signal },
      )
      .then((result) => {
        if (result.ETag === undefined) throw new Error(`S3 returned no ETag for part ${String(partNumber)}`);
        this.#parts.push({
          PartNumber: partNumber,
          ETag: result.ETag,
          ...(result.ChecksumCRC32 === undefined ? {} : { ChecksumCRC32: result.ChecksumCRC32 }),
          ...(result.ChecksumCRC32C === undefined ? {} : { ChecksumCRC32C: result.ChecksumCRC32C }),
          ...(result.ChecksumSHA1 === undefined ? {} : { ChecksumSHA1: result.ChecksumSHA1 }),
          ...(result.ChecksumSHA256 === undefined ? {} : { ChecksumSHA256: result.ChecksumSHA256 }),
        });
      })
      .catch((error: unknown) => {
        this.#failure ??= toBackendError(error, `upload of part ${String(partNumber)} of ${key}`);
      })
      .finally(() => {
        this.#inFlight.delete(task);
        this.#free.push(buffer);
      });
    this.#inFlight.add(task);
  }

  async #create(): Promise<string> {
    const { client, bucket, key } = this.#target;
    try {
      // As lib-storage does: with checksums on by default, parts carry a CRC32 that the upload
      // must have been created for.
      const checksums = (await client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED';
      const created = await client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ...this.#headers(),
          ...(checksums ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {}),
        }),
      );
      if (created.UploadId === undefined) throw new Error('S3 returned no UploadId');
      return created.UploadId;
    } catch (error) {
      throw toBackendError(error, `start of the multipart upload of ${key}`);
    }
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #throwIfStopped(): void {
    const { signal } = this.#target;
    if (signal?.aborted === true) throw reasonOf(signal);
  }
}

/** Why `signal` aborted, as an error. */
function reasonOf(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason));
}

/**
 * `data`, until `signal` aborts: a read waiting on the producer then fails at once with the
 * signal's reason, and the producer is stopped without being waited for (it may hang): a Node
 * stream is destroyed (its descriptor or socket closes), another source's own iterator returned.
 * A synchronous source cannot stall, so it is passed on as it is (the part writer checks the
 * signal between parts), and so is a stream: destroying it settles a read waiting on it. Other
 * sources get a promise of ours per chunk (see {@link AbortableIterator}). One abort listener per
 * write.
 */
function untilAborted(
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  signal: AbortSignal,
): AsyncIterable<Uint8Array> | Iterable<Uint8Array> {
  if (!(Symbol.asyncIterator in data)) return data;
  if (typeof (data as { destroy?: unknown }).destroy === 'function') {
    const stream = data;
    return {
      [Symbol.asyncIterator]() {
        const iterator = stream[Symbol.asyncIterator]();
        const onAbort = (): void => {
          stopProducer(stream, iterator);
        };
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
        return new ListenerRelease(iterator, signal, onAbort);
      },
    };
  }
  return { [Symbol.asyncIterator]: () => new AbortableIterator(data[Symbol.asyncIterator](), signal) };
}

/** A stream's own iterator, dropping the abort listener once it is done. */
class ListenerRelease implements AsyncIterator<Uint8Array> {
  readonly #iterator: AsyncIterator<Uint8Array>;
  readonly #signal: AbortSignal;
  readonly #onAbort: () => void;

  constructor(iterator: AsyncIterator<Uint8Array>, signal: AbortSignal, onAbort: () => void) {
    this.#iterator = iterator;
    this.#signal = signal;
    this.#onAbort = onAbort;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    try {
      const next = await this.#iterator.next();
      if (next.done === true) this.#release();
      return next;
    } catch (error) {
      this.#release();
      // A stream destroyed by the abort: the signal's reason, not the stream's premature close.
      throw this.#signal.aborted ? reasonOf(this.#signal) : error;
    }
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.#release();
    if (!this.#signal.aborted) await this.#iterator.return?.();
    return { done: true, value: undefined };
  }

  #release(): void {
    this.#signal.removeEventListener('abort', this.#onAbort);
  }
}

/**
 * An iterator whose waiting read fails as soon as the signal aborts (the producer is then stopped).
 *
 * A read stalled for good must still end, so the caller cannot be handed the producer's own
 * promise: each read gets a promise of this iterator's that follows the producer's. That is the
 * least a read can cost, and nothing of a read outlives it. (A `Promise.race` against one abort
 * promise per upload did the same, but each race left a reaction on that promise, which never
 * settles, so every chunk's race stayed reachable until the upload ended.) Reads are sequential
 * (`for await` and stageFormat's loops ask for a chunk once the last has arrived), so one slot
 * holds the read in flight, and the one listener registered at the start cuts it short.
 */
class AbortableIterator implements AsyncIterator<Uint8Array> {
  readonly #iterator: AsyncIterator<Uint8Array>;
  readonly #signal: AbortSignal;
  readonly #onAbort: () => void;
  /** Settle the read in flight; no-ops between reads, so that the slot holds on to nothing. */
  #resolve: (result: IteratorResult<Uint8Array>) => void = ignore;
  #reject: (reason: unknown) => void = ignore;

  // The functions below are made once per upload, not once per read.

  /** The executor of each read's promise: it fills the slot. */
  readonly #track = (
    resolve: (result: IteratorResult<Uint8Array>) => void,
    reject: (reason: unknown) => void,
  ): void => {
    this.#resolve = resolve;
    this.#reject = reject;
  };

  readonly #arrived = (next: unknown): void => {
    // A producer that breaks the iterator protocol fails the read, as `for await` would.
    if (typeof next !== 'object' || next === null) {
      this.#failed(new TypeError(`iterator result ${String(next)} is not an object`));
      return;
    }
    const result = next as IteratorResult<Uint8Array>;
    const resolve = this.#resolve;
    this.#clear();
    // The producer is done: the signal, which outlives the upload, must not keep this alive.
    if (result.done === true) this.#signal.removeEventListener('abort', this.#onAbort);
    resolve(result);
  };

  readonly #failed = (error: unknown): void => {
    const reject = this.#reject;
    this.#clear();
    // Failed (the producer, or the abort): no later read follows, so the listener goes too.
    this.#signal.removeEventListener('abort', this.#onAbort);
    reject(error);
  };

  constructor(iterator: AsyncIterator<Uint8Array>, signal: AbortSignal) {
    this.#iterator = iterator;
    this.#signal = signal;
    this.#onAbort = () => {
      // Fails the read in flight, if any; a later read fails in next() itself.
      this.#failed(reasonOf(signal));
      stopProducer(undefined, iterator);
    };
    if (signal.aborted) stopProducer(undefined, iterator);
    else signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#signal.aborted) return Promise.reject(reasonOf(this.#signal));
    let read: Promise<unknown>;
    try {
      // A synchronous result (or throw) is accepted, as Promise.race and `for await` accept it.
      read = Promise.resolve(this.#iterator.next());
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what the producer threw
      read = Promise.reject(error);
    }
    const result = new Promise<IteratorResult<Uint8Array>>(this.#track);
    // Settles nothing once an abort has failed the read: the slot was cleared.
    read.then(this.#arrived, this.#failed);
    return result;
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.#signal.removeEventListener('abort', this.#onAbort);
    // Stopped early without an abort (a failed part, a bad chunk): closed as for-of would.
    if (!this.#signal.aborted) await this.#iterator.return?.();
    return { done: true, value: undefined };
  }

  #clear(): void {
    this.#resolve = ignore;
    this.#reject = ignore;
  }
}

/** Stops a producer that a closed cache will read no further, without waiting for it. */
function stopProducer(data: AsyncIterable<Uint8Array> | undefined, iterator: AsyncIterator<Uint8Array>): void {
  const destroy = (data as { destroy?: unknown } | undefined)?.destroy;
  if (typeof destroy === 'function') {
    (destroy as () => void).call(data);
    return;
  }
  void Promise.resolve()
    .then(() => iterator.return?.())
    .catch(ignore);
}

function ignore(): void {
  // The producer's own failure after the upload stopped concerns nobody.
}

/** A format small enough to stay in memory until the commit writes it in place. */
export interface InlineFormat {
  readonly kind: 'inline';
  /** The bytes to store (compressed when `gzipped`). */
  readonly body: Buffer;
  readonly size: number;
  readonly gzipped: boolean;
}

/** A format streamed into a staging object. */
export interface UploadedFormat extends UploadResult {
  readonly kind: 'uploaded';
}

/**
 * Stages one format: data of at most `inlineMaxBytes` is kept in memory (the commit then writes
 * it straight to its final key: no staging object, no copy, two requests fewer), anything larger
 * is streamed to `target.key` with {@link uploadStream} (the bytes read so far go first).
 */
export async function stageFormat(
  target: UploadTarget,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  inlineMaxBytes: number,
): Promise<InlineFormat | UploadedFormat> {
  const source = target.signal === undefined ? data : untilAborted(data, target.signal);
  const iterator = countingIterable(source)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  for (;;) {
    const next = await iterator.next();
    if (next.done === true) {
      const raw = Buffer.concat(head, headBytes);
      const gzipped = target.gzip && target.contentEncoding === undefined;
      return { kind: 'inline', body: gzipped ? await gzipAsync(raw) : raw, size: headBytes, gzipped };
    }
    // Copied: producers may reuse a chunk's buffer once the next one is asked for.
    head.push(Buffer.from(next.value));
    headBytes += next.value.byteLength;
    if (headBytes > inlineMaxBytes) break;
  }
  async function* everything(): AsyncGenerator<Uint8Array> {
    try {
      yield* head.splice(0);
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
    } finally {
      // A failed upload stops reading: let the producer release what it holds (streams, files).
      await iterator.return?.();
    }
  }
  return { kind: 'uploaded', ...(await uploadStream(target, everything())) };
}
