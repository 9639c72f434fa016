import { assertValidFormat, cacheWriteOptions, commitFence, ConflictError, LeaseLostError } from '@armlib/core';
import type {
  CacheArea,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import type { StoredFormat } from './manifest.js';
import type { InlineFormat, UploadedFormat } from './upload.js';

/**
 * A staged format and how it is stored: uploaded to `objectKey` (copied into place on commit),
 * or held in memory (`body`, written in place on commit).
 */
export type StagedFormat =
  | { readonly kind: 'uploaded'; readonly objectKey: string; readonly stored: StoredFormat }
  | { readonly kind: 'inline'; readonly body: Buffer; readonly stored: StoredFormat };

/** What a staged result needs from its cache manager. */
export interface StagingHost {
  /** Throws core's ClosedError once the cache manager is closed. */
  assertOpen(): void;
  isClosed(): boolean;
  /**
   * Runs `work` (a write or a commit) as an operation that `close()` waits for; ClosedError
   * instead when the cache manager is closed.
   */
  track<T>(work: () => Promise<T>): Promise<T>;
  /** The staged result was committed or aborted: `close()` has nothing left to abort in it. */
  ended(staged: S3StagedResult): void;
  /** The object key of the `seq`-th write of a staging. */
  stagedKey(stageId: string, seq: number, format: string): string;
  /** Keeps a small format in memory, or streams it to `objectKey`. */
  upload(
    objectKey: string,
    data: AsyncIterable<Uint8Array>,
    options: CacheWriteOptions,
  ): Promise<InlineFormat | UploadedFormat>;
  /**
   * Copies the staged formats into `area`, writes the manifest (the commit point; `published` is
   * called right after it), then removes the key's earlier result and the staged objects.
   */
  publish(
    key: string,
    area: CacheArea,
    formats: ReadonlyMap<string, StagedFormat>,
    published: () => void,
    fence: number | undefined,
    stillHeld: CommitOptions['stillHeld'],
  ): Promise<ResultManifest>;
  /** Best-effort deletion of staged objects (leftovers expire under the lifecycle rule). */
  discard(objectKeys: readonly string[]): Promise<void>;
}

type StagedState = 'open' | 'committing' | 'committed' | 'aborted';

/**
 * Formats of one staged write: small ones held in memory, larger ones each uploaded to its own
 * object under `<prefix>staging/<stageId>/` as it is written (a rewrite of a format goes to a new
 * object, so a failed rewrite leaves the earlier one intact). Nothing here is visible to readers
 * until {@link commit}.
 */
export class S3StagedResult implements StagedResult {
  readonly key: string;
  readonly #stageId: string;
  readonly #host: StagingHost;
  readonly #formats = new Map<string, StagedFormat>();
  #state: StagedState = 'open';
  #writing = 0;
  #seq = 0;
  /** Settles when the commit in flight has finished (cleanup included). */
  #committing: Promise<void> | undefined;
  /** An abort arrived during the commit: a failed commit is then aborted. */
  #abortRequested = false;

  constructor(key: string, stageId: string, host: StagingHost) {
    this.key = key;
    this.#stageId = stageId;
    this.#host = host;
  }

  async write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    return this.#host.track(() => this.#write(format, data, options));
  }

  async #write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    this.#assertWritable('write');
    assertValidFormat(format);
    const checked = cacheWriteOptions(options);
    const objectKey = this.#host.stagedKey(this.#stageId, this.#seq++, format);
    this.#writing++;
    let result: InlineFormat | UploadedFormat;
    try {
      result = await this.#host.upload(objectKey, data, checked);
    } finally {
      this.#writing--;
    }
    if (this.#state !== 'open' || this.#host.isClosed()) {
      // Aborted (or committed) while the data streamed in, or the cache manager was closed (its
      // close() aborted this result): that wins, and this object goes.
      if (result.kind === 'uploaded') await this.#host.discard([objectKey]);
      this.#host.assertOpen();
      throw new ConflictError(`cannot write staged result '${this.key}': it was ${this.#state} during the write`);
    }
    const info: FormatInfo =
      checked.contentEncoding === undefined
        ? { contentType: checked.contentType, size: result.size }
        : { contentType: checked.contentType, contentEncoding: checked.contentEncoding, size: result.size };
    const storedSize = result.kind === 'inline' ? result.body.byteLength : result.storedSize;
    const stored: StoredFormat = result.gzipped ? { info, storedEncoding: 'gzip', storedSize } : { info, storedSize };
    const previous = this.#formats.get(format);
    this.#formats.set(
      format,
      result.kind === 'inline'
        ? { kind: 'inline', body: result.body, stored }
        : { kind: 'uploaded', objectKey, stored },
    );
    if (previous?.kind === 'uploaded') await this.#host.discard([previous.objectKey]);
    return { ...info };
  }

  formats(): Readonly<Record<string, FormatInfo>> {
    const out: Record<string, FormatInfo> = {};
    for (const [name, f] of this.#formats) out[name] = { ...f.stored.info };
    return out;
  }

  async commit(area: CacheArea, options?: CommitOptions): Promise<ResultManifest> {
    return this.#host.track(() => this.#startCommit(area, options));
  }

  async #startCommit(area: CacheArea, options: CommitOptions | undefined): Promise<ResultManifest> {
    this.#assertWritable('commit');
    commitFence(options);
    if (this.#writing > 0) {
      throw new ConflictError(`cannot commit '${this.key}' while ${this.#writing} write(s) are still in progress`);
    }
    this.#state = 'committing';
    const committing = this.#commit(area, options);
    this.#committing = committing.then(ignore, ignore);
    return committing;
  }

  async #commit(area: CacheArea, options: CommitOptions | undefined): Promise<ResultManifest> {
    try {
      return await this.#host.publish(
        this.key,
        area,
        this.#formats,
        () => {
          this.#state = 'committed';
        },
        options?.fence,
        options?.stillHeld,
      );
    } catch (error) {
      // Failed before the manifest was written: still open, so the caller may retry or abort.
      if (this.#isCommitting()) this.#state = 'open';
      // A fenced-off commit can never succeed: its staged objects go; so do those of a commit
      // that an abort waited for.
      if (LeaseLostError.is(error) || this.#abortRequested) await this.abort();
      throw error;
    } finally {
      if (!this.#isCommitting() && this.#state !== 'open') this.#host.ended(this);
    }
  }

  /**
   * Discards what was staged. During a commit it waits for the commit instead: a commit that
   * publishes wins (nothing is discarded), one that fails is then aborted.
   */
  async abort(): Promise<void> {
    if (this.#isCommitting()) {
      this.#abortRequested = true;
      await this.#committing;
      return;
    }
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    this.#host.ended(this);
    const keys = [...this.#formats.values()].flatMap((f) => (f.kind === 'uploaded' ? [f.objectKey] : []));
    this.#formats.clear();
    await this.#host.discard(keys);
  }

  /** Read through a method: `published` changes the state while the commit awaits. */
  #isCommitting(): boolean {
    return this.#state === 'committing';
  }

  #assertWritable(operation: string): void {
    this.#host.assertOpen();
    if (this.#state !== 'open') {
      throw new ConflictError(`cannot ${operation} staged result '${this.key}': it was already ${this.#state}`);
    }
  }
}

function ignore(): void {
  // The commit's own caller hears of its outcome.
}
