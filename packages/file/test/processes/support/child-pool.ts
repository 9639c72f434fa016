import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { CHILD_CONFIG_ENV } from './protocol.js';
import type { ChildCommand, ChildConfig, ChildMessage } from './protocol.js';

/** The compiled child script (tsc puts it next to this file's directory). */
const CHILD_SCRIPT = fileURLToPath(new URL('../children/node.js', import.meta.url));
const STDERR_TAIL = 8_000;

/** Distributes Omit over a union, so each command keeps its own fields. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** How a child ended. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One child process of a test, driven over IPC. */
export class ChildHandle {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<ChildExit>;
  readonly ready: Promise<number>;
  #exit: ChildExit | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #stderr = '';

  constructor(config: ChildConfig) {
    this.name = config.name;
    this.process = fork(CHILD_SCRIPT, [], {
      env: { ...process.env, [CHILD_CONFIG_ENV]: JSON.stringify(config) },
      // No --enable-source-maps: parsing every module's map makes a child start much slower.
      execArgv: [],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.process.stderr?.setEncoding('utf8');
    this.process.stderr?.on('data', (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL);
    });
    this.exited = new Promise<ChildExit>((resolve) => {
      this.process.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        for (const { reject } of this.#pending.values())
          reject(new Error(`${this.name} exited (${this.describeExit()})`));
        this.#pending.clear();
        resolve(this.#exit);
      });
    });
    this.ready = new Promise<number>((resolve, reject) => {
      const onMessage = (message: ChildMessage): void => {
        if (message.type === 'ready') resolve(message.pid);
        else this.#settle(message);
      };
      this.process.on('message', onMessage);
      void this.exited.then(() => {
        reject(new Error(`${this.name} exited before it was ready (${this.describeExit()})`));
      });
    });
    // A child that dies before anyone awaits `ready` must not crash the test run.
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** True until the process has exited. */
  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** Exit code or signal, and the tail of the child's stderr: for failure messages. */
  describeExit(): string {
    const how =
      this.#exit === undefined ? 'running' : `code ${String(this.#exit.code)}, signal ${String(this.#exit.signal)}`;
    return this.#stderr === '' ? how : `${how}; stderr: ${this.#stderr}`;
  }

  /** Sends a command and resolves with the child's reply. */
  request(command: WithoutId<ChildCommand>, timeoutMs = 60_000): Promise<unknown> {
    if (!this.alive) return Promise.reject(new Error(`${this.name} is not running (${this.describeExit()})`));
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name} did not answer ${command.cmd} within ${String(timeoutMs)} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.process.send({ ...command, id });
    });
  }

  /** SIGKILL, then wait until the process is gone. */
  async kill(): Promise<ChildExit> {
    if (this.alive) this.process.kill('SIGKILL');
    return this.exited;
  }

  #settle(message: ChildMessage): void {
    if (message.type !== 'reply') return;
    const waiter = this.#pending.get(message.id);
    if (waiter === undefined) return;
    this.#pending.delete(message.id);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(new Error(`${this.name}: ${message.error}`));
  }
}

/** Every child a test started, so `after` hooks can kill them all even when the test failed. */
export class ChildPool {
  readonly #children: ChildHandle[] = [];

  /** Starts a child and waits until it has opened the backend. */
  async start(config: ChildConfig): Promise<ChildHandle> {
    const child = new ChildHandle(config);
    this.#children.push(child);
    await child.ready;
    return child;
  }

  /** Children still running. */
  get alive(): ChildHandle[] {
    return this.#children.filter((c) => c.alive);
  }

  /** Every child started so far. */
  get all(): readonly ChildHandle[] {
    return this.#children;
  }

  /** SIGKILLs every child still running and waits for each to exit. */
  async killAll(): Promise<void> {
    await Promise.all(this.#children.map((c) => c.kill()));
  }
}
