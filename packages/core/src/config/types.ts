import type { GroupPolicies, ManagerSettings } from '../settings.js';
import type { GroupPolicy } from '../spi/queue.js';

/** Which adapter backs the queue or the cache, and its options. */
export interface AdapterConfig {
  /**
   * A built-in name (`memory`, `file`, `dynamodb`, `s3`) or a module specifier exporting an adapter
   * plugin: relative (`./my-adapter.js`, resolved against the config file's directory), absolute,
   * a `file:` URL, or a package name.
   */
  adapter: string;
  /** Adapter-specific options; the adapter validates them. */
  options?: Record<string, unknown>;
}

/** An armlib configuration, as written in a JSON file or passed to `createRequestManager`. */
export interface ArmConfig {
  /**
   * The queue backend. Left out of a given config it is the `memory` adapter; only
   * `createRequestManager()` with no config at all (and no `ARMLIB_CONFIG`) uses the default
   * configuration's file queue.
   */
  queue?: AdapterConfig;
  /** The cache backend; left out, as for {@link ArmConfig.queue} (`memory`, or the default configuration's file cache). */
  cache?: AdapterConfig;
  /** Manager settings; missing ones take their defaults. */
  manager?: Partial<ManagerSettings>;
  /** Scheduling policies by group name. */
  groups?: Record<string, GroupPolicy>;
}

/** An adapter choice with its options filled in. */
export interface ResolvedAdapterConfig {
  /** The adapter name or module specifier, as configured. */
  readonly adapter: string;
  /** The adapter's options (`{}` when none were given). */
  readonly options: Record<string, unknown>;
}

/** A validated configuration with every default and environment override applied. */
export interface ResolvedConfig {
  readonly queue: ResolvedAdapterConfig;
  readonly cache: ResolvedAdapterConfig;
  /** Every manager setting. */
  readonly manager: Readonly<ManagerSettings>;
  /** Group policies by name (`{}` when none). */
  readonly groups: Readonly<GroupPolicies>;
  /** Absolute directory that relative adapter specifiers resolve against: the config file's directory, else the cwd. */
  readonly baseDir: string;
  /** Absolute path of the config file, when the configuration came from one. */
  readonly source?: string;
}
