import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import type { ContainerModule } from 'inversify';

import { ConfigError } from '../errors.js';
import type { AdapterPlugin } from '../spi/plugin.js';
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

function isNotFound(error: unknown, target: string): boolean {
  if (!isObject(error)) return false;
  const code = error['code'];
  const message = typeof error['message'] === 'string' ? error['message'] : '';
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(`'${target}`);
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
  // look from the directory the configuration belongs to.
  let resolved: string;
  try {
    resolved = createRequire(path.join(baseDir, 'package.json')).resolve(specifier);
  } catch (error) {
    const what =
      builtin === undefined ? `adapter package ${name}` : `adapter '${builtin}' needs the package ${name}, which`;
    throw new ConfigError(`${what} is not installed; install it with: npm install ${name}`, [], { cause: error });
  }
  return importFile(pathToFileURL(resolved).href, specifier, resolved);
}

function pluginOf(mod: unknown): unknown {
  if (!isObject(mod)) return undefined;
  if (mod['armlibAdapter'] !== undefined) return mod['armlibAdapter'];
  const fallback = mod['default'];
  // A CommonJS module's `module.exports` arrives as the default export.
  if (isObject(fallback) && fallback['armlibAdapter'] !== undefined) return fallback['armlibAdapter'];
  return fallback;
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
 * (relative ones resolve against `baseDir`). The module must export `armlibAdapter` or a default
 * export that is an {@link AdapterPlugin}. Throws {@link ConfigError} saying what to fix.
 */
export async function loadAdapterPlugin(adapter: string, baseDir: string): Promise<AdapterPlugin> {
  if (adapter === 'memory') return memoryAdapter;
  let mod: unknown;
  const builtin = BUILTIN_ADAPTER_PACKAGES[adapter];
  if (builtin !== undefined) {
    mod = await importPackage(builtin, baseDir, adapter);
  } else if (adapter.startsWith('file:')) {
    let filePath: string;
    try {
      filePath = new URL(adapter).pathname;
    } catch (error) {
      throw new ConfigError(`adapter '${adapter}' is not a valid file: URL`, [], { cause: error });
    }
    mod = await importFile(adapter, `'${adapter}'`, decodeURIComponent(filePath));
  } else if (isRelative(adapter) || path.isAbsolute(adapter)) {
    const filePath = path.resolve(baseDir, adapter);
    mod = await importFile(pathToFileURL(filePath).href, `'${adapter}'`, filePath);
  } else {
    mod = await importPackage(adapter, baseDir);
  }
  const plugin = pluginOf(mod);
  if (!isAdapterPlugin(plugin)) {
    throw new ConfigError(
      `module '${adapter}' does not export an armlib adapter plugin: expected an 'armlibAdapter' (or default) ` +
        'export with a name and a queueModule and/or cacheModule function',
    );
  }
  return plugin;
}

/** The plugin's module factory for one side; throws {@link ConfigError} if it cannot back that side. */
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
  return factory;
}
