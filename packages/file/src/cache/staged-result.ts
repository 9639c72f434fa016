import { assertValidFormat, cacheWriteOptions, commitFence, ConflictError, LeaseLostError } from '@armlib/core';
import type {
  CacheArea,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import { unlinkQuietly } from './fs-util.js';
import { readHead } from './read-head.js';
import { closeSource, writeNewFile } from './write-file.js';

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
  /** The path of a staging file of `stageId` (`suffix` for a later write of the format). */
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
    stillHeld: CommitOptions['stillHeld'],
  ): Promise<ResultManifest>;
  /** The staging is finished (committed or aborted): the cache stops tracking it. */
  release(staged: FileStagedResult): void;
}

type StagedState = 'open' | 'committing' | 'committed' | 'aborted';

/**
 * One staged write: each format is streamed into a file of the staging directory (`<stage id>@<format>`
 * for its first write, with a suffix for later ones), or kept in memory when it is small (it then
 * goes into the manifest), and `commit` hands the files and the small formats (of the formats
 * written completely) to the cache, which renames each file into place, then publishes the
 * manifest naming them.
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
  /** Formats whose latest complete write went to a file: its staging path. */
  readonly #files = new Map<string, string>();
  /** Formats whose plain staging name a write has taken: their later writes take suffixed names. */
  readonly #named = new Set<string>();
  /** Every staging file this staging created and has not removed yet: what an abort removes. */
  readonly #created = new Set<string>();
  /** Settles when the commit in flight has finished (cleanup included). */
  #committing: Promise<void> | undefined;
  /** An abort arrived during the commit: a failed commit is then aborted. */
  #abortRequested = false;

  constructor(key: string, host: StagingHost) {
    this.key = key;
    this.#host = host;
  }

  /**
   * Writes of one format at once all succeed, and the last to finish is the one kept, as in the
   * memory cache: each streams into a file of its own (so they never meet in one file, whatever
   * order they open in), and finishing replaces the format's earlier file or bytes.
   */
  async write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    // The source is this write's to close whenever it will not be read to its end (a file stream
    // would keep its descriptor open until collected).
    let source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = data;
    let info: Omit<FormatInfo, 'size'>;
    try {
      this.#assertWritable('write');
      assertValidFormat(format);
      info = cacheWriteOptions(options);
    } catch (error) {
      await closeSource(source);
      throw error;
    }
    this.#writing++;
    let temp: string | undefined;
    try {
      const limit = this.#host.inlineMaxBytes;
      if (limit > 0) {
        const head = await readHead(data, limit);
        if (head.whole && this.#fitsInline(format, head.bytes.byteLength)) {
          // An abort (or close) while the data came in wins over this write.
          this.#assertWritable('write');
          return this.#keep(format, { ...info, size: head.bytes.byteLength }, head.bytes);
        }
        source = head.whole ? [head.bytes] : head.source;
      }
      this.#id ??= this.#host.newStageId();
      this.#host.checkStaging();
      // Chosen at open, not when the write started: writes of a format may open in another order
      // than they started (one still reading its head opens late), and each needs a name of its own.
      temp = this.#named.has(format)
        ? this.#host.stagingPath(this.#id, format, `w${String(++this.#writes)}`)
        : this.#host.stagingPath(this.#id, format);
      this.#named.add(format);
      this.#created.add(temp);
      const size = await writeNewFile(temp, source, {
        durable: this.#host.durable,
        stopped: () => (this.#state === 'open' ? undefined : this.#conflict('write')),
      });
      // An abort (or close) while the data streamed in wins over this write.
      this.#assertWritable('write');
      return this.#keep(format, { ...info, size }, temp);
    } catch (error) {
      await closeSource(source);
      if (temp !== undefined) {
        unlinkQuietly(temp);
        this.#created.delete(temp);
      }
      // A write cut short by an abort reports the abort, not the file that vanished under it.
      if (this.#state !== 'open') throw this.#conflict('write', error);
      throw error;
    } finally {
      this.#writing--;
    }
  }

  /** True when `size` more bytes for `format` keep the result's inline formats within their bound. */
  #fitsInline(format: string, size: number): boolean {
    let total = size;
    for (const [name, bytes] of this.#inline) if (name !== format) total += bytes.byteLength;
    return total <= this.#host.inlineMaxBytes * INLINE_FORMATS;
  }

  /**
   * Records a finished write of `format`: its staged file, or its bytes when small (the commit puts
   * them in the manifest). It replaces the format's earlier write, whose file goes now.
   */
  #keep(format: string, stored: FormatInfo, data: string | Buffer): FormatInfo {
    const previous = this.#files.get(format);
    if (typeof data === 'string') {
      this.#files.set(format, data);
      this.#inline.delete(format);
    } else {
      this.#files.delete(format);
      this.#inline.set(format, data);
    }
    this.#formats[format] = stored;
    if (previous !== undefined && previous !== data) {
      unlinkQuietly(previous);
      this.#created.delete(previous);
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
    let manifest: ResultManifest;
    try {
      manifest = await this.#host.publish(
        this.key,
        area,
        this.#files,
        this.#inline,
        this.#formats,
        options?.fence,
        options?.stillHeld,
      );
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
      this.#files.clear();
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
