import { ForwardingCacheManager } from '@armlib/core';
import type {
  CacheArea,
  CacheManager,
  CacheWriteOptions,
  CommitOptions,
  FormatInfo,
  ResultManifest,
  StagedResult,
} from '@armlib/core';

import type { EventLog } from './event-log.js';
import { errorCode } from './logging-queue.js';
import type { PhaseListener } from './logging-queue.js';

/** A staged result that logs its writes, commit and abort. */
class LoggingStagedResult implements StagedResult {
  readonly #inner: StagedResult;
  readonly #log: EventLog;
  readonly #onPhase: PhaseListener | undefined;

  constructor(inner: StagedResult, log: EventLog, onPhase: PhaseListener | undefined) {
    this.#inner = inner;
    this.#log = log;
    this.#onPhase = onPhase;
  }

  get key(): string {
    return this.#inner.key;
  }

  async write(format: string, data: AsyncIterable<Uint8Array>, options: CacheWriteOptions): Promise<FormatInfo> {
    this.#log.write({ ev: 'cwrite-start', key: this.key, format });
    this.#onPhase?.('write', this.key);
    try {
      const info = await this.#inner.write(format, data, options);
      this.#log.write({ ev: 'cwrite', key: this.key, format });
      return info;
    } catch (error) {
      this.#log.write({ ev: 'cwrite-err', key: this.key, format, code: errorCode(error) });
      throw error;
    }
  }

  formats(): Readonly<Record<string, FormatInfo>> {
    return this.#inner.formats();
  }

  async commit(area: CacheArea, options?: CommitOptions): Promise<ResultManifest> {
    const t0 = Date.now();
    this.#log.write({ ev: 'commit-start', key: this.key });
    this.#onPhase?.('commit', this.key);
    try {
      const manifest = await this.#inner.commit(area, options);
      this.#log.write({ ev: 'commit', t0, key: this.key, formats: Object.keys(manifest.formats).sort() });
      return manifest;
    } catch (error) {
      this.#log.write({ ev: 'commit-err', t0, key: this.key, code: errorCode(error) });
      throw error;
    }
  }

  async abort(): Promise<void> {
    await this.#inner.abort();
    this.#log.write({ ev: 'discard', key: this.key });
  }
}

/** A cache SPI that forwards to a real adapter and logs staged writes and commits (where kills land). */
export class LoggingCache extends ForwardingCacheManager {
  readonly #log: EventLog;
  readonly #onPhase: PhaseListener | undefined;

  constructor(inner: CacheManager, log: EventLog, onPhase?: PhaseListener) {
    super(inner);
    this.#log = log;
    this.#onPhase = onPhase;
  }

  override async stage(key: string): Promise<StagedResult> {
    return new LoggingStagedResult(await this.inner.stage(key), this.#log, this.#onPhase);
  }
}
