import type { ClaimOptions } from '@armlib/core';

import type { GroupHead } from './record-store.js';

/** The head a claim takes, and the claim interval of its group (kept for the group's history). */
export interface PickedHead {
  readonly head: GroupHead;
  readonly intervalMs: number;
}

/**
 * Brings back to `now` the claim time of every head's group that lies after `now`: the clock
 * stepped back (NTP, a resumed VM) past a claim, or another process's clock runs ahead. Left
 * alone, such a group would count as claimed in the future and, its ready time never past,
 * claim nothing until the clock caught up: minutes or hours for a group without any interval.
 * Rebased, it waits out at most its interval from now. `rebase` writes the new time (the
 * caller's transaction): stored, the wait is bounded across calls and processes; the heads
 * are changed in place for the choice that follows.
 */
export function rebaseFutureClaims(heads: GroupHead[], now: number, rebase: (group: string) => void): void {
  for (const head of heads) {
    if (head.last_claim_at !== null && head.last_claim_at > now) {
      rebase(head.grp);
      head.last_claim_at = now;
    }
  }
}

/**
 * Chooses among the heads of groups with ready work, as the memory queue does (SharQ): a group
 * is a candidate when allowed by `options.groups`, under its `maxConcurrent` and past its ready
 * time (last claim + `minIntervalMs`); the best head priority wins, then the earliest ready
 * time (fairness), then the group claimed least recently, then the name.
 */
export function pickHead(heads: readonly GroupHead[], options: ClaimOptions, now: number): PickedHead | undefined {
  const allowed = options.groups === undefined ? undefined : new Set(options.groups);
  let best: GroupHead | undefined;
  let bestReadyAt = 0;
  let bestInterval = 0;
  for (const head of heads) {
    if (allowed !== undefined && !allowed.has(head.grp)) continue;
    let interval = 0;
    if (Object.hasOwn(options.policies, head.grp)) {
      const policy = options.policies[head.grp];
      if (policy?.maxConcurrent !== undefined && head.running >= policy.maxConcurrent) continue;
      interval = policy?.minIntervalMs ?? 0;
    }
    const readyAt = (head.last_claim_at ?? -Infinity) + interval;
    if (readyAt > now) continue;
    if (best === undefined || outranks(head, readyAt, best, bestReadyAt)) {
      best = head;
      bestReadyAt = readyAt;
      bestInterval = interval;
    }
  }
  return best === undefined ? undefined : { head: best, intervalMs: bestInterval };
}

function outranks(g: GroupHead, readyAt: number, best: GroupHead, bestReadyAt: number): boolean {
  if (g.priority !== best.priority) return g.priority > best.priority;
  if (readyAt !== bestReadyAt) return readyAt < bestReadyAt;
  if (g.last_claim_seq !== best.last_claim_seq) return g.last_claim_seq < best.last_claim_seq;
  return g.grp < best.grp;
}
