import type { ClaimOptions, Clock, Lease } from '@armlib/core';

import { pickCandidate } from './claim-candidates.js';
import type { Candidate, CandidateRead, ClaimHistory } from './claim-candidates.js';
import { needsGroupItem, policyOf } from './groups.js';
import type { GroupItemState } from './groups.js';

/**
 * Failed claim attempts in a row (a candidate lost to another claimer, or its group found full)
 * before a batch gives up; the worker polls again. Each lease starts the count again, so a batch
 * keeps trying as long as that many claims in a row would, each giving up after this many.
 */
export const MAX_CLAIM_TRIES = 16;

/** A batch stops claiming once its first lease is older than the lease length divided by this. */
const LEASE_BUDGET_DIVISOR = 4;

/** What one attempt on a candidate came to: a lease, lost (condition failed), or its group full. */
export type ClaimOutcome = Lease | undefined | 'group-blocked';

/**
 * One `claimMany` call across its rounds (reads of the shard heads): the leases taken, the keys
 * tried, the failed attempts since the last lease, and the batch's time.
 */
export class ClaimBatch {
  readonly leases: Lease[] = [];
  /** The groups the batch may claim from (all when undefined). */
  readonly allowed: ReadonlySet<string> | undefined;
  /** Some group the batch may claim from has a policy kept on a group item (cap or interval). */
  readonly usesGroupItems: boolean;
  readonly #tried = new Set<string>();
  readonly #clock: Clock;
  #failures = 0;
  #now: number;

  constructor(
    readonly options: ClaimOptions,
    readonly max: number,
    clock: Clock,
    now: number,
  ) {
    this.#clock = clock;
    this.#now = now;
    const allowed = options.groups === undefined ? undefined : new Set(options.groups);
    this.allowed = allowed;
    this.usesGroupItems = Object.keys(options.policies).some(
      (g) => needsGroupItem(options.policies[g]) && (allowed === undefined || allowed.has(g)),
    );
  }

  /**
   * Keys this batch claimed or lost to another claimer. Never tried again by the batch: a read
   * made right after the write can still show the entry (the index lags the table on AWS).
   */
  get tried(): ReadonlySet<string> {
    return this.#tried;
  }

  /** The batch's time, as of its last {@link ClaimBatch.tick}. */
  get now(): number {
    return this.#now;
  }

  /**
   * Moves the batch's time to the clock's (never back) and returns it. Each read and each pick
   * take the time then, and the pick's claim uses it: a lease starts when its request is claimed,
   * not when the heads were read (on a slow backend the reads and the earlier claims can take
   * longer than a lease, and a lease that has already run out would be taken back by a sweep
   * elsewhere). And as a claim records its time as the group's last claim, the next pick's time is
   * never before it: a group without an interval stays ready.
   */
  tick(): number {
    this.#now = Math.max(this.#now, this.#clock.now());
    return this.#now;
  }

  /** Full, or given up after {@link MAX_CLAIM_TRIES} failed attempts in a row. */
  get done(): boolean {
    return this.leases.length >= this.max || this.#failures >= MAX_CLAIM_TRIES || this.#overBudget();
  }

  /**
   * The batch holds its leases until it returns, and the worker starts their jobs only then: once
   * its first lease has aged a quarter of the lease length (slow or retried writes), it claims no
   * more, so that no lease it hands over has run out, or come near it, before its job starts.
   */
  #overBudget(): boolean {
    const first = this.leases[0];
    if (first === undefined) return false;
    const startedAt = first.record.startedAt ?? this.#now;
    return this.#clock.now() - startedAt >= this.options.leaseMs / LEASE_BUDGET_DIVISOR;
  }

  claimed(key: string, lease: Lease): void {
    this.leases.push(lease);
    this.#tried.add(key);
    this.#failures = 0;
  }

  lost(key: string): void {
    this.#tried.add(key);
    this.#failures++;
  }

  groupBlocked(): void {
    this.#failures++;
  }
}

/**
 * One round of a batch: one read of the shard heads (and of the group items), whose candidates are
 * picked and claimed one after another, each pick seeing the claims before it (the group items
 * and the process's last claims are updated by each claim).
 */
