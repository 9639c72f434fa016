import type { QueueLimits, QueueState } from '@armlib/core';

import type { Db } from './db.js';
import { A } from './codec.js';
import { KEY_ATTRS, leasePk, pendingPk, WORK_INDEX } from './layout.js';

/** Why an enqueue is refused. */
export type CapRefusal =
  | { readonly kind: 'queue'; readonly limit: number; readonly group?: string }
  | { readonly kind: 'owner'; readonly limit: number; readonly owner: string };

interface Snapshot {
  total: number;
  groups: Map<string, number>;
  ownersPending: Map<string, number>;
  at: number;
}

/** A place under the caps held by one enqueue from its check until its put settles. */
interface Held {
  readonly key: string;
  readonly group: string;
  readonly owner: string | undefined;
  /** The snapshot that counts it (undefined: none does, e.g. a refresh found its key already live). */
  countedIn: Snapshot | undefined;
}

/** What an enqueue does with the place it was given: keep it (its put created the record) or give it back. */
export interface CapReservation {
  /** The put created the record: the place stays counted, as the record now is. */
  commit(): void;
  /** The put did not create the record (another live record, a retry, an error): the place goes. */
  cancel(): void;
}

function live(state: QueueState | undefined): boolean {
  return state === 'pending' || state === 'running';
}

/**
 * Live-record counts behind `maxQueueLength`, the group caps and `maxPendingPerOwner`, without a
 * counter item on the enqueue path: a snapshot read from the work index (every pending and
 * running entry, one Query per shard partition) at most every `refreshMs`, kept current with this
 * process's own transitions in between. An enqueue takes its place ({@link LiveCounts.reserve}) in
 * the same synchronous step as the comparison, before its put, so concurrent enqueues of one
 * process cannot all pass one count: exact for one process. With several, a cap can be passed by
 * what the other processes enqueued since the last refresh (see the README).
 */
export class LiveCounts {
  #snapshot: Snapshot | undefined;
  /** The refresh in progress: every caller that needs a fresh snapshot waits for this one read. */
  #refreshing: Promise<Snapshot> | undefined;
  /** Places taken by enqueues whose put has not settled. */
  readonly #open = new Set<Held>();
  /**
   * Places kept (put landed) while a refresh was reading: its Queries may have run before the put
   * landed, so the refresh counts them unless it saw their key. Undefined while no refresh runs.
   */
  #keptDuringRefresh: Held[] | undefined;

  constructor(
    private readonly db: Db,
    private readonly shards: number,
    private readonly refreshMs: number,
  ) {}

  /**
   * A pending record of this process's sweep, enqueue or prune that expired at `deadline`: out of the
   * counts, unless the snapshot was read after its deadline and so never counted it.
   */
  lapsed(group: string, owner: string | undefined, deadline: number | undefined): void {
    const s = this.#snapshot;
    if (s === undefined || (deadline !== undefined && deadline <= s.at)) return;
    this.adjust(group, owner, 'pending', 'expired');
  }

  /** Applies one of this process's transitions to the snapshot. */
  adjust(group: string, owner: string | undefined, from: QueueState | undefined, to: QueueState | undefined): void {
    const s = this.#snapshot;
    if (s === undefined) return;
    apply(s, group, owner, from, to);
  }

  /**
   * The first cap an enqueue of `key` would pass, or its place under the caps, taken at once: the
   * comparison and the count rise in one synchronous step, so that concurrent enqueues of this
   * process see each other's places before their puts land. The caller commits or cancels it.
   */
  async reserve(
    limits: QueueLimits,
    key: string,
    group: string,
    owner: string | undefined,
    now: number,
  ): Promise<CapRefusal | CapReservation> {
    const read = await this.#current(now);
    // The latest snapshot: another refresh may have been installed while this call waited.
    const s = this.#snapshot ?? read;
    const refusal = refusalOf(s, limits, group, owner);
    if (refusal !== undefined) return refusal;
    const held: Held = { key, group, owner, countedIn: s };
    apply(s, group, owner, undefined, 'pending');
    this.#open.add(held);
    let settled = false;
    return {
      commit: () => {
        if (settled) return;
        settled = true;
        this.#open.delete(held);
        this.#keptDuringRefresh?.push(held);
      },
      cancel: () => {
        if (settled) return;
        settled = true;
        this.#open.delete(held);
        // Only the snapshot that counts it loses it (an older one is gone; a newer one that found
        // its key live counts that record, not this place).
        if (held.countedIn !== undefined && held.countedIn === this.#snapshot) {
          apply(held.countedIn, group, owner, 'pending', undefined);
        }
      },
    };
  }

