import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ManualClock } from '../src/clock.js';
import { loadConfig } from '../src/config/load.js';
import type { ArmConfig } from '../src/config/types.js';
import { buildContainer } from '../src/container/build-container.js';
import { memoryAdapter } from '../src/container/memory-plugin.js';
import { createRequestManager } from '../src/create-request-manager.js';
import { ConfigError } from '../src/errors.js';
import { DefaultRequestManager } from '../src/manager/default-request-manager.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';
import { DEFAULT_SETTINGS } from '../src/settings.js';
import { TOKENS } from '../src/tokens.js';
import { RecordingQueueManager } from './fixtures/custom-adapter.js';
import { activated, TwoSidedCacheManager } from './fixtures/two-sided-module.js';

use(chaiAsPromised);

const CUSTOM_ADAPTER = fileURLToPath(new URL('./fixtures/custom-adapter.js', import.meta.url));
const CACHE_ONLY_ADAPTER = fileURLToPath(new URL('./fixtures/cache-only-adapter.js', import.meta.url));
const CONFIG_TEMPLATE = fileURLToPath(new URL('../../test/fixtures/custom-adapter.config.json', import.meta.url));
const THROWING_CACHE = fileURLToPath(new URL('./fixtures/throwing-cache-adapter.js', import.meta.url));
const NOT_A_MODULE = fileURLToPath(new URL('./fixtures/not-a-module-adapter.js', import.meta.url));
const BARE_QUEUE_MODULE = fileURLToPath(new URL('./fixtures/bare-module-adapter.js', import.meta.url));
const BARE_BOTH_MODULE = fileURLToPath(new URL('./fixtures/bare-both-module.js', import.meta.url));
const TWO_SIDED_MODULE = fileURLToPath(new URL('./fixtures/two-sided-module.js', import.meta.url));
/** A package name only the temp app's node_modules holds: core cannot import it by itself. */
const ESM_ONLY_PACKAGE = 'armlib-test-esm-only-adapter';
const MEMORY: ArmConfig = { queue: { adapter: 'memory' }, cache: { adapter: 'memory' } };
const NO_ENV = {};

function recording(queue: unknown): RecordingQueueManager {
  if (!(queue instanceof RecordingQueueManager)) expect.fail(`expected a RecordingQueueManager, got ${String(queue)}`);
  return queue;
}

/** Closes what the container built, when the manager can be closed (it stops the manager's timers). */
async function dispose(manager: unknown): Promise<void> {
  const close = (manager as { close?: unknown }).close;
  if (typeof close === 'function') await (close as () => Promise<void>).call(manager);
}

