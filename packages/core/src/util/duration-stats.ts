import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { compareStrings } from '../keys.js';
import { ByteLru } from './byte-lru.js';
import type { UriStats } from '../spi/queue.js';

/** Options of {@link DurationStats}. */
export interface DurationStatsOptions {
  /** Recent samples kept per uri for the percentiles; default 256. */
  window?: number;
  /** Uris tracked; the least recently updated is forgotten beyond this; default 10,000. */
  maxUris?: number;
  /** Weight of a new sample in the moving average, in (0, 1]; default 0.2. */
  alpha?: number;
}

interface UriState {
  count: number;
  avg: number;
  /** Ring of recent samples; grows up to the window, then wraps. */
  samples: number[];
  next: number;
  /** Percentiles as last computed, and the sample count they were computed at. */
  p50: number;
  p95: number;
  sortedAt: number;
  /** The statistics as last handed out, until a sample changes them (reads outnumber samples). */
  view: UriStats | undefined;
}

/**
 * Learned run times per uri: an exponential moving average (for ETAs) and p50/p95 over a window
 * of recent samples. Memory is bounded by the window and the number of uris (LRU).
 */
export class DurationStats {
  readonly #window: number;
  readonly #alpha: number;
  /** Counted one unit per uri, so the byte bound is a count bound. */
  readonly #uris: ByteLru<UriState>;

  constructor(options: DurationStatsOptions = {}) {
    const window = options.window ?? 256;
    const maxUris = options.maxUris ?? 10_000;
    const alpha = options.alpha ?? 0.2;
    const issues: ConfigIssue[] = [];
    if (!Number.isSafeInteger(window) || window < 1) {
      issues.push({ path: '/window', message: `must be an integer >= 1, got ${String(window)}` });
    }
    if (!Number.isSafeInteger(maxUris) || maxUris < 1) {
      issues.push({ path: '/maxUris', message: `must be an integer >= 1, got ${String(maxUris)}` });
    }
    if (!(alpha > 0 && alpha <= 1)) issues.push({ path: '/alpha', message: `must be in (0, 1], got ${String(alpha)}` });
    if (issues.length > 0) throw new ConfigError('invalid duration statistics options', issues);
    this.#window = window;
    this.#alpha = alpha;
    this.#uris = new ByteLru<UriState>(maxUris);
  }

  /** Adds one run time. Non-finite values are ignored; negative ones count as 0. */
  record(uri: string, durationMs: number): void {
    if (!Number.isFinite(durationMs)) return;
    const ms = durationMs < 0 ? 0 : durationMs;
    const state = this.#uris.get(uri);
    if (state === undefined) {
      this.#uris.set(
        uri,
        {
          count: 1,
          avg: ms,
          samples: [ms],
          next: 1 % this.#window,
          p50: ms,
          p95: ms,
          sortedAt: 1,
          view: undefined,
        },
        1,
      );
      return;
    }
    state.view = undefined;
    state.count++;
    state.avg += this.#alpha * (ms - state.avg);
    if (state.samples.length < this.#window) state.samples.push(ms);
    else state.samples[state.next] = ms;
    state.next = (state.next + 1) % this.#window;
  }

  /** Statistics of one uri, or undefined when none were recorded (or it was forgotten). */
  get(uri: string): UriStats | undefined {
    const state = this.#uris.peek(uri);
    return state === undefined ? undefined : this.#toStats(uri, state);
  }

  /** Statistics of every tracked uri, by uri. */
  all(): UriStats[] {
    const out: UriStats[] = [];
    for (const [uri, state] of this.#uris.entries()) out.push(this.#toStats(uri, state));
    return out.sort((a, b) => compareStrings(a.uri, b.uri));
  }

  /** Uris tracked. */
  get size(): number {
    return this.#uris.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#uris.clear();
  }

  #toStats(uri: string, state: UriState): UriStats {
    // Sorting the window on every status read would dominate a busy queue: refresh the
    // percentiles once a sixteenth of the window has been replaced (and always while it is small).
    if (state.count !== state.sortedAt && (state.count - state.sortedAt >= this.#window / 16 || state.count < 16)) {
      const sorted = Float64Array.from(state.samples).sort();
      state.p50 = percentile(sorted, 0.5);
      state.p95 = percentile(sorted, 0.95);
      state.sortedAt = state.count;
      state.view = undefined;
    }
    // Frozen, since it is shared by every read until the next sample.
    state.view ??= Object.freeze({ uri, count: state.count, avgMs: state.avg, p50Ms: state.p50, p95Ms: state.p95 });
    return state.view;
  }
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: Float64Array, p: number): number {
  const i = Math.max(0, Math.ceil(p * sorted.length) - 1);
  return sorted[i] ?? 0;
}
