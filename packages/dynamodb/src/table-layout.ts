import { ConfigError } from '@armlib/core';

import type { Db } from './db.js';
import { layoutKey } from './layout.js';

/** The options that decide where a key's items live, as one table holds them. */
export interface TableLayout {
  readonly shards: number;
  readonly recordShards: number;
}

/**
 * Checks that this process spreads keys over the table as every other process does, and records
 * the spread in the table when it is the first. `shards` and `recordShards` pick the partition of
 * every key: a process configured otherwise (a typo, half of a rolling deploy) would not find the
 * records the others wrote, queue a key a second time, and run it next to another worker. So it is
 * refused, with a `ConfigError` naming each option that differs from the table's.
 *
 * One strongly consistent GetItem per process (and a conditional PutItem for the first one).
 */
export async function checkTableLayout(db: Db, layout: TableLayout): Promise<void> {
  const key = layoutKey();
  let stored = await db.get(key, 'GetItem(layout)');
  if (stored === undefined) {
    const put = await db.put(
      {
        Item: { ...key, shards: layout.shards, recordShards: layout.recordShards },
        ConditionExpression: 'attribute_not_exists(pk)',
      },
      'PutItem(layout)',
    );
    if (put.ok) return;
    // Another process recorded its layout first: this one must match it.
    stored = put.old ?? (await db.get(key, 'GetItem(layout)'));
  }
  const issues = (['shards', 'recordShards'] as const)
    .filter((name) => stored?.[name] !== layout[name])
    .map((name) => ({
      path: `/${name}`,
      message: `is ${String(layout[name])}, but the table's records were spread over ${String(stored?.[name])} by the processes that use it (fixed for the life of a table)`,
    }));
  if (issues.length > 0) throw new ConfigError(`dynamodb queue options do not match table ${db.tableName}`, issues);
}
