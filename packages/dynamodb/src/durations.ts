import { createHash, randomBytes } from 'node:crypto';

import { BackendError } from '@armlib/core';
import type { UriStats } from '@armlib/core';

import type { Item } from './codec.js';
import type { Db } from './db.js';
import { STATS_PK } from './layout.js';

/**
 * Recent samples per uri for p50/p95: the memory and file queues' window. Stored as a list of
 * numbers in the uri's item (a number takes about one byte per two significant digits, plus one):
 * at most about 3 KB, far below the 400 KB an item may hold.
 */
const SAMPLE_WINDOW = 256;
const ALPHA = 0.2;
/**
 * Ids of the last writes a uri's item keeps (about 12 bytes each), by which a process finds out
 * whether its write whose answer was lost landed: found while no more than this many merges of
 * other processes came after it.
 */
const RECENT_WRITES = 32;
/**
 * Read-and-write attempts of one merge. A merge loses an attempt only to another process's merge
 * landing between its read and its write, and each of those falls within one of its attempts: N
 * processes merging one uri at once all succeed within N attempts.
 */
const MAX_ATTEMPTS = 16;
/** Random pause before an attempt after the first, up to base × 2^attempt (at most the cap), so that rivals spread out. */
const BACKOFF_BASE_MS = 5;
const BACKOFF_MAX_MS = 200;

interface StoredStats {
  uri: string;
  count: number;
  avg: number;
  samples: number[];
  v: number;
  /** Ids of the last writes, newest first. */
  writes: string[];
}

/** Samples of one uri merged by one write, and the ids it was sent under so far (any of which may have landed). */
interface Batch {
  readonly samples: number[];
  readonly sent: string[];
}

function uriSk(uri: string): string {
  return createHash('sha256').update(uri).digest('base64url');
}

function toStats(s: StoredStats): UriStats {
  const sorted = [...s.samples].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
  return { uri: s.uri, count: s.count, avgMs: s.avg, p50Ms: at(0.5), p95Ms: at(0.95) };
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? (value as unknown[]).filter((x): x is number => typeof x === 'number') : [];
}

function decodeStats(item: Item | undefined): StoredStats | undefined {
  if (item === undefined || typeof item['uri'] !== 'string') return undefined;
  const writes = Array.isArray(item['w'])
    ? (item['w'] as unknown[]).filter((x): x is string => typeof x === 'string')
    : [];
  return {
    uri: item['uri'],
    count: typeof item['count'] === 'number' ? item['count'] : 0,
    avg: typeof item['avg'] === 'number' ? item['avg'] : 0,
    samples: numbers(item['samples']),
    v: typeof item['v'] === 'number' ? item['v'] : 0,
    writes,
  };
}

