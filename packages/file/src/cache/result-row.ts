import { BackendError } from '@armlib/core';
import type { CacheArea, FormatInfo, ResultManifest } from '@armlib/core';

import { ID_PATTERN, isFormat, isKey } from './layout.js';

/** A committed result as the cache keeps it: the SPI's {@link ResultManifest} plus where its bytes are. */
export interface StoredResult extends ResultManifest {
  /** The commit id: the formats that are files are `<key>@<commit>@<format>` in the key's shard directory. */
  readonly commit: string;
  /** Formats kept in the row itself (small ones), by name: they have no file. */
  readonly inline?: ReadonlyMap<string, Buffer>;
}

/** A row of the `results` table as better-sqlite3 returns it (checked by {@link decodeRow}). */
export interface ResultRow {
  readonly area: unknown;
  readonly key: unknown;
  readonly v: unknown;
  readonly commit_id: unknown;
  readonly created_at: unknown;
  readonly fence: unknown;
  readonly formats: unknown;
  readonly data: unknown;
}

/** The values of one row to write (the columns after area and key). */
export interface EncodedRow {
  readonly v: number;
  readonly commitId: string;
  readonly createdAt: number;
  readonly fence: number | null;
  readonly formats: string;
  readonly data: Buffer | null;
}

/**
 * Version of the rows this cache writes. A row of another version (written by a newer armlib) is
 * read as unreadable: never misread, never replaced, never swept.
 */
export const ROW_VERSION = 1;

/**
 * The row of a result. Formats are JSON (`{ size, contentType, contentEncoding?, at? }` by name);
 * the inline ones are byte ranges `at … at+size` of the one `data` BLOB, so that small results
 * cost neither base64 (a third more bytes, and the encoding) nor a column per format.
 */
export function encodeRow(result: StoredResult): EncodedRow {
  const formats: Record<string, FormatInfo & { at?: number }> = {};
  const parts: Buffer[] = [];
  let at = 0;
  for (const name of Object.keys(result.formats)) {
    const info = result.formats[name];
    if (info === undefined) continue;
    const bytes = result.inline?.get(name);
    if (bytes === undefined) {
      formats[name] = info;
      continue;
    }
    formats[name] = { ...info, at };
    parts.push(bytes);
    at += bytes.byteLength;
  }
  return {
    v: ROW_VERSION,
    commitId: result.commit,
    createdAt: result.createdAt,
    fence: result.fence ?? null,
    formats: JSON.stringify(formats),
    data: parts.length === 0 ? null : parts.length === 1 ? (parts[0] ?? null) : Buffer.concat(parts),
  };
}

/**
 * The columns of a row but its inline bytes, which a clean-up does not need: `data_type` and
 * `data_size` are SQLite's `typeof(data)` and `length(data)`, which SQLite answers from the row's
 * header without reading the BLOB.
 */
export interface ResultFilesRow extends Omit<ResultRow, 'data'> {
  readonly data_type: unknown;
  readonly data_size: unknown;
}

/** What a clean-up needs of a result: which commit it is, when it was made, and its data files. */
export interface ResultFiles {
  readonly key: string;
  readonly area: CacheArea;
  readonly commit: string;
  readonly createdAt: number;
  /** The formats that are files of their own (see {@link fileFormats}). */
  readonly files: readonly string[];
}

/**
 * The result a row describes, or throws a {@link BackendError} saying why the row is not one this
 * cache can read (another version, or damaged). Inline formats are views of the row's BLOB.
 */
export function decodeRow(row: ResultRow): StoredResult {
  const { data } = row;
  const blob = Buffer.isBuffer(data) ? data : undefined;
  const size = data === null || data === undefined ? undefined : (blob?.byteLength ?? 'bad');
  const { key, area, createdAt, commit, formats, fence, ranges } = decodeFields(row, size);
  const inline = new Map<string, Buffer>();
  // Only a row with a BLOB has inline formats: decodeFields refused the others.
  if (blob !== undefined) for (const [name, [start, end]] of ranges) inline.set(name, blob.subarray(start, end));
  return {
    key,
    area,
    createdAt,
    commit,
    formats,
    ...(inline.size === 0 ? {} : { inline }),
    ...(fence === undefined ? {} : { fence }),
  };
}

/**
 * {@link decodeRow} of a row read without its inline bytes: the same checks, so that exactly the
 * rows decodeRow reads are read here, and the same errors.
 */
export function decodeFiles(row: ResultFilesRow): ResultFiles {
  const type = row.data_type;
  const size =
    type === 'null' ? undefined : type === 'blob' && typeof row.data_size === 'number' ? row.data_size : 'bad';
  const { key, area, commit, createdAt, formats, ranges } = decodeFields(row, size);
  return { key, area, commit, createdAt, files: Object.keys(formats).filter((name) => !ranges.has(name)) };
}

