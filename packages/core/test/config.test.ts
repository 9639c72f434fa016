import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { DEFAULT_CONFIG } from '../src/config/defaults.js';
import { applyEnvOverrides, settingEnvVar } from '../src/config/env.js';
import { jsonErrorOffset } from '../src/config/json-file.js';
import { loadConfig } from '../src/config/load.js';
import { buildContainer } from '../src/container/build-container.js';
import { ConfigError } from '../src/errors.js';
import { DEFAULT_SETTINGS } from '../src/settings.js';

use(chaiAsPromised);

const FIXTURES = fileURLToPath(new URL('../../../../test-fixtures/config/', import.meta.url));
const CUSTOM_ADAPTER = fileURLToPath(new URL('./fixtures/custom-adapter.js', import.meta.url));
const NOT_A_MODULE = fileURLToPath(new URL('./fixtures/not-a-module-adapter.js', import.meta.url));
const BARE_QUEUE_MODULE = fileURLToPath(new URL('./fixtures/bare-module-adapter.js', import.meta.url));
const NO_ENV = {};

async function configError(promise: Promise<unknown>): Promise<ConfigError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ConfigError.is(error), `expected a ConfigError, got ${String(error)}`).to.equal(true);
  return error as ConfigError;
}

function paths(error: ConfigError): string[] {
  return error.issues.map((issue) => issue.path);
}

function issueAt(error: ConfigError, path: string): string {
  const issue = error.issues.find((i) => i.path === path);
  expect(issue, `no issue at ${path}; issues: ${error.message}`).to.not.equal(undefined);
  return issue!.message;
}

