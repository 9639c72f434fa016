import { randomUUID } from 'node:crypto';

import { BackendError } from '@armlib/core';

/** The transitions by which a lease holder ends or hands back its run. */
export type LeaseTransition = 'complete' | 'fail' | 'retry' | 'release' | 'cancel';

/** Transitions remembered at most; the oldest goes first (a worker calls again within seconds). */
const MAX_REMEMBERED = 10_000;

/**
 * The write ids of lease holders' transitions whose answer never came: a retryable error after
 * the SDK's own retries, when the write may or may not have landed. The worker runtime calls the
 * same transition again under the same lease, and that call writes the same id, so that when the
 * first write had landed, the second finds its id on the record and takes the write for its own
 * (and does what follows it: the group slot, the counts) instead of reporting the lease lost.
 *
 * Only an uncertain transition is remembered: once one succeeded or was refused, the next call
 * under that lease gets a fresh id and is refused, as the SPI wants (a lease ends once).
 */
export class UncertainWrites {
  readonly #ids = new Map<string, string>();

  /** Runs `write` with the id of this transition: the one its last uncertain call used, else a new one. */
  async run<T>(transition: LeaseTransition, token: string, write: (writeId: string) => Promise<T>): Promise<T> {
    const slot = `${transition}:${token}`;
    const writeId = this.#ids.get(slot) ?? randomUUID();
    this.#ids.delete(slot);
    try {
      return await write(writeId);
    } catch (error) {
      if (BackendError.is(error) && error.retryable) this.#remember(slot, writeId);
      throw error;
    }
  }

  /** The id an uncertain call of this transition used, if one is remembered. */
  peek(transition: LeaseTransition, token: string): string | undefined {
    return this.#ids.get(`${transition}:${token}`);
  }

  #remember(slot: string, writeId: string): void {
    if (this.#ids.size >= MAX_REMEMBERED) {
      const oldest = this.#ids.keys().next();
      if (oldest.done !== true) this.#ids.delete(oldest.value);
    }
    this.#ids.set(slot, writeId);
  }
}

/**
 * Writes other than a lease holder's whose outcome could not be learnt (the write threw, and so
 * did the read that should have told): a sweep's transition, a claim. No caller calls them again,
 * so the process itself settles them later (its next sweep or claim) by reading the record: kept
 * by an id until then, at most `max` of them (beyond that the new ones are not kept; what they left
 * behind is what a process dying there leaves, and the sweep and the repair pass deal with it).
 */
export class UnsettledWrites<T> {
  readonly #pending = new Map<string, T>();

  constructor(private readonly max = MAX_REMEMBERED) {}

  get size(): number {
    return this.#pending.size;
  }

  remember(id: string, write: T): void {
    if (this.#pending.size < this.max) this.#pending.set(id, write);
  }

  /** The writes kept, oldest first (a copy: the caller forgets them as it settles them). */
  list(): [string, T][] {
    return [...this.#pending];
  }

  forget(id: string): void {
    this.#pending.delete(id);
  }
}