/** A row's fields but its inline bytes, checked; `ranges` are where the inline formats lie in the BLOB (end exclusive). */
interface RowFields {
  readonly key: string;
  readonly area: CacheArea;
  readonly createdAt: number;
  readonly commit: string;
  readonly formats: Record<string, FormatInfo>;
  readonly fence: number | undefined;
  readonly ranges: ReadonlyMap<string, readonly [number, number]>;
}

/** Checks every column of a row; `dataSize` is the length of its BLOB (undefined: none, `bad`: not a BLOB). */
function decodeFields(row: Omit<ResultRow, 'data'>, dataSize: number | undefined | 'bad'): RowFields {
  const key = String(row.key);
  const area = row.area === 'persistent' || row.area === 'temporary' ? row.area : 'temporary';
  if (row.v !== ROW_VERSION) throw unreadable(key, area, `row version ${String(row.v)}`);
  if (row.area !== area) throw unreadable(key, area, 'bad area');
  // The key becomes part of file names: the same rule as assertValidKey.
  if (!isKey(key)) throw unreadable(key, area, 'bad key');
  const { commit_id: commit, created_at: createdAt, fence } = row;
  if (typeof commit !== 'string' || !ID_PATTERN.test(commit)) throw unreadable(key, area, 'bad commit id');
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) throw unreadable(key, area, 'bad createdAt');
  if (fence !== null && (typeof fence !== 'number' || !Number.isFinite(fence))) {
    throw unreadable(key, area, 'bad fence');
  }
  if (dataSize === 'bad') throw unreadable(key, area, 'bad data');
  let raw: unknown;
  try {
    raw = typeof row.formats === 'string' ? JSON.parse(row.formats) : undefined;
  } catch (error) {
    throw unreadable(key, area, 'formats are not JSON', error);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw unreadable(key, area, 'bad formats');
  const formats: Record<string, FormatInfo> = {};
  const ranges = new Map<string, readonly [number, number]>();
  let inlineBytes = 0;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const decoded = decodeFormat(name, value, key, area);
    formats[name] = decoded.info;
    if (decoded.at === undefined) continue;
    if (dataSize === undefined || decoded.at + decoded.info.size > dataSize) {
      throw unreadable(key, area, `bad inline data of ${name}`);
    }
    ranges.set(name, [decoded.at, decoded.at + decoded.info.size]);
    inlineBytes += decoded.info.size;
  }
  if ((dataSize ?? 0) !== inlineBytes) throw unreadable(key, area, 'bad inline data');
  return { key, area, createdAt, commit, formats, fence: fence === null ? undefined : fence, ranges };
}

function decodeFormat(
  name: string,
  value: unknown,
  key: string,
  area: CacheArea,
): { info: FormatInfo; at: number | undefined } {
  // The name becomes a file name: the same rule as assertValidFormat.
  if (!isFormat(name)) throw unreadable(key, area, 'bad format name');
  const fields = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const { size, contentType, contentEncoding, at } = fields;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw unreadable(key, area, `bad size of ${name}`);
  }
  if (typeof contentType !== 'string') throw unreadable(key, area, `bad contentType of ${name}`);
  if (contentEncoding !== undefined && typeof contentEncoding !== 'string') {
    throw unreadable(key, area, `bad contentEncoding of ${name}`);
  }
  if (at !== undefined && (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0)) {
    throw unreadable(key, area, `bad inline data of ${name}`);
  }
  const info = contentEncoding === undefined ? { size, contentType } : { size, contentType, contentEncoding };
  return { info, at };
}

/** A frozen SPI manifest (without the commit id). */
export function publicManifest(stored: StoredResult): ResultManifest {
  const formats: Record<string, FormatInfo> = {};
  for (const name of Object.keys(stored.formats)) {
    const info = stored.formats[name];
    if (info !== undefined) formats[name] = Object.freeze({ ...info });
  }
  return Object.freeze({
    key: stored.key,
    area: stored.area,
    createdAt: stored.createdAt,
    formats: Object.freeze(formats),
    ...(stored.fence === undefined ? {} : { fence: stored.fence }),
  });
}

/** The formats of a result that are files of their own (not inline). */
export function fileFormats(result: StoredResult): string[] {
  const inline = result.inline;
  const names = Object.keys(result.formats);
  return inline === undefined ? names : names.filter((name) => !inline.has(name));
}

/** The error of a row this cache cannot read. */
export function unreadable(key: string, area: CacheArea, why: string, cause?: unknown): BackendError {
  return new BackendError(
    `file cache: the stored result of '${key}' in ${area} is not one this cache can read (${why}): ` +
      'it was damaged or written by a newer armlib; delete the key to remove it',
    cause === undefined ? {} : { cause },
  );
}
