import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { ContainerModule } from 'inversify';
import type { Container, ContainerModuleLoadOptions } from 'inversify';

import { pointer } from '../config/validate.js';
import { ArmError, ConfigError } from '../errors.js';
import type { AdapterPlugin } from '../spi/plugin.js';
import { TOKENS } from '../tokens.js';
import { memoryAdapter } from './memory-plugin.js';

/** Built-in adapter names that live in their own packages, loaded only when configured. */
export const BUILTIN_ADAPTER_PACKAGES: Readonly<Record<string, string>> = Object.freeze({
  file: '@armlib/file',
  dynamodb: '@armlib/dynamodb',
  s3: '@armlib/s3',
});

/** Which side of the manager an adapter backs. */
export type AdapterRole = 'queue' | 'cache';

function isObject(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

function isRelative(specifier: string): boolean {
  return /^\.\.?[\\/]/.test(specifier);
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/**
 * True when `error` says that `target` itself (a package name or a file path) was not found, as
 * opposed to something it imports, or a package that is there but cannot be loaded.
 */
function isNotFound(error: unknown, target: string): boolean {
  if (!isObject(error)) return false;
  const code = error['code'];
  const message = typeof error['message'] === 'string' ? error['message'] : '';
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(`'${target}'`);
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function importFile(url: string, shown: string, filePath: string): Promise<unknown> {
  try {
    return (await import(url)) as unknown;
  } catch (error) {
    if (isNotFound(error, filePath)) {
      throw new ConfigError(`cannot find adapter module ${shown} (looked for ${filePath})`, [], { cause: error });
    }
    throw new ConfigError(`cannot load adapter module ${shown}: ${describeError(error)}`, [], { cause: error });
  }
}

async function importPackage(specifier: string, baseDir: string, builtin?: string): Promise<unknown> {
  const name = packageName(specifier);
  try {
    return (await import(specifier)) as unknown;
  } catch (error) {
    if (!isNotFound(error, name)) {
      throw new ConfigError(`cannot load adapter package ${specifier}: ${describeError(error)}`, [], { cause: error });
    }
  }
  // Core may be installed where it cannot see the application's packages (e.g. pnpm), so also
  // look from the directory the configuration belongs to, as an import there would: ESM
  // resolution, with the `import` condition of the package's `exports`.
  let resolved: string;
  try {
    // Loaded only here, on this rare path, rather than with core by every process.
    const { resolve } = await import('import-meta-resolve');
    resolved = resolve(specifier, pathToFileURL(path.join(baseDir, 'package.json')).href);
  } catch (error) {
    if (isNotFound(error, name)) {
      const what =
        builtin === undefined ? `adapter package ${name}` : `adapter '${builtin}' needs the package ${name}, which`;
      throw new ConfigError(`${what} is not installed; install it with: npm install ${name}`, [], { cause: error });
    }
    throw new ConfigError(`cannot load adapter package ${specifier}: ${describeError(error)}`, [], { cause: error });
  }
  return importFile(resolved, specifier, resolved.startsWith('file:') ? fileURLToPath(resolved) : resolved);
}

/**
 * True when `value` is an inversify `ContainerModule`. Duck-typed on what the container uses (a
 * numeric `id` and a `load` function) rather than `instanceof`: an adapter package may bring its
 * own copy of inversify (another version, or a second install under pnpm), whose modules the
 * container loads all the same but which are not instances of core's class.
 */
export function isContainerModule(value: unknown): value is ContainerModule {
  return isObject(value) && typeof value['load'] === 'function' && typeof value['id'] === 'number';
}

/**
 * A module exporting a bare `ContainerModule` is a plugin for whichever side it is configured
 * for: its module is used as is, and must bind that side's token. It has no option validators;
 * the options still reach it as `TOKENS.QueueOptions` / `TOKENS.CacheOptions`.
 */
function bareModulePlugin(module: ContainerModule, adapter: string): AdapterPlugin {
  return Object.freeze({
    name: adapter,
    queueModule: () => module,
    cacheModule: () => module,
  });
}

function exportedPlugin(mod: unknown): unknown {
  if (!isObject(mod)) return undefined;
  if (mod['armlibAdapter'] !== undefined) return mod['armlibAdapter'];
  const fallback = mod['default'];
  // A CommonJS module's `module.exports` arrives as the default export.
  if (isObject(fallback) && fallback['armlibAdapter'] !== undefined) return fallback['armlibAdapter'];
  return fallback;
}

function pluginOf(mod: unknown, adapter: string): unknown {
  const exported = exportedPlugin(mod);
  return isContainerModule(exported) ? bareModulePlugin(exported, adapter) : exported;
}

/** True when `value` has the shape of an {@link AdapterPlugin} with at least one module factory. */
export function isAdapterPlugin(value: unknown): value is AdapterPlugin {
  if (!isObject(value) || typeof value['name'] !== 'string') return false;
  const hooks = ['queueModule', 'cacheModule', 'validateQueueOptions', 'validateCacheOptions'];
  if (!hooks.every((hook) => value[hook] === undefined || typeof value[hook] === 'function')) return false;
  return typeof value['queueModule'] === 'function' || typeof value['cacheModule'] === 'function';
}

/**
 * Resolves a configured adapter to its plugin: `memory` is built in; `file`, `dynamodb` and `s3`
 * load `@armlib/file`, `@armlib/dynamodb` and `@armlib/s3`; anything else is a module specifier
 * (relative ones resolve against `baseDir`). The module must export, as `armlibAdapter` or as its
 * default export, an {@link AdapterPlugin} or a bare inversify `ContainerModule` (used for the
 * side it is configured for). Throws {@link ConfigError} saying what to fix.
 */
export async function loadAdapterPlugin(adapter: string, baseDir: string): Promise<AdapterPlugin> {
  if (adapter === 'memory') return memoryAdapter;
  let mod: unknown;
  // An own property only: 'constructor' or 'toString' is a module specifier, not Object.prototype's member.
  const builtin = Object.hasOwn(BUILTIN_ADAPTER_PACKAGES, adapter) ? BUILTIN_ADAPTER_PACKAGES[adapter] : undefined;
  if (builtin !== undefined) {
    mod = await importPackage(builtin, baseDir, adapter);
  } else if (adapter.startsWith('file:')) {
    let filePath: string;
    try {
      filePath = decodeURIComponent(new URL(adapter).pathname);
    } catch (error) {
      throw new ConfigError(`adapter '${adapter}' is not a valid file: URL`, [], { cause: error });
    }
    mod = await importFile(adapter, `'${adapter}'`, filePath);
  } else if (isRelative(adapter) || path.isAbsolute(adapter)) {
    const filePath = path.resolve(baseDir, adapter);
    mod = await importFile(pathToFileURL(filePath).href, `'${adapter}'`, filePath);
  } else {
    mod = await importPackage(adapter, baseDir);
  }
  let plugin: unknown;
  let shaped: boolean;
  try {
    plugin = pluginOf(mod, adapter);
    shaped = isAdapterPlugin(plugin);
  } catch (error) {
    // A getter that throws, a proxy trap: the module's export cannot even be inspected.
    throw new ConfigError(
      `cannot read the adapter plugin exported by module '${adapter}': ${describeError(error)}`,
      [],
      {
        cause: error,
      },
    );
  }
  if (!shaped) {
    throw new ConfigError(
      `module '${adapter}' does not export an armlib adapter plugin: expected an 'armlibAdapter' (or default) ` +
        'export that is either a plugin (a name and a queueModule and/or cacheModule function returning an ' +
        'inversify ContainerModule) or an inversify ContainerModule',
    );
  }
  return plugin as AdapterPlugin;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return typeof value;
}

/**
 * The plugin's module factory for one side, checked: it throws {@link ConfigError} if the plugin
 * cannot back that side, and the factory it returns throws {@link ConfigError} when the plugin's
 * factory throws something other than an armlib error or returns something that is not an
 * inversify `ContainerModule`.
 */
export function moduleFactoryFor(
  plugin: AdapterPlugin,
  role: AdapterRole,
  adapter: string,
): (options: unknown) => ContainerModule {
  const factory = role === 'queue' ? plugin.queueModule?.bind(plugin) : plugin.cacheModule?.bind(plugin);
  if (factory === undefined) {
    throw new ConfigError(
      `adapter '${adapter}' (plugin '${plugin.name}') cannot be used as a ${role}: it has no ${role}Module`,
    );
  }
  const what = `adapter '${adapter}' (plugin '${plugin.name}')`;
  return (options) => {
    let module: unknown;
    try {
      module = factory(options);
    } catch (error) {
      if (ArmError.is(error)) throw error;
      throw new ConfigError(`${what}: its ${role}Module threw: ${describeError(error)}`, [], { cause: error });
    }
    if (!isContainerModule(module)) {
      throw new ConfigError(
        `${what}: its ${role}Module returned ${describeValue(module)}, not an inversify ContainerModule`,
      );
    }
    return module;
  };
}

/**
 * Confines the module of an adapter configured for one side only to that side. A module may bind
 * both tokens (a bare `ContainerModule` backing either side, or a plugin whose factories share
 * one module), and the other side's adapter binds its token too: in the one container both are
 * loaded into, resolving that token would fail with inversify's "Ambiguous bindings". So the
 * module sees the other side's token as a private identifier that nothing resolves: what it binds,
 * checks, unbinds or hooks (`onActivation`, `onDeactivation`) there stays out of the other side's
 * way, while everything else it does reaches the container unchanged.
 *
 * A module configured for both sides needs none of this: the caller loads it as is, once (loaded
 * twice, it would bind its adapters twice).
 */
export function sideOnlyModule(module: ContainerModule, role: AdapterRole): ContainerModule {
  const foreign = role === 'queue' ? TOKENS.CacheManager : TOKENS.QueueManager;
  const parked = Symbol(`armlib: ${role === 'queue' ? 'cache' : 'queue'} token of a ${role}-only adapter module`);
  return new ContainerModule((options) => {
    // Every load option takes a service identifier first; wrapping them all, rather than a
    // list of names, keeps an option a later inversify adds from bypassing the renaming.
    const scoped = Object.fromEntries(
      Object.entries(options).map(([name, option]) => {
        if (typeof option !== 'function') return [name, option];
        const call = option as (id: unknown, ...rest: unknown[]) => unknown;
        return [name, (id: unknown, ...rest: unknown[]) => call(id === foreign ? parked : id, ...rest)];
      }),
    ) as unknown as ContainerModuleLoadOptions;
    return module.load(scoped);
  });
}

/**
 * Checks that the container the adapters' modules were loaded into binds a side's token
 * (`TOKENS.QueueManager` or `TOKENS.CacheManager`). Throws {@link ConfigError} naming the adapter
 * otherwise.
 */
export function checkSideBound(container: Container, role: AdapterRole, adapter: string): void {
  const token = role === 'queue' ? TOKENS.QueueManager : TOKENS.CacheManager;
  const name = role === 'queue' ? 'TOKENS.QueueManager' : 'TOKENS.CacheManager';
  if (!container.isBound(token)) {
    throw new ConfigError(`adapter '${adapter}' cannot be used as a ${role}`, [
      { path: pointer(role, 'adapter'), message: `its container module binds no ${name}` },
    ]);
  }
}

/** Loads the adapters' modules; a foreign failure becomes a {@link ConfigError} naming the adapters. */
export async function loadAdapterModules(
  container: Container,
  modules: readonly ContainerModule[],
  adapters: string,
): Promise<void> {
  try {
    await container.loadAsync(...modules);
  } catch (error) {
    if (ArmError.is(error)) throw error;
    throw new ConfigError(`adapter ${adapters}: its container module failed to load: ${describeError(error)}`, [], {
      cause: error,
    });
  }
}