describe('container', () => {
  let tmp: string;
  let clock: ManualClock;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'armlib-container-'));
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  beforeEach(() => {
    clock = new ManualClock();
    RecordingQueueManager.instances.length = 0;
    activated.length = 0;
  });

  describe('buildContainer', () => {
    it('binds the memory adapters, settings, groups, options and clock', async () => {
      const config = await loadConfig(
        {
          ...MEMORY,
          cache: { adapter: 'memory', options: { maxTemporaryBytes: 2048 } },
          manager: { leaseMs: 4000 },
          groups: { reports: { maxConcurrent: 2 } },
        },
        { env: NO_ENV },
      );
      const container = await buildContainer(config, { clock });
      const queue = container.get(TOKENS.QueueManager);
      expect(queue).to.be.instanceOf(MemoryQueueManager);
      expect(container.get(TOKENS.QueueManager)).to.equal(queue);
      const cache = container.get(TOKENS.CacheManager);
      expect(cache).to.be.instanceOf(MemoryCacheManager);
      expect(container.get(TOKENS.CacheManager)).to.equal(cache);
      expect(container.get(TOKENS.Clock)).to.equal(clock);
      expect(container.get(TOKENS.Settings)).to.deep.equal({ ...DEFAULT_SETTINGS, leaseMs: 4000 });
      expect(container.get(TOKENS.GroupPolicies)).to.deep.equal({ reports: { maxConcurrent: 2 } });
      expect(container.get(TOKENS.GroupPolicies)).to.not.equal(config.groups);
      expect(container.get(TOKENS.QueueOptions)).to.deep.equal({});
      expect(container.get(TOKENS.CacheOptions)).to.deep.equal({ maxTemporaryBytes: 2048 });
    });

    it('uses the system clock when none is given', async () => {
      const container = await buildContainer(await loadConfig(MEMORY, { env: NO_ENV }));
      const now = Date.now();
      expect(container.get(TOKENS.Clock).now()).to.be.within(now - 1000, now + 60_000);
    });

    it('completes settings of a hand-made config', async () => {
      const config = await loadConfig(MEMORY, { env: NO_ENV });
      const container = await buildContainer(
        { ...config, manager: { maxAttempts: 9 } as unknown as typeof config.manager },
        { clock },
      );
      expect(container.get(TOKENS.Settings)).to.deep.equal({ ...DEFAULT_SETTINGS, maxAttempts: 9 });
    });

    it('gives the request manager the same adapter singletons the container holds', async () => {
      const config = await loadConfig(
        { queue: { adapter: CUSTOM_ADAPTER, options: { label: 'shared' } }, cache: { adapter: 'memory' } },
        { env: NO_ENV },
      );
      const container = await buildContainer(config, { clock });
      const manager = container.get(TOKENS.RequestManager);
      try {
        expect(container.get(TOKENS.RequestManager)).to.equal(manager);
        expect(RecordingQueueManager.instances).to.have.length(1);
        expect(container.get(TOKENS.QueueManager)).to.equal(RecordingQueueManager.instances[0]);
        expect(RecordingQueueManager.instances).to.have.length(1);
      } finally {
        await dispose(manager);
      }
    });

    it('loads a custom adapter by absolute path and hands it its options and the clock', async () => {
      const config = await loadConfig(
        { queue: { adapter: CUSTOM_ADAPTER, options: { label: 'abs', maxFinishedBytes: 1000 } } },
        { env: NO_ENV },
      );
      const container = await buildContainer(config, { clock });
      const queue = recording(container.get(TOKENS.QueueManager));
      expect(queue.receivedOptions).to.deep.equal({ label: 'abs', maxFinishedBytes: 1000 });
      expect(queue.receivedClock).to.equal(clock);
    });

    it('loads a custom adapter by file: URL', async () => {
      const adapter = pathToFileURL(CUSTOM_ADAPTER).href;
      const container = await buildContainer(await loadConfig({ queue: { adapter } }, { env: NO_ENV }), { clock });
      expect(container.get(TOKENS.QueueManager)).to.be.instanceOf(RecordingQueueManager);
    });

    it('loads a custom adapter by a relative specifier from its config file', async () => {
      const dir = path.join(tmp, 'app', 'config');
      await mkdir(dir, { recursive: true });
      const specifier = path.relative(dir, CUSTOM_ADAPTER).split(path.sep).join('/');
      const template = await readFile(CONFIG_TEMPLATE, 'utf8');
      const file = path.join(dir, 'armlib.json');
      await writeFile(file, template.replace('{{CUSTOM_ADAPTER}}', specifier));

      // A cwd where the same specifier would not resolve proves it is read from the file's directory.
      const config = await loadConfig(file, { env: NO_ENV, cwd: os.tmpdir() });
      const container = await buildContainer(config, { clock });
      const queue = recording(container.get(TOKENS.QueueManager));
      expect(queue.receivedOptions).to.deep.equal({ label: 'from-file' });
      expect(container.get(TOKENS.Settings).leaseMs).to.equal(12000);
    });

    it('resolves a relative specifier in a config object against cwd', async () => {
      const specifier = path.relative(tmp, CUSTOM_ADAPTER).split(path.sep).join('/');
      const config = await loadConfig({ queue: { adapter: specifier } }, { env: NO_ENV, cwd: tmp });
      const container = await buildContainer(config, { clock });
      expect(container.get(TOKENS.QueueManager)).to.be.instanceOf(RecordingQueueManager);
    });

    it("loads a plugin from a module's default export", async () => {
      const container = await buildContainer(
        await loadConfig({ cache: { adapter: CACHE_ONLY_ADAPTER } }, { env: NO_ENV }),
        { clock },
      );
      expect(container.get(TOKENS.CacheManager)).to.be.instanceOf(MemoryCacheManager);
    });

    it('refuses a plugin for a side it cannot back, even in a hand-made config', async () => {
      const config = await loadConfig(MEMORY, { env: NO_ENV });
      const error: unknown = await buildContainer({
        ...config,
        queue: { adapter: CACHE_ONLY_ADAPTER, options: {} },
      }).catch((e: unknown) => e);
      expect(ConfigError.is(error)).to.equal(true);
      expect((error as Error).message).to.include('queueModule');
    });

    it('gives a section a config leaves out the memory adapter, not the file backend', async () => {
      const container = await buildContainer(await loadConfig({ queue: { adapter: 'memory' } }, { env: NO_ENV }), {
        clock,
      });
      expect(container.get(TOKENS.CacheManager)).to.be.instanceOf(MemoryCacheManager);
      const onlyCache = await buildContainer(await loadConfig({ cache: { adapter: 'memory' } }, { env: NO_ENV }), {
        clock,
      });
      expect(onlyCache.get(TOKENS.QueueManager)).to.be.instanceOf(MemoryQueueManager);
    });

    it('refuses a module factory that returns no ContainerModule, even in a hand-made config', async () => {
      const config = await loadConfig(MEMORY, { env: NO_ENV });
      const error: unknown = await buildContainer({
        ...config,
        queue: { adapter: NOT_A_MODULE, options: {} },
      }).catch((e: unknown) => e);
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as Error).message).to.include('not an inversify ContainerModule');
    });

    it('loads a bare ContainerModule default export, once when it backs both sides', async () => {
      const queueOnly = await buildContainer(
        await loadConfig({ queue: { adapter: BARE_QUEUE_MODULE } }, { env: NO_ENV }),
        { clock },
      );
      expect(queueOnly.get(TOKENS.QueueManager)).to.be.instanceOf(RecordingQueueManager);
      const both = await buildContainer(
        await loadConfig(
          { queue: { adapter: BARE_BOTH_MODULE }, cache: { adapter: BARE_BOTH_MODULE } },
          { env: NO_ENV },
        ),
        { clock },
      );
      expect(both.get(TOKENS.QueueManager)).to.be.instanceOf(MemoryQueueManager);
      expect(both.get(TOKENS.CacheManager)).to.be.instanceOf(MemoryCacheManager);
    });

    it('uses a module binding both tokens for the one side it is configured for, the other side its own adapter', async () => {
      const queueSide = await buildContainer(
        await loadConfig({ queue: { adapter: TWO_SIDED_MODULE }, cache: { adapter: 'memory' } }, { env: NO_ENV }),
        { clock },
      );
      const queue = queueSide.get(TOKENS.QueueManager);
      const cache = queueSide.get(TOKENS.CacheManager);
      expect(queue).to.be.instanceOf(RecordingQueueManager);
      expect(cache).to.be.instanceOf(MemoryCacheManager).and.not.instanceOf(TwoSidedCacheManager);
      // The module's activation hook for the cache token must not see the memory adapter's cache.
      expect(activated).to.deep.equal([queue]);

      activated.length = 0;
      const cacheSide = await buildContainer(
        await loadConfig({ queue: { adapter: 'memory' }, cache: { adapter: TWO_SIDED_MODULE } }, { env: NO_ENV }),
        { clock },
      );
      const otherQueue = cacheSide.get(TOKENS.QueueManager);
      const otherCache = cacheSide.get(TOKENS.CacheManager);
      expect(otherQueue).to.be.instanceOf(MemoryQueueManager).and.not.instanceOf(RecordingQueueManager);
      expect(otherCache).to.be.instanceOf(TwoSidedCacheManager);
      expect(activated).to.deep.equal([otherCache]);
    });

    it('loads a module binding both tokens once when it backs both sides, with both its hooks', async () => {
      const container = await buildContainer(
        await loadConfig(
          { queue: { adapter: TWO_SIDED_MODULE }, cache: { adapter: TWO_SIDED_MODULE } },
          { env: NO_ENV },
        ),
        { clock },
      );
      const queue = container.get(TOKENS.QueueManager);
      const cache = container.get(TOKENS.CacheManager);
      expect(queue).to.be.instanceOf(RecordingQueueManager);
      expect(cache).to.be.instanceOf(TwoSidedCacheManager);
      expect(activated).to.deep.equal([queue, cache]);
    });
  });

  describe('adapter packages core cannot see', () => {
    let app: string;

    before(async () => {
      // An app directory with its own node_modules, outside core's: only the config's directory
      // leads to the package, whose exports have an `import` condition and nothing else.
      app = path.join(tmp, 'esm-app');
      const pkg = path.join(app, 'node_modules', ESM_ONLY_PACKAGE);
      await mkdir(pkg, { recursive: true });
      await writeFile(
        path.join(pkg, 'package.json'),
        JSON.stringify({
          name: ESM_ONLY_PACKAGE,
          version: '1.0.0',
          type: 'module',
          exports: { '.': { import: './index.js' } },
        }),
      );
      await writeFile(
        path.join(pkg, 'index.js'),
        `export { armlibAdapter } from ${JSON.stringify(pathToFileURL(CUSTOM_ADAPTER).href)};\n`,
      );
    });

    it("loads a package whose exports have only an import condition, from the config file's directory", async () => {
      const file = path.join(app, 'armlib.json');
      await writeFile(file, JSON.stringify({ queue: { adapter: ESM_ONLY_PACKAGE, options: { label: 'esm' } } }));
      const manager = await createRequestManager(file, { env: NO_ENV, cwd: os.tmpdir(), clock });
      try {
        expect(RecordingQueueManager.instances).to.have.length(1);
        expect(RecordingQueueManager.instances[0]?.receivedOptions).to.deep.equal({ label: 'esm' });
      } finally {
        await dispose(manager);
      }
    });

    it('shows why an installed package cannot be loaded instead of calling it not installed', async () => {
      const error: unknown = await loadConfig(
        { queue: { adapter: `${ESM_ONLY_PACKAGE}/not-exported` } },
        { env: NO_ENV, cwd: app },
      ).catch((e: unknown) => e);
      expect(ConfigError.is(error), String(error)).to.equal(true);
      const issue = (error as ConfigError).issues.find((i) => i.path === '/queue/adapter');
      expect(issue?.message).to.include(`cannot load adapter package ${ESM_ONLY_PACKAGE}/not-exported`);
      expect(issue?.message).to.include('not defined by "exports"');
      expect(issue?.message).to.not.include('not installed');
      // A package that is nowhere is still "not installed".
      const missing: unknown = await loadConfig(
        { queue: { adapter: 'armlib-test-no-such-adapter' } },
        { env: NO_ENV, cwd: app },
      ).catch((e: unknown) => e);
      expect((missing as Error).message).to.include('npm install armlib-test-no-such-adapter');
    });
  });

  describe('memory plugin', () => {
    it('reports option problems found by the adapters themselves', () => {
      expect(memoryAdapter.validateQueueOptions?.({ maxFinishedBytes: -1 }).map((i) => i.path)).to.deep.equal([
        '/maxFinishedBytes',
      ]);
      expect(memoryAdapter.validateCacheOptions?.({ urlPrefix: 'x' }).map((i) => i.path)).to.deep.equal(['/urlPrefix']);
      expect(memoryAdapter.validateQueueOptions?.({})).to.deep.equal([]);
      expect(memoryAdapter.validateCacheOptions?.({ maxTemporaryBytes: 10 })).to.deep.equal([]);
    });
  });

  describe('createRequestManager', () => {
    it('resolves a manager for a memory config', async () => {
      const manager = await createRequestManager(MEMORY, { env: NO_ENV, clock });
      try {
        expect(manager).to.be.instanceOf(DefaultRequestManager);
        expect(RecordingQueueManager.instances).to.have.length(0);
      } finally {
        await dispose(manager);
      }
    });

    it('uses the default configuration with no argument, and ARMLIB_CONFIG when set', async () => {
      await dispose(await createRequestManager(undefined, { env: NO_ENV, clock }));

      const dir = path.join(tmp, 'env-config');
      await mkdir(dir, { recursive: true });
      const specifier = path.relative(dir, CUSTOM_ADAPTER).split(path.sep).join('/');
      await writeFile(path.join(dir, 'armlib.json'), JSON.stringify({ queue: { adapter: specifier } }));
      const manager = await createRequestManager(undefined, {
        env: { ARMLIB_CONFIG: 'env-config/armlib.json' },
        cwd: tmp,
        clock,
      });
      try {
        expect(RecordingQueueManager.instances).to.have.length(1);
      } finally {
        await dispose(manager);
      }
    });

    it('rejects an invalid config before constructing anything', async () => {
      const error: unknown = await createRequestManager(
        {
          queue: { adapter: CUSTOM_ADAPTER, options: { label: 'never built' } },
          cache: { adapter: 'memory', options: { maxTemporaryBytes: 'lots' } },
          manager: { leaseMs: 0 },
        },
        { env: NO_ENV, clock },
      ).catch((e: unknown) => e);
      expect(ConfigError.is(error)).to.equal(true);
      expect((error as ConfigError).issues.map((i) => i.path)).to.have.members([
        '/cache/options/maxTemporaryBytes',
        '/manager/leaseMs',
      ]);
      expect(RecordingQueueManager.instances).to.have.length(0);
    });

    it('closes the queue it started when the cache adapter cannot be constructed, naming the adapter', async () => {
      const error: unknown = await createRequestManager(
        { queue: { adapter: CUSTOM_ADAPTER }, cache: { adapter: THROWING_CACHE } },
        { env: NO_ENV, clock },
      ).catch((e: unknown) => e);
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as Error).message).to.equal(
        `cannot start the cache adapter '${THROWING_CACHE}': throwing cache: boom in the constructor`,
      );
      const cause = (error as Error).cause;
      expect(cause).to.be.instanceOf(Error);
      expect((cause as Error).message).to.equal('throwing cache: boom in the constructor');
      expect(RecordingQueueManager.instances).to.have.length(1);
      expect(RecordingQueueManager.instances[0]?.closeCalls).to.equal(1);
    });

    it('passes an armlib error from an adapter constructor through, still closing the queue', async () => {
      const error: unknown = await createRequestManager(
        { queue: { adapter: CUSTOM_ADAPTER }, cache: { adapter: THROWING_CACHE, options: { throws: 'config' } } },
        { env: NO_ENV, clock },
      ).catch((e: unknown) => e);
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as Error).message).to.equal('throwing cache: refused by its constructor');
      expect(RecordingQueueManager.instances[0]?.closeCalls).to.equal(1);
    });

    it('starts a manager whose queue comes from a module that also binds a cache, configured as the queue only', async () => {
      const manager = await createRequestManager(
        { queue: { adapter: TWO_SIDED_MODULE }, cache: { adapter: 'memory' } },
        { env: NO_ENV, clock },
      );
      try {
        expect(RecordingQueueManager.instances).to.have.length(1);
        const submitted = await manager.submit({ uri: '/two-sided' });
        expect(submitted.state).to.equal('pending');
      } finally {
        await dispose(manager);
      }
    });

    it('applies environment overrides', async () => {
      const manager = await createRequestManager(MEMORY, {
        env: { ARMLIB_QUEUE_ADAPTER: CUSTOM_ADAPTER, ARMLIB_QUEUE_OPTIONS: '{"label":"env"}' },
        clock,
      });
      try {
        expect(RecordingQueueManager.instances).to.have.length(1);
        expect(RecordingQueueManager.instances[0]?.receivedOptions).to.deep.equal({ label: 'env' });
      } finally {
        await dispose(manager);
      }
    });

    it('serves the public API: submit, then status is pending', async () => {
      const manager = await createRequestManager(MEMORY, { env: NO_ENV, clock });
      try {
        const submitted = await manager.submit({ uri: '/x' });
        expect(submitted.state).to.equal('pending');
        const status = await manager.status(submitted.key);
        expect(status.key).to.equal(submitted.key);
        expect(status.state).to.equal('pending');
      } finally {
        await manager.close();
      }
    });
  });
});
