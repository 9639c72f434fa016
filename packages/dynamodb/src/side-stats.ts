import type { WorkerCapacity } from '@armlib/core';

import { ttlSeconds } from './codec.js';
import type { Db } from './db.js';
import { TTL_ATTR, WORKERS_PK } from './layout.js';

// The activity counters and the run-time statistics live in their own files (each with its way of
// writing a buffer once); the manager imports the three buffers from here.
export { ActivityBuffer } from './activity.js';
export { DurationBuffer } from './durations.js';

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