function backoff(attempt: number): Promise<void> {
  const ms = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Learned run times per uri (moving average, p50/p95 over recent samples): samples are buffered
 * in the process and merged into one item per uri at each flush (optimistic version check);
 * reads are cached briefly, as they only feed ETAs.
 *
 * Processes flushing one uri at once race for its item: a merge that keeps losing gives up with a
 * retryable error and its samples stay buffered for the next flush, never dropped. Each write
 * records its id in the item, so a merge whose write landed without an answer (the SDK then sends
 * it again, and that copy fails its version check; or the flush fails and the next one sends the
 * samples again) finds it there and does not count its samples twice.
 */
export class DurationBuffer {
  /** uri → samples not yet written, oldest first: the last batch takes new samples while it was never sent. */
  #pending = new Map<string, Batch[]>();
  readonly #cache = new Map<string, { stats: UriStats | undefined; at: number }>();

  constructor(
    private readonly db: Db,
    private readonly cacheMs: number,
  ) {}

  /** Whether something waits for a flush. */
  get dirty(): boolean {
    return this.#pending.size > 0;
  }

  /** Adds one run time. */
  record(uri: string, durationMs: number): void {
    if (!Number.isFinite(durationMs)) return;
    const batches = this.#pending.get(uri) ?? [];
    let open = batches[batches.length - 1];
    if (open === undefined || open.sent.length > 0) {
      open = { samples: [], sent: [] };
      batches.push(open);
    }
    open.samples.push(Math.max(0, durationMs));
    this.#pending.set(uri, batches);
  }

  /** Merges the buffered samples into the table. */
  async flush(): Promise<void> {
    const uris = [...this.#pending];
    this.#pending = new Map();
    for (let u = 0; u < uris.length; u++) {
      const [uri, batches] = uris[u] as [string, Batch[]];
      for (let b = 0; b < batches.length; b++) {
        try {
          await this.#merge(uri, batches[b] as Batch);
        } catch (error) {
          // Back for the next flush, ahead of samples recorded since: this batch (with the ids it was
          // sent under), this uri's next ones, and those of every uri not tried yet.
          this.#putBack(uri, batches.slice(b));
          for (const [later, rest] of uris.slice(u + 1)) this.#putBack(later, rest);
          throw error;
        }
      }
      this.#cache.delete(uri);
    }
  }

  #putBack(uri: string, batches: Batch[]): void {
    this.#pending.set(uri, [...batches, ...(this.#pending.get(uri) ?? [])]);
  }

  async #merge(uri: string, batch: Batch): Promise<void> {
    const key = { pk: STATS_PK, sk: uriSk(uri) };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (attempt > 0) await backoff(attempt);
      const prev = decodeStats(await this.db.get(key, 'GetItem(stats)'));
      if (prev !== undefined && batch.sent.some((id) => prev.writes.includes(id))) return;
      const next: StoredStats = prev ?? { uri, count: 0, avg: 0, samples: [], v: 0, writes: [] };
      for (const ms of batch.samples) {
        next.avg = next.count === 0 ? ms : next.avg + ALPHA * (ms - next.avg);
        next.count++;
        next.samples.push(ms);
      }
      next.samples = next.samples.slice(-SAMPLE_WINDOW);
      const id = randomBytes(9).toString('base64url');
      // Known before it is sent: if the put throws, it may have landed under this id.
      batch.sent.push(id);
      if (batch.sent.length > RECENT_WRITES) batch.sent.shift();
      const outcome = await this.db.put(
        {
          Item: {
            ...key,
            uri,
            count: next.count,
            avg: next.avg,
            samples: next.samples,
            v: next.v + 1,
            w: [id, ...next.writes].slice(0, RECENT_WRITES),
          },
          ConditionExpression: prev === undefined ? 'attribute_not_exists(#pk)' : '#v = :v',
          ExpressionAttributeNames: prev === undefined ? { '#pk': 'pk' } : { '#v': 'v' },
          ...(prev === undefined ? {} : { ExpressionAttributeValues: { ':v': prev.v } }),
        },
        'PutItem(stats)',
      );
      // A failed condition: another process merged first, or this write landed and the SDK sent it
      // again; the next read tells which.
      if (outcome.ok) return;
    }
    throw new BackendError(
      `DynamoDB PutItem(stats) failed: ${String(MAX_ATTEMPTS)} merges of the run times of ${uri} lost to other processes' merges`,
      { retryable: true },
    );
  }

  /** Statistics of one uri or of all, reading through the short cache. */
  async read(uri: string | undefined, now: number): Promise<UriStats[]> {
    if (uri === undefined) {
      if (this.dirty) await this.flush();
      const { items } = await this.db.queryAll(
        {
          KeyConditionExpression: '#pk = :pk',
          ExpressionAttributeNames: { '#pk': 'pk' },
          ExpressionAttributeValues: { ':pk': STATS_PK },
        },
        'Query(stats)',
      );
      return items
        .map(decodeStats)
        .filter((s): s is StoredStats => s !== undefined)
        .map(toStats)
        .sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
    }
    if (this.#pending.has(uri)) await this.flush();
    const cached = this.#cache.get(uri);
    if (cached !== undefined && now - cached.at < this.cacheMs && now >= cached.at)
      return cached.stats === undefined ? [] : [cached.stats];
    const stored = decodeStats(await this.db.get({ pk: STATS_PK, sk: uriSk(uri) }, 'GetItem(stats)'));
    const stats = stored === undefined ? undefined : toStats(stored);
    if (this.#cache.size > 1000) this.#cache.clear();
    this.#cache.set(uri, { stats, at: now });
    return stats === undefined ? [] : [stats];
  }
}
