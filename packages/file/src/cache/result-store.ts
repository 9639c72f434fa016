import type Database from 'better-sqlite3';

import { BackendError, LeaseLostError } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

import { GroupCommit } from '../queue/group-commit.js';
import type { GroupCommitHooks, LockWait } from '../queue/group-commit.js';
import { CACHE_BUSY_TIMEOUT_MS, sqliteError } from './open-cache-database.js';
import { decodeFiles, decodeRow, encodeRow } from './result-row.js';
import type { ResultFiles, ResultFilesRow, ResultRow, StoredResult } from './result-row.js';

/**
 * What a lookup finds: a result, nothing, or a row this cache cannot read (kept, never misread),
 * as the {@link BackendError} that says why.
 */
export type Lookup = StoredResult | BackendError | undefined;

/** A promotion found a newer result in the area it promotes from (see {@link ResultStore.publish}). */
export class Superseded extends Error {}

const COLUMNS = 'area, key, v, commit_id, created_at, fence, formats, data';
/**
 * What a clean-up reads of a row: everything but the inline bytes, of which SQLite reads the
 * type and the length from the row's header (no BLOB is read, let alone copied into JavaScript).
 */
const FILES_COLUMNS =
  'area, key, v, commit_id, created_at, fence, formats, typeof(data) AS data_type, length(data) AS data_size';
/** The cache keeps no bookkeeping alongside its transactions. */
const NO_HOOKS: GroupCommitHooks = {
  mark: () => 0,
  undo: () => undefined,
  beforeCommit: () => undefined,
  committed: () => undefined,
  rolledBack: () => undefined,
};
/** Rows read per step of a listing that skips unreadable rows. */
const MIN_PAGE_ROWS = 16;

/**
 * Rows `clear` and `sweep` delete per transaction. One transaction over a whole area held every
 * row, inline data included, in memory and the write lock for seconds (120,000 results of 4 KiB:
 * 550 MiB more, 3.8 s); a chunk holds a bounded few, and other writers get the lock between
 * chunks. A property, so that tests can make chunks small.
 */
export const CLEAN_UP_CHUNK = { rows: 1000 };

/**
 * Where a clean-up goes on: the last key of a chunk as SQLite returned it (a damaged row may hold
 * a BLOB, which sorts after every text: as a string, the same rows would come back for ever).
 */
export type CleanUpCursor = string | Buffer;

/** One chunk of a clean-up: what went, and the key the next chunk starts after (none when done). */
export interface CleanUpChunk {
  /** Rows deleted, unreadable ones included. */
  readonly count: number;
  /** The readable results among them, whose files the caller removes. */
  readonly removed: readonly ResultFiles[];
  readonly next: CleanUpCursor | undefined;
}

type FilesRow = ResultFilesRow & { readonly key: CleanUpCursor };

/**
 * The results table of `cache.sqlite`: one row per (area, key), the commit point of a result.
 * Every change runs in one `BEGIN IMMEDIATE` transaction (a savepoint of a group commit's, but
 * for a migration) that reads what it depends on and writes with nothing in between, so commits,
 * promotions and deletions of one key by several processes are ordered exactly. Only rows here;
 * the caller moves and removes the data files.
 */
