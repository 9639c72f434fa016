import * as fs from 'node:fs';

import { assertValidFormat, ConflictError, InvalidRequestError, LeaseLostError } from '@armlib/core';
import type {
  CacheArea,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import { fsError, unlinkQuietly } from './fs-util.js';
import { writeNewFile } from './write-file.js';

/** What a staged result needs from its cache (one object per cache, no closures per write). */
export interface StagingHost {
  readonly durable: boolean;
  assertOpen(): void;
  /** A fresh staging id. */
  newStageId(): string;
  /** Checks the staging directory (not a symlink), creating it if need be. */
  checkStaging(): void;
  /** The path of a staging file of `stageId` (`suffix` for a rewrite in progress). */
  stagingPath(stageId: string, format: string, suffix?: string): string;
  /** Publishes the staged files (format → path) as the result of `key`, moving them into place. */
  publish(
    key: string,
    area: CacheArea,
    files: ReadonlyMap<string, string>,
    formats: Readonly<Record<string, FormatInfo>>,
    fence: number | undefined,
  ): Promise<ResultManifest>;
  /** The staging is finished (committed or aborted): the cache stops tracking it. */
  release(staged: FileStagedResult): void;
}

type StagedState = 'open' | 'committed' | 'aborted';

/**
 * One staged write: each format is streamed into a file `<stage id>@<format>` of the staging
 * directory, and `commit` hands the files (of the formats written completely) to the cache, which
 * renames each into place, then publishes the manifest naming them.
 */
export class FileStagedResult implements StagedResult {
  readonly key: string;
  readonly #host: StagingHost;
  #id: string | undefined;
  #formats: Record<string, FormatInfo> = {};
  #state: StagedState = 'open';
  #writing = 0;
  #writes = 0;
  /** Every staging file this staging created (some may be gone): what an abort removes. */
  readonly #created = new Set<string>();
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
    this.#id ??= this.#host.newStageId();
    this.#host.checkStaging();
    const path = this.#host.stagingPath(this.#id, format);
    // The first write of a format goes straight to its name (the name is this staging's own, and
    // a failed write removes its file); a rewrite goes to a name with a suffix (never a staged
    // format: those have one separator), renamed over the first when complete.
    const rewrite = Object.hasOwn(this.#formats, format) || this.#inFlight.has(format);
    const temp = rewrite ? this.#host.stagingPath(this.#id, format, `w${String(++this.#writes)}`) : path;
    if (!rewrite) this.#inFlight.add(format);
    this.#created.add(temp);
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
      if (rewrite || !this.#superseded.has(format)) unlinkQuietly(temp);
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
    const files = new Map<string, string>();
    const id = this.#id;
    if (id !== undefined)
      for (const format of Object.keys(this.#formats)) files.set(format, this.#host.stagingPath(id, format));
    let manifest: ResultManifest;
    try {
      manifest = await this.#host.publish(this.key, area, files, this.#formats, options?.fence);
    } catch (error) {
      // A refused (fenced-off) commit discards its staging: nothing of it may ever show.
      if (LeaseLostError.is(error)) await this.abort();
      throw error;
    }
    this.#state = 'committed';
    this.#created.clear();
    this.#host.release(this);
    return manifest;
  }

  abort(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'aborted';
      this.#formats = {};
      // A write still streaming keeps its descriptor on an unlinked file, and stops at its next block.
      for (const path of this.#created) unlinkQuietly(path);
      this.#created.clear();
      this.#host.release(this);
    }
    return Promise.resolve();
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
