import { expect } from 'chai';

import { ManualClock } from '../src/clock.js';
import { ClosedError, InvalidRequestError } from '../src/errors.js';
import { buildRequestManager } from '../src/manager/build.js';
import type { Job, RequestManager, WriteData } from '../src/manager/types.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import type { QueueState } from '../src/model.js';
import { ForwardingCacheManager, ForwardingQueueManager } from '../src/spi/forwarding.js';
import type { GroupPolicy } from '../src/spi/queue.js';

// Bad input from callers without types (or fuzzers): each is refused with a typed error naming
// the field, never a raw TypeError or whatever a getter threw, and a handler's malformed write
// fails its run at once (INVALID_REQUEST is not retried) rather than maxAttempts times.

type Path = 'sync' | 'promise';

/** Managers made by a test, closed after it. */
const opened: RequestManager[] = [];

/**
 * A manager over the memory adapters: their synchronous twins, or hidden as any other backend's.
 * Retries are due at once, so a retried run needs no clock advance.
 */
function manager(path: Path, settings: { maxAttempts?: number } = {}, clock = new ManualClock()): RequestManager {
  const queue = new MemoryQueueManager({}, clock);
  const cache = new MemoryCacheManager({}, clock);
  const rm = buildRequestManager({
    queue: path === 'sync' ? queue : new ForwardingQueueManager(queue),
    cache: path === 'sync' ? cache : new ForwardingCacheManager(cache),
    clock,
    settings: { leaseMs: 3000, retryBaseMs: 0, retryMaxMs: 0, ...settings },
  });
  opened.push(rm);
  return rm;
}

/** What a promise rejected with (undefined when it resolved). */
function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** What a call threw (undefined when it returned). */
function thrownBy(call: () => unknown): unknown {
  try {
    call();
    return undefined;
  } catch (error) {
    return error;
  }
}

function expectInvalid(error: unknown, field: string, message?: RegExp): void {
  expect(InvalidRequestError.is(error), String(error)).to.equal(true);
  expect((error as InvalidRequestError).field, String(error)).to.equal(field);
  if (message !== undefined) expect((error as Error).message).to.match(message);
}

/** An object whose `field` getter throws. */
function throwingGetter(field: string): object {
  return Object.defineProperty({}, field, {
    enumerable: true,
    get(): never {
      throw new Error(`${field} exploded`);
    },
  });
}

/** A source with an async iterator of our making, for iterators that break the protocol. */
function sourceOf(next: () => unknown): AsyncIterable<Uint8Array> {
  return { [Symbol.asyncIterator]: () => ({ next }) } as unknown as AsyncIterable<Uint8Array>;
}

