import { createHash } from 'node:crypto';

import type { ActivityBucket, ActivityCounts, UriStats, WorkerCapacity } from '@armlib/core';

import type { Item } from './codec.js';
import { ttlSeconds } from './codec.js';
import type { Db } from './db.js';
import { Expr } from './expr.js';
import { activityPk, STATS_PK, TTL_ATTR, WORKERS_PK } from './layout.js';

const MINUTE = 60_000;
const KINDS = ['submitted', 'claimed', 'completed', 'failed'] as const;
type Kind = (typeof KINDS)[number];
const ACTIVITY_KEEP_MS = 24 * 3_600_000;
/**
 * Recent samples per uri for p50/p95: the memory and file queues' window. Stored as a list of
 * numbers in the uri's item (a number takes about one byte per two significant digits, plus one):
 * at most about 3 KB, far below the 400 KB an item may hold.
 */
const SAMPLE_WINDOW = 256;
const ALPHA = 0.2;
const MAX_ATTRS_PER_UPDATE = 60;

function zero(): ActivityCounts {
  return { submitted: 0, claimed: 0, completed: 0, failed: 0 };
}

/**
 * Per-minute activity counters, buffered in the process and added to one item per minute and
 * process (`ACT#<minute>` / instance id) at each flush: no write on the request path, and no item
 * shared by processes.
 */
export class ActivityBuffer {
  /** minute → attribute (`t|kind` or `g|group|kind`) → count not yet written. */
  #pending = new Map<number, Map<string, number>>();

  constructor(
    private readonly db: Db,
    private readonly instanceId: string,
  ) {}

  /** Whether something waits for a flush. */
  get dirty(): boolean {
    return this.#pending.size > 0;
  }

  /** Counts one transition. */
  record(kind: Kind, group: string, now: number): void {
    const minute = Math.floor(now / MINUTE) * MINUTE;
    let attrs = this.#pending.get(minute);
    if (attrs === undefined) {
      attrs = new Map();
      this.#pending.set(minute, attrs);
    }
    for (const a of [`t|${kind}`, `g|${group}|${kind}`]) attrs.set(a, (attrs.get(a) ?? 0) + 1);
  }

  /** Writes the buffered counts (ADD, so flushes from one process never race each other's data). */
  async flush(): Promise<void> {
    const minutes = [...this.#pending];
    this.#pending = new Map();
    for (let m = 0; m < minutes.length; m++) {
      const [minute, attrs] = minutes[m] as [number, Map<string, number>];
      const entries = [...attrs];
      for (let i = 0; i < entries.length; i += MAX_ATTRS_PER_UPDATE) {
        const e = new Expr();
        for (const [attr, n] of entries.slice(i, i + MAX_ATTRS_PER_UPDATE)) e.add(attr, n);
        e.set(TTL_ATTR, ttlSeconds(minute + ACTIVITY_KEEP_MS));
        try {
          await this.db.update(
            {
              Key: { pk: activityPk(minute), sk: this.instanceId },
              UpdateExpression: e.update(),
              ...e.attributes(),
              ReturnValues: 'NONE',
            },
            'UpdateItem(activity)',
          );
        } catch (error) {
          // Put the unwritten counts back for the next flush: this minute's rest, and every later minute.
          for (const [attr, n] of entries.slice(i)) this.#merge(minute, attr, n);
          for (const [later, rest] of minutes.slice(m + 1)) for (const [attr, n] of rest) this.#merge(later, attr, n);
          throw error;
        }
      }
    }
  }

  #merge(minute: number, attr: string, n: number): void {
    let attrs = this.#pending.get(minute);
    if (attrs === undefined) {
      attrs = new Map();
      this.#pending.set(minute, attrs);
    }
    attrs.set(attr, (attrs.get(attr) ?? 0) + n);
  }

  /** The last `minutes` minutes, oldest first, summed over every process's items. */
  async read(minutes: number, now: number): Promise<ActivityBucket[]> {
    const current = Math.floor(now / MINUTE) * MINUTE;
    // Minutes beyond those kept (TTL) would be empty Queries: capped, as the memory queue caps them.
    const n = Math.min(Math.max(0, Math.floor(minutes)), ACTIVITY_KEEP_MS / MINUTE);
    const starts = Array.from({ length: n }, (_, i) => current - (n - 1 - i) * MINUTE);
    return Promise.all(
      starts.map(async (minute) => {
        const { items } = await this.db.queryAll(
          {
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk' },
            ExpressionAttributeValues: { ':pk': activityPk(minute) },
            ConsistentRead: true,
          },
          'Query(activity)',
        );
        const total = zero();
        const byGroup: Record<string, ActivityCounts> = {};
        for (const item of items) addItem(item, total, byGroup);
        return { minute, total, byGroup };
      }),
    );
  }
}

