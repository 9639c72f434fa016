import { randomBytes } from 'node:crypto';

import { FORMAT_PATTERN, KEY_PATTERN } from '@armlib/core';
import type { CacheArea } from '@armlib/core';

/** Name of a result's manifest object inside its key folder. */
export const MANIFEST_NAME = 'manifest.json';

/**
 * Object keys of the cache (see the package README):
 *
 * - `<prefix><area>/<key>/manifest.json`: the committed manifest, written last (the commit point);
 * - `<prefix><area>/<key>/<commitId>/<format>`: the data of one commit;
 * - `<prefix>staging/<stageId>/<n>/<format>`: formats being written, copied into the area on commit.
 *
 * Keys and formats are restricted by core to `[A-Za-z0-9._-]` (no `/`, no `..`), and commit ids
 * never equal `manifest.json`, so the names cannot collide.
 */
export class S3Layout {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Everything of one area. */
  area(area: CacheArea): string {
    return `${this.prefix}${area}/`;
  }

  /** Everything of one key in one area. */
  keyFolder(area: CacheArea, key: string): string {
    return `${this.prefix}${area}/${key}/`;
  }

  manifest(area: CacheArea, key: string): string {
    return `${this.prefix}${area}/${key}/${MANIFEST_NAME}`;
  }

  data(area: CacheArea, key: string, commitId: string, format: string): string {
    return `${this.prefix}${area}/${key}/${commitId}/${format}`;
  }

  /** All staged writes (abandoned ones are left to the bucket's lifecycle rule). */
  staging(): string {
    return `${this.prefix}staging/`;
  }

  staged(stageId: string, seq: number, format: string): string {
    return `${this.prefix}staging/${stageId}/${String(seq)}/${format}`;
  }

  /**
   * The key of a manifest object listed under `area(area)`, or undefined for any other object
   * (data, or something that is not armlib's).
   */
  keyOfManifest(area: CacheArea, objectKey: string): string | undefined {
    const base = this.area(area);
    const suffix = `/${MANIFEST_NAME}`;
    if (!objectKey.startsWith(base) || !objectKey.endsWith(suffix)) return undefined;
    const key = objectKey.slice(base.length, -suffix.length);
    return key === '' || key.includes('/') ? undefined : key;
  }

  /**
   * What an object listed under `area(area)` is: a key's manifest, the data of a commit
   * (`<key>/<commitId>/<format>` with a commit id {@link newId} makes, a valid key and format), or
   * something else (`other`), which the cache never deletes on its own.
   */
  parse(area: CacheArea, objectKey: string): AreaObject {
    const base = this.area(area);
    if (!objectKey.startsWith(base)) return { kind: 'other' };
    const names = objectKey.slice(base.length).split('/');
    const key = names[0] as string;
    if (names.length < 2 || !isKeyName(key)) return { kind: 'other' };
    if (names.length === 2 && names[1] === MANIFEST_NAME) return { kind: 'manifest', key };
    const [, commitId, format] = names as [string, string, string];
    if (names.length === 3 && isCommitId(commitId) && isFormatName(format)) {
      return { kind: 'data', key, commitId, format };
    }
    return { kind: 'other' };
  }

  /** The key of a key folder (`<prefix><area>/<key>/`) listed as a common prefix. */
  keyOfFolder(area: CacheArea, folder: string): string | undefined {
    const base = this.area(area);
    if (!folder.startsWith(base) || !folder.endsWith('/')) return undefined;
    const key = folder.slice(base.length, -1);
    return key === '' || key.includes('/') ? undefined : key;
  }
}

/** An object listed under an area folder, as {@link S3Layout.parse} reads its name. */
export type AreaObject =
  | { readonly kind: 'manifest'; readonly key: string }
  | { readonly kind: 'data'; readonly key: string; readonly commitId: string; readonly format: string }
  | { readonly kind: 'other' };

/**
 * A fresh id for a commit or a staging: time-ordered for humans reading a listing, random for
 * uniqueness. Its time is `notBefore` when the clock is behind it.
 */
export function newId(prefix: 'c' | 's', notBefore = 0): string {
  return `${prefix}${Math.max(Date.now(), notBefore).toString(36)}-${randomBytes(8).toString('hex')}`;
}

/** The creation time (epoch ms) a commit or staging id carries; 0 for anything else. */
export function idTime(id: string): number {
  const match = /^[cs]([0-9a-z]+)-/.exec(id);
  const time = match === null ? Number.NaN : parseInt(match[1] as string, 36);
  return Number.isSafeInteger(time) ? time : 0;
}

const COMMIT_ID = /^c[0-9a-z]{1,11}-[0-9a-f]{16}$/;

/** True for a commit id {@link newId} makes (and nothing else: a newer layout's names are left alone). */
export function isCommitId(id: string): boolean {
  return COMMIT_ID.test(id) && idTime(id) > 0;
}

/** A key core accepts (its KEY_PATTERN, no '..', no trailing '.'). */
function isKeyName(name: string): boolean {
  return KEY_PATTERN.test(name) && !name.includes('..') && !name.endsWith('.');
}

/** A format name core accepts (its FORMAT_PATTERN, no '..', no trailing '.'). */
function isFormatName(name: string): boolean {
  return FORMAT_PATTERN.test(name) && !name.includes('..') && !name.endsWith('.');
}
