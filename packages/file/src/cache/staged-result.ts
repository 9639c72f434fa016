import * as fs from 'node:fs';

import { assertValidFormat, commitFence, ConflictError, InvalidRequestError, LeaseLostError } from '@armlib/core';
import type {
  CacheArea,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import { fsError, unlinkQuietly } from './fs-util.js';
import { readHead } from './read-head.js';
import { writeNewFile } from './write-file.js';

/**
 * A result keeps at most this many times `inlineMaxBytes` in its manifest (over all its formats),
 * so that a result of many small formats does not make every read of its manifest a big one.
 */
const INLINE_FORMATS = 4;

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
  /** Formats of at most this many bytes are kept in the manifest (0: none). */
  readonly inlineMaxBytes: number;
  /**
   * Publishes the staged files (format → path) and the formats kept inline (format → bytes) as
   * the result of `key`, moving the files into place.
   */
  publish(
    key: string,
    area: CacheArea,
    files: ReadonlyMap<string, string>,
    inline: ReadonlyMap<string, Buffer>,
    formats: Readonly<Record<string, FormatInfo>>,
    fence: number | undefined,
  ): Promise<ResultManifest>;
  /** The staging is finished (committed or aborted): the cache stops tracking it. */
  release(staged: FileStagedResult): void;
}

type StagedState = 'open' | 'committing' | 'committed' | 'aborted';

/**
 * One staged write: each format is streamed into a file `<stage id>@<format>` of the staging
 * directory, or kept in memory when it is small (it then goes into the manifest), and `commit`
 * hands the files and the small formats (of the formats written completely) to the cache, which
 * renames each file into place, then publishes the manifest naming them.
 */
export class FileStagedResult implements StagedResult {
  readonly key: string;
  readonly #host: StagingHost;
  #id: string | undefined;
  #formats: Record<string, FormatInfo> = {};
  #state: StagedState = 'open';
  #writing = 0;
  #writes = 0;
  /** Formats whose latest complete write was small: their bytes, for the manifest. */
  readonly #inline = new Map<string, Buffer>();
  /** Every staging file this staging created (some may be gone): what an abort removes. */
  readonly #created = new Set<string>();
  /** Formats whose first write is streaming to the format's own name. */
  readonly #inFlight = new Set<string>();
  /** Formats in {@link #inFlight} whose file a rewrite replaced meanwhile. */
  readonly #superseded = new Set<string>();
  /** Settles when the commit in flight has finished (cleanup included). */
  #committing: Promise<void> | undefined;
  /** An abort arrived during the commit: a failed commit is then aborted. */
  #abortRequested = false;

  constructor(key: string, host: StagingHost) {
    this.key = key;
    this.#host = host;
  }

  async write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    this.#assertWritable('write');
    assertValidFormat(format);
    const info = formatInfo(options);
    // The first write of a format goes straight to its name (the name is this staging's own, and
    // a failed write removes its file); a rewrite goes to a name with a suffix (never a staged
    // format: those have one separator), renamed over the first when complete.
    const rewrite = Object.hasOwn(this.#formats, format) || this.#inFlight.has(format);
    const writeNumber = rewrite ? ++this.#writes : 0;
    if (!rewrite) this.#inFlight.add(format);
    this.#writing++;
    let temp: string | undefined;
    try {
      let source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = data;
      const limit = this.#host.inlineMaxBytes;
      if (limit > 0) {
        const head = await readHead(data, limit);
        if (head.whole && this.#fitsInline(format, head.bytes.byteLength)) {
          return this.#keepInline(format, info, head.bytes, rewrite);
        }
        source = head.whole ? [head.bytes] : head.source;
      }
      this.#id ??= this.#host.newStageId();
      this.#host.checkStaging();
      const path = this.#host.stagingPath(this.#id, format);
      temp = rewrite ? this.#host.stagingPath(this.#id, format, `w${String(writeNumber)}`) : path;
      this.#created.add(temp);
      const size = await writeNewFile(temp, source, {
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
      if (rewrite || !this.#superseded.delete(format)) {
        this.#formats[format] = stored;
        this.#inline.delete(format);
      }
      return { ...stored };
    } catch (error) {
      // (A superseded first write's name holds the rewrite's file now.)
      if (temp !== undefined && (rewrite || !this.#superseded.has(format))) unlinkQuietly(temp);
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

  /** True when `size` more bytes for `format` keep the result's inline formats within their bound. */
  #fitsInline(format: string, size: number): boolean {
    let total = size;
    for (const [name, bytes] of this.#inline) if (name !== format) total += bytes.byteLength;
    return total <= this.#host.inlineMaxBytes * INLINE_FORMATS;
  }

  /** Finishes a small write: its bytes stay in memory until the commit puts them in the manifest. */
  #keepInline(format: string, info: Omit<FormatInfo, 'size'>, bytes: Buffer, rewrite: boolean): FormatInfo {
    // An abort (or close) while the data came in wins over this write.
    this.#assertWritable('write');
    const stored: FormatInfo = { ...info, size: bytes.byteLength };
    // As a rename over the format's staged file would: a first write still streaming there loses.
    if (rewrite && this.#inFlight.has(format)) this.#superseded.add(format);
    if (rewrite || !this.#superseded.delete(format)) {
      this.#formats[format] = stored;
      this.#inline.set(format, bytes);
      // A staged file of an earlier write of the format (or one still streaming) is out of date.
      if (rewrite && this.#id !== undefined) unlinkQuietly(this.#host.stagingPath(this.#id, format));
    }
    return { ...stored };
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
    commitFence(options);
    if (this.#writing > 0) {
      throw new ConflictError(
        `cannot commit '${this.key}' while ${String(this.#writing)} write(s) are still in progress`,
      );
    }
    this.#state = 'committing';
    const committing = this.#commit(area, options);
    this.#committing = committing.then(ignore, ignore);
    return committing;
  }

  async #commit(area: CacheArea, options: CommitOptions | undefined): Promise<ResultManifest> {
    const files = new Map<string, string>();
    const id = this.#id;
    if (id !== undefined) {
      for (const format of Object.keys(this.#formats)) {
        if (!this.#inline.has(format)) files.set(format, this.#host.stagingPath(id, format));
      }
    }
    let manifest: ResultManifest;
    try {
      manifest = await this.#host.publish(this.key, area, files, this.#inline, this.#formats, options?.fence);
    } catch (error) {
      // Not published: still open, so the caller may retry or abort.
      this.#state = 'open';
      // A refused (fenced-off) commit discards its staging: nothing of it may ever show; so does a
      // commit that an abort waited for.
      if (LeaseLostError.is(error) || this.#abortRequested) await this.abort();
      throw error;
    }
    this.#state = 'committed';
    this.#created.clear();
    this.#host.release(this);
    return manifest;
  }

  /**
   * Discards what was staged. During a commit it waits for the commit instead (the staged files
   * are being moved in): a commit that publishes wins, one that fails is then aborted.
   */
  async abort(): Promise<void> {
    if (this.#state === 'committing') {
      this.#abortRequested = true;
      await this.#committing;
      return;
    }
    if (this.#state === 'open') {
      this.#state = 'aborted';
      this.#formats = {};
      this.#inline.clear();
      // A write still streaming keeps its descriptor on an unlinked file, and stops at its next block.
      for (const path of this.#created) unlinkQuietly(path);
      this.#created.clear();
      this.#host.release(this);
    }
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

function ignore(): void {
  // The commit's own caller hears of its outcome.
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
