import * as fs from 'node:fs';

import { BackendError } from '@armlib/core';
import type { CacheArea, FormatInfo, ResultManifest } from '@armlib/core';

import {
  assertRegularFile,
  CREATE_FLAGS,
  fsError,
  isMissing,
  READ_FLAGS,
  syncFd,
  syncParent,
  unlinkQuietly,
} from './fs-util.js';
import { ID_PATTERN, isFormat } from './layout.js';

/** The manifest as stored: the SPI's {@link ResultManifest} plus the commit id naming the data files. */
export interface StoredManifest extends ResultManifest {
  /** The commit id: the formats are the files `<key>@<commit>@<format>` next to the manifest. */
  readonly commit: string;
  /** Formats kept in the manifest itself (small ones), base64: they have no file. */
  readonly inline?: Readonly<Record<string, string>>;
}

/** 3: small formats may be inline. 2 (read too): every format is a file. 1 named a commit directory. */
const VERSION = 3;
const READABLE_VERSIONS: readonly unknown[] = [2, 3];

/**
 * Reads the manifest at `path` (never through a symlink); undefined when there is none.
 * A manifest that does not describe `key` in `area` is refused: it was not written by this cache.
 */
export function readManifest(path: string, key: string, area: CacheArea): StoredManifest | undefined {
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

/**
 * Writes a manifest: a complete temporary file `temp` (named after the commit, in the same
 * directory) renamed over `path`, so that readers see the old manifest or the new one, never a
 * part (the commit point of a result).
 */
export async function writeManifest(
  path: string,
  temp: string,
  manifest: StoredManifest,
  durable: boolean,
): Promise<void> {
  const text = JSON.stringify({
    v: VERSION,
    key: manifest.key,
    area: manifest.area,
    createdAt: manifest.createdAt,
    commit: manifest.commit,
    formats: manifest.formats,
    ...(manifest.inline === undefined ? {} : { inline: manifest.inline }),
    ...(manifest.fence === undefined ? {} : { fence: manifest.fence }),
  });
  try {
    const fd = fs.openSync(temp, CREATE_FLAGS, 0o644);
    try {
      fs.writeFileSync(fd, text, 'utf8');
      if (durable) await syncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, path);
  } catch (error) {
    unlinkQuietly(temp);
    throw fsError(error, `writing ${path}`);
  }
  if (durable) await syncParent(path);
}

/** A frozen SPI manifest (without the commit id). */
export function publicManifest(stored: StoredManifest): ResultManifest {
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

function parseManifest(text: string, key: string, area: CacheArea, path: string): StoredManifest {
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
): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) throw corrupt(path, 'bad inline formats');
  const inline: Record<string, string> = {};
  for (const [name, data] of Object.entries(value)) {
    const size = Object.hasOwn(formats, name) ? formats[name]?.size : undefined;
    if (typeof data !== 'string' || size === undefined || Buffer.byteLength(data, 'base64') !== size) {
      throw corrupt(path, `bad inline data of ${name}`);
    }
    inline[name] = data;
  }
  return inline;
}

/** The formats of a manifest that are files of their own (not inline). */
export function fileFormats(manifest: StoredManifest): string[] {
  const inline = manifest.inline;
  const names = Object.keys(manifest.formats);
  return inline === undefined ? names : names.filter((name) => !Object.hasOwn(inline, name));
}

/** The bytes of an inline format, or undefined when the format is a file (or absent). */
export function inlineBytes(manifest: StoredManifest, format: string): Buffer | undefined {
  const inline = manifest.inline;
  if (inline === undefined || !Object.hasOwn(inline, format)) return undefined;
  const data = inline[format];
  return data === undefined ? undefined : Buffer.from(data, 'base64');
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
