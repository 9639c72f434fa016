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

function live(state: QueueState | undefined): boolean {
  return state === 'pending' || state === 'running';
}

/**
 * Live-record counts behind `maxQueueLength`, the group caps and `maxPendingPerOwner`, without a
 * counter item on the enqueue path: a snapshot read from the work index (every pending and
 * running entry, one Query per shard partition) at most every `refreshMs`, kept current with this
 * process's own transitions in between. Exact for one process; with several, a cap can be passed
 * by what the other processes enqueued since the last refresh (see the README).
 */
export class LiveCounts {
  #snapshot: Snapshot | undefined;

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

  /** The first cap an enqueue would pass, or undefined. */
  async check(
    limits: QueueLimits,
    group: string,
    owner: string | undefined,
    now: number,
  ): Promise<CapRefusal | undefined> {
    const s = await this.#current(now);
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

  async #current(now: number): Promise<Snapshot> {
    const s = this.#snapshot;
    if (s !== undefined && now >= s.at && now - s.at < this.refreshMs) return s;
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
    for (const { items, pending } of pages) {
      for (const item of items) {
        const g = item[A.group];
        if (typeof item[A.key] !== 'string' || typeof g !== 'string') continue; // pause markers
        // Past its deadline a pending record is expired (only a never-claimed one has a deadline).
        const pe = item[A.pendingExpiresAt];
        if (pending && typeof pe === 'number' && pe <= now) continue;
        fresh.total++;
        fresh.groups.set(g, (fresh.groups.get(g) ?? 0) + 1);
        const ow = item[A.owner];
        if (pending && typeof ow === 'string') fresh.ownersPending.set(ow, (fresh.ownersPending.get(ow) ?? 0) + 1);
      }
    }
    this.#snapshot = fresh;
    return fresh;
  }
}
