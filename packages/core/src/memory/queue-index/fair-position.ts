import type { Entry, GroupState } from './entry.js';

/**
 * 1-based position of a pending entry in serving order, as claims take records: the highest
 * priority first, and within a priority the groups in turn (the group claimed least recently
 * first, as `outranks` picks), each group in arrival order. Undefined unless pending.
 *
 * Every ready record of a higher priority is ahead. At the entry's own priority, where it is the
 * k-th ready record of its group, each other group serves min(its count, k) records before it
 * when that group's turn comes first, min(its count, k − 1) otherwise. A group that still has
 * work of a higher priority takes its turns there first, so at this priority it comes after the
 * groups that have none; among groups alike in that, the present claim order decides (a claim
 * at a higher priority may reorder them: there the position is an estimate off by at most the
 * number of such groups).
 *
 * Runs in O(groups with ready work × their priorities), reading per-group counts only and one
 * Fenwick tree: a status read at a million pending touches as little memory as before.
 */
export function fairPosition(e: Entry, readyGroups: ReadonlySet<GroupState>): number | undefined {
  const own = e.group;
  const rank = own.rank;
  if (!rank.isPending(e)) return undefined;
  const priority = e.priority;
  const k = rank.before(e) + 1;
  const ownAbove = rank.countedAbove(priority);
  const ownHot = ownAbove > 0;
  // Its own group's higher-priority records, those of its priority that arrived before it, then itself.
  let position = ownAbove + k;
  for (const group of readyGroups) {
    if (group === own) continue;
    const above = group.rank.countedAbove(priority);
    position += above;
    const at = group.rank.countedAt(priority);
    if (at === 0) continue;
    const hot = above > 0;
    const first = hot === ownHot ? turnsBefore(group, own) : ownHot;
    position += Math.min(at, first ? k : k - 1);
  }
  return position;
}

/** Whether `g` takes its turn before `other` at equal priority: the claim order of `outranks` without policies. */
function turnsBefore(g: GroupState, other: GroupState): boolean {
  if (g.lastClaimAt !== other.lastClaimAt) return g.lastClaimAt < other.lastClaimAt;
  if (g.lastClaimSeq !== other.lastClaimSeq) return g.lastClaimSeq < other.lastClaimSeq;
  return g.name < other.name;
}