  async #current(now: number): Promise<Snapshot> {
    const s = this.#snapshot;
    if (s !== undefined && now >= s.at && now - s.at < this.refreshMs) return s;
    // One read at a time: concurrent enqueues past the refresh time share it.
    if (this.#refreshing === undefined) {
      this.#refreshing = this.#refresh(now).finally(() => {
        this.#refreshing = undefined;
      });
    }
    return this.#refreshing;
  }

  async #refresh(now: number): Promise<Snapshot> {
    this.#keptDuringRefresh = [];
    try {
      return await this.#read(now);
    } finally {
      this.#keptDuringRefresh = undefined;
    }
  }

  async #read(now: number): Promise<Snapshot> {
    const fresh: Snapshot = { total: 0, groups: new Map(), ownersPending: new Map(), at: now };
    const parts: { pk: string; pending: boolean }[] = [];
    for (let shard = 0; shard < this.shards; shard++) {
      parts.push({ pk: pendingPk(shard), pending: true }, { pk: leasePk(shard), pending: false });
    }
    const pages = await Promise.all(
      parts.map(async ({ pk, pending }) => {
        const { items } = await this.db.queryAll(
          {
            IndexName: WORK_INDEX,
            KeyConditionExpression: '#gk = :gk',
            ExpressionAttributeNames: {
              '#gk': KEY_ATTRS.workPk,
              '#k': A.key,
              '#g': A.group,
              '#ow': A.owner,
              '#pe': A.pendingExpiresAt,
            },
            ExpressionAttributeValues: { ':gk': pk },
            ProjectionExpression: '#k, #g, #ow, #pe',
          },
          'Query(live counts)',
        );
        return { items, pending };
      }),
    );
    const seen = new Set<string>();
    for (const { items, pending } of pages) {
      for (const item of items) {
        const g = item[A.group];
        const k = item[A.key];
        if (typeof k !== 'string' || typeof g !== 'string') continue; // pause markers
        // Past its deadline a pending record is expired (only a never-claimed one has a deadline).
        const pe = item[A.pendingExpiresAt];
        if (pending && typeof pe === 'number' && pe <= now) continue;
        seen.add(k);
        fresh.total++;
        fresh.groups.set(g, (fresh.groups.get(g) ?? 0) + 1);
        const ow = item[A.owner];
        if (pending && typeof ow === 'string') fresh.ownersPending.set(ow, (fresh.ownersPending.get(ow) ?? 0) + 1);
      }
    }
    // Places of puts in flight, and of puts that landed while the Queries ran, may be missing from
    // what was read: each is carried over unless its key was read (then the read counts it, once).
    for (const held of [...this.#open, ...(this.#keptDuringRefresh ?? [])]) {
      if (seen.has(held.key)) {
        held.countedIn = undefined;
        continue;
      }
      apply(fresh, held.group, held.owner, undefined, 'pending');
      held.countedIn = fresh;
    }
    this.#snapshot = fresh;
    return fresh;
  }
}

function apply(
  s: Snapshot,
  group: string,
  owner: string | undefined,
  from: QueueState | undefined,
  to: QueueState | undefined,
): void {
  const delta = (live(to) ? 1 : 0) - (live(from) ? 1 : 0);
  if (delta !== 0) {
    s.total += delta;
    s.groups.set(group, (s.groups.get(group) ?? 0) + delta);
  }
  if (owner !== undefined) {
    const d = (to === 'pending' ? 1 : 0) - (from === 'pending' ? 1 : 0);
    if (d !== 0) s.ownersPending.set(owner, (s.ownersPending.get(owner) ?? 0) + d);
  }
}

function refusalOf(s: Snapshot, limits: QueueLimits, group: string, owner: string | undefined): CapRefusal | undefined {
  if (limits.maxQueueLength !== undefined && s.total >= limits.maxQueueLength) {
    return { kind: 'queue', limit: limits.maxQueueLength };
  }
  if (limits.groupMaxQueueLength !== undefined && (s.groups.get(group) ?? 0) >= limits.groupMaxQueueLength) {
    return { kind: 'queue', limit: limits.groupMaxQueueLength, group };
  }
  if (
    owner !== undefined &&
    limits.maxPendingPerOwner !== undefined &&
    (s.ownersPending.get(owner) ?? 0) >= limits.maxPendingPerOwner
  ) {
    return { kind: 'owner', limit: limits.maxPendingPerOwner, owner };
  }
  return undefined;
}