export class ResultStore {
  readonly #db: Database.Database;
  readonly #select: Database.Statement<[string, string], ResultRow>;
  readonly #selectAny: Database.Statement<[string], ResultRow>;
  readonly #upsert: Database.Statement<[string, string, number, string, number, number | null, string, Buffer | null]>;
  readonly #delete: Database.Statement<[string, string]>;
  readonly #page: Database.Statement<[string, string, number], ResultRow>;
  readonly #selectFiles: Database.Statement<[string, string], FilesRow>;
  readonly #chunk: Database.Statement<[string, CleanUpCursor, number], FilesRow>;
  readonly #olderChunk: Database.Statement<[string, CleanUpCursor, number, number], FilesRow>;
  readonly #deleteRow: Database.Statement<[string, CleanUpCursor]>;
  readonly #getMeta: Database.Statement<[string], { value: string }>;
  readonly #setMeta: Database.Statement<[string, string]>;
  readonly #group: GroupCommit;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#select = db.prepare(`SELECT ${COLUMNS} FROM results WHERE area = ? AND key = ?`);
    // Both areas in one statement (two seeks of the primary key), persistent first: one read
    // transaction, where two lookups took two (each takes and drops SQLite's shared locks).
    this.#selectAny = db.prepare(
      `SELECT ${COLUMNS} FROM results WHERE area IN ('persistent', 'temporary') AND key = ? ORDER BY area`,
    );
    this.#upsert = db.prepare(
      'INSERT OR REPLACE INTO results (area, key, v, commit_id, created_at, fence, formats, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.#delete = db.prepare('DELETE FROM results WHERE area = ? AND key = ?');
    this.#page = db.prepare(`SELECT ${COLUMNS} FROM results WHERE area = ? AND key > ? ORDER BY key LIMIT ?`);
    this.#selectFiles = db.prepare(`SELECT ${FILES_COLUMNS} FROM results WHERE area = ? AND key = ?`);
    // In key order, through the (area, key) index, from where the last chunk stopped: each chunk
    // reads only its own rows, and only the area's. (No row id: a version 0 table has none.)
    this.#chunk = db.prepare(`SELECT ${FILES_COLUMNS} FROM results WHERE area = ? AND key > ? ORDER BY key LIMIT ?`);
    this.#olderChunk = db.prepare(
      `SELECT ${FILES_COLUMNS} FROM results WHERE area = ? AND key > ? AND created_at < ? ORDER BY key LIMIT ?`,
    );
    // #delete's statement, typed for the key a clean-up read, which a damaged row may hold as a BLOB.
    this.#deleteRow = db.prepare('DELETE FROM results WHERE area = ? AND key = ?');
    this.#getMeta = db.prepare('SELECT value FROM cache_meta WHERE name = ?');
    this.#setMeta = db.prepare('INSERT OR REPLACE INTO cache_meta (name, value) VALUES (?, ?)');
    // The commits one process makes in one turn of its event loop share a transaction (each in its
    // own savepoint), and a batch that finds another process's write lock waits from the event loop.
    const lockWait: LockWait = {
      busyTimeoutMs: CACHE_BUSY_TIMEOUT_MS,
      setBusyTimeout: (ms) => {
        db.exec(`PRAGMA busy_timeout = ${String(ms)}`);
      },
    };
    this.#group = new GroupCommit(
      db,
      NO_HOOKS,
      (error, what) => (error instanceof Superseded ? error : sqliteError(error, what)),
      lockWait,
    );
  }

  /** The result of `key` in `area`. */
  find(area: CacheArea, key: string): Lookup {
    return this.#run('reading', key, () => this.#lookup(area, key));
  }

  /** {@link find} without the inline bytes: which commit is the key's, and its files. */
  findFiles(area: CacheArea, key: string): ResultFiles | BackendError | undefined {
    return this.#run('reading', key, () => {
      const row = this.#selectFiles.get(area, key);
      return row === undefined ? undefined : decodeFilesQuietly(row);
    });
  }

  /** The result of `key` in either area, persistent first (only a migrated crash leaves both). */
  findAny(key: string): Lookup {
    return this.#run('reading', key, () => {
      const row = this.#selectAny.get(key);
      return row === undefined ? undefined : decodeQuietly(row);
    });
  }

  /**
   * Publishes `result` (its data files already in place): in one transaction, refuses when the
   * key's current result in either area cannot be read, when `fence` is below the fence of the
   * key's current result in either area ({@link LeaseLostError}), or when `promoting` (the commit
   * of the temporary result a promotion copied) is no longer the other area's result
   * ({@link Superseded}); else writes the row and deletes the key's row in the other area (a key
   * has one result, the one committed last). Resolves, once the transaction committed, with the
   * results it replaced, whose files the caller removes. With `filesDeadline` (epoch ms, real
   * time), the transaction refuses, retryably, once it is past: the data files moved in for this
   * commit would then be old enough for a sweep to take them for orphans.
   */
  publish(result: StoredResult, fence?: number, promoting?: string, filesDeadline?: number): Promise<StoredResult[]> {
    return this.#group.add(`committing '${result.key}'`, () => {
      if (filesDeadline !== undefined && Date.now() > filesDeadline) {
        throw new BackendError(
          `file cache: the commit of '${result.key}' reached its row too late: a sweep may have collected its data files`,
          { retryable: true },
        );
      }
      return this.#publishIn(result, fence, promoting);
    });
  }

  /**
   * Deletes the rows of `key` in each of `areas` (rows this cache cannot read too) in one
   * transaction: a promotion or commit by another process cannot move the result from an area
   * not yet looked at to one already done, which would leave it in place. Returns how many areas
   * had a row, and the results that could be read (whose files the caller removes). Like every
   * write here, a group commit: it waits for another process's write lock from the event loop.
   */
  removeKey(key: string, areas: readonly CacheArea[]): Promise<{ count: number; results: StoredResult[] }> {
    return this.#group.add(`deleting '${key}'`, () => {
      let count = 0;
      const results: StoredResult[] = [];
      for (const area of areas) {
        const found = this.#lookup(area, key);
        if (found === undefined) continue;
        this.#delete.run(area, key);
        count++;
        if (!(found instanceof BackendError)) results.push(found);
      }
      return { count, results };
    });
  }

  /**
   * Deletes, in one transaction, up to `limit` rows of `area` (unreadable ones too) with keys
   * after `after`, in key order; resolves once it committed.
   */
  clearSome(area: CacheArea, after: CleanUpCursor, limit: number): Promise<CleanUpChunk> {
    return this.#group.add(`clearing '${area}'`, () => {
      const rows = this.#chunk.all(area, after, limit);
      const removed: ResultFiles[] = [];
      for (const row of rows) {
        this.#deleteRow.run(area, row.key);
        const found = decodeFilesQuietly(row);
        if (!(found instanceof BackendError)) removed.push(found);
      }
      return { count: rows.length, removed, next: nextAfter(rows, limit) };
    });
  }

  /**
   * Deletes, in one transaction, the readable rows of `area` committed before `olderThan` among
   * the next `limit` such rows with keys after `after`, in key order; resolves once it committed.
   * A row this cache cannot read is left alone (its createdAt may not mean what it says).
   */
  sweepSome(area: CacheArea, olderThan: number, after: CleanUpCursor, limit: number): Promise<CleanUpChunk> {
    return this.#group.add(`sweeping '${area}'`, () => {
      const rows = this.#olderChunk.all(area, after, olderThan, limit);
      const removed: ResultFiles[] = [];
      for (const row of rows) {
        const found = decodeFilesQuietly(row);
        if (found instanceof BackendError || !(found.createdAt < olderThan)) continue;
        this.#deleteRow.run(area, row.key);
        removed.push(found);
      }
      return { count: removed.length, removed, next: nextAfter(rows, limit) };
    });
  }

  /**
   * Up to `limit` readable results of `area` with keys after `after`, in key order, and whether
   * more rows follow (readable or not: the next page may be empty).
   */
  list(area: CacheArea, after: string, limit: number): { items: StoredResult[]; more: boolean } {
    return this.#run('listing', area, () => {
      const items: StoredResult[] = [];
      let cursor = after;
      for (;;) {
        const want = Math.max(limit - items.length + 1, MIN_PAGE_ROWS);
        const rows = this.#page.all(area, cursor, want);
        for (const [index, row] of rows.entries()) {
          if (items.length === limit) return { items, more: true };
          const found = decodeQuietly(row);
          if (!(found instanceof BackendError)) items.push(found);
          if (index === rows.length - 1) cursor = String(row.key);
        }
        if (rows.length < want) return { items, more: false };
      }
    });
  }

  /** A value of the cache's bookkeeping (`cache_meta`), read inside the caller's transaction. */
  meta(name: string): string | undefined {
    return this.#getMeta.get(name)?.value;
  }

  /** Runs `fn` in one `BEGIN IMMEDIATE` transaction (the migration of an earlier layout). */
  inTransaction<T>(what: string, fn: (writer: RowWriter) => T): T {
    const writer: RowWriter = {
      find: (area, key) => this.#lookup(area, key),
      put: (result) => {
        this.#write(result);
      },
      remove: (area, key) => {
        this.#delete.run(area, key);
      },
      setMeta: (name, value) => {
        this.#setMeta.run(name, value);
      },
    };
    return this.#run(what, 'the cache', () => this.#db.transaction(() => fn(writer)).immediate());
  }

  /** Commits what waits for the next group commit, then closes the database. */
  close(): void {
    if (this.#group.pending) this.#group.flush();
    this.#db.close();
  }

  #publishIn(result: StoredResult, fence: number | undefined, promoting: string | undefined): StoredResult[] {
    const { key, area } = result;
    const other = otherArea(area);
    const same = this.#lookup(area, key);
    const rival = this.#lookup(other, key);
    // Never replace what cannot be read: it may be a newer armlib's result.
    if (same instanceof BackendError) throw refusal(same);
    if (rival instanceof BackendError) throw refusal(rival);
    // A promotion publishes only while the result it copied is still the other area's: a commit
    // made meanwhile must not be replaced by this older result.
    if (promoting !== undefined && rival?.commit !== promoting) throw new Superseded();
    if (fence !== undefined && (fenceOf(same) > fence || fenceOf(rival) > fence)) {
      throw new LeaseLostError(key, `commit of '${key}' refused: a later claim already published its result`);
    }
    this.#write(result);
    const replaced: StoredResult[] = [];
    if (same !== undefined && same.commit !== result.commit) replaced.push(same);
    if (rival !== undefined) {
      this.#delete.run(other, key);
      replaced.push(rival);
    }
    return replaced;
  }

  #write(result: StoredResult): void {
    const row = encodeRow(result);
    this.#upsert.run(result.area, result.key, row.v, row.commitId, row.createdAt, row.fence, row.formats, row.data);
  }

  #lookup(area: CacheArea, key: string): Lookup {
    const row = this.#select.get(area, key);
    return row === undefined ? undefined : decodeQuietly(row);
  }

  /** Runs a database step, translating SQLite's errors (armlib errors pass unchanged). */
  #run<T>(what: string, subject: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof Superseded) throw error;
      throw sqliteError(error, `${what} '${subject}'`);
    }
  }
}

