import { EventEmitter } from 'node:events';

import { InvalidRequestError } from '../errors.js';

/** Listener of event `K`. */
export type Listener<E, K extends keyof E> = (payload: E[K]) => void;

/**
 * A typed façade over Node's EventEmitter. A throwing listener never breaks the emitter or the
 * operation that emitted: its error is reported on `error` (or dropped when nobody listens).
 */
export class TypedEmitter<E extends { error: { error: unknown; context: string } }> {
  readonly #inner = new EventEmitter({ captureRejections: false });

  constructor() {
    this.#inner.setMaxListeners(0);
  }

  on<K extends keyof E & string>(event: K, listener: Listener<E, K>): this {
    checkListener(event, listener);
    this.#inner.on(event, listener);
    return this;
  }

  once<K extends keyof E & string>(event: K, listener: Listener<E, K>): this {
    checkListener(event, listener);
    this.#inner.once(event, listener);
    return this;
  }

  off<K extends keyof E & string>(event: K, listener: Listener<E, K>): this {
    this.#inner.off(event, listener);
    return this;
  }

  /** Number of listeners of an event. */
  listenerCount(event: keyof E & string): number {
    return this.#inner.listenerCount(event);
  }

  /** Emits to every listener; returns whether any listened. */
  emit<K extends keyof E & string>(event: K, payload: E[K]): boolean {
    if (this.#inner.listenerCount(event) === 0) return false;
    // rawListeners keeps `once` wrappers, so calling one also removes it (listeners() would unwrap it).
    for (const listener of this.#inner.rawListeners(event) as Listener<E, K>[]) {
      try {
        listener(payload);
      } catch (error) {
        if (event !== 'error') this.emit('error', { error, context: `listener of '${event}'` });
      }
    }
    return true;
  }

  removeAllListeners(): void {
    this.#inner.removeAllListeners();
  }
}

/** A subscription from plain JavaScript may pass anything: refused with a typed error naming it. */
function checkListener(event: unknown, listener: unknown): void {
  if (typeof event !== 'string') throw new InvalidRequestError('event', `must be an event name, got ${typeof event}`);
  if (typeof listener !== 'function') {
    throw new InvalidRequestError(
      'listener',
      `must be a function, got ${listener === null ? 'null' : typeof listener}`,
    );
  }
}
