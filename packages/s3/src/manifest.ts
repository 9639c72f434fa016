import { BackendError, CACHE_AREAS } from '@armlib/core';
import type { CacheArea, FormatInfo, ResultManifest } from '@armlib/core';

/** How one format is stored, next to what the SPI reports about it. */
export interface StoredFormat {
  /** As written by the caller: what `head` reports and `get` returns. */
  readonly info: FormatInfo;
  /** `gzip` when the adapter compressed the caller's bytes (the object has `Content-Encoding: gzip`). */
  readonly storedEncoding?: 'gzip';
  /** Bytes of the stored object (differs from `info.size` when compressed). */
  readonly storedSize: number;
}

/** The manifest object: the SPI manifest plus where the data of the commit lives. */
export interface StoredManifest {
  readonly key: string;
  readonly area: CacheArea;
  readonly createdAt: number;
  /** The folder `<area>/<key>/<commitId>/` holding this commit's formats. */
  readonly commitId: string;
  readonly formats: Readonly<Record<string, StoredFormat>>;
  /** The commit's fence (see CommitOptions.fence in core), when it had one. */
  readonly fence?: number;
}

/** Version of the manifest object's JSON; bumped on incompatible changes. */
const MANIFEST_VERSION = 1;

interface ManifestJson {
  v: number;
  key: string;
  area: CacheArea;
  createdAt: number;
  commitId: string;
  fence?: number;
  formats: Record<
    string,
    { size: number; contentType: string; contentEncoding?: string; stored?: { encoding: 'gzip'; size: number } }
  >;
}

/** The manifest as JSON text. */
export function encodeManifest(m: StoredManifest): string {
  const formats: ManifestJson['formats'] = {};
  for (const [name, f] of Object.entries(m.formats)) {
    formats[name] = {
      size: f.info.size,
      contentType: f.info.contentType,
      ...(f.info.contentEncoding === undefined ? {} : { contentEncoding: f.info.contentEncoding }),
      ...(f.storedEncoding === undefined ? {} : { stored: { encoding: f.storedEncoding, size: f.storedSize } }),
    };
  }
  const json: ManifestJson = {
    v: MANIFEST_VERSION,
    key: m.key,
    area: m.area,
    createdAt: m.createdAt,
    commitId: m.commitId,
    ...(m.fence === undefined ? {} : { fence: m.fence }),
    formats,
  };
  return JSON.stringify(json);
}

/** Parses a manifest object; anything malformed is a non-retryable {@link BackendError} naming the object. */
export function decodeManifest(text: string, objectKey: string): StoredManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw corrupt(objectKey, 'not JSON', error);
  }
  const j = raw as Partial<ManifestJson> | null;
  if (typeof j !== 'object' || j === null || j.v !== MANIFEST_VERSION) throw corrupt(objectKey, 'unknown version');
  if (typeof j.key !== 'string' || typeof j.commitId !== 'string' || typeof j.createdAt !== 'number') {
    throw corrupt(objectKey, 'missing key, commitId or createdAt');
  }
  if (!CACHE_AREAS.includes(j.area as CacheArea)) throw corrupt(objectKey, 'bad area');
  const rawFormats: unknown = j.formats;
  if (typeof rawFormats !== 'object' || rawFormats === null) throw corrupt(objectKey, 'missing formats');
  const formats: Record<string, StoredFormat> = {};
  for (const [name, f] of Object.entries(rawFormats as ManifestJson['formats'])) {
    if (typeof f.size !== 'number' || typeof f.contentType !== 'string')
      throw corrupt(objectKey, `bad format '${name}'`);
    const info: FormatInfo =
      typeof f.contentEncoding === 'string'
        ? { size: f.size, contentType: f.contentType, contentEncoding: f.contentEncoding }
        : { size: f.size, contentType: f.contentType };
    formats[name] =
      f.stored?.encoding === 'gzip'
        ? { info, storedEncoding: 'gzip', storedSize: f.stored.size }
        : { info, storedSize: f.size };
  }
  const base = { key: j.key, area: j.area as CacheArea, createdAt: j.createdAt, commitId: j.commitId, formats };
  if (j.fence === undefined) return base;
  if (typeof j.fence !== 'number' || !Number.isFinite(j.fence)) throw corrupt(objectKey, 'bad fence');
  return { ...base, fence: j.fence };
}

/** The SPI view of a stored manifest (fresh, frozen objects: callers cannot reach the adapter's state). */
export function publicManifest(m: StoredManifest): ResultManifest {
  const formats: Record<string, FormatInfo> = {};
  for (const [name, f] of Object.entries(m.formats)) formats[name] = Object.freeze({ ...f.info });
  return Object.freeze({
    key: m.key,
    area: m.area,
    createdAt: m.createdAt,
    formats: Object.freeze(formats),
    ...(m.fence === undefined ? {} : { fence: m.fence }),
  });
}

function corrupt(objectKey: string, why: string, cause?: unknown): BackendError {
  return new BackendError(`S3 object '${objectKey}' is not an armlib manifest (${why})`, {
    retryable: false,
    ...(cause === undefined ? {} : { cause }),
  });
}
