import { Readable } from 'node:stream';

import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';

import { BackendError } from '@armlib/core';

import { isNotFound, isRetryable, toBackendError } from './errors.js';

/** DeleteObjects takes at most this many keys per call. */
export const DELETE_BATCH = 1000;

/** An object of a listing, with when S3 last wrote it. */
export interface ListedObject {
  readonly key: string;
  /** Epoch ms of S3's LastModified; NaN when S3 gave none. */
  readonly lastModified: number;
}

/** One page of a listing: objects and (with a delimiter) common prefixes. */
export interface ListPage {
  readonly objects: readonly string[];
  /** The same objects, with their LastModified. */
  readonly listed: readonly ListedObject[];
  readonly folders: readonly string[];
  readonly next?: string;
}

/** A key DeleteObjects did not delete, with S3's error code. */
export interface RefusedDelete {
  readonly key: string;
  readonly code: string;
}

/** A streamed object body. */
export interface ObjectStream {
  readonly body: Readable;
  /** Bytes in `body`. */
  readonly length: number;
}

/**
 * The handful of S3 calls the cache makes, on one bucket, each translating SDK errors into
 * armlib errors (404 → undefined where absence is an answer). No SDK type leaves this module
 * except the client it is built with.
 */
export class S3Store {
  readonly client: S3Client;
  readonly bucket: string;

  constructor(client: S3Client, bucket: string) {
    this.client = client;
    this.bucket = bucket;
  }

  /** A small object as text, or undefined when absent. */
  async getText(key: string): Promise<string | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (out.Body === undefined) return '';
      return await out.Body.transformToString('utf8');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw toBackendError(error, `GetObject ${key}`);
    }
  }

  /** Stores a small object in one PutObject, with its Content-Type and Content-Encoding. */
  async putBytes(key: string, body: Buffer, contentType: string, contentEncoding?: string): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ...(contentEncoding === undefined ? {} : { ContentEncoding: contentEncoding }),
        }),
      );
    } catch (error) {
      throw toBackendError(error, `PutObject ${key}`);
    }
  }

  async putText(key: string, text: string, contentType: string): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: text,
          ContentType: contentType,
          // Manifests change on every commit: no intermediary may serve a stale one.
          CacheControl: 'no-store',
        }),
      );
    } catch (error) {
      throw toBackendError(error, `PutObject ${key}`);
    }
  }

  /** Streams an object (or the inclusive byte range `[start, end]` of it); undefined when absent. */
  async getStream(key: string, range?: { start: number; end: number }): Promise<ObjectStream | undefined> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }),
        }),
      );
      const body = out.Body;
      if (!(body instanceof Readable)) {
        throw new BackendError(`S3 GetObject ${key} returned no Node.js stream`, { retryable: false });
      }
      return { body, length: out.ContentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw toBackendError(error, `GetObject ${key}`);
    }
  }

  /** Server-side copy (content type and encoding go along). False when the source is absent. */
  async copy(from: string, to: string): Promise<boolean> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: `${encodeURIComponent(this.bucket)}/${from.split('/').map(encodeURIComponent).join('/')}`,
          MetadataDirective: 'COPY',
        }),
      );
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw toBackendError(error, `CopyObject ${from} → ${to}`);
    }
  }

  /**
   * Deletes objects in batches of {@link DELETE_BATCH} (absent ones count as deleted). Returns the
   * keys S3 refused; throws when a whole call fails (the SDK has retried already).
   */
  async deleteAll(keys: readonly string[]): Promise<RefusedDelete[]> {
    const refused: RefusedDelete[] = [];
    for (let at = 0; at < keys.length; at += DELETE_BATCH) {
      const batch = keys.slice(at, at + DELETE_BATCH);
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        for (const e of out.Errors ?? []) {
          if (e.Code === 'NoSuchKey' || e.Key === undefined) continue;
          refused.push({ key: e.Key, code: e.Code ?? 'unknown' });
        }
      } catch (error) {
        throw toBackendError(error, `DeleteObjects (${batch.length} keys)`);
      }
    }
    return refused;
  }

  /** Like {@link deleteAll}, but a refused key is an error too (retryable when S3 said so). */
  async deleteAllOrThrow(keys: readonly string[]): Promise<void> {
    const refused = await this.deleteAll(keys);
    const first = refused[0];
    if (first !== undefined) {
      throw new BackendError(`S3 DeleteObjects refused ${refused.length} key(s), e.g. '${first.key}' (${first.code})`, {
        retryable: refused.every((r) => isRetryable({ name: r.code })),
      });
    }
  }

  /** One page of ListObjectsV2 under `prefix`. */
  async list(
    prefix: string,
    options: { delimiter?: string; startAfter?: string; token?: string; maxKeys?: number } = {},
  ): Promise<ListPage> {
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(options.delimiter === undefined ? {} : { Delimiter: options.delimiter }),
          ...(options.startAfter === undefined ? {} : { StartAfter: options.startAfter }),
          ...(options.token === undefined ? {} : { ContinuationToken: options.token }),
          ...(options.maxKeys === undefined ? {} : { MaxKeys: options.maxKeys }),
        }),
      );
      const listed = (out.Contents ?? []).flatMap((c) =>
        c.Key === undefined ? [] : [{ key: c.Key, lastModified: c.LastModified?.getTime() ?? Number.NaN }],
      );
      const objects = listed.map((o) => o.key);
      const folders = (out.CommonPrefixes ?? []).map((c) => c.Prefix).filter((p): p is string => p !== undefined);
      const next = out.IsTruncated === true ? out.NextContinuationToken : undefined;
      return next === undefined ? { objects, listed, folders } : { objects, listed, folders, next };
    } catch (error) {
      throw toBackendError(error, `ListObjectsV2 ${prefix}`);
    }
  }

  /** A presigned GET URL of an object, valid `expiresInSec` seconds. */
  async presignGet(key: string, expiresInSec: number): Promise<string> {
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        expiresIn: expiresInSec,
      });
    } catch (error) {
      throw toBackendError(error, `presign GetObject ${key}`);
    }
  }
}
