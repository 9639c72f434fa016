import type { ActivityBucket, ActivityCounts } from '@armlib/core';

import type { Item } from './codec.js';
import { ttlSeconds } from './codec.js';
import type { Db } from './db.js';
import { Expr } from './expr.js';
import { activityPk, TTL_ATTR } from './layout.js';

const MINUTE = 60_000;
const KINDS = ['submitted', 'claimed', 'completed', 'failed'] as const;
type Kind = (typeof KINDS)[number];
const ACTIVITY_KEEP_MS = 24 * 3_600_000;
const MAX_ATTRS_PER_UPDATE = 60;
/** Attribute of an activity item: the number of the last write this process made to it. */
const WRITE_NO = 'fs';

function zero(): ActivityCounts {
  return { submitted: 0, claimed: 0, completed: 0, failed: 0 };
}

/** One write of counts to one minute's item, numbered when first sent and sent again unchanged. */
interface Batch {
  readonly minute: number;
  readonly counts: readonly (readonly [string, number])[];
  readonly writeNo: number;
}

/**
 * Per-minute activity counters, buffered in the process and added to one item per minute and
 * process (`ACT#<minute>` / instance id) at each flush: no write on the request path, and no item
 * shared by processes.
 *
 * An `ADD` is not idempotent: when a write lands and its answer is lost, the SDK sends it again
 * (and a flush that failed sends its counts again), which would count them twice. So each write
 * carries a number, increasing within the process, and sets it on the item under the condition
 * that the item holds a lower one (or none): only this process writes its items, one write at a
 * time, so a failed condition means this very write landed already. A write sent again only once
 * the one before it is settled also keeps a late copy of an old write (delayed in the network)
 * from landing over a newer one.
 *
 * The manager runs one flush at a time: two flushes at once could send their writes out of order.
 */
export class ActivityBuffer {
  /** minute → attribute (`t|kind` or `g|group|kind`) → count not yet written. */
  #pending = new Map<number, Map<string, number>>();
  /** A write that failed without telling whether it landed: sent again, as it was, before anything else. */
  #inDoubt: Batch | undefined;
  #writes = 0;

  constructor(
    private readonly db: Db,
    private readonly instanceId: string,
  ) {}

  /** Whether something waits for a flush. */
  get dirty(): boolean {
    return this.#pending.size > 0 || this.#inDoubt !== undefined;
  }

  /** Counts one transition. */
  record(kind: Kind, group: string, now: number): void {
    const minute = Math.floor(now / MINUTE) * MINUTE;
    for (const a of [`t|${kind}`, `g|${group}|${kind}`]) this.#merge(minute, a, 1);
  }

  /** Writes the buffered counts; on a failure the rest stays buffered (and the failed write in doubt) for the next flush. */
  async flush(): Promise<void> {
    if (this.#inDoubt !== undefined) {
      await this.#write(this.#inDoubt);
      this.#inDoubt = undefined;
    }
    const minutes = [...this.#pending];
    this.#pending = new Map();
    for (let m = 0; m < minutes.length; m++) {
      const [minute, attrs] = minutes[m] as [number, Map<string, number>];
      const entries = [...attrs];
      for (let i = 0; i < entries.length; i += MAX_ATTRS_PER_UPDATE) {
        const batch = { minute, counts: entries.slice(i, i + MAX_ATTRS_PER_UPDATE), writeNo: ++this.#writes };
        this.#inDoubt = batch;
        try {
          await this.#write(batch);
        } catch (error) {
          // The batch stays in doubt; the counts not sent go back: this minute's rest, and every later minute.
          for (const [attr, n] of entries.slice(i + MAX_ATTRS_PER_UPDATE)) this.#merge(minute, attr, n);
          for (const [later, rest] of minutes.slice(m + 1)) for (const [attr, n] of rest) this.#merge(later, attr, n);
          throw error;
        }
        this.#inDoubt = undefined;
      }
    }
  }

  /** Adds a batch to its item, once: a failed condition is this write having landed before (see the class comment). */
  async #write(batch: Batch): Promise<void> {
    const e = new Expr();
    for (const [attr, n] of batch.counts) e.add(attr, n);
    e.set(TTL_ATTR, ttlSeconds(batch.minute + ACTIVITY_KEEP_MS));
    e.set(WRITE_NO, batch.writeNo);
    const no = e.n(WRITE_NO);
    const condition = `attribute_not_exists(${no}) OR ${no} < ${e.v(batch.writeNo)}`;
    await this.db.update(
      {
        Key: { pk: activityPk(batch.minute), sk: this.instanceId },
        UpdateExpression: e.update(),
        ConditionExpression: condition,
        ...e.attributes(),
        ReturnValues: 'NONE',
      },
      'UpdateItem(activity)',
    );
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
