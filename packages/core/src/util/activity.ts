import { ConfigError, InvalidRequestError } from '../errors.js';
import type { ActivityBucket, ActivityCounts } from '../spi/queue.js';

/** A transition counted by {@link ActivityTracker}. */
export type ActivityKind = keyof ActivityCounts;

/** Options of {@link ActivityTracker}. */
export interface ActivityTrackerOptions {
  /** Minutes kept (the current one included); default 10. */
  keepMinutes?: number;
}

const MINUTE_MS = 60_000;
const DEFAULT_KEEP_MINUTES = 10;

interface Slot {
  /** Start of the minute this slot holds, or NaN when never used. */
  minute: number;
  total: ActivityCounts;
  byGroup: Map<string, ActivityCounts>;
}

function zero(): ActivityCounts {
  return { submitted: 0, claimed: 0, completed: 0, failed: 0 };
}

function copy(c: ActivityCounts): ActivityCounts {
  return { submitted: c.submitted, claimed: c.claimed, completed: c.completed, failed: c.failed };
}

/**
 * Per-minute counts of submitted/claimed/completed/failed, overall and per group, for the last
 * few minutes. A ring of one slot per minute: recording is O(1) and memory stays bounded by
 * minutes kept x groups active in them. Times are passed in, so any clock (and any adapter) can
 * use it.
 */
export class ActivityTracker {
  readonly #keep: number;
  readonly #slots: Slot[];

  constructor(options: ActivityTrackerOptions = {}) {
    const keep = options.keepMinutes ?? DEFAULT_KEEP_MINUTES;
    if (!Number.isSafeInteger(keep) || keep < 1 || keep > 10_080) {
      throw new ConfigError('invalid activity tracker options', [
        { path: '/keepMinutes', message: `must be an integer from 1 to 10080, got ${String(keep)}` },
      ]);
    }
    this.#keep = keep;
    this.#slots = Array.from({ length: keep }, () => ({ minute: Number.NaN, total: zero(), byGroup: new Map() }));
  }

  /** Minutes kept. */
  get keepMinutes(): number {
    return this.#keep;
  }

  /** Counts `n` transitions of a kind in a group at time `now` (epoch ms). */
  record(kind: ActivityKind, group: string, now: number, n = 1): void {
    const index = Math.floor(now / MINUTE_MS);
    const minute = index * MINUTE_MS;
    const slot = this.#slots[((index % this.#keep) + this.#keep) % this.#keep] as Slot;
    if (slot.minute !== minute) {
      // The slot holds a newer minute when the clock went back past the window: drop the count.
      if (slot.minute > minute) return;
      slot.minute = minute;
      const t = slot.total;
      t.submitted = t.claimed = t.completed = t.failed = 0;
      slot.byGroup.clear();
    }
    slot.total[kind] += n;
    let g = slot.byGroup.get(group);
    if (g === undefined) {
      g = zero();
      slot.byGroup.set(group, g);
    }
    g[kind] += n;
  }

  /**
   * The last `minutes` minutes up to and including the one holding `now`, oldest first; minutes
   * without activity are present with zero counts. More minutes than kept are capped.
   */
  buckets(minutes: number, now: number): ActivityBucket[] {
    if (!Number.isSafeInteger(minutes) || minutes < 0) {
      throw new InvalidRequestError('minutes', `must be an integer >= 0, got ${String(minutes)}`);
    }
    const n = Math.min(minutes, this.#keep);
    const current = Math.floor(now / MINUTE_MS);
    const out: ActivityBucket[] = [];
    for (let index = current - n + 1; index <= current; index++) {
      const minute = index * MINUTE_MS;
      const slot = this.#slots[((index % this.#keep) + this.#keep) % this.#keep] as Slot;
      if (slot.minute !== minute) {
        out.push({ minute, total: zero(), byGroup: {} });
        continue;
      }
      const byGroup: Record<string, ActivityCounts> = {};
      for (const [group, counts] of slot.byGroup) byGroup[group] = copy(counts);
      out.push({ minute, total: copy(slot.total), byGroup });
    }
    return out;
  }

  /** Forgets everything. */
  clear(): void {
    for (const slot of this.#slots) {
      slot.minute = Number.NaN;
      slot.total = zero();
      slot.byGroup.clear();
    }
  }
}
