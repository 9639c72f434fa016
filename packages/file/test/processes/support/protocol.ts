import type { BatchRequest, ManagerSettings } from '@armlib/core';

import type { KillPhase } from './kill-switch.js';

/** How a child process is set up (passed as JSON in {@link CHILD_CONFIG_ENV}). */
export interface ChildConfig {
  /** For messages: `worker-1`, `submitter-2`… */
  readonly name: string;
  /** The armlib directory shared by every process. */
  readonly dir: string;
  /** The shared append-only event log. */
  readonly logFile: string;
  /** Where gate files appear (a `gate` job waits for its file). */
  readonly gateDir: string;
  readonly settings: Partial<ManagerSettings>;
  /** Present: the child runs a worker with these options. */
  readonly worker?: { readonly concurrency: number; readonly leaseMs: number; readonly pollMs: number };
  /** True: the worker starts only on a `work` command (a started, idle standby replaces a killed worker at once). */
  readonly deferWorker?: boolean;
}

/** Environment variable carrying the {@link ChildConfig}. */
export const CHILD_CONFIG_ENV = 'ARMLIB_TEST_CHILD';

/** A command from the test to a child. */
export type ChildCommand =
  | { readonly id: number; readonly cmd: 'submit'; readonly requests: readonly BatchRequest[] }
  | { readonly id: number; readonly cmd: 'cancel'; readonly key: string }
  | { readonly id: number; readonly cmd: 'work' }
  | { readonly id: number; readonly cmd: 'arm'; readonly phase: KillPhase; readonly delayMs: number }
  | { readonly id: number; readonly cmd: 'stop' };

/** What one submit in a child returned. */
export interface SubmitOutcome {
  readonly key: string;
  readonly state?: string;
  readonly error?: string;
}

/** A message from a child to the test. */
export type ChildMessage =
  | { readonly type: 'ready'; readonly pid: number }
  | { readonly type: 'reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: string };
