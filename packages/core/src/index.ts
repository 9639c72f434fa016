import 'reflect-metadata';

export { ManualClock, SystemClock } from './clock.js';
export { CONFIG_SCHEMA } from './config/schema.js';
export { DEFAULT_CONFIG, DEFAULT_DIR } from './config/defaults.js';
export { ENV_VARS, settingEnvVar } from './config/env.js';
export { loadConfig } from './config/load.js';
export type { LoadConfigOptions } from './config/load.js';
export type { AdapterConfig, ArmConfig, ResolvedAdapterConfig, ResolvedConfig } from './config/types.js';
export { BUILTIN_ADAPTER_PACKAGES, isAdapterPlugin, loadAdapterPlugin } from './container/adapter-registry.js';
export { buildContainer } from './container/build-container.js';
export type { BuildContainerOptions } from './container/build-container.js';
export { memoryAdapter } from './container/memory-plugin.js';
export {
  assertValidContentType,
  contentTypeFor,
  DEFAULT_CONTENT_TYPE,
  MAX_CONTENT_TYPE_LENGTH,
} from './content-type.js';
export { createRequestManager } from './create-request-manager.js';
export type { CreateRequestManagerOptions } from './create-request-manager.js';
export { buildRequestManager } from './manager/build.js';
export type { RequestManagerParts } from './manager/build.js';
export { DefaultRequestManager } from './manager/default-request-manager.js';
export { MEMORY_CACHE_DEFAULTS, MemoryCacheManager } from './memory/memory-cache-manager.js';
export { MemoryQueueManager } from './memory/memory-queue-manager.js';
export type { MemoryQueueManagerOptions } from './memory/memory-queue-manager.js';
export type { MemoryCacheManagerOptions } from './memory/memory-cache-manager.js';
export { checkReadable, errorText, readAdapterOptions, tryReadAdapterOptions } from './util/arguments.js';
export type { ReadAdapterOptions } from './util/arguments.js';
export { checkByteRange, chunksOf, countingIterable, readAll, sliceRange } from './util/bytes.js';
export {
  assertCacheArea,
  assertStillHeld,
  cacheGetOptions,
  cacheListOptions,
  cacheUrlExpiry,
  cacheWriteOptions,
  checkOlderThan,
  commitFence,
  decodeKeyCursor,
  encodeKeyCursor,
} from './util/cache-args.js';
export type { CountingIterable, ResolvedRange } from './util/bytes.js';
export { retryDelay } from './worker/backoff.js';
export type { Clock, TimerHandle } from './clock.js';
export {
  AbortedError,
  ArmError,
  BackendError,
  ClosedError,
  ConfigError,
  ConflictError,
  ERROR_CODES,
  InvalidRequestError,
  LeaseLostError,
  NotFoundError,
  PermanentError,
  QueueFullError,
  QuotaExceededError,
  TimeoutError,
} from './errors.js';
export type { AbortReason, ArmErrorOptions, ConfigIssue, ErrorCode } from './errors.js';
export {
  assertValidFormat,
  assertValidKey,
  canonicalJson,
  canonicalParams,
  deriveKey,
  FORMAT_PATTERN,
  GROUP_PATTERN,
  KEY_PATTERN,
  keyOf,
} from './keys.js';
export { CACHE_AREAS, isTerminal, QUEUE_STATES, STATES, TERMINAL_STATES } from './model.js';
export type {
  BatchRequest,
  CacheArea,
  ErrorInfo,
  FormatInfo,
  JsonValue,
  Params,
  QueueState,
  RequestStatus,
  ResultBody,
  ResultInfo,
  State,
} from './model.js';
export { normalizeRequest, REQUEST_LIMITS } from './request.js';
export type { NormalizedRequest } from './request.js';
export { DEFAULT_SETTINGS } from './settings.js';
export type { GroupPolicies, ManagerSettings } from './settings.js';
export { TOKENS } from './tokens.js';
export { TypedEmitter } from './util/emitter.js';
export type { Listener } from './util/emitter.js';
export type { AdapterPlugin } from './spi/plugin.js';
export { checkClaimMax, MAX_CLAIM_BATCH } from './spi/claim-many.js';
export { ForwardingCacheManager, ForwardingQueueManager } from './spi/forwarding.js';
export { REQUEST_EVENT_NAMES } from './manager/types.js';
export type {
  Handler,
  Job,
  ListQuery,
  ManagerEvents,
  RequestEventName,
  Metrics,
  MinuteCounts,
  RequestManager,
  SubmitOptions,
  WaitOptions,
  Worker,
  WorkerOptions,
  WriteData,
} from './manager/types.js';
export type {
  ByteRange,
  CacheCapabilities,
  CachedBody,
  CacheGetOptions,
  CacheListPage,
  CacheManager,
  CacheUrlOptions,
  CacheWriteOptions,
  CommitOptions,
  ResultManifest,
  StagedResult,
} from './spi/cache.js';
export type {
  ActivityBucket,
  ActivityCounts,
  CancelOptions,
  CancelOutcome,
  CancelResult,
  ClaimOptions,
  CompleteOptions,
  EnqueueOptions,
  EnqueueOutcome,
  EnqueueResult,
  FailOptions,
  GroupPolicy,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  QueueCapabilities,
  QueueCounts,
  QueueLimits,
  QueueListPage,
  QueueListQuery,
  QueueManager,
  QueueRecord,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
  UriStats,
  WorkerCapacity,
} from './spi/queue.js';
