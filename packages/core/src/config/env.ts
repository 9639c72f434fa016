import type { ConfigIssue } from '../errors.js';
import { DEFAULT_SETTINGS } from '../settings.js';
import type { ManagerSettings } from '../settings.js';
import { readOption } from '../util/arguments.js';
import { readFields } from './read-config.js';
import { settingSchema } from './schema.js';
import { pointer, showValue } from './validate.js';

/**
 * Environment variables read by armlib's configuration loader. Each overrides the config file (or
 * object); an empty value counts as unset, and unknown `ARMLIB_*` variables are ignored.
 *
 * - `ARMLIB_CONFIG` — path of a JSON config file, used when `createRequestManager()` gets no
 *   config (a relative path resolves against the `cwd` option of `createRequestManager` /
 *   `loadConfig`, by default `process.cwd()`). Without it, the default
 *   configuration is used.
 * - `ARMLIB_QUEUE_ADAPTER`, `ARMLIB_CACHE_ADAPTER` — adapter name (`memory`, `file`, `dynamodb`,
 *   `s3`) or module specifier. Switching to a different adapter drops the options the file gave
 *   the old one.
 * - `ARMLIB_DIR` — sets `options.dir` of the queue and of the cache when their adapter is `file`.
 * - `ARMLIB_QUEUE_OPTIONS`, `ARMLIB_CACHE_OPTIONS` — a JSON object merged shallowly over the
 *   adapter's options (after `ARMLIB_DIR`), e.g. `{"region":"eu-west-1"}`.
 * - `ARMLIB_<SETTING>` — one per manager setting, the setting's name in SCREAMING_SNAKE_CASE:
 *   `ARMLIB_LEASE_MS`, `ARMLIB_MAX_ATTEMPTS`, `ARMLIB_RETRY_BASE_MS`, `ARMLIB_RETRY_MAX_MS`,
 *   `ARMLIB_PENDING_TTL_MS`, `ARMLIB_FINISHED_RETENTION_MS`, `ARMLIB_DEFAULT_FORMAT`,
 *   `ARMLIB_MAX_QUEUE_LENGTH`, `ARMLIB_MAX_PENDING_PER_OWNER`, `ARMLIB_POLL_MS`, `ARMLIB_SWEEP_MS`,
 *   `ARMLIB_TARGET_WAIT_MS`, `ARMLIB_DEFAULT_ESTIMATED_MS`. Numbers are parsed strictly (`12abc`
 *   is an error naming the variable).
 * - `ARMLIB_GROUPS` — a JSON object replacing `groups`, e.g. `{"reports":{"maxConcurrent":2}}`.
 */
export const ENV_VARS = {
  config: 'ARMLIB_CONFIG',
  queueAdapter: 'ARMLIB_QUEUE_ADAPTER',
  cacheAdapter: 'ARMLIB_CACHE_ADAPTER',
  queueOptions: 'ARMLIB_QUEUE_OPTIONS',
  cacheOptions: 'ARMLIB_CACHE_OPTIONS',
  dir: 'ARMLIB_DIR',
  groups: 'ARMLIB_GROUPS',
} as const;

