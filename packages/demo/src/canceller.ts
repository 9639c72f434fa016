import type { RequestManager } from '@armlib/core';

/**
 * Cancels chosen requests once a worker has claimed them (so the cancel reaches a running job,
 * not a queued one), after `delayMs` of real time; with `delayMs` 0 no timer is involved.
 */
export class CancelWhenRunning {
  readonly #rm: RequestManager;
  readonly #waiting: Set<string>;
  readonly #delayMs: number;
  readonly #log: (key: string, line: string) => void;
  readonly #started: Promise<void>[] = [];
  /** Cancels not yet due, with the function that settles each one's promise. */
  readonly #due = new Map<NodeJS.Timeout, () => void>();
  readonly #onClaimed = (e: { key: string }): void => {
    if (!this.#waiting.delete(e.key)) return;
    if (this.#delayMs <= 0) {
      this.#started.push(this.#cancel(e.key));
      return;
    }
    this.#started.push(
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#due.delete(timer);
          resolve(this.#cancel(e.key));
        }, this.#delayMs);
        this.#due.set(timer, resolve);
      }),
    );
  };

  /** `log` receives the key a line is about and the line. */
  constructor(rm: RequestManager, keys: Iterable<string>, delayMs: number, log: (key: string, line: string) => void) {
    this.#rm = rm;
    this.#waiting = new Set(keys);
    this.#delayMs = delayMs;
    this.#log = log;
    rm.events.on('claimed', this.#onClaimed);
  }

  /** Stops watching, drops cancels not yet due, and waits for those under way. */
  async finish(): Promise<void> {
    this.#rm.events.off('claimed', this.#onClaimed);
    for (const [timer, settle] of this.#due) {
      clearTimeout(timer);
      settle();
    }
    this.#due.clear();
    await Promise.all(this.#started);
  }

  async #cancel(key: string): Promise<void> {
    try {
      const status = await this.#rm.cancel(key);
      const how = status.cancelRequested === true ? 'the worker is asked to stop' : `now ${status.state}`;
      this.#log(key, `cancel while running: ${how}`);
    } catch (error) {
      this.#log(key, `cancel failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
