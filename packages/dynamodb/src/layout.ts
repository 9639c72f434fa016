/**
 * The table layout: how records and the helper items are keyed, and how the sparse, sharded work
 * index is encoded. Everything about key strings lives here so that the layout is readable in one place.
 */

/** Name of the table's only global secondary index (pending and running entries). */
export const WORK_INDEX = 'work';

/** Attribute names of the table and index keys. */
export const KEY_ATTRS = Object.freeze({ pk: 'pk', sk: 'sk', workPk: 'gk', workSk: 'gs' });

/** Attributes copied into the work index besides its keys (INCLUDE projection). All stable while indexed. */
export const WORK_PROJECTION = Object.freeze(['k', 'g', 'ra', 'pe', 'ow']);

/** Name of the TTL attribute (epoch seconds) on finished records. */
export const TTL_ATTR = 'xt';

const PRIORITY_OFFSET = 1_000_000;

/** FNV-1a, 32 bits: a stable, well-spread hash of the key (shard choice only, not security). */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Partition of a queue record: records are spread over `recordShards` partitions so list/counts can Query them. */
export function recordPk(key: string, recordShards: number): string {
  return `R#${String(hashKey(key) % recordShards)}`;
}

/** Sort key of a queue record. */
export function recordSk(key: string): string {
  return `K#${key}`;
}

/** Work-index shard of a key. */
export function workShard(key: string, shards: number): number {
  // A different bit range than the record partition, so the two spreads are independent.
  return Math.floor(hashKey(key) / 7) % shards;
}

/** Work-index partition of pending entries of a shard. */
export function pendingPk(shard: number): string {
  return `P#${String(shard)}`;
}

/** Work-index partition of running entries (leases) of a shard. */
export function leasePk(shard: number): string {
  return `L#${String(shard)}`;
}

function pad(n: number, width: number): string {
  return String(Math.max(0, Math.floor(n))).padStart(width, '0');
}

/** Pending sort key: inverted priority, then seq, so an ascending Query reads in serving order. */
export function pendingSk(priority: number, seq: number): string {
  return `${pad(PRIORITY_OFFSET - priority, 7)}#${pad(seq, 16)}`;
}

/** Decodes {@link pendingSk}. */
export function parsePendingSk(sk: string): { priority: number; seq: number } | undefined {
  const m = /^(\d{7})#(\d{16})$/.exec(sk);
  if (m?.[1] === undefined || m[2] === undefined) return undefined;
  return { priority: PRIORITY_OFFSET - Number(m[1]), seq: Number(m[2]) };
}

/** Upper bound of pending sort keys (used to count entries ahead of one). */
export const PENDING_SK_MIN = '0';

/**
 * Sort key of a lease entry: the lease deadline set at the claim (heartbeats that extend the
 * lease do not rewrite it, which would cost two index writes each; one that shortens it does),
 * then the key. A sweep reads the entries at or past
 * their first deadline and checks the record's current one.
 */
export function leaseSk(leaseExpiresAt: number, key: string): string {
  return `${pad(leaseExpiresAt, 16)}#${key}`;
}

/** The deadline a lease sort key was written with (NaN for anything else). */
export function leaseSkDeadline(sk: unknown): number {
  return typeof sk === 'string' && /^\d{16}#/.test(sk) ? Number(sk.slice(0, 16)) : Number.NaN;
}

/** Exclusive upper bound of lease sort keys due at `now`. */
export function leaseSkBound(now: number): string {
  return pad(now + 1, 16);
}

/** Sort key of the pause marker placed at the head of every pending shard ('!' sorts before digits). */
export const PAUSE_SK = '!PAUSE';

/** Base-table key of the pause marker of a shard. */
export function pauseKey(shard: number): { pk: string; sk: string } {
  return { pk: `PAUSE#${String(shard)}`, sk: 'M' };
}

/** Base-table key of the pause state item: whether the queue is paused, and the order of pause calls. */
export function pauseStateKey(): { pk: string; sk: string } {
  return { pk: 'PAUSE', sk: 'STATE' };
}

/** Base-table key of the item that records how keys are spread over the table (see checkTableLayout). */
export function layoutKey(): { pk: string; sk: string } {
  return { pk: 'LAYOUT', sk: 'SHARDS' };
}

/** Partition of group items (one item per group with a policy: last claim time, running slots). */
export const GROUPS_PK = 'GROUPS';

/** Partition of worker capacity reports. */
export const WORKERS_PK = 'WORKERS';

/** Partition of one minute's activity counters (one item per process). */
export function activityPk(minute: number): string {
  return `ACT#${String(minute)}`;
}

/** Partition of the per-uri duration statistics (one item per uri). */
export const STATS_PK = 'STATS';

/**
 * Seq numbers without a counter item: clock milliseconds times 2^11 plus random low bits, kept
 * monotonic within the process. Different processes interleave FIFO-ish within a millisecond.
 */
export class SeqSource {
  #last = 0;

  /** The next seq for an enqueue at `now`. */
  next(now: number): number {
    const base = Math.max(0, Math.floor(now)) * 2048 + Math.floor(Math.random() * 1024);
    this.#last = Math.max(this.#last + 1, base);
    return this.#last;
  }
}