describe('bad input', () => {
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((rm) => rm.close()));
  });

  for (const path of ['sync', 'promise'] as const) {
    describe(`job.write (${path} path)`, () => {
      let rm: RequestManager;

      /**
       * Runs a handler that writes what `make` returns (a new source each attempt: a generator is
       * read once) and awaits it, with up to 3 attempts; the last write's rejection and the
       * request's final status.
       */
      async function writeOnce(
        make: () => unknown,
        options?: unknown,
      ): Promise<{ error: unknown; state: string; attempts: number; code: string | undefined; retryable?: boolean }> {
        rm = manager(path, { maxAttempts: 3 });
        let error: unknown;
        rm.process(async (job: Job) => {
          try {
            await job.write('csv', make() as WriteData, options as never);
          } catch (thrown) {
            error = thrown;
            // The handler passes on what the write rejected with: the run fails with it.
            throw thrown;
          }
        });
        const s = await rm.submit({ uri: '/bad-write' });
        const done = await rm.waitFor(s.key);
        return {
          error,
          state: done.state,
          attempts: done.attempts,
          code: done.error?.code,
          ...(done.error === undefined ? {} : { retryable: done.error.retryable }),
        };
      }

      /** A malformed write: InvalidRequestError naming `field`, the run failed at once, not retried. */
      async function expectRefusedWrite(
        data: unknown,
        field: string,
        message: RegExp,
        options?: unknown,
      ): Promise<void> {
        const outcome = await writeOnce(() => data, options);
        expectInvalid(outcome.error, field, message);
        expect(outcome).to.deep.include({ state: 'failed', attempts: 1, code: 'INVALID_REQUEST', retryable: false });
      }

      it('refuses a source whose Symbol.asyncIterator is not a method', async () => {
        await expectRefusedWrite({ [Symbol.asyncIterator]: null }, 'data', /^data: write\(\) takes/);
      });

      it('refuses a source that cannot be read (a proxy whose trap throws)', async () => {
        const trap = (): never => {
          throw new Error('trap exploded');
        };
        await expectRefusedWrite(
          new Proxy({}, { has: trap, get: trap, getPrototypeOf: trap }),
          'data',
          /cannot be read: trap exploded/,
        );
      });

      it('refuses an iterator whose next() answers something other than an object', async () => {
        await expectRefusedWrite(
          sourceOf(() => 5),
          'data',
          /the stream's iterator answered 5/,
        );
        await expectRefusedWrite(
          sourceOf(() => Promise.resolve(null)),
          'data',
          /the stream's iterator answered null/,
        );
      });

      it('refuses an iterator without next(), or none at all', async () => {
        await expectRefusedWrite({ [Symbol.asyncIterator]: () => ({}) }, 'data', /has no next\(\) method/);
        await expectRefusedWrite({ [Symbol.asyncIterator]: () => 7 }, 'data', /Symbol.asyncIterator method returned 7/);
      });

      it('refuses an iterator result whose fields cannot be read', async () => {
        await expectRefusedWrite(
          sourceOf(() => throwingGetter('done')),
          'data',
          /iterator result cannot be read: done exploded/,
        );
      });

      it('refuses write options that are not an object, naming options', async () => {
        for (const options of ['text/csv', 42, null, ['text/csv']]) {
          await expectRefusedWrite('x', 'options', /^options: must be an object of options/, options);
        }
      });

      it('refuses write options whose contentType cannot be read, naming contentType', async () => {
        await expectRefusedWrite(
          'x',
          'contentType',
          /cannot be read: contentType exploded/,
          throwingGetter('contentType'),
        );
      });

      it('still writes a stream of well-formed results, and one with a return() that is not a method', async () => {
        rm = manager(path);
        rm.process(async (job) => {
          const chunks = ['a,', 'b\n'];
          await job.write('csv', {
            [Symbol.asyncIterator]: () => ({
              next: () => Promise.resolve(chunks.length === 0 ? { done: true } : { done: 0, value: chunks.shift() }),
              return: 'not a method',
            }),
          } as unknown as AsyncIterable<Uint8Array>);
        });
        const s = await rm.submit({ uri: '/good-write' });
        const done = await rm.waitFor(s.key);
        expect(done.state).to.equal('completed');
        expect(done.result?.formats['csv']?.size).to.equal(4);
      });

      it("keeps a producer's own failure as the run's error (a thrown string too), retried as a handler error", async () => {
        // The producer failing is not bad input: its error is passed on as a handler's own would be,
        // and toErrorInfo records a thrown string by its text.
        async function* failing(): AsyncGenerator<Uint8Array> {
          yield Buffer.from('a');
          // eslint-disable-next-line @typescript-eslint/only-throw-error -- a producer that throws a string, on purpose
          throw 'producer broke';
        }
        const outcome = await writeOnce(failing);
        expect(outcome.error).to.equal('producer broke');
        expect(outcome).to.deep.include({ state: 'failed', attempts: 3, code: 'HANDLER_ERROR', retryable: true });
      });
    });
  }

  describe('manager options', () => {
    let rm: RequestManager;

    it('refuses submit options whose force getter throws, naming options.force', async () => {
      for (const path of ['sync', 'promise'] as const) {
        rm = manager(path);
        const error = await rejectionOf(rm.submit({ uri: '/x' }, throwingGetter('force')));
        expectInvalid(error, 'options.force', /^options\.force: cannot be read: force exploded/);
        expect((await rm.list()).items).to.have.length(0);
      }
    });

    it('refuses options that cannot be looked at (a revoked proxy), naming options', async () => {
      rm = manager('sync');
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      expectInvalid(await rejectionOf(rm.submit({ uri: '/x' }, proxy)), 'options');
      expectInvalid(await rejectionOf(rm.clearTemporary(proxy)), 'options');
      expectInvalid(await rejectionOf(rm.list(proxy)), 'query');
    });

    it('refuses waitFor options whose getters throw, naming the field', async () => {
      rm = manager('sync');
      const { key } = await rm.submit({ uri: '/x' });
      expectInvalid(await rejectionOf(rm.waitFor(key, throwingGetter('timeoutMs'))), 'timeoutMs', /cannot be read/);
      expectInvalid(await rejectionOf(rm.waitFor(key, throwingGetter('signal'))), 'signal', /cannot be read/);
    });

    it('waits with the timeout it checked, not what a getter answers the second time', async () => {
      const clock = new ManualClock();
      rm = manager('sync', {}, clock);
      const { key } = await rm.submit({ uri: '/x' });
      let reads = 0;
      const options = {
        get timeoutMs(): unknown {
          reads++;
          return reads === 1 ? 10 : 'later';
        },
      };
      const waited = rejectionOf(rm.waitFor(key, options as never));
      await clock.advance(10);
      const error = await waited;
      expect((error as Error).name).to.equal('TimeoutError');
      expect(reads).to.equal(1);
    });

    it('refuses list, resultUrl, clearTemporary and prune options whose getters throw, naming the field', async () => {
      rm = manager('sync');
      const { key } = await rm.submit({ uri: '/x' });
      for (const field of ['state', 'group', 'owner', 'limit', 'cursor']) {
        expectInvalid(await rejectionOf(rm.list(throwingGetter(field))), field, /cannot be read/);
      }
      expectInvalid(await rejectionOf(rm.resultUrl(key, 'csv', throwingGetter('expiresInSec'))), 'expiresInSec');
      expectInvalid(await rejectionOf(rm.clearTemporary(throwingGetter('olderThan'))), 'olderThan');
      expectInvalid(await rejectionOf(rm.prune(throwingGetter('finishedBefore'))), 'finishedBefore');
    });

    it('refuses a proxy of a Date, or an object made to pass instanceof Date, naming the field', async () => {
      rm = manager('sync');
      const fake = Object.create(Date.prototype) as Date;
      for (const value of [new Proxy(new Date(), {}), fake]) {
        expectInvalid(await rejectionOf(rm.clearTemporary({ olderThan: value })), 'olderThan', /must be a valid Date/);
        expectInvalid(await rejectionOf(rm.prune({ finishedBefore: value })), 'finishedBefore', /must be a valid Date/);
      }
      // A real Date still works.
      expect(await rm.clearTemporary({ olderThan: new Date() })).to.equal(0);
    });

    it('names the index of a hole in a list query state array', async () => {
      rm = manager('sync');
      // eslint-disable-next-line no-sparse-arrays -- the hole is the input under test
      const sparse = [, 'pending'] as unknown as QueueState[];
      expectInvalid(await rejectionOf(rm.list({ state: sparse })), 'state[0]', /^state\[0\]: undefined is not one of/);
      expectInvalid(
        await rejectionOf(rm.list({ state: ['pending', 'paused'] as unknown as QueueState[] })),
        'state[1]',
      );
      // A state array that is well formed still lists.
      await rm.submit({ uri: '/x' });
      expect((await rm.list({ state: ['pending'] })).items).to.have.length(1);
    });
  });

  describe('configureGroup', () => {
    let rm: RequestManager;

    it('refuses a policy whose getter throws, naming the field, and keeps the caps it had', async () => {
      rm = manager('sync');
      rm.configureGroup('reports', { maxQueueLength: 1 });
      const error = thrownBy(() => {
        rm.configureGroup('reports', throwingGetter('maxConcurrent'));
      });
      expectInvalid(error, 'groups.reports.maxConcurrent', /cannot be read: maxConcurrent exploded/);
      await rm.submit({ uri: '/a', group: 'reports' });
      expect(await rejectionOf(rm.submit({ uri: '/b', group: 'reports' }))).to.have.property('name', 'QueueFullError');
    });

    it('refuses a policy that cannot be looked at (a proxy whose ownKeys trap throws), naming the group', () => {
      rm = manager('sync');
      const policy = new Proxy(
        {},
        {
          ownKeys(): never {
            throw new Error('no keys');
          },
        },
      );
      expectInvalid(
        thrownBy(() => {
          rm.configureGroup('reports', policy);
        }),
        'groups.reports',
        /cannot be read: no keys/,
      );
    });

    it('keeps the value it checked, not what a getter answers the second time', async () => {
      rm = manager('sync');
      let reads = 0;
      const policy = {
        get maxQueueLength(): unknown {
          reads++;
          // Valid when checked; a second read would slip an invalid cap (no cap at all) past the check.
          return reads === 1 ? 1 : undefined;
        },
      };
      rm.configureGroup('reports', policy as GroupPolicy);
      expect(reads).to.equal(1);
      await rm.submit({ uri: '/a', group: 'reports' });
      expect(await rejectionOf(rm.submit({ uri: '/b', group: 'reports' }))).to.have.property('name', 'QueueFullError');
    });

    it('throws ClosedError after close, like every other method', async () => {
      rm = manager('sync');
      await rm.close();
      const error = thrownBy(() => {
        rm.configureGroup('reports', { maxConcurrent: 1 });
      });
      expect(ClosedError.is(error), String(error)).to.equal(true);
    });
  });
});
