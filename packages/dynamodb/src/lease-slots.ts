/** Leases remembered at most; the oldest goes first (its slot is then left to the repair pass). */
const MAX_LEASES = 10_000;

/** The group slot a lease of this process holds. */
export interface HeldSlot {
  readonly group: string;
  readonly key: string;
}

/**
 * The group slots held by the leases this process's claims returned, by lease token. A lease
 * normally ends through a transition this process writes and reads back (which gives its slot
 * back); this is for the calls that end in LeaseLostError instead. Such a call may be a misread
 * (its write landed, its answer was lost, and the record moved on before the retry could find its
 * write id) or the lease really was lost: either way the slot must not wait for the repair pass,
 * two passes a minute apart, while its group runs one below its cap.
 */
export class LeaseSlots {
  readonly #held = new Map<string, HeldSlot>();

  /** A claim took a slot for this lease. */
  held(token: string, slot: HeldSlot): void {
    if (this.#held.size >= MAX_LEASES) {
      const oldest = this.#held.keys().next();
      if (oldest.done !== true) this.#held.delete(oldest.value);
    }
    this.#held.set(token, slot);
  }

  /**
   * The lease of `token` on `key` ended (its slot given back, or left to whoever ended it): its
   * slot, if one was remembered. A call naming another key than the lease's is not its lease's end.
   */
  end(token: string, key: string): HeldSlot | undefined {
    const slot = this.#held.get(token);
    if (slot?.key !== key) return undefined;
    this.#held.delete(token);
    return slot;
  }
}