describe('config', () => {
  let tmp: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'armlib-config-'));
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  describe('loadConfig defaults', () => {
    it('uses the default configuration and default settings when given nothing', async () => {
      const config = await loadConfig(undefined, { env: NO_ENV, cwd: tmp });
      expect(config.queue).to.deep.equal({ adapter: 'file', options: { dir: './var/armlib' } });
      expect(config.cache).to.deep.equal({ adapter: 'file', options: { dir: './var/armlib' } });
      expect(config.queue).to.deep.equal({
        adapter: DEFAULT_CONFIG.queue?.adapter,
        options: DEFAULT_CONFIG.queue?.options,
      });
      expect(config.manager).to.deep.equal(DEFAULT_SETTINGS);
      expect(config.groups).to.deep.equal({});
      expect(config.baseDir).to.equal(tmp);
      expect(config.source).to.equal(undefined);
    });

    it('uses a given config as given: a section it leaves out is the memory adapter, settings take defaults', async () => {
      const config = await loadConfig({ manager: { leaseMs: 9000 } }, { env: NO_ENV });
      expect(config.queue).to.deep.equal({ adapter: 'memory', options: {} });
      expect(config.cache).to.deep.equal({ adapter: 'memory', options: {} });
      expect(config.manager).to.deep.equal({ ...DEFAULT_SETTINGS, leaseMs: 9000 });
      const onlyQueue = await loadConfig({ queue: { adapter: CUSTOM_ADAPTER } }, { env: NO_ENV });
      expect(onlyQueue.cache).to.deep.equal({ adapter: 'memory', options: {} });
    });

    it('gives a config file, named or from ARMLIB_CONFIG, the memory adapter for a section it leaves out', async () => {
      const file = path.join(tmp, 'only-queue.json');
      await writeFile(file, JSON.stringify({ queue: { adapter: 'memory', options: { maxFinishedBytes: 4096 } } }));
      const named = await loadConfig(file, { env: NO_ENV });
      expect(named.cache).to.deep.equal({ adapter: 'memory', options: {} });
      const fromEnv = await loadConfig(undefined, { env: { ARMLIB_CONFIG: file } });
      expect(fromEnv.queue).to.deep.equal({ adapter: 'memory', options: { maxFinishedBytes: 4096 } });
      expect(fromEnv.cache).to.deep.equal({ adapter: 'memory', options: {} });
    });

    it('applies environment overrides to a section left out', async () => {
      const dir = path.join(tmp, 'env-dir');
      const config = await loadConfig(
        { queue: { adapter: 'memory' } },
        { env: { ARMLIB_CACHE_ADAPTER: 'file', ARMLIB_DIR: dir, ARMLIB_QUEUE_OPTIONS: '{"maxFinishedBytes":10}' } },
      );
      expect(config.cache).to.deep.equal({ adapter: 'file', options: { dir } });
      expect(config.queue).to.deep.equal({ adapter: 'memory', options: { maxFinishedBytes: 10 } });
      const options = await loadConfig({}, { env: { ARMLIB_CACHE_OPTIONS: '{"maxTemporaryBytes":10}' } });
      expect(options.cache).to.deep.equal({ adapter: 'memory', options: { maxTemporaryBytes: 10 } });
    });

    it('takes a section given as undefined as left out, and refuses a null config', async () => {
      const config = await loadConfig(
        { queue: undefined, cache: { adapter: 'memory', options: { maxTemporaryBytes: 5 } } } as never,
        {
          env: NO_ENV,
        },
      );
      expect(config.queue).to.deep.equal({ adapter: 'memory', options: {} });
      expect(config.cache).to.deep.equal({ adapter: 'memory', options: { maxTemporaryBytes: 5 } });
      const error = await configError(loadConfig(null as never, { env: NO_ENV, cwd: tmp }));
      expect(issueAt(error, '')).to.include('got null');
    });

    it('keeps adapter options by reference (clients and other objects survive)', async () => {
      const client = new (class FakeClient {})();
      // The custom adapter takes any option besides its label (the built-in ones refuse unknown names).
      const config = await loadConfig(
        { queue: { adapter: CUSTOM_ADAPTER, options: { label: 'q', client } }, cache: { adapter: 'memory' } },
        { env: NO_ENV },
      );
      expect(config.queue.options['client']).to.equal(client);
    });
  });

  describe('JSON files', () => {
    it('loads a full valid file and records where it came from', async () => {
      const file = path.join(FIXTURES, 'valid-memory.json');
      const config = await loadConfig(file, { env: NO_ENV });
      expect(config.source).to.equal(file);
      expect(config.baseDir).to.equal(path.dirname(file));
      expect(config.cache).to.deep.equal({ adapter: 'memory', options: { maxTemporaryBytes: 1048576 } });
      expect(config.manager.pendingTtlMs).to.equal(7200000);
      expect(config.manager.pollMs).to.equal(DEFAULT_SETTINGS.pollMs);
      expect(config.groups).to.deep.equal({ reports: { minIntervalMs: 0, maxConcurrent: 2, maxQueueLength: 1000 } });
    });

    it('resolves a relative file path against cwd', async () => {
      const config = await loadConfig('valid-memory.json', { env: NO_ENV, cwd: FIXTURES });
      expect(config.source).to.equal(path.join(FIXTURES, 'valid-memory.json'));
    });

    it('reads ARMLIB_CONFIG when given no config', async () => {
      const config = await loadConfig(undefined, { env: { ARMLIB_CONFIG: 'valid-memory.json' }, cwd: FIXTURES });
      expect(config.source).to.equal(path.join(FIXTURES, 'valid-memory.json'));
      expect(config.groups).to.have.property('reports');
    });

    it('names the file when it does not exist', async () => {
      const file = path.join(tmp, 'nope.json');
      const error = await configError(loadConfig(file, { env: NO_ENV }));
      expect(error.message).to.include(file);
      expect(error.message).to.include('does not exist');
    });

    it('names the file, line and column of broken JSON', async () => {
      const file = path.join(tmp, 'broken.json');
      await writeFile(file, '{\n  "queue": { "adapter": "memory" },\n  "manager": { "leaseMs": 10 },\n}\n');
      const error = await configError(loadConfig(file, { env: NO_ENV }));
      expect(error.message).to.include(file);
      expect(error.message).to.include('line 4, column 1');
    });

    it('gives a position even when V8 does not (unexpected token)', async () => {
      const file = path.join(tmp, 'token.json');
      await writeFile(file, '{\n  "queue": nope\n}');
      const error = await configError(loadConfig(file, { env: NO_ENV }));
      expect(error.message).to.include(file);
      expect(error.message).to.include('line 2, column 12');
    });

    it('refuses a config path that is not a regular file (a FIFO would block the read)', async () => {
      const fifo = path.join(tmp, 'config.fifo');
      execFileSync('mkfifo', [fifo]);
      const error = await configError(loadConfig(fifo, { env: NO_ENV }));
      expect(issueAt(error, '')).to.include('not a regular file');
      const dir = await configError(loadConfig(tmp, { env: NO_ENV }));
      expect(issueAt(dir, '')).to.include('not a regular file');
    });

    it('shows a number JSON cannot hold (1e400) as Infinity, not null', async () => {
      const file = path.join(tmp, 'huge.json');
      await writeFile(file, '{"manager": {"leaseMs": 1e400}}');
      const error = await configError(loadConfig(file, { env: NO_ENV }));
      expect(issueAt(error, '/manager/leaseMs')).to.include('got Infinity');
    });

    it('reports a file holding something other than an object', async () => {
      const file = path.join(tmp, 'array.json');
      await writeFile(file, '[1, 2]');
      const error = await configError(loadConfig(file, { env: NO_ENV }));
      expect(issueAt(error, '')).to.include('an object');
    });
  });

  describe('jsonErrorOffset', () => {
    it('finds the first syntax error, or -1 for valid JSON', () => {
      expect(jsonErrorOffset('{"a": [1, 2, {"b": null}], "c": "\\u00e9"}')).to.equal(-1);
      expect(jsonErrorOffset('{"a": x}')).to.equal(6);
      expect(jsonErrorOffset('{"a": 1,}')).to.equal(8);
      expect(jsonErrorOffset('[1 2]')).to.equal(3);
      expect(jsonErrorOffset('{"a": 1} x')).to.equal(9);
      expect(jsonErrorOffset('"\\q"')).to.equal(2);
      expect(jsonErrorOffset('{"a": 1')).to.equal(7);
    });
  });

  describe('validation', () => {
    it('collects every bad field of a file into one ConfigError, each by its path', async () => {
      const error = await configError(loadConfig(path.join(FIXTURES, 'invalid-many.json'), { env: NO_ENV }));
      const found = paths(error);
      for (const expected of [
        '/bogus', // unknown top-level key
        '/queue/adapter', // adapter missing
        '/manager/leaseMs', // negative ms
        '/manager/maxAttempts', // wrong type
        '/manager/retryBaseMs', // not an integer
        '/manager/defaultFormat', // bad format name
        '/manager/leasMs', // typo
        '/groups/bad name', // bad group name
        '/groups/reports/maxConcurrent', // below minimum
        '/groups/reports/rate', // unknown group field
        '/cache/options/maxTemporaryBytes', // rejected by the memory adapter itself
      ]) {
        expect(found, error.message).to.include(expected);
      }
      expect(found).to.have.length(11);
      expect(error.message).to.include(path.join(FIXTURES, 'invalid-many.json'));
    });

    it('bounds leaseMs and pollMs as a worker bounds its own (the settings are its defaults)', async () => {
      for (const [manager, path, message] of [
        [{ leaseMs: 9 }, '/manager/leaseMs', 'must be an integer from 10 to 86400000, got 9'],
        [{ leaseMs: 3 * 86_400_000 }, '/manager/leaseMs', 'must be an integer from 10 to 86400000, got 259200000'],
        [{ pollMs: 0 }, '/manager/pollMs', 'must be an integer from 1 to 3600000, got 0'],
        [{ pollMs: 3_600_001 }, '/manager/pollMs', 'must be an integer from 1 to 3600000, got 3600001'],
      ] as const) {
        const error = await configError(loadConfig({ queue: { adapter: 'memory' }, manager }, { env: NO_ENV }));
        expect(issueAt(error, path)).to.equal(message);
      }
      const ok = await loadConfig(
        { queue: { adapter: 'memory' }, manager: { leaseMs: 10, pollMs: 3_600_000 } },
        {
          env: NO_ENV,
        },
      );
      expect(ok.manager).to.include({ leaseMs: 10, pollMs: 3_600_000 });
    });

    it('says what was expected and what was found', async () => {
      const error = await configError(loadConfig(path.join(FIXTURES, 'invalid-many.json'), { env: NO_ENV }));
      expect(issueAt(error, '/manager/leaseMs')).to.equal('must be an integer from 10 to 86400000, got -5');
      expect(issueAt(error, '/manager/maxAttempts')).to.equal(
        'must be an integer >= 1 (at most 2^53 - 1), got "three"',
      );
      expect(issueAt(error, '/manager/defaultFormat')).to.include('format name').and.include('"c s v"');
      expect(issueAt(error, '/manager/leasMs')).to.include("did you mean 'leaseMs'");
      expect(issueAt(error, '/bogus')).to.include('unknown field').and.include('queue, cache, manager, groups');
      expect(issueAt(error, '/queue/adapter')).to.include('is required');
      expect(issueAt(error, '/groups/bad name')).to.include('group name');
    });

    it('escapes keys in paths as JSON pointers', async () => {
      const error = await configError(loadConfig({ 'a/b~c': 1 } as never, { env: NO_ENV }));
      expect(paths(error)).to.deep.equal(['/a~1b~0c']);
    });

    it('rejects wrongly typed sections', async () => {
      const error = await configError(
        loadConfig({ queue: 'memory', cache: { adapter: '' }, groups: [] } as never, { env: NO_ENV }),
      );
      expect(paths(error)).to.have.members(['/queue', '/cache/adapter', '/groups']);
    });

    it('keeps the default of a setting given as undefined', async () => {
      const config = await loadConfig({ manager: { maxAttempts: undefined, leaseMs: undefined } } as never, {
        env: NO_ENV,
      });
      expect(config.manager.maxAttempts).to.equal(DEFAULT_SETTINGS.maxAttempts);
      expect(config.manager.leaseMs).to.equal(DEFAULT_SETTINGS.leaseMs);
    });

    it('refuses integers too large to be exact, and a default format that reads would refuse', async () => {
      const error = await configError(
        loadConfig({ manager: { maxAttempts: 1e20, pendingTtlMs: 2 ** 60, defaultFormat: 'csv.' } }, { env: NO_ENV }),
      );
      expect(paths(error)).to.have.members(['/manager/maxAttempts', '/manager/pendingTtlMs', '/manager/defaultFormat']);
      const env = await configError(loadConfig({}, { env: { ARMLIB_MAX_ATTEMPTS: '1e20' } }));
      expect(paths(env)).to.deep.equal(['/manager/maxAttempts (from ARMLIB_MAX_ATTEMPTS)']);
      const dots = await configError(loadConfig({ manager: { defaultFormat: 'tar..gz' } }, { env: NO_ENV }));
      expect(paths(dots)).to.deep.equal(['/manager/defaultFormat']);
      const fine = await loadConfig({ manager: { defaultFormat: 'tar.gz' } }, { env: NO_ENV });
      expect(fine.manager.defaultFormat).to.equal('tar.gz');
    });

    it('checks that retryMaxMs is not below retryBaseMs', async () => {
      const error = await configError(loadConfig({ manager: { retryBaseMs: 5000, retryMaxMs: 100 } }, { env: NO_ENV }));
      expect(paths(error)).to.deep.equal(['/manager/retryMaxMs']);
    });
  });

  describe('adapters', () => {
    it('refuses a built-in adapter on a side it does not implement', async () => {
      const error = await configError(
        loadConfig({ queue: { adapter: 's3' }, cache: { adapter: 'dynamodb' } }, { env: NO_ENV }),
      );
      expect(issueAt(error, '/queue/adapter')).to.include("adapter 's3'").and.include('cannot be used as a queue');
      expect(issueAt(error, '/cache/adapter'))
        .to.include("adapter 'dynamodb'")
        .and.include('cannot be used as a cache');
    });

    it('reports schema and adapter problems together', async () => {
      const error = await configError(
        loadConfig({ queue: { adapter: 's3' }, manager: { pollMs: 0 } }, { env: NO_ENV }),
      );
      expect(paths(error)).to.have.members(['/queue/adapter', '/manager/pollMs']);
      expect(issueAt(error, '/queue/adapter')).to.include('cannot be used as a queue');
    });

    it('names a package that is not installed', async () => {
      const error = await configError(loadConfig({ queue: { adapter: 'armlib-no-such-adapter/x' } }, { env: NO_ENV }));
      expect(issueAt(error, '/queue/adapter')).to.include('npm install armlib-no-such-adapter');
    });

    it('reports a missing module file', async () => {
      const error = await configError(loadConfig({ queue: { adapter: './missing.js' } }, { env: NO_ENV, cwd: tmp }));
      expect(issueAt(error, '/queue/adapter')).to.include(path.join(tmp, 'missing.js'));
    });

    it('reports a module that exports no plugin', async () => {
      const notAdapter = fileURLToPath(new URL('./fixtures/not-an-adapter.js', import.meta.url));
      const error = await configError(loadConfig({ queue: { adapter: notAdapter } }, { env: NO_ENV }));
      expect(issueAt(error, '/queue/adapter')).to.include('armlibAdapter');
    });

    it('reports a plugin that cannot back the side it was configured for', async () => {
      const cacheOnly = fileURLToPath(new URL('./fixtures/cache-only-adapter.js', import.meta.url));
      const error = await configError(
        loadConfig({ queue: { adapter: cacheOnly }, cache: { adapter: cacheOnly } }, { env: NO_ENV }),
      );
      expect(paths(error)).to.deep.equal(['/queue/adapter']);
      expect(issueAt(error, '/queue/adapter')).to.include('queueModule');
    });

    it('reports a plugin whose module factory returns something that is not a ContainerModule', async () => {
      const error = await configError(
        loadConfig({ queue: { adapter: NOT_A_MODULE }, cache: { adapter: NOT_A_MODULE } }, { env: NO_ENV }),
      );
      expect(paths(error)).to.have.members(['/queue/adapter', '/cache/adapter']);
      expect(issueAt(error, '/queue/adapter'))
        .to.include("plugin 'not-a-module'")
        .and.include('queueModule returned an object, not an inversify ContainerModule');
      expect(issueAt(error, '/cache/adapter')).to.include('cacheModule returned').and.include('ContainerModule');
    });

    it('accepts a bare ContainerModule as the default export, for a side it binds', async () => {
      const config = await loadConfig({ queue: { adapter: BARE_QUEUE_MODULE } }, { env: NO_ENV });
      expect(config.queue.adapter).to.equal(BARE_QUEUE_MODULE);
      // What a module binds is known once it is loaded, which validation does not do (see below):
      // the container refuses it, before anything is constructed.
      const wrongSide = await loadConfig({ cache: { adapter: BARE_QUEUE_MODULE } }, { env: NO_ENV });
      const error = await configError(buildContainer(wrongSide));
      expect(paths(error)).to.deep.equal(['/cache/adapter']);
      expect(error.message).to.include('cannot be used as a cache').and.include('binds no TOKENS.CacheManager');
    });

    it('keeps the error behind an adapter issue as the cause of the ConfigError', async () => {
      const throwing = fileURLToPath(new URL('./fixtures/throwing-factory-adapter.js', import.meta.url));
      const { FACTORY_BUG } = (await import(throwing)) as { FACTORY_BUG: Error };
      const error = await configError(loadConfig({ queue: { adapter: throwing } }, { env: NO_ENV }));
      expect(paths(error)).to.deep.equal(['/queue/adapter']);
      expect(error.issues[0]?.cause).to.equal(FACTORY_BUG);
      expect(error.cause).to.equal(FACTORY_BUG);
      // Several: all of them, in an AggregateError.
      const both = await configError(
        loadConfig({ queue: { adapter: throwing }, cache: { adapter: NOT_A_MODULE } }, { env: NO_ENV }),
      );
      expect(both.cause).to.be.instanceOf(AggregateError);
      expect((both.cause as AggregateError).errors)
        .to.have.length(2)
        .and.include(FACTORY_BUG);
    });

    it('does not load adapter modules while validating (a plugin may construct in load)', async () => {
      const counting = fileURLToPath(new URL('./fixtures/counting-load-adapter.js', import.meta.url));
      const { loads } = (await import(counting)) as { loads: { count: number } };
      const before = loads.count;
      const config = await loadConfig({ queue: { adapter: counting } }, { env: NO_ENV });
      expect(loads.count - before, 'loads during validation').to.equal(0);
      await buildContainer(config);
      expect(loads.count - before, 'loads when the container is built').to.equal(1);
    });

    it('says which shapes a module may export', async () => {
      const notAdapter = fileURLToPath(new URL('./fixtures/not-an-adapter.js', import.meta.url));
      const error = await configError(loadConfig({ queue: { adapter: notAdapter } }, { env: NO_ENV }));
      expect(issueAt(error, '/queue/adapter'))
        .to.include('a plugin (a name and a queueModule and/or cacheModule function')
        .and.include('or an inversify ContainerModule');
    });

    it("reports a plugin's own option issues under the options path", async () => {
      const error = await configError(
        loadConfig({ queue: { adapter: CUSTOM_ADAPTER, options: { label: 5 } } }, { env: NO_ENV }),
      );
      expect(paths(error)).to.deep.equal(['/queue/options/label']);
    });
  });

  describe('environment', () => {
    it('maps settings to SCREAMING_SNAKE_CASE variables', () => {
      expect(settingEnvVar('leaseMs')).to.equal('ARMLIB_LEASE_MS');
      expect(settingEnvVar('maxPendingPerOwner')).to.equal('ARMLIB_MAX_PENDING_PER_OWNER');
      expect(settingEnvVar('defaultFormat')).to.equal('ARMLIB_DEFAULT_FORMAT');
    });

    it('overrides settings, coercing numbers', async () => {
      const config = await loadConfig(path.join(FIXTURES, 'valid-memory.json'), {
        env: { ARMLIB_LEASE_MS: '5000', ARMLIB_MAX_ATTEMPTS: ' 7 ', ARMLIB_DEFAULT_FORMAT: 'json', ARMLIB_POLL_MS: '' },
      });
      expect(config.manager.leaseMs).to.equal(5000);
      expect(config.manager.maxAttempts).to.equal(7);
      expect(config.manager.defaultFormat).to.equal('json');
      expect(config.manager.pollMs).to.equal(DEFAULT_SETTINGS.pollMs);
      expect(config.manager.retryMaxMs).to.equal(60000);
    });

    it('names the variable behind a bad value', async () => {
      const error = await configError(
        loadConfig(undefined, { env: { ARMLIB_LEASE_MS: '12abc', ARMLIB_MAX_ATTEMPTS: '1.5' } }),
      );
      expect(issueAt(error, '/manager/leaseMs (from ARMLIB_LEASE_MS)')).to.include('"12abc"');
      expect(issueAt(error, '/manager/maxAttempts (from ARMLIB_MAX_ATTEMPTS)')).to.include('1.5');
      expect(error.message).to.include('ARMLIB_LEASE_MS');
    });

    it('switches adapters and merges options', async () => {
      const config = await loadConfig(
        { queue: { adapter: 'memory' }, cache: { adapter: 'memory', options: { maxTemporaryBytes: 10 } } },
        {
          env: {
            ARMLIB_QUEUE_ADAPTER: CUSTOM_ADAPTER,
            ARMLIB_QUEUE_OPTIONS: '{"label":"env"}',
            ARMLIB_CACHE_OPTIONS: '{"urlPrefix":"/r/"}',
          },
        },
      );
      expect(config.queue).to.deep.equal({ adapter: CUSTOM_ADAPTER, options: { label: 'env' } });
      expect(config.cache.options).to.deep.equal({ maxTemporaryBytes: 10, urlPrefix: '/r/' });
    });

    it('drops the options written for another adapter when the variable switches adapter', async () => {
      const config = await loadConfig(
        { queue: { adapter: CUSTOM_ADAPTER, options: { label: 'file' } } },
        { env: { ARMLIB_QUEUE_ADAPTER: 'memory' } },
      );
      expect(config.queue).to.deep.equal({ adapter: 'memory', options: {} });
    });

    it('replaces groups with ARMLIB_GROUPS', async () => {
      const config = await loadConfig(path.join(FIXTURES, 'valid-memory.json'), {
        env: { ARMLIB_GROUPS: '{"nightly":{"maxConcurrent":1}}' },
      });
      expect(config.groups).to.deep.equal({ nightly: { maxConcurrent: 1 } });
    });

    it('names the variable behind broken JSON, bad groups, bad options and an uninstalled adapter', async () => {
      const error = await configError(
        loadConfig(undefined, {
          env: {
            ARMLIB_GROUPS: '{"bad name":{}}',
            ARMLIB_QUEUE_OPTIONS: '{oops',
            ARMLIB_CACHE_ADAPTER: 'memory',
            ARMLIB_CACHE_OPTIONS: '{"maxTemporaryBytes":"big"}',
            ARMLIB_QUEUE_ADAPTER: 'armlib-no-such-adapter',
          },
        }),
      );
      expect(paths(error)).to.have.members([
        '/queue/options (from ARMLIB_QUEUE_OPTIONS)',
        '/groups/bad name (from ARMLIB_GROUPS)',
        '/cache/options/maxTemporaryBytes (from ARMLIB_CACHE_OPTIONS)',
        '/queue/adapter (from ARMLIB_QUEUE_ADAPTER)',
      ]);
      expect(issueAt(error, '/queue/options (from ARMLIB_QUEUE_OPTIONS)')).to.include('invalid JSON');
      expect(issueAt(error, '/queue/adapter (from ARMLIB_QUEUE_ADAPTER)')).to.include(
        'npm install armlib-no-such-adapter',
      );
    });

    it('rejects JSON that is not an object', async () => {
      const error = await configError(loadConfig(undefined, { env: { ARMLIB_GROUPS: '[1]' } }));
      expect(issueAt(error, '/groups (from ARMLIB_GROUPS)')).to.include('must be a JSON object, got an array');
    });

    it('ignores unknown ARMLIB_ variables', async () => {
      const config = await loadConfig(undefined, { env: { ARMLIB_NOT_A_THING: 'x', ARMLIB_: '1' } });
      expect(config.manager).to.deep.equal(DEFAULT_SETTINGS);
    });

    it('sets the dir of file adapters only, below the options variables', () => {
      const raw = {
        queue: { adapter: 'file', options: { dir: './from-file', fsync: true } },
        cache: { adapter: 'memory' },
      };
      const { config, sources } = applyEnvOverrides(raw, { ARMLIB_DIR: '/data/armlib' });
      expect(config).to.deep.equal({
        queue: { adapter: 'file', options: { dir: '/data/armlib', fsync: true } },
        cache: { adapter: 'memory' },
      });
      expect(sources.get('/queue/options/dir')).to.equal('ARMLIB_DIR');
      expect(raw.queue.options.dir).to.equal('./from-file');

      const both = applyEnvOverrides(raw, { ARMLIB_DIR: '/data/armlib', ARMLIB_QUEUE_OPTIONS: '{"dir":"/q"}' });
      expect(both.config).to.have.nested.property('queue.options.dir', '/q');

      const switched = applyEnvOverrides({}, { ARMLIB_CACHE_ADAPTER: 'file', ARMLIB_DIR: '/d' });
      expect(switched.config).to.deep.equal({ cache: { adapter: 'file', options: { dir: '/d' } } });
    });

    it('leaves a malformed section for validation to report', async () => {
      const error = await configError(loadConfig({ queue: 5 } as never, { env: { ARMLIB_QUEUE_ADAPTER: 'memory' } }));
      expect(paths(error)).to.deep.equal(['/queue']);
    });
  });

  describe('relative adapter specifiers', () => {
    it('resolve against the config file directory, not cwd', async () => {
      const dir = path.join(tmp, 'conf', 'sub');
      await mkdir(dir, { recursive: true });
      const specifier = path.relative(dir, CUSTOM_ADAPTER).split(path.sep).join('/');
      expect(specifier.startsWith('../')).to.equal(true);
      const file = path.join(dir, 'armlib.json');
      await writeFile(file, JSON.stringify({ queue: { adapter: specifier } }));
      const config = await loadConfig(file, { env: NO_ENV, cwd: os.tmpdir() });
      expect(config.queue.adapter).to.equal(specifier);
      expect(config.baseDir).to.equal(dir);
    });
  });
});