/** The environment variable overriding a manager setting: `leaseMs` → `ARMLIB_LEASE_MS`. */
export function settingEnvVar(key: keyof ManagerSettings): string {
  return `ARMLIB_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** A config with the environment applied, and which variable set which path. */
export interface EnvOverrides {
  /** The config with overrides applied (the input is never mutated). */
  config: unknown;
  /** JSON pointer → the variable that set the value there. */
  sources: Map<string, string>;
  /** Variables whose values could not be used at all (e.g. broken JSON). */
  issues: ConfigIssue[];
}

type Env = Readonly<Record<string, string | undefined>>;
type Section = 'queue' | 'cache';

/** The value of variable `name`; an empty value counts as unset. */
export function readEnv(env: Env, name: string): string | undefined {
  // The caller's environment object: one that throws when read is refused by name, not passed on raw.
  const value = readOption(env, name, `options.env.${name}`);
  return value === undefined || value === '' ? undefined : value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const STRICT_NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** Strict number parsing; anything else is kept as the string so validation reports it as given. */
function coerce(raw: string, type: string | undefined): unknown {
  if (type !== 'integer') return raw;
  const text = raw.trim();
  return STRICT_NUMBER.test(text) ? Number(text) : raw;
}

function parseJsonObject(
  env: Env,
  name: string,
  path: string,
  issues: ConfigIssue[],
): Record<string, unknown> | undefined {
  const raw = readEnv(env, name);
  if (raw === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    issues.push({
      path: `${path} (from ${name})`,
      message: `must be a JSON object, got invalid JSON (${error instanceof Error ? error.message : String(error)})`,
    });
    return undefined;
  }
  if (!isPlainObject(parsed)) {
    issues.push({ path: `${path} (from ${name})`, message: `must be a JSON object, got ${showValue(parsed)}` });
    return undefined;
  }
  return parsed;
}

function overrideSection(
  config: Record<string, unknown>,
  section: Section,
  env: Env,
  sources: Map<string, string>,
  issues: ConfigIssue[],
): void {
  const current = config[section];
  // A malformed section is left for validation to report; the environment cannot repair it.
  if (current !== undefined && !isPlainObject(current)) return;
  const next: Record<string, unknown> = { ...current };
  const adapterVar = section === 'queue' ? ENV_VARS.queueAdapter : ENV_VARS.cacheAdapter;
  const optionsVar = section === 'queue' ? ENV_VARS.queueOptions : ENV_VARS.cacheOptions;
  // The adapter's options are kept by reference until a variable merges into them: then each is
  // read once, one that throws reported at its own path (see readFields).
  const optionsPath = pointer(section, 'options');

  const adapter = readEnv(env, adapterVar);
  if (adapter !== undefined) {
    // Options written for another adapter would only be rejected by the new one.
    if (next['adapter'] !== adapter) delete next['options'];
    next['adapter'] = adapter;
    sources.set(pointer(section, 'adapter'), adapterVar);
  }

  const dir = readEnv(env, ENV_VARS.dir);
  if (dir !== undefined && next['adapter'] === 'file') {
    const given = next['options'];
    next['options'] = { ...(isPlainObject(given) ? readFields(given, optionsPath, issues) : {}), dir };
    sources.set(pointer(section, 'options', 'dir'), ENV_VARS.dir);
  }

  const options = parseJsonObject(env, optionsVar, optionsPath, issues);
  const base = next['options'];
  // Malformed file options are left for validation to report rather than silently replaced.
  if (options !== undefined && (base === undefined || isPlainObject(base))) {
    next['options'] = { ...(base === undefined ? {} : readFields(base, optionsPath, issues)), ...options };
    for (const key of Object.keys(options)) sources.set(pointer(section, 'options', key), optionsVar);
  }

  if (current !== undefined || Object.keys(next).length > 0) config[section] = next;
}

function overrideManager(config: Record<string, unknown>, env: Env, sources: Map<string, string>): void {
  const current = config['manager'];
  if (current !== undefined && !isPlainObject(current)) return;
  const next: Record<string, unknown> = { ...current };
  let changed = false;
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof ManagerSettings)[]) {
    const name = settingEnvVar(key);
    const raw = readEnv(env, name);
    if (raw === undefined) continue;
    next[key] = coerce(raw, settingSchema(key).type);
    sources.set(pointer('manager', key), name);
    changed = true;
  }
  if (changed) config['manager'] = next;
}

/**
 * Applies the `ARMLIB_*` variables (see {@link ENV_VARS}) to a raw config. Values are not
 * validated here: validation runs afterwards and names the variable behind each bad value.
 */
export function applyEnvOverrides(raw: unknown, env: Env): EnvOverrides {
  const sources = new Map<string, string>();
  const issues: ConfigIssue[] = [];
  if (!isPlainObject(raw)) return { config: raw, sources, issues };
  const config: Record<string, unknown> = { ...raw };
  overrideSection(config, 'queue', env, sources, issues);
  overrideSection(config, 'cache', env, sources, issues);
  overrideManager(config, env, sources);
  const groups = parseJsonObject(env, ENV_VARS.groups, '/groups', issues);
  if (groups !== undefined) {
    config['groups'] = groups;
    sources.set('/groups', ENV_VARS.groups);
  }
  return { config, sources, issues };
}

/** Adds `(from VAR)` to the path of an issue about a value an environment variable set. */
export function attributeIssue(issue: ConfigIssue, sources: ReadonlyMap<string, string>): ConfigIssue {
  let best: string | undefined;
  for (const path of sources.keys()) {
    const covers = issue.path === path || issue.path.startsWith(`${path}/`);
    if (covers && (best === undefined || path.length > best.length)) best = path;
  }
  if (best === undefined) return issue;
  const attributed = { path: `${issue.path} (from ${String(sources.get(best))})`, message: issue.message };
  return issue.cause === undefined ? attributed : { ...attributed, cause: issue.cause };
}
