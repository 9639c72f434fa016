import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { debug } from './debug.js';
import { CHILD_CONFIG_ENV } from './protocol.js';
import type { ChildCommand, ChildConfig, ChildMessage, JobReport } from './protocol.js';
import type { TraceEvent } from './trace.js';

/** The compiled child script, next to this file's directory. */
const CHILD_SCRIPT = fileURLToPath(new URL('../children/worker.js', import.meta.url));
const STDERR_TAIL = 6_000;

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** One worker child, driven over IPC. */
export class ChildHandle {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  readonly ready: Promise<number>;
  #alive = true;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #stderr = '';

  constructor(config: ChildConfig, onMessage: (message: ChildMessage) => void) {
    this.name = config.name;
    this.process = fork(CHILD_SCRIPT, [], {
      env: { ...process.env, [CHILD_CONFIG_ENV]: JSON.stringify(config) },
      execArgv: ['--enable-source-maps'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.process.stderr?.setEncoding('utf8');
    this.process.stderr?.on('data', (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL);
      debug(`${config.name} stderr: ${text.trimEnd()}`);
    });
    this.exited = new Promise<void>((resolve) => {
      this.process.once('exit', (code, signal) => {
        this.#alive = false;
        const why = `${this.name} exited (code ${String(code)}, signal ${String(signal)})`;
        for (const { reject } of this.#pending.values()) reject(new Error(why));
        this.#pending.clear();
        resolve();
      });
    });
    this.ready = new Promise<number>((resolve, reject) => {
      this.process.on('message', (message: ChildMessage) => {
        if (message.type === 'ready') resolve(message.pid);
        else if (message.type === 'reply') this.#settle(message);
        else onMessage(message);
      });
      void this.exited.then(() => {
        reject(new Error(`${this.name} exited before it was ready; stderr: ${this.#stderr}`));
      });
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** The tail of the child's stderr (its manager's error events), for failure messages. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Sends a command and resolves with the child's reply. */
  request<T>(command: WithoutId<ChildCommand>, timeoutMs = 60_000): Promise<T> {
    if (!this.#alive) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name} did not answer ${command.cmd} within ${String(timeoutMs)} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.process.send({ ...command, id });
    });
  }

  /** SIGKILL unless already gone, then wait for the exit. */
  async kill(): Promise<void> {
    if (this.#alive) this.process.kill('SIGKILL');
    await this.exited;
  }

  #settle(message: ChildMessage & { type: 'reply' }): void {
    const waiter = this.#pending.get(message.id);
    if (waiter === undefined) return;
    this.#pending.delete(message.id);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(new Error(`${this.name}: ${message.error}`));
  }
}

/** The worker children of one test, and everything they reported, in arrival order. */
export class ChildPool {
  readonly children: ChildHandle[] = [];
  /** Trace events of every child (and of the test process, which adds its own). */
  readonly traces: TraceEvent[] = [];
  /** Handler start/end reports of every child, in arrival order. */
  readonly jobs: JobReport[] = [];
  readonly #jobListeners: ((report: JobReport) => void)[] = [];

  /** Starts the children and waits until each has built its manager and started its worker. */
  async start(configs: readonly ChildConfig[]): Promise<void> {
    for (const config of configs) {
      this.children.push(
        new ChildHandle(config, (message) => {
          this.#onMessage(message);
        }),
      );
    }
    await Promise.all(this.children.map((c) => c.ready));
  }

  /** Calls `listener` on every job report from now on. */
  onJob(listener: (report: JobReport) => void): void {
    this.#jobListeners.push(listener);
  }

  /** The child of a process id. */
  byPid(pid: number): ChildHandle {
    const child = this.children.find((c) => c.pid === pid);
    if (child === undefined) throw new Error(`no child with pid ${String(pid)}`);
    return child;
  }

  /** Asks every child to stop its worker and close (bounded), then SIGKILLs whatever is left. */
  async stopAll(timeoutMs = 15_000): Promise<void> {
    await Promise.allSettled(this.children.filter((c) => c.alive).map((c) => c.request({ cmd: 'stop' }, timeoutMs)));
    await this.killAll();
  }

  /** SIGKILLs every child still running and waits for each to exit. */
  async killAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.kill()));
  }

  /** stderr tails of every child, for failure messages. */
  stderr(): string {
    return this.children.map((c) => `--- ${c.name} (pid ${String(c.pid)})\n${c.stderr}`).join('\n');
  }

  #onMessage(message: ChildMessage): void {
    if (message.type === 'trace') {
      this.traces.push(message.event);
      const t = message.event;
      if (t.op === 'claim')
        debug(
          `${t.source} claimed ${t.key}#${String(t.attempt)} with ${String(t.leaseExpiresAt - t.at)} ms of lease left`,
        );
      else if (t.op !== 'heartbeat-start' && t.op !== 'enqueue' && !t.ok)
        debug(`${t.source} ${t.op} ${t.key} failed: ${JSON.stringify(t.error)}`);
    } else if (message.type === 'job') {
      this.jobs.push(message.report);
      const r = message.report;
      debug(`${r.source} ${r.phase} ${r.key}#${String(r.attempt)}${r.reason === undefined ? '' : ` (${r.reason})`}`);
      for (const listener of this.#jobListeners) listener(message.report);
    }
  }
}
