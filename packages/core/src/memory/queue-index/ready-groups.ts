import type { Entry, GroupState } from './entry.js';
import { IndexedHeap } from './indexed-heap.js';

/**
 * The groups that have ready records: as a set (positions sum over them) and in the order in
 * which claims serve groups that have no policy — the highest waiting priority first, then the
 * group claimed least recently, then the claim counter, then the name (the memory queue's
 * `outranks` with a ready time equal to the last claim). A claim then finds its group in
 * O(log groups) plus the groups that have a policy, instead of comparing every group with ready
 * work: with ten thousand groups (one per tenant) that scan cut a worker to a twentieth.
 */
export class ReadyGroups {
  readonly #all = new Set<GroupState>();
  readonly #turns = new IndexedHeap<GroupState>(takesTurnBefore, getTurnPos, setTurnPos);

  /** Every group with ready records. */
  get all(): ReadonlySet<GroupState> {
    return this.#all;
  }

  /** Adds a group whose first record just came ready. */
  add(group: GroupState): void {
    if (this.#all.has(group)) return;
    this.#all.add(group);
    this.#turns.push(group);
  }

  /** Removes a group left with no ready record. */
  delete(group: GroupState): void {
    if (this.#all.delete(group)) this.#turns.remove(group);
  }

  /** Puts a group back in order after its first ready record or its last claim changed. */
  reorder(group: GroupState): void {
    this.#turns.update(group);
  }

  clear(): void {
    this.#all.clear();
    this.#turns.clear();
  }

  /**
   * The first group in turn order whose name has no entry in `policies` (own properties only,
   * as claims read them). Groups with a policy that come before it are set aside and put back,
   * so this costs O((1 + those groups) × log groups).
   */
  firstWithout(policies: object): GroupState | undefined {
    const turns = this.#turns;
    let first = turns.peek();
    if (first === undefined || !Object.hasOwn(policies, first.name)) return first;
    const aside: GroupState[] = [];
    try {
      while (first !== undefined && Object.hasOwn(policies, first.name)) {
        aside.push(first);
        turns.pop();
        first = turns.peek();
      }
    } finally {
      // Even when reading `policies` throws (a proxy): a group left out would never be served again.
      for (const group of aside) turns.push(group);
    }
    return first;
  }
}

/** The turn order of groups without a policy: {@link outranks} with each ready time its last claim. */
function takesTurnBefore(a: GroupState, b: GroupState): boolean {
  return outranks(a, a.lastClaimAt, b, b.lastClaimAt);
}

/**
 * Whether group `g` should be claimed from before `best`: its best record's priority, then the
 * earlier ready time (fairness), then the earlier last claim (ready times that tie within a ms),
 * then the name.
 */
export function outranks(g: GroupState, readyAt: number, best: GroupState, bestReadyAt: number): boolean {
  const p = (g.ready.peek() as Entry).priority;
  const q = (best.ready.peek() as Entry).priority;
  if (p !== q) return p > q;
  if (readyAt !== bestReadyAt) return readyAt < bestReadyAt;
  if (g.lastClaimSeq !== best.lastClaimSeq) return g.lastClaimSeq < best.lastClaimSeq;
  return g.name < best.name;
}

function getTurnPos(group: GroupState): number {
  return group.turnPos;
}

function setTurnPos(group: GroupState, pos: number): void {
  group.turnPos = pos;
}