/** The writes the migration of an earlier layout makes inside its transaction. */
export interface RowWriter {
  find(area: CacheArea, key: string): Lookup;
  put(result: StoredResult): void;
  remove(area: CacheArea, key: string): void;
  setMeta(name: string, value: string): void;
}

/** The result of a row, or the error saying why this cache cannot read it. */
function decodeQuietly(row: ResultRow): StoredResult | BackendError {
  try {
    return decodeRow(row);
  } catch (error) {
    return BackendError.is(error) ? error : new BackendError('file cache: unreadable row', { cause: error });
  }
}

/** {@link decodeQuietly} of a row read without its inline bytes. */
function decodeFilesQuietly(row: ResultFilesRow): ResultFiles | BackendError {
  try {
    return decodeFiles(row);
  } catch (error) {
    return BackendError.is(error) ? error : new BackendError('file cache: unreadable row', { cause: error });
  }
}

/** The key a clean-up goes on after: the last one of a full chunk (a short one was the last). */
function nextAfter(rows: readonly FilesRow[], limit: number): CleanUpCursor | undefined {
  return rows.length < limit ? undefined : rows.at(-1)?.key;
}

function refusal(error: BackendError): BackendError {
  return new BackendError(`file cache: commit refused: ${error.message}`, { cause: error });
}

function fenceOf(found: StoredResult | undefined): number {
  return found?.fence ?? Number.NEGATIVE_INFINITY;
}

/** The other area of the two. */
export function otherArea(area: CacheArea): CacheArea {
  return area === 'persistent' ? 'temporary' : 'persistent';
}
