import { Container } from 'inversify';
import type { ContainerModule } from 'inversify';

import { SystemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { DefaultRequestManager } from '../manager/default-request-manager.js';
import { withDefaults } from '../settings.js';
import { TOKENS } from '../tokens.js';
import { loadAdapterPlugin, moduleFactoryFor } from './adapter-registry.js';
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
  // loadAsync accepts synchronous and asynchronous modules alike.
  await container.loadAsync(...modules);
  container.bind(TOKENS.RequestManager).to(DefaultRequestManager).inSingletonScope();
  return container;
}
