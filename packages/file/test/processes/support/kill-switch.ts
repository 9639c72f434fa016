import { Worker } from 'node:worker_threads';

import type { EventLog } from './event-log.js';

/** Steps of a worker at which the crash test can have it killed. */
export const KILL_PHASES = ['claim', 'heartbeat', 'write', 'commit', 'complete'] as const;
/** One of {@link KILL_PHASES}. */
export type KillPhase = (typeof KILL_PHASES)[number];

/**
 * The thread that delivers the kill: it waits for the trigger, then for the delay, then
 * SIGKILLs the whole process. Being a thread, it fires even while the main thread is inside a
 * synchronous SQLite transaction, so a kill can land in the middle of a claim or a heartbeat.
 */
const KILLER_THREAD = `
const { workerData } = require('node:worker_threads');
const cells = new Int32Array(workerData.cells);
Atomics.wait(cells, 0, 0);
Atomics.wait(cells, 1, 0, workerData.delayMs);
process.kill(process.pid, 'SIGKILL');
`;

/**
 * Lets a child SIGKILL itself a random moment after a chosen step starts (the step's own
 * code keeps running meanwhile), for kills that land inside claims, heartbeats and commits
 * rather than wherever a timer in the test process happens to fall.
 */
export class KillSwitch {
  readonly #log: EventLog;
  #armed: { phase: KillPhase; cells: Int32Array } | undefined;

  constructor(log: EventLog) {
    this.#log = log;
  }

  /** The next time `phase` starts, the process dies `delayMs` (fractions allowed) later. */
  arm(phase: KillPhase, delayMs: number): void {
    const cells = new Int32Array(new SharedArrayBuffer(8));
    const thread = new Worker(KILLER_THREAD, { eval: true, workerData: { cells: cells.buffer, delayMs } });
    thread.unref();
    this.#armed = { phase, cells };
  }

  /** Called by the logging wrappers as each step starts. */
  at(phase: KillPhase): void {
    const armed = this.#armed;
    if (armed?.phase !== phase) return;
    this.#armed = undefined;
    this.#log.write({ ev: 'kill-armed', reason: phase });
    Atomics.store(armed.cells, 0, 1);
    Atomics.notify(armed.cells, 0);
  }
}
