import { createHash } from 'node:crypto';

import type { LifecycleSystem } from './drive.js';

interface BareRecord {
  state: 'pending' | 'running' | 'completed';
  readonly index: number;
  result?: Uint8Array;
}

/** Drop consumed array slots once this many have piled up at the head. */
const COMPACT_AT = 65_536;

/**
 * The baseline: the same lifecycle with no library at all. A hashed key, a Map of records, an
 * array as the queue, `concurrency` async loops as the worker, a copied buffer as the "cache".
 * No dedupe across states, leases, fencing, retries, priorities, groups or events: it shows what
 * the bare minimum costs on this machine.
 */
export function bareSystem(concurrency: number, payload: Uint8Array, run: string): LifecycleSystem {
  const records = new Map<string, BareRecord>();
  let queue: string[] = [];
  let head = 0;
  const idle: (() => void)[] = [];
  let listener: ((key: string, index: number) => void) | undefined;
  let stopped = false;

  const handler = (record: BareRecord): Promise<void> => {
    // A copy, as armlib's memory cache keeps one (`slice` of a Buffer, the payload, is a view).
    record.result = Buffer.from(payload);
    return Promise.resolve();
  };

  async function loop(): Promise<void> {
    while (!stopped) {
      if (head === queue.length) {
        await new Promise<void>((resolve) => idle.push(resolve));
        continue;
      }
      const key = queue[head++] ?? '';
      if (head >= COMPACT_AT) {
        queue = queue.slice(head);
        head = 0;
      }
      const record = records.get(key);
      if (record === undefined) continue;
      record.state = 'running';
      await handler(record);
      record.state = 'completed';
      listener?.(key, record.index);
    }
  }

  return {
    submit(index) {
      const key = createHash('sha256')
        .update(`/bench/report?run=${run}&i=${String(index)}`)
        .digest('hex')
        .slice(0, 32);
      const existing = records.get(key);
      if (existing === undefined || existing.state === 'completed') {
        records.set(key, { state: 'pending', index });
        queue.push(key);
        idle.shift()?.();
      }
      return Promise.resolve();
    },
    onCompleted(callback) {
      listener = callback;
    },
    isCompleted(key) {
      return Promise.resolve(records.get(key)?.state === 'completed');
    },
    start() {
      for (let i = 0; i < concurrency; i++) void loop();
    },
    close() {
      stopped = true;
      for (const wake of idle.splice(0)) wake();
      return Promise.resolve();
    },
  };
}
