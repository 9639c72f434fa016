import type { BatchRequest } from '@armlib/core';

import type { TraceEvent } from './trace.js';

/** How a worker child is set up (JSON in {@link CHILD_CONFIG_ENV}). */
export interface ChildConfig {
  /** `worker-1`…: names the process in traces and messages. */
  readonly name: string;
  /** DynamoDB endpoint (undefined: the SDK's default, i.e. real AWS). */
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly tableName: string;
  /** Root of the file cache every process shares. */
  readonly cacheDir: string;
  /** Where the test drops marker files a stalled (event-loop-blocked) child polls for. */
  readonly markerDir: string;
  readonly leaseMs: number;
  readonly pollMs: number;
  readonly sweepMs: number;
  readonly concurrency: number;
  readonly maxAttempts: number;
}

/** Environment variable carrying the {@link ChildConfig}. */
export const CHILD_CONFIG_ENV = 'ARMLIB_DYNAMODB_MULTI_HOST_CHILD';

/** Request uris the child's handler understands. */
export const URI = {
  /** Writes a result and returns. */
  quick: '/mh/quick',
  /** First attempt blocks the whole process past its lease; later attempts act as quick. */
  stall: '/mh/stall',
  /** Runs until its signal aborts (cancel), then reports how many heartbeats it took. */
  hold: '/mh/hold',
  /** Runs until the test opens its gate. */
  gate: '/mh/gate',
} as const;

/** Name of the marker file that lets a stalled first attempt of `key` resume. */
export function takeoverMarker(key: string): string {
  return `takeover-${key}`;
}

/** A command from the test to a child. */
export type ChildCommand =
  | { readonly id: number; readonly cmd: 'submit'; readonly requests: readonly BatchRequest[] }
  | { readonly id: number; readonly cmd: 'probe'; readonly key?: string }
  | { readonly id: number; readonly cmd: 'open'; readonly key: string }
  | { readonly id: number; readonly cmd: 'stop' };

/** The answer to a `probe`. */
export interface ProbeReply {
  readonly claimCalls: number;
  readonly heartbeatsStarted: number;
  readonly paused: boolean;
}

/** What one submit in a child returned. */
export interface SubmitReply {
  readonly key: string;
  readonly state?: string;
  readonly error?: string;
}

/** What a handler reports while it runs. */
export interface JobReport {
  readonly source: string;
  readonly pid: number;
  readonly key: string;
  readonly attempt: number;
  readonly phase: 'start' | 'end';
  /** At `end`: whether the job's signal had aborted, and why. */
  readonly aborted?: boolean;
  readonly reason?: string;
  /** At `end` of a stalled or held job: what a write after the abort threw. */
  readonly writeError?: string;
  /** At `end` of a held job: heartbeats this process had started for the key when the signal aborted. */
  readonly heartbeatsAtAbort?: number;
}

/** A message from a child to the test. */
export type ChildMessage =
  | { readonly type: 'ready'; readonly pid: number }
  | { readonly type: 'trace'; readonly event: TraceEvent }
  | { readonly type: 'job'; readonly report: JobReport }
  | { readonly type: 'reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: string };
