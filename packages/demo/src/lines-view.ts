import type { ManagerEvents, RequestManager } from '@armlib/core';

import { between, formatMs } from './format.js';
import type { LiveView, TrackedRequest } from './live-view.js';

/**
 * The live view for CI logs and pipes: one line per transition of a followed request, stamped
 * with the time since the view started. Progress updates are left out (too chatty for a log).
 */
export class LinesView implements LiveView {
  readonly #rm: RequestManager;
  readonly #labels: ReadonlyMap<string, string>;
  readonly #out: (line: string) => void;
  readonly #startedAt = Date.now();
  readonly #unsubscribe: (() => void)[] = [];

  constructor(rm: RequestManager, tracked: readonly TrackedRequest[], out: (line: string) => void) {
    this.#rm = rm;
    this.#labels = new Map(tracked.map((t) => [t.key, t.label]));
    this.#out = out;
  }

  start(): void {
    this.#on('claimed', (e) => `claimed     ${this.#name(e.key)} (attempt ${String(e.attempt)})`);
    this.#on('retried', (e) => {
      const wait = Date.parse(e.retryAt) - Date.now();
      return `retrying    ${this.#name(e.key)}: attempt ${String(e.attempt)} failed (${e.error.message}); next try in ≈${formatMs(Math.max(0, wait))}`;
    });
    this.#on('requeued', (e) => `requeued    ${this.#name(e.key)} (${e.reason})`);
    this.#on('completed', (e) => {
      const formats = Object.keys(e.status.result?.formats ?? {}).join(', ');
      const took = formatMs(between(e.status.startedAt, e.status.finishedAt));
      return `completed   ${this.#name(e.key)} in ${took} [${formats}]`;
    });
    this.#on(
      'failed',
      (e) => `failed      ${this.#name(e.key)} after ${String(e.attempts)} attempts: ${e.error.message}`,
    );
    this.#on('cancelled', (e) => `cancelled   ${this.#name(e.key)}${e.running ? ' (was running)' : ''}`);
    this.#on('expired', (e) => `expired     ${this.#name(e.key)}`);
  }

  log(line: string): void {
    this.#out(`${this.#stamp()} ${line}`);
  }

  stop(): Promise<void> {
    for (const off of this.#unsubscribe.splice(0)) off();
    return Promise.resolve();
  }

  #on<K extends Exclude<keyof ManagerEvents, 'error'>>(
    event: K,
    describe: (payload: ManagerEvents[K]) => string,
  ): void {
    const listener = (payload: ManagerEvents[K]): void => {
      if (this.#labels.has(payload.key)) this.log(describe(payload));
    };
    this.#rm.events.on(event, listener);
    this.#unsubscribe.push(() => {
      this.#rm.events.off(event, listener);
    });
  }

  #name(key: string): string {
    return this.#labels.get(key) ?? key;
  }

  #stamp(): string {
    return `[+${((Date.now() - this.#startedAt) / 1000).toFixed(2).padStart(6)}s]`;
  }
}