export class ClaimRound {
  /** Groups whose group item refused a slot this round (full, or claimed from too recently). */
  readonly #blocked = new Set<string>();
  readonly #batch: ClaimBatch;
  readonly #lastClaim: ClaimHistory;
  #candidates: readonly Candidate[] = [];
  #more = false;
  #claimed = 0;
  #lost = 0;

  constructor(
    batch: ClaimBatch,
    /** The group items read for this round, updated by its claims. */
    readonly groupItems: Map<string, GroupItemState>,
    lastClaim: ClaimHistory,
  ) {
    this.#batch = batch;
    this.#lastClaim = lastClaim;
  }

  /** When a group may next be claimed from, or undefined when not now (its cap, its interval). */
  readonly readyTime = (group: string): number | undefined => {
    const policy = policyOf(this.#batch.options, group);
    const item = this.groupItems.get(group);
    if (policy?.maxConcurrent !== undefined && (item?.running ?? 0) >= policy.maxConcurrent) return undefined;
    const now = this.#batch.now;
    const interval = policy?.minIntervalMs ?? 0;
    const last = Math.max(this.#lastClaim.get(group)?.at ?? -Infinity, item?.lastClaimAt ?? -Infinity);
    // A last claim more than an interval ahead of the clock: the clock stepped back (NTP, a resumed
    // VM). Counted as it stands, the group would claim nothing until the clock caught up (without
    // an interval too); it is ready now instead, as the group item's condition agrees (see
    // GroupSlots.take). Less than an interval ahead may be another host's clock: the interval holds.
    const ready = last > now + interval ? now : last + interval;
    return ready > now ? undefined : ready;
  };

  /**
   * Whether a candidate may be claimed at the batch's time (and was not tried by the batch yet: a
   * shard whose head holds only entries tried already is read further).
   */
  readonly eligible = (c: Candidate): boolean => {
    const now = this.#batch.now;
    const allowed = this.#batch.allowed;
    return (
      !this.#batch.tried.has(c.key) &&
      c.readyAt <= now &&
      (c.pendingExpiresAt === undefined || c.pendingExpiresAt > now) &&
      (allowed === undefined || allowed.has(c.group)) &&
      !this.#blocked.has(c.group) &&
      this.readyTime(c.group) !== undefined
    );
  };

  /** Takes the candidates read with {@link ClaimRound.eligible}. */
  load(read: CandidateRead): void {
    this.#candidates = read.candidates;
    this.#more = read.more;
  }

  /**
   * The next candidate to claim and the time to claim it at, or undefined when the batch is done
   * or this round has no candidate left. Eligibility is decided afresh at each pick's time.
   */
  pick(): { c: Candidate; now: number } | undefined {
    if (this.#batch.done) return undefined;
    const now = this.#batch.tick();
    const c = pickCandidate(this.#candidates.filter(this.eligible), {
      tried: this.#batch.tried,
      blocked: this.#blocked,
      readyTime: this.readyTime,
      lastClaim: this.#lastClaim,
    });
    return c === undefined ? undefined : { c, now };
  }

  /** Records the outcome of the attempt on a picked candidate. */
  settle(c: Candidate, outcome: ClaimOutcome): void {
    if (outcome === 'group-blocked') {
      this.#blocked.add(c.group);
      this.#batch.groupBlocked();
    } else if (outcome === undefined) {
      // Its condition failed: another claimer took it (or it changed meanwhile: cancelled, expired).
      this.#lost++;
      this.#batch.lost(c.key);
    } else {
      this.#claimed++;
      this.#batch.claimed(c.key, outcome);
    }
  }

  /**
   * Whether the batch reads the heads again once this round has no candidate left. The worker
   * runtime takes a batch that comes back short for a dry queue and claims again only at its next
   * wake or poll, so a batch reads again whenever another read may find more than what was
   * enqueued meanwhile: after a candidate was lost to another claimer (the heads moved under this
   * read), or after claims from a read that stopped before the end of some shard (more waits
   * behind the pages read). A round that claimed nothing and lost nothing ends the batch: nothing
   * it could see was claimable, and a read again would see the same. Bounded: every round that
   * reads again took a lease (at most `max` of them) or failed an attempt (at most
   * {@link MAX_CLAIM_TRIES} in a row).
   */
  get readAgain(): boolean {
    if (this.#batch.done) return false;
    return this.#lost > 0 || (this.#claimed > 0 && this.#more);
  }
}
