import type { Readable } from 'node:stream';

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** Multi-valued request parameters; the order of names and of values does not matter to the key. */
export type Params = Readonly<Record<string, string | readonly string[]>>;

/** A request the host API wants run in the background. */
export interface BatchRequest {
  /** The endpoint the request stands for: `/reports/sales` or `https://svc.example/x`. */
  uri: string;
  /** Multi-valued parameters; part of the key. */
  params?: Params;
  /** Optional payload; part of the key. */
  body?: JsonValue;
  /** Caller-chosen readable key; otherwise derived from uri, params and body. */
  key?: string;
  /** Store the result in the persistent area (default false: temporary). */
  sticky?: boolean;
  /** Scheduling group (rate limit, concurrency); default `'default'`. */
  group?: string;
  /** Higher is served first; default 0. */
  priority?: number;
  /** ETA hint (ms) until durations have been learned for this uri. */
  estimatedMs?: number;
  /** Who asked; used for quotas. */
  owner?: string;
}

/** States a queue record can be in. */
export const QUEUE_STATES = ['pending', 'running', 'completed', 'failed', 'cancelled', 'expired'] as const;
/** A state held by a queue record. */
export type QueueState = (typeof QUEUE_STATES)[number];
/** Every state a key can report; `unknown` means neither queued nor cached. */
export const STATES = [...QUEUE_STATES, 'unknown'] as const;
/** The state of a key. */
export type State = (typeof STATES)[number];
/** States after which nothing more happens to a request. */
export const TERMINAL_STATES: readonly QueueState[] = ['completed', 'failed', 'cancelled', 'expired'];
/** True for `completed`, `failed`, `cancelled` and `expired`. */
export function isTerminal(state: State): boolean {
  return state === 'completed' || state === 'failed' || state === 'cancelled' || state === 'expired';
}

/** The recorded cause of a failure. */
export interface ErrorInfo {
  code: string;
  message: string;
  retryable: boolean;
}

/** Where a result lives: `persistent` (sticky) or `temporary` (cleared nightly). */
export type CacheArea = 'persistent' | 'temporary';
/** Both cache areas, persistent first (the lookup order). */
export const CACHE_AREAS: readonly CacheArea[] = ['persistent', 'temporary'];

/** Size and media type of one stored format. */
export interface FormatInfo {
  size: number;
  contentType: string;
  contentEncoding?: string;
}

/** Where a completed result is and which formats it has. */
export interface ResultInfo {
  area: CacheArea;
  formats: Record<string, FormatInfo>;
}

/** What `status()` and friends report about a key. */
export interface RequestStatus {
  key: string;
  state: State;
  request?: BatchRequest;
  /** ISO 8601, UTC. */
  submittedAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** 1-based among pending in serving order; 0 while running. */
  position?: number;
  /** Estimated ms until the result is ready. */
  etaMs?: number;
  /** 0..100, from the worker. */
  progress?: number;
  message?: string;
  attempts: number;
  cancelRequested?: boolean;
  error?: ErrorInfo;
  result?: ResultInfo;
}

/** A streamed result. */
export interface ResultBody {
  body: Readable;
  contentType: string;
  /** Bytes in `body` (the range length when a range was asked for). */
  size: number;
  contentEncoding?: string;
}
