import path from 'node:path';

import { loadAdapterPlugin, moduleFactoryFor } from '../container/adapter-registry.js';
import type { AdapterRole } from '../container/adapter-registry.js';
import { ArmError, ConfigError, InvalidRequestError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { DEFAULT_SETTINGS, withDefaults } from '../settings.js';
import type { GroupPolicies, ManagerSettings } from '../settings.js';
import { cannotRead, readOption } from '../util/arguments.js';
import { DEFAULT_CONFIG } from './defaults.js';
import { applyEnvOverrides, attributeIssue, ENV_VARS, readEnv } from './env.js';
import { readJsonFile } from './json-file.js';
import { cannotReadIssue, isInside, readConfig } from './read-config.js';
import { CONFIG_SCHEMA } from './schema.js';
import type { ArmConfig, ResolvedAdapterConfig, ResolvedConfig } from './types.js';
import { pointer, validateConfigShape } from './validate.js';

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Environment to read `ARMLIB_*` overrides from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Directory relative paths resolve against (default `process.cwd()`). */
  cwd?: string;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The options of {@link loadConfig} checked, with their defaults. */
function loadOptions(options: unknown): { env: NodeJS.ProcessEnv; cwd: string } {
  let isArray: boolean;
  try {
    isArray = Array.isArray(options);
  } catch (error) {
    // A revoked proxy cannot even be asked whether it is an array.
    throw cannotRead('options', error);
  }
  if (options === null || typeof options !== 'object' || isArray) {
    throw new InvalidRequestError(
      'options',
      `must be an object ({ env?, cwd? }), got ${options === null ? 'null' : typeof options}`,
    );
  }
  // Each read once, and a getter that throws is refused by its name (see readOption).
  const given = options as Record<string, unknown>;
  const env = readOption(given, 'env', 'options.env');
  const cwd = readOption(given, 'cwd', 'options.cwd');
  if (env !== undefined && (env === null || typeof env !== 'object')) {
    throw new InvalidRequestError('options.env', 'must be an object of environment variables');
  }
  if (cwd !== undefined && (typeof cwd !== 'string' || cwd === '' || cwd.includes('\0'))) {
    throw new InvalidRequestError('options.cwd', 'must be a non-empty path without NUL bytes');
  }
  return { env: (env as NodeJS.ProcessEnv | undefined) ?? process.env, cwd: path.resolve(cwd ?? process.cwd()) };
}

/** What a `queue` or `cache` section left out of a config is: the memory adapter. */
const MISSING_SECTION = Object.freeze({ adapter: 'memory' });

/**
 * A config used as given: a `queue` or `cache` section it leaves out is the memory adapter, so
 * that nothing is written anywhere the config did not name. (The default configuration, used when
 * there is no config at all, has both sections.)
 */
function withMissingSections(raw: unknown): unknown {
  if (!isPlainObject(raw)) return raw;
  // A section given as undefined is left out, as in JSON.
  const given = Object.fromEntries(Object.entries(raw).filter(([, value]) => value !== undefined));
  return { queue: MISSING_SECTION, cache: MISSING_SECTION, ...given };
}

function checkSettings(settings: ManagerSettings): ConfigIssue[] {
  if (settings.retryMaxMs >= settings.retryBaseMs) return [];
  return [
    {
      path: '/manager/retryMaxMs',
      message: `must be >= retryBaseMs (${settings.retryBaseMs}), got ${settings.retryMaxMs}`,
    },
  ];
}

function prefixIssue(prefix: string, issue: ConfigIssue): ConfigIssue {
  const rest = issue.path === '' || issue.path.startsWith('/') ? issue.path : `/${issue.path}`;
  const prefixed = { path: `${prefix}${rest}`, message: issue.message };
  return issue.cause === undefined ? prefixed : { ...prefixed, cause: issue.cause };
}

/**
 * `issues` without those about a value that could not be read or lies inside one: left out of the
 * config, such a value would also be reported as missing (a required adapter, …), which it is not.
 */
function withoutUnreadable(issues: readonly ConfigIssue[], unreadable: readonly ConfigIssue[]): ConfigIssue[] {
  return issues.filter((issue) => !unreadable.some((bad) => isInside(issue.path, bad.path)));
}

/** The `cause` of an error listing `issues`: the one error behind them, or all of them. */
function causeOf(issues: readonly ConfigIssue[]): { cause?: unknown } {
  const causes = issues.flatMap((issue) => (issue.cause === undefined ? [] : [issue.cause]));
  if (causes.length === 0) return {};
  return { cause: causes.length === 1 ? causes[0] : new AggregateError(causes, 'configuration issues') };
}

/** Loads the adapter of one side and lets it check its options; every problem becomes an issue. */
async function checkAdapter(section: unknown, role: AdapterRole, baseDir: string): Promise<ConfigIssue[]> {
  if (!isPlainObject(section)) return [];
  const { adapter, options } = section;
  if (typeof adapter !== 'string' || adapter === '') return [];
  try {
    const plugin = await loadAdapterPlugin(adapter, baseDir);
    const factory = moduleFactoryFor(plugin, role, adapter);
    // Options of the wrong type were already reported by the schema.
    if (options !== undefined && !isPlainObject(options)) return [];
    const validate =
      role === 'queue' ? plugin.validateQueueOptions?.bind(plugin) : plugin.validateCacheOptions?.bind(plugin);
    const optionsPath = pointer(role, 'options');
    const issues = adapterIssues(validate, options ?? {}, adapter).map((issue) => prefixIssue(optionsPath, issue));
    if (issues.length > 0) return issues;
    // With valid options, the factory must give a container module (checked by its shape). The
    // module is not loaded here: a plugin may construct in `load` (toConstantValue(new …)), and
    // nothing may be built before the container is. buildContainer checks what it binds.
    factory(options ?? {});
    return [];
  } catch (error) {
    if (!ArmError.is(error)) throw error;
    if (ConfigError.is(error) && error.issues.length > 0) {
      return error.issues.map((issue) => prefixIssue(pointer(role, 'options'), issue));
    }
    return [{ path: pointer(role, 'adapter'), message: error.message, cause: error.cause ?? error }];
  }
}

/**
 * What an adapter's own option check says. A check that throws something other than a
 * {@link ConfigError}, or answers with something other than a list of issues, is a fault of the
 * adapter: reported as one issue on the options, with the cause kept.
 */
function adapterIssues(
  validate: ((options: Record<string, unknown>) => ConfigIssue[]) | undefined,
  options: Record<string, unknown>,
  adapter: string,
): ConfigIssue[] {
  if (validate === undefined) return [];
  let answer: unknown;
  try {
    answer = validate(options);
  } catch (error) {
    if (ArmError.is(error)) throw error;
    return [{ path: '', message: `adapter '${adapter}' failed to check its options: ${String(error)}`, cause: error }];
  }
  if (answer === undefined) return [];
  if (!Array.isArray(answer) || !answer.every(isIssue)) {
    return [
      {
        path: '',
        message: `adapter '${adapter}' answered its option check with something other than a list of issues`,
      },
    ];
  }
  return answer;
}

function isIssue(value: unknown): value is ConfigIssue {
  return isPlainObject(value) && typeof value['path'] === 'string' && typeof value['message'] === 'string';
}

function resolveAdapter(section: unknown): ResolvedAdapterConfig {
  const { adapter, options } = section as { adapter: string; options?: Record<string, unknown> };
  return { adapter, options: options ?? {} };
}

/**
 * Loads, completes and validates a configuration. `input` is a config object or the path of a
 * JSON file; without it, the file named by `ARMLIB_CONFIG` is used, else the default
 * configuration. A given config (object or file) is used as given: a `queue` or `cache` section
 * it leaves out is the memory adapter. Environment overrides (see `ENV_VARS`) apply on top. Every
 * problem — schema, environment, adapter loading, adapter options, a module factory that gives no
 * container module — is collected into one {@link ConfigError} whose issues
 * name each bad field by its JSON-pointer path. Nothing is constructed here.
 */
export async function loadConfig(input?: ArmConfig | string, options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const { env, cwd } = loadOptions(options);
  const loose: unknown = input;
  if (loose === null) {
    // Only undefined means "the default": a null is a mistake upstream (a missing lookup), not a choice.
    throw new ConfigError('invalid armlib configuration', [
      { path: '', message: 'must be a config object or the path of a JSON file, got null' },
    ]);
  }
  const fromEnv = readEnv(env, ENV_VARS.config);
  const given = input ?? fromEnv ?? DEFAULT_CONFIG;

  let raw: unknown = given;
  let baseDir = cwd;
  let source: string | undefined;
  if (typeof given === 'string') {
    source = path.resolve(cwd, given);
    baseDir = path.dirname(source);
    raw = await readJsonFile(source);
  }

  if (raw !== undefined && (typeof raw === 'function' || typeof raw === 'symbol' || typeof raw === 'bigint')) {
    throw new ConfigError('invalid armlib configuration', [
      { path: '', message: `must be a config object or the path of a JSON file, got a ${typeof raw}` },
    ]);
  }
  // Read once into plain data: a getter, proxy trap or revoked proxy in a config given in code is
  // reported at its own path (and nothing reads it again below).
  const read = readConfig(raw, CONFIG_SCHEMA);
  let overridden: ReturnType<typeof applyEnvOverrides>;
  let issues: ConfigIssue[];
  try {
    overridden = applyEnvOverrides(withMissingSections(read.config), env);
    issues = validateConfigShape(overridden.config);
  } catch (error) {
    if (ArmError.is(error)) throw error;
    // Nothing left to throw here once the config was read; kept so that no raw error escapes.
    const issue = cannotReadIssue('', error);
    throw new ConfigError('invalid armlib configuration', [issue], { cause: error });
  }
  const config = overridden.config;
  const shapeOk = issues.length === 0 && overridden.issues.length === 0;
  const typed = config as ArmConfig;
  const manager = shapeOk ? withDefaults(typed.manager) : DEFAULT_SETTINGS;
  if (shapeOk) issues.push(...checkSettings(manager));
  if (isPlainObject(config)) {
    const [queueIssues, cacheIssues] = await Promise.all([
      checkAdapter(config['queue'], 'queue', baseDir),
      checkAdapter(config['cache'], 'cache', baseDir),
    ]);
    issues.push(...queueIssues, ...cacheIssues);
  }

  if (issues.length > 0 || overridden.issues.length > 0 || read.unreadable.length > 0) {
    const where = source === undefined ? '' : ` in ${source}`;
    const all = [
      ...read.unreadable,
      ...overridden.issues,
      ...withoutUnreadable(issues, read.unreadable).map((issue) => attributeIssue(issue, overridden.sources)),
    ];
    throw new ConfigError(`invalid armlib configuration${where}`, all, causeOf(all));
  }
  const resolved: ResolvedConfig = {
    queue: resolveAdapter(typed.queue),
    cache: resolveAdapter(typed.cache),
    manager: Object.freeze(manager),
    groups: { ...(typed.groups as GroupPolicies | undefined) },
    baseDir,
  };
  return source === undefined ? resolved : { ...resolved, source };
}
