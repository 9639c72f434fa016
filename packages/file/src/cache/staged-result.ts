import * as fs from 'node:fs';
import { join } from 'node:path';

import { assertValidFormat, ConflictError, InvalidRequestError, LeaseLostError } from '@armlib/core';
import type {
  CacheArea,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import { fsError, removeQuietly } from './fs-util.js';
import { writeNewFile } from './write-file.js';

/** What a staged result needs from its cache (one object per cache, no closures per write). */
export interface StagingHost {
  readonly durable: boolean;
  assertOpen(): void;
  /** Creates a fresh, empty staging directory and returns its path. */
  createStagingDir(): string;
  /** Publishes the staging directory `dir` (holding one file per format) as the result of `key`. */
  publish(
    key: string,
    area: CacheArea,
    dir: string,
    formats: Readonly<Record<string, FormatInfo>>,
    fence: number | undefined,
  ): Promise<ResultManifest>;
  /** The staging is finished (committed or aborted): the cache stops tracking it. */
  release(staged: FileStagedResult): void;
}

type StagedState = 'open' | 'committed' | 'aborted';

/**
 * One staged write: each format is streamed into a file of a private staging directory, and
 * `commit` hands the directory (with the formats written completely) to the cache, which moves it
 * into place with one rename.
 */
export class FileStagedResult implements StagedResult {
  readonly key: string;
  readonly #host: StagingHost;
  #dir: string | undefined;
  #formats: Record<string, FormatInfo> = {};
  #state: StagedState = 'open';
  #writing = 0;
  #writes = 0;
  /** Formats whose first write is streaming to the format's own name. */
  readonly #inFlight = new Set<string>();
  /** Formats in {@link #inFlight} whose file a rewrite replaced meanwhile. */
  readonly #superseded = new Set<string>();

  constructor(key: string, host: StagingHost) {
    this.key = key;
    this.#host = host;
  }

  async write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    this.#assertWritable('write');
    assertValidFormat(format);
    const info = formatInfo(options);
    const dir = this.#stagingDir();
    const path = join(dir, format);
    // The first write of a format goes straight to its name (the staging directory is private,
    // and a failed write removes its file); a rewrite goes to a dot name (never a format: they
    // start with a letter or digit), renamed over the first when complete.
    const rewrite = Object.hasOwn(this.#formats, format) || this.#inFlight.has(format);
    const temp = rewrite ? join(dir, `.w${String(++this.#writes)}-${format}`) : path;
    if (!rewrite) this.#inFlight.add(format);
    this.#writing++;
    try {
      const size = await writeNewFile(temp, data, {
        durable: this.#host.durable,
        stopped: () => (this.#state === 'open' ? undefined : this.#conflict('write')),
      });
      // An abort (or close) while the data streamed in wins over this write.
      this.#assertWritable('write');
      try {
        if (rewrite) fs.renameSync(temp, path);
      } catch (error) {
        throw fsError(error, `staging ${format} of '${this.key}'`);
      }
      const stored: FormatInfo = { ...info, size };
      // The last write to finish wins, as a rename does; a first write that a rewrite finished
      // before has lost its file to that rename, so the rewrite's info stays.
      if (rewrite && this.#inFlight.has(format)) this.#superseded.add(format);
      if (rewrite || !this.#superseded.delete(format)) this.#formats[format] = stored;
      return { ...stored };
    } catch (error) {
      // (A superseded first write's name holds the rewrite's file now.)
      if (rewrite || !this.#superseded.has(format)) removeQuietly(temp);
      // A write cut short by an abort reports the abort, not the file that vanished under it.
      if (this.#state !== 'open') throw this.#conflict('write', error);
      throw error;
    } finally {
      if (!rewrite) {
        this.#inFlight.delete(format);
        this.#superseded.delete(format);
      }
      this.#writing--;
    }
  }

  formats(): Readonly<Record<string, FormatInfo>> {
    const copy: Record<string, FormatInfo> = {};
    for (const name of Object.keys(this.#formats)) {
      const info = this.#formats[name];
      if (info !== undefined) copy[name] = { ...info };
    }
    return copy;
  }

  async commit(area: CacheArea, options?: CommitOptions): Promise<ResultManifest> {
    this.#assertWritable('commit');
    if (this.#writing > 0) {
      throw new ConflictError(
        `cannot commit '${this.key}' while ${String(this.#writing)} write(s) are still in progress`,
      );
    }
    // Not touched (as a write touches it): the rename that publishes it follows at once.
    this.#dir ??= this.#host.createStagingDir();
    const dir = this.#dir;
    let manifest: ResultManifest;
    try {
      manifest = await this.#host.publish(this.key, area, dir, this.#formats, options?.fence);
    } catch (error) {
      // A refused (fenced-off) commit discards its staging: nothing of it may ever show.
      if (LeaseLostError.is(error)) await this.abort();
      throw error;
    }
    this.#state = 'committed';
    this.#host.release(this);
    return manifest;
  }

  abort(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'aborted';
      this.#formats = {};
      if (this.#dir !== undefined) removeQuietly(this.#dir);
      this.#host.release(this);
    }
    return Promise.resolve();
  }

  #stagingDir(): string {
    if (this.#dir === undefined) {
      this.#dir = this.#host.createStagingDir();
    } else {
      // Touched so that garbage collection sees a staging in use, however long the job computes.
      const now = new Date();
      try {
        fs.utimesSync(this.#dir, now, now);
      } catch (error) {
        throw fsError(error, `touching the staging directory of '${this.key}'`);
      }
    }
    return this.#dir;
  }

  #assertWritable(operation: string): void {
    this.#host.assertOpen();
    if (this.#state !== 'open') throw this.#conflict(operation);
  }

  #conflict(operation: string, cause?: unknown): ConflictError {
    return new ConflictError(
      `cannot ${operation} staged result '${this.key}': it was already ${this.#state}`,
      cause === undefined ? {} : { cause },
    );
  }
}

function formatInfo(options: CacheWriteOptions): Omit<FormatInfo, 'size'> {
  const { contentType, contentEncoding } = (options as Partial<CacheWriteOptions> | undefined) ?? {};
  if (typeof contentType !== 'string' || contentType.trim() === '') {
    throw new InvalidRequestError('contentType', 'must be a non-empty string');
  }
  if (contentEncoding === undefined) return { contentType };
  if (typeof contentEncoding !== 'string' || contentEncoding.trim() === '') {
    throw new InvalidRequestError('contentEncoding', 'must be a non-empty string when given');
  }
  return { contentType, contentEncoding };
}
