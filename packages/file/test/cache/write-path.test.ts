import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

import { expect } from 'chai';

import { BackendError, ConflictError, InvalidRequestError, ManualClock, MemoryCacheManager } from '@armlib/core';
import type { CacheManager } from '@armlib/core';

import { FileCacheManager } from '../../src/cache/file-cache-manager.js';
import { bytes, rejection, tempDir, text } from './support.js';
import type { TempDir } from './support.js';

const require = createRequire(import.meta.url);
const nodeFs = require('node:fs') as typeof fs;
const MiB = 1024 * 1024;

/** One call of `fs.write` or `fs.writeSync` the cache made. */
interface WriteCall {
  readonly sync: boolean;
  readonly length: number;
  /** The memory the bytes came from (to tell the producer's buffer from a copy). */
  readonly memory: ArrayBufferLike;
}

/**
 * Records the data writes the cache makes (`fs.write` and `fs.writeSync` on a descriptor, with
 * an offset and a length), passing them on; `restore` puts the originals back.
 */
function watchWrites(): { calls: WriteCall[]; restore: () => void } {
  const original = { write: nodeFs.write, writeSync: nodeFs.writeSync };
  const calls: WriteCall[] = [];
  const note = (sync: boolean, args: unknown[]): void => {
    const [, buffer, , length] = args;
    if (buffer instanceof Uint8Array && typeof length === 'number') calls.push({ sync, length, memory: buffer.buffer });
  };
  nodeFs.write = ((...args: unknown[]) => {
    note(false, args);
    return (original.write as (...a: unknown[]) => unknown)(...args);
  }) as typeof fs.write;
  nodeFs.writeSync = ((...args: unknown[]) => {
    note(true, args);
    return (original.writeSync as (...a: unknown[]) => unknown)(...args);
  }) as typeof fs.writeSync;
  syncBuiltinESMExports();
  return {
    calls,
    restore: () => {
      Object.assign(nodeFs, original);
      syncBuiltinESMExports();
    },
  };
}

