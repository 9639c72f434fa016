import { pipeline, Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';

/**
 * Decodes a gzipped object stream and keeps the inclusive byte range `[start, end]` of the
 * decoded bytes. S3 ranges address stored (compressed) bytes, so a range of a gzipped format
 * reads the object from its start and skips what comes before `start`.
 */
export function gunzipRange(stored: Readable, start: number, end: number): Readable {
  const gunzip = createGunzip();
  // Errors of any stage destroy the last one, which is what the caller reads.
  return pipeline(stored, gunzip, new RangeSlicer(start, end), () => {
    // Reported through the returned stream's 'error' event.
  });
}

/** Keeps the bytes at offsets `[start, end]` of `source` (an object S3 sent more of than was asked for). */
export function sliceStream(source: Readable, start: number, end: number): Readable {
  return pipeline(source, new RangeSlicer(start, end), () => {
    // Reported through the returned stream's 'error' event.
  });
}

/** Keeps the bytes at offsets `[start, end]` of what passes through, then ends. */
class RangeSlicer extends Transform {
  #offset = 0;
  readonly #start: number;
  readonly #end: number;

  constructor(start: number, end: number) {
    super();
    this.#start = start;
    this.#end = end;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const from = this.#offset;
    const to = from + chunk.byteLength; // exclusive
    this.#offset = to;
    if (to <= this.#start || from > this.#end) {
      callback();
      return;
    }
    callback(null, chunk.subarray(Math.max(0, this.#start - from), Math.min(chunk.byteLength, this.#end + 1 - from)));
  }
}
