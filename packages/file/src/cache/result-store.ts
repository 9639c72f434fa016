import type Database from 'better-sqlite3';

import { assertStillHeld, BackendError, LeaseLostError } from '@armlib/core';
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
/**
 * {@link FILES_COLUMNS} plus the key's exact bytes, for a clean-up that goes on after it: a key
 * read into JavaScript may not be the key bound back (a damaged row's text that is not UTF-8
 * comes back with U+FFFD in it), so the cursor and the delete use the stored bytes.
 */
const CURSOR_COLUMNS = `${FILES_COLUMNS}, typeof(key) = 'blob' AS key_is_blob, CAST(key AS BLOB) AS key_bytes`;
/** The stored key a cursor names: its bytes, as a BLOB or as TEXT as it was stored. */
const EXACT_KEY = 'CASE WHEN @blob THEN @bytes ELSE CAST(@bytes AS TEXT) END';
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
 * Where a sweep goes on: the last key of a chunk, as the bytes SQLite stored and whether they are
 * a BLOB (a damaged row may hold one; BLOBs sort after every text).
 */
export interface CleanUpCursor {
  readonly blob: boolean;
  readonly bytes: Buffer;
}

/** One chunk of a clean-up: what went, and the key the next chunk starts after (none when done). */
export interface CleanUpChunk {
  /** Rows deleted, unreadable ones included. */
  readonly count: number;
  /** The readable results among them, whose files the caller removes. */
  readonly removed: readonly ResultFiles[];
  /** Where the next chunk starts (after this key); undefined when this was the last chunk. */
  readonly next: CleanUpCursor | undefined;
}

type FilesRow = ResultFilesRow & { readonly key: unknown };
type CursorRow = FilesRow & { readonly key_is_blob: number; readonly key_bytes: Buffer };
/** The named parameters of a statement that goes on after a cursor. */
interface AfterParams {
  readonly area: string;
  readonly blob: number;
  readonly bytes: Buffer;
}

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
  readonly #firstRows: Database.Statement<[string, number], FilesRow>;
  readonly #deleteFirst: Database.Statement<[{ area: string; limit: number }]>;
  readonly #olderFirst: Database.Statement<[{ area: string; olderThan: number; limit: number }], CursorRow>;
  readonly #olderAfter: Database.Statement<[AfterParams & { olderThan: number; limit: number }], CursorRow>;
  readonly #deleteExact: Database.Statement<[AfterParams]>;
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
    // A clear takes the area's first rows in key order, through the (area, key) index, and deletes
    // those same rows by a subquery: no key leaves SQLite, so a damaged one cannot be missed.
    // (No row id: a version 0 table has none.)
    this.#firstRows = db.prepare(`SELECT ${FILES_COLUMNS} FROM results WHERE area = ? ORDER BY key LIMIT ?`);
    this.#deleteFirst = db.prepare(
      'DELETE FROM results WHERE area = @area AND key IN (SELECT key FROM results WHERE area = @area ORDER BY key LIMIT @limit)',
    );
    // A sweep leaves rows behind (young or unreadable ones), so it goes on after the last key of a
    // chunk, by its exact bytes.
    const older = `SELECT ${CURSOR_COLUMNS} FROM results WHERE area = @area`;
    this.#olderFirst = db.prepare(`${older} AND created_at < @olderThan ORDER BY key LIMIT @limit`);
    this.#olderAfter = db.prepare(
      `${older} AND key > ${EXACT_KEY} AND created_at < @olderThan ORDER BY key LIMIT @limit`,
    );
    this.#deleteExact = db.prepare(`DELETE FROM results WHERE area = @area AND key = ${EXACT_KEY}`);
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
  publish(
    result: StoredResult,
    fence?: number,
    promoting?: string,
    filesDeadline?: number,
    stillHeld?: () => boolean,
  ): Promise<StoredResult[]> {
    return this.#group.add(`committing '${result.key}'`, () => {
      if (filesDeadline !== undefined && Date.now() > filesDeadline) {
        throw new BackendError(
          `file cache: the commit of '${result.key}' reached its row too late: a sweep may have collected its data files`,
          { retryable: true },
        );
      }
      // Asked in the transaction that publishes: the group commit runs a turn of the event loop
      // (or a stall) after the commit was called.
      assertStillHeld(result.key, stillHeld);
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
   * Deletes, in one transaction, the first `limit` rows of `area` in key order (unreadable ones
   * too); resolves once it committed. `next` is set (to no particular key) while rows may be left.
   */
  clearSome(area: CacheArea, limit: number): Promise<CleanUpChunk> {
    return this.#group.add(`clearing '${area}'`, () => {
      const removed: ResultFiles[] = [];
      for (const row of this.#firstRows.all(area, limit)) {
        const found = decodeFilesQuietly(row);
        if (!(found instanceof BackendError)) removed.push(found);
      }
      const count = this.#deleteFirst.run({ area, limit }).changes;
      return { count, removed, next: count < limit ? undefined : MORE };
    });
  }

  /**
   * Deletes, in one transaction, the readable rows of `area` committed before `olderThan` among
   * the next `limit` such rows with keys after `after`, in key order; resolves once it committed.
   * A row this cache cannot read is left alone (its createdAt may not mean what it says).
   */
  sweepSome(
    area: CacheArea,
    olderThan: number,
    after: CleanUpCursor | undefined,
    limit: number,
  ): Promise<CleanUpChunk> {
    return this.#group.add(`sweeping '${area}'`, () => {
      const rows =
        after === undefined
          ? this.#olderFirst.all({ area, olderThan, limit })
          : this.#olderAfter.all({ area, blob: after.blob ? 1 : 0, bytes: after.bytes, olderThan, limit });
      const removed: ResultFiles[] = [];
      let count = 0;
      for (const row of rows) {
        const found = decodeFilesQuietly(row);
        if (found instanceof BackendError || !(found.createdAt < olderThan)) continue;
        count += this.#deleteExact.run({ area, blob: row.key_is_blob, bytes: row.key_bytes }).changes;
        removed.push(found);
      }
      return { count, removed, next: nextAfter(rows, limit) };
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

/** A clear's `next`: its chunks always start at the area's first row. */
const MORE: CleanUpCursor = { blob: false, bytes: Buffer.alloc(0) };

/** The key a sweep goes on after: the last one of a full chunk (a short one was the last). */
function nextAfter(rows: readonly CursorRow[], limit: number): CleanUpCursor | undefined {
  const last = rows.at(-1);
  return rows.length < limit || last === undefined
    ? undefined
    : { blob: last.key_is_blob === 1, bytes: last.key_bytes };
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
