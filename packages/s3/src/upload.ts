import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { createGzip, gzip as gzipCallback } from 'node:zlib';

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
  const source = Readable.from(counted, { objectMode: false, highWaterMark: 64 * 1024 });
  const gzipped = target.gzip && target.contentEncoding === undefined;
  const stored = new ByteCounter();
  // pipe() does not forward errors: a failing source must fail the upload rather than hang it.
  if (gzipped) {
    const gzip = createGzip();
    source.on('error', (error) => gzip.destroy(error));
    gzip.on('error', (error) => stored.destroy(error));
    source.pipe(gzip).pipe(stored);
  } else {
    source.on('error', (error) => stored.destroy(error));
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
    leavePartsOnError: false,
  });
  try {
    await upload.done();
  } catch (error) {
    source.destroy();
    throw toBackendError(error, `upload of ${target.key}`);
  }
  return { size: counted.bytes, storedSize: stored.bytes, gzipped };
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
