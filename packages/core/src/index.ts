import 'reflect-metadata';

export { ManualClock, SystemClock } from './clock.js';
export type { Clock, TimerHandle } from './clock.js';
export {
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
export type { ArmErrorOptions, ConfigIssue, ErrorCode } from './errors.js';
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
export type {
  AbortReason,
  Handler,
  Job,
  ListQuery,
  ManagerEvents,
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
  SweepResult,
  UriStats,
  WorkerCapacity,
} from './spi/queue.js';
