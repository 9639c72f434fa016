import { Container } from 'inversify';
import type { ContainerModule } from 'inversify';

import { SystemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { ArmError, ConfigError } from '../errors.js';
import { DefaultRequestManager } from '../manager/default-request-manager.js';
import type { RequestManager } from '../manager/types.js';
import { withDefaults } from '../settings.js';
import { TOKENS } from '../tokens.js';
import {
  checkSideBound,
  loadAdapterModules,
  loadAdapterPlugin,
  moduleFactoryFor,
  sideOnlyModule,
} from './adapter-registry.js';
import type { AdapterRole } from './adapter-registry.js';

/** Options of {@link buildContainer}. */
export interface BuildContainerOptions {
  /** Clock for everything in the container (default: the system clock). */
  clock?: Clock;
}

async function adapterModule(role: AdapterRole, config: ResolvedConfig): Promise<ContainerModule> {
  const { adapter, options } = config[role];
  const plugin = await loadAdapterPlugin(adapter, config.baseDir);
  return moduleFactoryFor(plugin, role, adapter)(options);
}

/**
 * Builds armlib's inversify container from a validated configuration (see `loadConfig`): the
 * clock, settings, group policies and adapter options as constants, the queue and cache adapters
 * from their plugins' container modules, and `TOKENS.RequestManager`, all singletons.
 * Nothing is constructed until something is resolved.
 */
export async function buildContainer(config: ResolvedConfig, options: BuildContainerOptions = {}): Promise<Container> {
  const modules = await Promise.all([adapterModule('queue', config), adapterModule('cache', config)]);

  const container = new Container({ defaultScope: 'Singleton' });
  container.bind(TOKENS.Clock).toConstantValue(options.clock ?? new SystemClock());
  // Hand-made configs may leave settings out; loadConfig's output is already complete.
  container.bind(TOKENS.Settings).toConstantValue(Object.freeze(withDefaults(config.manager)));
  // A copy, because the manager may change policies at run time (configureGroup).
  container.bind(TOKENS.GroupPolicies).toConstantValue({ ...config.groups });
  container.bind(TOKENS.QueueOptions).toConstantValue(config.queue.options);
  container.bind(TOKENS.CacheOptions).toConstantValue(config.cache.options);
  // loadAsync accepts synchronous and asynchronous modules alike. A bare ContainerModule
  // configured for both sides is one module: loaded twice, it would bind its adapter twice. A
  // module backing one side only must not bind the other side's token next to its own adapter.
  const { queue, cache } = config;
  const adapters = queue.adapter === cache.adapter ? `'${queue.adapter}'` : `'${queue.adapter}' or '${cache.adapter}'`;
  const [queueModule, cacheModule] = modules;
  await loadAdapterModules(
    container,
    queueModule === cacheModule
      ? [queueModule]
      : [sideOnlyModule(queueModule, 'queue'), sideOnlyModule(cacheModule, 'cache')],
    adapters,
  );
  checkSideBound(container, 'queue', queue.adapter);
  checkSideBound(container, 'cache', cache.adapter);
  container.bind(TOKENS.RequestManager).to(DefaultRequestManager).inSingletonScope();
  return container;
}

/** Something {@link resolveRequestManager} built and must close if a later step fails. */
interface Closable {
  close(): Promise<void>;
}

async function closeQuietly(built: readonly Closable[]): Promise<void> {
  // The failure that stopped the start-up is what the caller needs to see, not a close error.
  for (const item of [...built].reverse()) await item.close().catch(() => undefined);
}

/**
 * Resolves the request manager of a container made by {@link buildContainer}, one singleton at a
 * time: the queue adapter, then the cache adapter, then the manager. When a step throws, whatever
 * was already built is closed (a file queue would otherwise keep its database and its lock open),
 * and an error that is not an armlib error becomes a `ConfigError` naming what failed to start,
 * with the original as `cause`.
 */
export async function resolveRequestManager(
  container: Container,
  config: Pick<ResolvedConfig, 'queue' | 'cache'>,
): Promise<RequestManager> {
  const built: Closable[] = [];
  const start = async <T>(what: string, resolve: () => Promise<T>): Promise<T> => {
    try {
      return await resolve();
    } catch (error) {
      await closeQuietly(built);
      if (ArmError.is(error)) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new ConfigError(`cannot start ${what}: ${message}`, [], { cause: error });
    }
  };
  const queue = await start(`the queue adapter '${config.queue.adapter}'`, () =>
    container.getAsync(TOKENS.QueueManager),
  );
  built.push(queue);
  const cache = await start(`the cache adapter '${config.cache.adapter}'`, () =>
    container.getAsync(TOKENS.CacheManager),
  );
  built.push(cache);
  return start('the request manager', () => container.getAsync(TOKENS.RequestManager));
}
