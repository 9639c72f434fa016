import * as fs from 'node:fs';

import { BackendError } from '@armlib/core';
import type { CacheArea, FormatInfo } from '@armlib/core';

import { assertRegularFile, fsError, isMissing, READ_FLAGS } from './fs-util.js';
import { ID_PATTERN, isFormat } from './layout.js';
import type { StoredResult } from './result-row.js';

/**
 * Manifest files of the `flat-1` layout, read once to migrate a directory into the results table
 * (see migrate-flat.ts); this cache never writes them.
 */

/** 3: small formats may be inline (base64). 2: every format is a file. 1 named a commit directory. */
const READABLE_VERSIONS: readonly unknown[] = [2, 3];

/**
 * Reads the `flat-1` manifest at `path` (never through a symlink); undefined when there is none.
 * A manifest that does not describe `key` in `area` is refused: it was not written by this cache.
 */
export function readLegacyManifest(path: string, key: string, area: CacheArea): StoredResult | undefined {
  let text: string;
  try {
    const fd = fs.openSync(path, READ_FLAGS);
    try {
      assertRegularFile(fd, path);
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw fsError(error, `reading ${path}`);
  }
  return parseManifest(text, key, area, path);
}

function parseManifest(text: string, key: string, area: CacheArea, path: string): StoredResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw corrupt(path, 'not JSON', error);
  }
  if (typeof raw !== 'object' || raw === null) throw corrupt(path, 'not an object');
  const m = raw as Record<string, unknown>;
  if (!READABLE_VERSIONS.includes(m['v'])) throw corrupt(path, `unknown version ${String(m['v'])}`);
  if (m['key'] !== key || m['area'] !== area) throw corrupt(path, `it describes another key or area`);
  const createdAt = m['createdAt'];
  const commit = m['commit'];
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) throw corrupt(path, 'bad createdAt');
  if (typeof commit !== 'string' || !ID_PATTERN.test(commit)) throw corrupt(path, 'bad commit id');
  const rawFormats = m['formats'];
  if (typeof rawFormats !== 'object' || rawFormats === null) throw corrupt(path, 'bad formats');
  const formats: Record<string, FormatInfo> = {};
  for (const [name, value] of Object.entries(rawFormats)) {
    formats[name] = parseFormat(name, value, path);
  }
  const inline = parseInline(m['inline'], formats, path);
  const base = { key, area, createdAt, commit, formats, ...(inline === undefined ? {} : { inline }) };
  const fence = m['fence'];
  if (fence === undefined) return base;
  if (typeof fence !== 'number' || !Number.isFinite(fence)) throw corrupt(path, 'bad fence');
  return { ...base, fence };
}

/** The inline formats: each one of `formats`, base64 of exactly its size. */
function parseInline(
  value: unknown,
  formats: Readonly<Record<string, FormatInfo>>,
  path: string,
): Map<string, Buffer> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) throw corrupt(path, 'bad inline formats');
  const inline = new Map<string, Buffer>();
  for (const [name, data] of Object.entries(value)) {
    const size = Object.hasOwn(formats, name) ? formats[name]?.size : undefined;
    if (typeof data !== 'string' || size === undefined || Buffer.byteLength(data, 'base64') !== size) {
      throw corrupt(path, `bad inline data of ${name}`);
    }
    inline.set(name, Buffer.from(data, 'base64'));
  }
  return inline;
}

function parseFormat(name: string, value: unknown, path: string): FormatInfo {
  // The name becomes a file name: the same rule as assertValidFormat.
  if (!isFormat(name)) throw corrupt(path, 'bad format name');
  const info = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const { size, contentType, contentEncoding } = info;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw corrupt(path, `bad size of ${name}`);
  if (typeof contentType !== 'string') throw corrupt(path, `bad contentType of ${name}`);
  if (contentEncoding === undefined) return { size, contentType };
  if (typeof contentEncoding !== 'string') throw corrupt(path, `bad contentEncoding of ${name}`);
  return { size, contentType, contentEncoding };
}

function corrupt(path: string, why: string, cause?: unknown): BackendError {
  return new BackendError(
    `file cache: ${path} is not a manifest of this cache (${why})`,
    cause === undefined ? {} : { cause },
  );
}