describe('file cache: the write path', function () {
  let tmp: TempDir;
  let dir: string;
  const open: FileCacheManager[] = [];

  function openCache(inlineMaxBytes?: number): FileCacheManager {
    const cache = new FileCacheManager(
      inlineMaxBytes === undefined ? { dir } : { dir, inlineMaxBytes },
      new ManualClock(1_000_000),
    );
    open.push(cache);
    return cache;
  }

  function staging(): string[] {
    return fs.readdirSync(join(dir, 'staging'));
  }

  beforeEach(async function () {
    tmp = await tempDir();
    dir = join(tmp.path, 'cache');
  });

  afterEach(async function () {
    for (const cache of open.splice(0)) await cache.close();
    await tmp.remove();
  });

  describe('one big chunk', function () {
    const big = randomBytes(8 * MiB);
    const sources = {
      'in memory': (): Iterable<Uint8Array> => [big],
      'as a stream': (): AsyncIterable<Uint8Array> => bytes(big),
      'after a small chunk, in memory': (): Iterable<Uint8Array> => [big.subarray(0, 100), big.subarray(100)],
    };
    for (const inlineMaxBytes of [undefined, 0]) {
      for (const [name, source] of Object.entries(sources)) {
        it(`writes it from the producer's buffer, in slices of at most 1 MiB (${name}, inlineMaxBytes ${String(inlineMaxBytes)})`, async function () {
          const cache = openCache(inlineMaxBytes);
          const staged = await cache.stage('big');
          const watch = watchWrites();
          try {
            const info = await staged.write('bin', source() as AsyncIterable<Uint8Array>, {
              contentType: 'application/octet-stream',
            });
            expect(info.size).to.equal(big.byteLength);
          } finally {
            watch.restore();
          }
          const fromBig = watch.calls.filter((call) => call.memory === big.buffer);
          // No copy of it: every byte went to the file from the producer's own memory.
          expect(fromBig.reduce((sum, call) => sum + call.length, 0)).to.be.at.least(big.byteLength - 100);
          for (const call of watch.calls) {
            expect(call.length, 'one write call').to.be.at.most(MiB);
            // A blocking call holds the event loop: only small in-memory results are written so.
            if (call.sync) expect(call.length, 'one blocking write call').to.be.at.most(256 * 1024);
          }
          await staged.commit('temporary');
          const got = await cache.get('big', 'bin');
          const parts: Buffer[] = [];
          for await (const chunk of got?.body ?? bytes()) parts.push(chunk as Buffer);
          expect(Buffer.concat(parts).equals(big)).to.equal(true);
        });
      }
    }
  });

  describe('a write that fails before it streams', function () {
    let source: string;

    beforeEach(function () {
      source = join(tmp.path, 'source.bin');
      fs.writeFileSync(source, randomBytes(64 * 1024));
    });

    /** Fails opening files in staging. */
    function failOpens(): () => void {
      const original = nodeFs.openSync;
      nodeFs.openSync = (path: fs.PathLike, ...rest: unknown[]) => {
        if (String(path).includes(join(dir, 'staging'))) {
          throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
        }
        return (original as (...a: unknown[]) => number)(path, ...rest);
      };
      syncBuiltinESMExports();
      return () => {
        nodeFs.openSync = original;
        syncBuiltinESMExports();
      };
    }

    const failures: Record<
      string,
      {
        error: (error: unknown) => boolean;
        stream?: () => fs.ReadStream;
        contentType?: string;
        before?: (cache: FileCacheManager, staged: { abort(): Promise<void> }) => Promise<() => void>;
      }
    > = {
      'an invalid content type': { error: (e) => InvalidRequestError.is(e), contentType: '' },
      'an aborted staging': {
        error: (e) => ConflictError.is(e),
        before: async (_cache, staged) => {
          await staged.abort();
          return () => undefined;
        },
      },
      'a staging directory that is not one': {
        error: (e) => BackendError.is(e),
        before: () => {
          fs.rmdirSync(join(dir, 'staging'));
          fs.writeFileSync(join(dir, 'staging'), '');
          return Promise.resolve(() => {
            fs.rmSync(join(dir, 'staging'));
            fs.mkdirSync(join(dir, 'staging'));
          });
        },
      },
      'a failing open': { error: (e) => BackendError.is(e), before: () => Promise.resolve(failOpens()) },
      'a first chunk that is not bytes': {
        error: (e) => InvalidRequestError.is(e),
        stream: () => fs.createReadStream(source, { encoding: 'utf8' }),
      },
    };
    for (const inlineMaxBytes of [undefined, 0]) {
      for (const [name, failure] of Object.entries(failures)) {
        it(`closes a file stream source on ${name} (inlineMaxBytes ${String(inlineMaxBytes)})`, async function () {
          const cache = openCache(inlineMaxBytes);
          const staged = await cache.stage('closed');
          const undo = (await failure.before?.(cache, staged)) ?? (() => undefined);
          const stream = failure.stream?.() ?? fs.createReadStream(source);
          let error: unknown;
          try {
            error = await rejection(
              staged.write('bin', stream as AsyncIterable<Uint8Array>, {
                contentType: failure.contentType ?? 'application/octet-stream',
              }),
            );
          } finally {
            undo();
          }
          expect(failure.error(error), String(error)).to.equal(true);
          expect(stream.destroyed, 'the stream was destroyed').to.equal(true);
          // Its descriptor is released (the close event comes once it is, after an error event
          // when the stream was destroyed with one).
          if (!stream.closed) {
            await new Promise<void>((resolve) => {
              stream
                .on('error', () => undefined)
                .once('close', () => {
                  resolve();
                });
            });
          }
          await staged.abort();
          expect(staging()).to.deep.equal([]);
        });
      }
    }

    for (const inlineMaxBytes of [undefined, 0]) {
      for (const wrapped of [false, true]) {
        it(`closes an in-memory source whose first chunk is not bytes (inlineMaxBytes ${String(inlineMaxBytes)}${wrapped ? ', an iterable of a generator' : ''})`, async function () {
          const cache = openCache(inlineMaxBytes);
          const staged = await cache.stage('closed');
          let closed = false;
          function* chunks(): Generator {
            try {
              yield 'not bytes';
              yield Buffer.from('more');
            } finally {
              closed = true;
            }
          }
          // Wrapped, only the iterator the cache asked for can be closed (the iterable has no return).
          const source = wrapped ? { [Symbol.iterator]: chunks } : chunks();
          const error = await rejection(
            staged.write('bin', source as unknown as AsyncIterable<Uint8Array>, { contentType: 'text/plain' }),
          );
          expect(InvalidRequestError.is(error), String(error)).to.equal(true);
          expect(closed, 'the generator was closed').to.equal(true);
        });
      }
    }
  });

  describe('one format written twice at once', function () {
    /** A source that yields `head`, waits for `gate`, then yields `rest`. */
    async function* gated(head: Buffer, gate: Promise<void>, rest: Buffer): AsyncGenerator<Uint8Array> {
      yield head;
      await gate;
      yield rest;
    }

    function gate(): { promise: Promise<void>; release: () => void } {
      let release: () => void = () => undefined;
      const promise = new Promise<void>((resolve) => {
        release = resolve;
      });
      return { promise, release };
    }

    const sizes = { small: 10, big: 20_000 };
    for (const [firstSize, first] of Object.entries(sizes)) {
      for (const [secondSize, second] of Object.entries(sizes)) {
        for (const end of ['commit', 'abort'] as const) {
          it(`keeps the write that finishes last, as the memory cache does (${firstSize} then ${secondSize}, ${end})`, async function () {
            const memory = new MemoryCacheManager();
            const caches: [string, CacheManager][] = [
              ['file', openCache()],
              ['memory', memory],
            ];
            try {
              for (const [which, cache] of caches) {
                const staged = await cache.stage('twice');
                const slow = gate();
                // The first write is still reading its head (within the inline limit) when the
                // second one, started later, finishes.
                const a = staged.write('csv', gated(Buffer.from('a'), slow.promise, Buffer.alloc(first - 1, 'a')), {
                  contentType: 'text/csv',
                });
                await staged.write('csv', bytes('b'.repeat(second)), { contentType: 'text/csv' });
                slow.release();
                expect((await a).size, which).to.equal(first);
                expect(staged.formats()['csv']?.size, which).to.equal(first);
                if (end === 'abort') {
                  await staged.abort();
                  expect(await cache.head('twice'), which).to.equal(undefined);
                } else {
                  await staged.commit('temporary');
                  expect(await text(cache, 'twice', 'csv'), which).to.equal('a'.repeat(first));
                }
              }
              expect(staging(), 'staging files left').to.deep.equal([]);
            } finally {
              await memory.close();
            }
          });
        }
      }
    }

    it('keeps the write that finishes last when a first write streams into its file meanwhile', async function () {
      const cache = openCache();
      for (const secondSize of [10, 20_000]) {
        const key = `streaming-${String(secondSize)}`;
        const staged = await cache.stage(key);
        const slow = gate();
        const a = staged.write('csv', gated(Buffer.alloc(9_000, 'a'), slow.promise, Buffer.from('a')), {
          contentType: 'text/csv',
        });
        const b = staged.write('csv', bytes('b'.repeat(secondSize)), { contentType: 'text/csv' });
        await b;
        slow.release();
        await a;
        await staged.commit('temporary');
        expect(await text(cache, key, 'csv'), key).to.equal('a'.repeat(9_001));
        expect(staging(), 'staging files left').to.deep.equal([]);
      }
    });
  });
});
