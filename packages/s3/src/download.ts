import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

import { BackendError } from '@armlib/core';

/** What {@link openBody} makes of an S3 object body. */
export interface BodyOptions {
  /** Name of the object, for error messages. */
  readonly objectKey: string;
  /** Decode gzip first (the range then addresses decoded bytes). */
  readonly gunzip: boolean;
  /** First byte to keep. */
  readonly start: number;
  /** Last byte to keep (inclusive). */
  readonly end: number;
  /** Bytes the object yields (decoded, with `gunzip`). */
  readonly size: number;
}

/**
 * The stream `get` returns for an S3 object body: the bytes `[start, end]` of the object (decoded
 * first with `gunzip`). It ends as soon as `end` has passed and then destroys the S3 body if
 * more would follow, so a short range of a large gzipped object does not download the rest (a
 * body read to its end is left to finish, so that its connection is reused). Failures of the body
 * (a dropped connection, a gzip error, a body shorter than the range) reach the reader as a
 * retryable {@link BackendError} keeping the original as `cause`, like every other S3 failure.
 */
export function openBody(object: Readable, options: BodyOptions): RangeBody {
  return new RangeBody(object, options);
}

/** The stream {@link openBody} returns. */
export class RangeBody extends Readable {
  readonly #object: Readable;
  /** The object, or the gunzip reading it. */
  readonly #source: Readable;
  readonly #options: BodyOptions;
  /** Offset of the next byte `#source` produces. */
  #offset = 0;
  /** Ended, failed or destroyed: whatever the sources do after that is of no interest. */
  #settled = false;
  /** Set by {@link cut} while nobody listened for errors nor read yet: the reader gets it at its first read. */
  #cutBy: Error | undefined;

  constructor(object: Readable, options: BodyOptions) {
    super();
    this.#object = object;
    this.#options = options;
    const fail = (error: unknown): void => {
      this.#fail(error);
    };
    if (options.gunzip) {
      const gunzip = createGunzip();
      // pipe() forwards no errors: the object's own are listened to here.
      object.on('error', fail);
      object.pipe(gunzip);
      this.#source = gunzip;
    } else {
      this.#source = object;
    }
    this.#source.on('error', fail);
    this.#source.on('data', (chunk: Buffer) => {
      this.#take(chunk);
    });
    this.#source.on('end', () => {
      this.#end();
    });
    // A body that closes without ending or failing was cut off all the same.
    this.#source.on('close', () => {
      this.#fail(new Error('the body closed before its end'));
    });
    this.#source.pause();
  }

  override _read(): void {
    if (this.#cutBy !== undefined) {
      this.destroy(this.#cutBy);
      return;
    }
    this.#source.resume();
  }

  /**
   * Stops the S3 body now (its connection is about to go) and fails this stream with `error` as
   * it is, not wrapped: e.g. core's `ClosedError` when the cache closes. Nothing once the stream
   * has ended or failed (what it already delivered stays readable). An 'error' event without a
   * listener would end the process, so a stream nobody listens to for errors fails at its first
   * read when it was never read (got, not yet read), and is destroyed quietly, as on any other
   * failure, when it was (piped, or read with 'data' listeners alone): its reader is waiting for
   * data that will not come, and gets 'close'.
   */
  cut(error: Error): void {
    if (this.#settled) return;
    this.#release();
    if (this.listenerCount('error') > 0) this.destroy(error);
    else if (this.readableFlowing !== null) this.destroy();
    else this.#cutBy = error;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#release();
    callback(error);
  }

  #take(chunk: Buffer): void {
    if (this.#settled) return;
    const { start, end } = this.#options;
    const from = this.#offset;
    const to = from + chunk.byteLength; // exclusive
    this.#offset = to;
    if (to <= start) return;
    const more = this.push(chunk.subarray(Math.max(0, start - from), Math.min(chunk.byteLength, end + 1 - from)));
    if (to > end) {
      this.#settled = true;
      this.push(null);
      // Past the range: the rest of the object is not wanted, so stop downloading it.
      if (end + 1 < this.#options.size) this.#release();
    } else if (!more) {
      this.#source.pause();
    }
  }

  #end(): void {
    if (this.#settled) return;
    const { start, end } = this.#options;
    if (this.#offset <= end) {
      const got = Math.max(0, this.#offset - start);
      this.#fail(new Error(`the body ended after ${String(got)} of ${String(end - start + 1)} bytes`));
      return;
    }
    this.#settled = true;
    this.push(null);
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    // As node's own HTTP bodies do: a body nobody listens to (got, then never read) is destroyed
    // quietly, rather than an 'error' event without a listener ending the process.
    if (this.listenerCount('error') === 0) {
      this.destroy();
      return;
    }
    const why = error instanceof Error ? error.message : String(error);
    this.destroy(
      new BackendError(`S3 GetObject ${this.#options.objectKey}: reading the body failed: ${why}`, {
        retryable: true,
        cause: error,
      }),
    );
  }

  /** Stops both sources (their error listeners stay, so late errors are ignored, not thrown). */
  #release(): void {
    this.#settled = true;
    if (this.#source !== this.#object) this.#source.destroy();
    this.#object.destroy();
  }
}