function addItem(item: Item, total: ActivityCounts, byGroup: Record<string, ActivityCounts>): void {
  for (const [attr, value] of Object.entries(item)) {
    if (typeof value !== 'number') continue;
    const parts = attr.split('|');
    const kind = parts[parts.length - 1] as Kind;
    if (!KINDS.includes(kind)) continue;
    if (parts[0] === 't' && parts.length === 2) total[kind] += value;
    else if (parts[0] === 'g' && parts.length >= 3) {
      const group = parts.slice(1, -1).join('|');
      const counts = (byGroup[group] ??= zero());
      counts[kind] += value;
    }
  }
}

interface StoredStats {
  uri: string;
  count: number;
  avg: number;
  samples: number[];
  v: number;
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

function decodeStats(item: Item | undefined): StoredStats | undefined {
  if (item === undefined || typeof item['uri'] !== 'string') return undefined;
  const samples = Array.isArray(item['samples'])
    ? (item['samples'] as unknown[]).filter((x): x is number => typeof x === 'number')
    : [];
  return {
    uri: item['uri'],
    count: typeof item['count'] === 'number' ? item['count'] : 0,
    avg: typeof item['avg'] === 'number' ? item['avg'] : 0,
    samples,
    v: typeof item['v'] === 'number' ? item['v'] : 0,
  };
}

/**
 * Learned run times per uri (moving average, p50/p95 over recent samples): samples are buffered
 * in the process and merged into one item per uri at each flush (optimistic version check);
 * reads are cached briefly, as they only feed ETAs.
 */
export class DurationBuffer {
  #pending = new Map<string, number[]>();
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
    const list = this.#pending.get(uri) ?? [];
    list.push(Math.max(0, durationMs));
    this.#pending.set(uri, list);
  }

  /** Merges the buffered samples into the table. */
  async flush(): Promise<void> {
    const uris = [...this.#pending];
    this.#pending = new Map();
    for (let u = 0; u < uris.length; u++) {
      const [uri, samples] = uris[u] as [string, number[]];
      try {
        await this.#merge(uri, samples);
        this.#cache.delete(uri);
      } catch (error) {
        // Put this uri's samples back for the next flush, and those of every uri not tried yet.
        for (const [unwritten, kept] of uris.slice(u)) {
          this.#pending.set(unwritten, [...kept, ...(this.#pending.get(unwritten) ?? [])]);
        }
        throw error;
      }
    }
  }

  async #merge(uri: string, samples: number[]): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const key = { pk: STATS_PK, sk: uriSk(uri) };
      const prev = decodeStats(await this.db.get(key, 'GetItem(stats)'));
      const next: StoredStats = prev ?? { uri, count: 0, avg: 0, samples: [], v: 0 };
      for (const ms of samples) {
        next.avg = next.count === 0 ? ms : next.avg + ALPHA * (ms - next.avg);
        next.count++;
        next.samples.push(ms);
      }
      next.samples = next.samples.slice(-SAMPLE_WINDOW);
      const outcome = await this.db.put(
        {
          Item: { ...key, uri, count: next.count, avg: next.avg, samples: next.samples, v: next.v + 1 },
          ConditionExpression: prev === undefined ? 'attribute_not_exists(#pk)' : '#v = :v',
          ExpressionAttributeNames: prev === undefined ? { '#pk': 'pk' } : { '#v': 'v' },
          ...(prev === undefined ? {} : { ExpressionAttributeValues: { ':v': prev.v } }),
        },
        'PutItem(stats)',
      );
      if (outcome.ok) return;
    }
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

/**
 * Worker capacity reports: one item per worker (written at each report, a per-worker rate, not a
 * per-request one), read with one Query and cached briefly.
 */
export class WorkerRegistry {
  #cache: { value: WorkerCapacity; at: number } | undefined;

  constructor(
    private readonly db: Db,
    private readonly cacheMs: number,
  ) {}

  async report(workerId: string, slots: number, ttlMs: number, now: number): Promise<void> {
    const expiresAt = now + ttlMs;
    await this.db.put(
      { Item: { pk: WORKERS_PK, sk: workerId, slots, exp: expiresAt, [TTL_ATTR]: ttlSeconds(expiresAt + 3_600_000) } },
      'PutItem(worker)',
    );
    this.#cache = undefined;
  }

  async remove(workerId: string): Promise<void> {
    await this.db.delete({ Key: { pk: WORKERS_PK, sk: workerId } }, 'DeleteItem(worker)');
    this.#cache = undefined;
  }

  async capacity(now: number): Promise<WorkerCapacity> {
    const cached = this.#cache;
    if (cached !== undefined && now - cached.at < this.cacheMs && now >= cached.at) return cached.value;
    const { items } = await this.db.queryAll(
      {
        KeyConditionExpression: '#pk = :pk',
        ExpressionAttributeNames: { '#pk': 'pk' },
        ExpressionAttributeValues: { ':pk': WORKERS_PK },
        ConsistentRead: true,
      },
      'Query(workers)',
    );
    let workers = 0;
    let slots = 0;
    for (const item of items) {
      const exp = item['exp'];
      const s = item['slots'];
      if (typeof exp === 'number' && exp > now && typeof s === 'number') {
        workers++;
        slots += s;
      }
    }
    const value = Object.freeze({ workers, slots });
    this.#cache = { value, at: now };
    return value;
  }
}
