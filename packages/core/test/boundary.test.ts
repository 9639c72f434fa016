import { fileURLToPath } from 'node:url';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { loadConfig } from '../src/config/load.js';
import { createRequestManager } from '../src/create-request-manager.js';
import { ConfigError, InvalidRequestError } from '../src/errors.js';
import { buildRequestManager } from '../src/manager/build.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import { normalizeRequest } from '../src/request.js';
import { CHECK_BUG } from './fixtures/faulty-plugins-adapter.js';

use(chaiAsPromised);

const FAULTY_CHECKS = fileURLToPath(new URL('./fixtures/faulty-plugins-adapter.js', import.meta.url));
const UNREADABLE_PLUGIN = fileURLToPath(new URL('./fixtures/unreadable-plugin-adapter.js', import.meta.url));

/** The issues of the ConfigError `promise` rejects with, as `path: message` lines. */
async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ConfigError.is(error), String(error)).to.equal(true);
  return (error as ConfigError).issues.map((issue) => `${issue.path}: ${issue.message}`);
}

/** What `fn` threw, checked to be an InvalidRequestError: its field. */
function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(InvalidRequestError.is(error), String(error)).to.equal(true);
    return (error as InvalidRequestError).field;
  }
  throw new Error('nothing was thrown');
}

describe('the boundary refuses plain-JavaScript mistakes with typed errors', () => {
  describe('request params', () => {
    it('refuses URLSearchParams, a Map and class instances, whose pairs an object read would miss', () => {
      class Filters {
        region = 'eu';
      }
      for (const params of [new URLSearchParams('region=eu'), new Map([['region', 'eu']]), new Filters()]) {
        expect(() => normalizeRequest({ uri: '/report', params })).to.throw(InvalidRequestError, /plain object/);
      }
      // A null-prototype object is a plain one.
      const bare = Object.assign(Object.create(null) as Record<string, string>, { region: 'eu' });
      expect(normalizeRequest({ uri: '/report', params: bare }).params).to.deep.equal({ region: 'eu' });
    });
  });

  describe('configuration', () => {
    it("takes an adapter named like an Object.prototype member for a module specifier, not the prototype's member", async () => {
      for (const adapter of ['constructor', 'toString', 'hasOwnProperty']) {
        const issues = await issuesOf(loadConfig({ queue: { adapter } }, { env: {} }));
        expect(issues).to.have.length(1);
        expect(issues[0]).to.match(/^\/queue\/adapter: adapter package \S+ is not installed/);
      }
    });

    it('names a file: URL that does not decode', async () => {
      expect(await issuesOf(loadConfig({ queue: { adapter: 'file:///%E0%A4%A' } }, { env: {} }))).to.deep.equal([
        "/queue/adapter: adapter 'file:///%E0%A4%A' is not a valid file: URL",
      ]);
    });

    it('shows a BigInt, a function or a symbol where a number belongs', async () => {
      const config = (value: unknown): never => ({ manager: { maxAttempts: value } }) as never;
      expect(await issuesOf(loadConfig(config(3n), { env: {} }))).to.deep.equal([
        '/manager/maxAttempts: must be an integer >= 1 (at most 2^53 - 1), got 3n',
      ]);
      expect(
        (
          await issuesOf(
            loadConfig(
              config(() => 3),
              { env: {} },
            ),
          )
        )[0],
      ).to.match(/got a function$/);
      expect((await issuesOf(loadConfig(config(Symbol('n')), { env: {} })))[0]).to.match(/got a symbol$/);
    });

    it('refuses a config that is a function, a symbol or a BigInt, or that cannot be read', async () => {
      for (const config of [() => ({}), Symbol('config'), 1n]) {
        expect((await issuesOf(loadConfig(config as never, { env: {} })))[0]).to.match(/^: must be a config object/);
      }
      const throwing = {
        get manager(): never {
          throw new Error('getter exploded');
        },
      };
      // The getter is the manager field's: reported there (the root is readable).
      expect(await issuesOf(loadConfig(throwing, { env: {} }))).to.deep.equal([
        '/manager: cannot be read: Error: getter exploded',
      ]);
      const trapped = new Proxy(
        {},
        {
          ownKeys(): never {
            throw new Error('trap exploded');
          },
        },
      );
      expect(await issuesOf(loadConfig(trapped, { env: {} }))).to.deep.equal([
        ': cannot be read: Error: trap exploded',
      ]);
    });

    it('refuses bad options of createRequestManager and loadConfig, naming them', async () => {
      const rejection = async (promise: Promise<unknown>): Promise<string> => {
        const error: unknown = await promise.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(InvalidRequestError.is(error), String(error)).to.equal(true);
        return (error as InvalidRequestError).field;
      };
      expect(await rejection(createRequestManager({}, null as never))).to.equal('options');
      expect(await rejection(createRequestManager({}, { cwd: 5 as never }))).to.equal('options.cwd');
      expect(await rejection(loadConfig({}, { env: 'ARMLIB_DIR=x' as never }))).to.equal('options.env');
      expect(await rejection(loadConfig({}, { cwd: '' }))).to.equal('options.cwd');
    });

    it("reports an adapter's option check that throws a plain error or answers junk as issues naming the options", async () => {
      const issues = await issuesOf(
        loadConfig({ queue: { adapter: FAULTY_CHECKS }, cache: { adapter: FAULTY_CHECKS } }, { env: {} }),
      );
      expect(issues).to.deep.equal([
        `/queue/options: adapter '${FAULTY_CHECKS}' failed to check its options: ${String(CHECK_BUG)}`,
        `/cache/options: adapter '${FAULTY_CHECKS}' answered its option check with something other than a list of issues`,
      ]);
    });

    it('reports a module whose exported plugin cannot be inspected', async () => {
      const issues = await issuesOf(loadConfig({ queue: { adapter: UNREADABLE_PLUGIN } }, { env: {} }));
      expect(issues).to.deep.equal([
        `/queue/adapter: cannot read the adapter plugin exported by module '${UNREADABLE_PLUGIN}': name getter exploded`,
      ]);
    });
  });

  describe('buildRequestManager', () => {
    it('names the part that is missing or lacks a method, before building anything', () => {
      const queue = new MemoryQueueManager({});
      const cache = new MemoryCacheManager({});
      expect(fieldOf(() => buildRequestManager(undefined as never))).to.equal('parts');
      expect(fieldOf(() => buildRequestManager({} as never))).to.equal('queue');
      expect(fieldOf(() => buildRequestManager({ queue: 5, cache: 'x' } as never))).to.equal('queue');
      expect(fieldOf(() => buildRequestManager({ queue, cache: {} as never }))).to.equal('cache.stage');
      expect(fieldOf(() => buildRequestManager({ queue, cache, clock: { now: () => 0 } as never }))).to.equal(
        'clock.setTimeout',
      );
    });
  });

  describe('events', () => {
    it('refuses a listener that is not a function, and an event name that is not a string', async () => {
      const rm = buildRequestManager({ queue: new MemoryQueueManager({}), cache: new MemoryCacheManager({}) });
      try {
        expect(fieldOf(() => rm.events.on('submitted', 5 as never))).to.equal('listener');
        expect(fieldOf(() => rm.events.once('completed', null as never))).to.equal('listener');
        expect(fieldOf(() => rm.events.on(Symbol('x') as never, () => undefined))).to.equal('event');
      } finally {
        await rm.close();
      }
    });
  });
});
