import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import Database from 'better-sqlite3';

import type { CacheArea, CacheManager, ResultManifest } from '@armlib/core';

/** A fresh directory under the OS temp dir, removed by {@link TempDir.remove}. */
export interface TempDir {
  readonly path: string;
  remove(): Promise<void>;
}

export async function tempDir(prefix = 'armlib-file-cache-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Chunks of `text` as a byte stream. */
export async function* bytes(...chunks: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

/** Reads a stream whole (small test data only). */
export async function collect(body: Readable | AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

/** Commits `formats` (name → text) as the result of `key` in `area`. */
export async function put(
  cache: CacheManager,
  key: string,
  area: CacheArea,
  formats: Record<string, string>,
): Promise<ResultManifest> {
  const staged = await cache.stage(key);
  for (const [format, text] of Object.entries(formats)) {
    await staged.write(format, bytes(text), { contentType: 'text/plain' });
  }
  return staged.commit(area);
}

/** The text of one format, or undefined when absent. */
export async function text(cache: CacheManager, key: string, format: string): Promise<string | undefined> {
  const got = await cache.get(key, format);
  return got === undefined ? undefined : (await collect(got.body)).toString('utf8');
}

/** The rejection of a promise (fails when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a value');
}

/**
 * A connection of its own to the results database of the cache in `dir`, as another process (or
 * an operator with the sqlite3 shell) would open it: for tests that damage or inspect rows.
 */
export function openResults(dir: string): Database.Database {
  const db = new Database(join(dir, 'cache.sqlite'), { timeout: 10_000 });
  db.pragma('journal_mode = WAL');
  return db;
}

/** The raw row of `key` in `area`, or undefined. */
export interface RawRow {
  area: string;
  key: string;
  v: number;
  commit_id: string;
  created_at: number;
  fence: number | null;
  formats: string;
  data: Buffer | null;
}

export function rowOf(dir: string, area: CacheArea, key: string): RawRow | undefined {
  const db = openResults(dir);
  try {
    return db.prepare('SELECT * FROM results WHERE area = ? AND key = ?').get(area, key) as RawRow | undefined;
  } finally {
    db.close();
  }
}

/** Runs one statement on the results database of the cache in `dir` (to damage or plant rows). */
export function runOnResults(dir: string, sql: string, ...params: unknown[]): number {
  const db = openResults(dir);
  try {
    return db.prepare(sql).run(...params).changes;
  } finally {
    db.close();
  }
}
