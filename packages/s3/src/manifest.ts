import { BackendError, CACHE_AREAS } from '@armlib/core';
import type { CacheArea, FormatInfo, ResultManifest } from '@armlib/core';

import { idTime } from './layout.js';

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
  /**
   * Where the commit ranks among the key's commits (epoch ms): the later of its commit id's time
   * and one past every result the commit replaced. Absent in manifests written before it existed
   * (the commit id's time stands in). See {@link compareResults}.
   */
  readonly order?: number;
  /**
   * Set on a persistent result a promotion wrote: the commit id of the temporary result it copied.
   * Each promotion copies into a fresh commit id of its own (two promotions of one result never
   * write the same objects), so this, not `commitId`, says which result it is: see {@link sourceOf}.
   * Absent in commits, and in manifests of promotions made before it existed (which kept the
   * temporary commit id, so `commitId` says it).
   */
  readonly promotedFrom?: string;
}

/**
 * Version of the manifest object's JSON; bumped on incompatible changes. Optional fields added
 * since (`order`, `promotedFrom`) did not bump it: a manifest without them reads as before, and
 * an armlib that does not know them ignores them.
 */
const MANIFEST_VERSION = 1;

interface ManifestJson {
  v: number;
  key: string;
  area: CacheArea;
  createdAt: number;
  commitId: string;
  fence?: number;
  order?: number;
  promotedFrom?: string;
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
    ...(m.order === undefined ? {} : { order: m.order }),
    ...(m.promotedFrom === undefined ? {} : { promotedFrom: m.promotedFrom }),
    formats,
  };
  return JSON.stringify(json);
}

/**
 * A manifest object read back: the manifest, or why it is not one. `torn` is true for text that
 * is not JSON at all, which an emulator serving a manifest being rewritten can produce, so it is
 * worth reading again; JSON of the wrong shape or version will not change by being read again.
 */
export type DecodedManifest =
  { readonly manifest: StoredManifest } | { readonly error: BackendError; readonly torn: boolean };

/** Parses a manifest object; anything malformed is a non-retryable {@link BackendError} naming the object. */
export function decodeManifest(text: string, objectKey: string): DecodedManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { error: corrupt(objectKey, 'not JSON', error), torn: true };
  }
  try {
    return { manifest: fromJson(raw, objectKey) };
  } catch (error) {
    return { error: BackendError.is(error) ? error : corrupt(objectKey, 'malformed', error), torn: false };
  }
}

function fromJson(raw: unknown, objectKey: string): StoredManifest {
  const j = raw as Partial<ManifestJson> | null;
  if (typeof j !== 'object' || j === null) throw corrupt(objectKey, 'not an object');
  if (j.v !== MANIFEST_VERSION) {
    throw corrupt(
      objectKey,
      `version ${String(j.v)}, this armlib reads version ${MANIFEST_VERSION}: written by a newer armlib?`,
    );
  }
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
  for (const field of ['fence', 'order'] as const) {
    const value = j[field];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw corrupt(objectKey, `bad ${field}`);
    }
  }
  if (j.promotedFrom !== undefined && typeof j.promotedFrom !== 'string') throw corrupt(objectKey, 'bad promotedFrom');
  return {
    ...base,
    ...(j.fence === undefined ? {} : { fence: j.fence }),
    ...(j.order === undefined ? {} : { order: j.order }),
    ...(j.promotedFrom === undefined ? {} : { promotedFrom: j.promotedFrom }),
  };
}

/**
 * Ranks two results of one key (positive when `a` is the newer), so that two commits of the key
 * to different areas, each finding the other's manifest, agree on which one stays. Fences decide
 * when both have one (a later claim's result beats a stalled worker's); then the commit order,
 * which puts a commit after every result it found and replaced whatever the hosts' clocks say;
 * then the ids of the commits that made them (a promoted result's source: see {@link sourceOf}), an
 * arbitrary tie-break both sides see alike.
 */
export function compareResults(a: StoredManifest, b: StoredManifest): number {
  if (a.fence !== undefined && b.fence !== undefined && a.fence !== b.fence) return a.fence - b.fence;
  const byOrder = orderOf(a) - orderOf(b);
  if (byOrder !== 0) return byOrder;
  // A promoted result ranks as the commit it was promoted from.
  const [x, y] = [sourceOf(a), sourceOf(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Which result a manifest holds, whatever area it is in: the commit id of the commit that made
 * it (for a promoted result, that of the temporary result it was copied from).
 */
export function sourceOf(m: StoredManifest): string {
  return m.promotedFrom ?? m.commitId;
}

/** The order of a new commit `commitId` that replaces the results in `replaced`. */
export function orderAfter(commitId: string, replaced: readonly (StoredManifest | undefined)[]): number {
  let order = idTime(commitId);
  for (const m of replaced) if (m !== undefined) order = Math.max(order, orderOf(m) + 1);
  return order;
}

/** Where `m` ranks among its key's results (see {@link StoredManifest.order}). */
export function orderOf(m: StoredManifest): number {
  return m.order ?? idTime(m.commitId);
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
