import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { createGzip, gzip as gzipCallback } from 'node:zlib';

import { AbortMultipartUploadCommand } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

import { countingIterable } from '@armlib/core';

import { toBackendError } from './errors.js';

const gzipAsync = promisify(gzipCallback);

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
 * Streams `data` into one object with lib-storage's `Upload`: a single PutObject below one part,
 * a multipart upload above, never holding more than `partSizeBytes × queueSize` bytes. A failed
 * multipart upload is aborted (no orphaned parts are left behind by armlib itself).
 */
export async function uploadStream(
  target: UploadTarget,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<UploadResult> {
  const counted = countingIterable(data);
  const source = Readable.from(copies(counted), { objectMode: false, highWaterMark: 64 * 1024 });
  const gzipped = target.gzip && target.contentEncoding === undefined;
  const stored = new ByteCounter();
  // The producer's own failure is reported as it is, not as a backend error.
  let sourceError: Error | undefined;
  // pipe() does not forward errors: a failing source must fail the upload rather than hang it.
  if (gzipped) {
    const gzip = createGzip();
    source.on('error', (error) => {
      sourceError ??= error;
      gzip.destroy(error);
    });
    gzip.on('error', (error) => stored.destroy(error));
    source.pipe(gzip).pipe(stored);
  } else {
    source.on('error', (error) => {
      sourceError ??= error;
      stored.destroy(error);
    });
    source.pipe(stored);
  }
  const encoding = gzipped ? 'gzip' : target.contentEncoding;
  const upload = new Upload({
    client: target.client,
    params: {
      Bucket: target.bucket,
      Key: target.key,
      Body: stored,
      ContentType: target.contentType,
      ...(encoding === undefined ? {} : { ContentEncoding: encoding }),
    },
    partSize: target.partSizeBytes,
    queueSize: target.queueSize,
    // Aborted here rather than by lib-storage, which throws the abort's own error when the abort
    // fails too, hiding the failure that mattered (and whether it is retryable).
    leavePartsOnError: true,
  });
  try {
    await upload.done();
  } catch (error) {
    source.destroy();
    await abortQuietly(target, upload.uploadId);
    throw sourceError ?? toBackendError(error, `upload of ${target.key}`);
  }
  return { size: counted.bytes, storedSize: stored.bytes, gzipped };
}

/**
 * Aborts a failed multipart upload so that its parts stop costing storage. A failed abort is
 * left to the bucket's `AbortIncompleteMultipartUpload` lifecycle rule (docs/operations.md).
 */
async function abortQuietly(target: UploadTarget, uploadId: string | undefined): Promise<void> {
  if (uploadId === undefined) return;
  try {
    await target.client.send(
      new AbortMultipartUploadCommand({ Bucket: target.bucket, Key: target.key, UploadId: uploadId }),
    );
  } catch {
    // The upload's own error is the one to report.
  }
}

/**
 * Each chunk copied: producers may reuse a chunk's buffer once the next one is asked for, while
 * the stream and lib-storage still hold earlier chunks until their part is sent.
 */
async function* copies(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const chunk of chunks) yield Buffer.from(chunk);
}

/** Passes bytes through unchanged, counting them. */
class ByteCounter extends Transform {
  bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.byteLength;
    callback(null, chunk);
  }
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
  const iterator = countingIterable(data)[Symbol.asyncIterator]();
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
