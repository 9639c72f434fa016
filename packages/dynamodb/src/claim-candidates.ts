import { A } from './codec.js';
import type { Item } from './codec.js';
import type { Db } from './db.js';
import { KEY_ATTRS, PAUSE_SK, pendingPk, WORK_INDEX } from './layout.js';

/** Pending-index pages read per shard by one claim when no candidate was found yet. */
const MAX_CLAIM_PAGES = 10;
const CLAIM_PAGE = 100;

/** Pending item of the work index, as a claim sees it. */
export interface Candidate {
  readonly key: string;
  readonly group: string;
  readonly readyAt: number;
  /** When the request expires unclaimed, if it can. */
  readonly pendingExpiresAt: number | undefined;
  /** Sort key in the pending shard: inverted priority, then seq. */
  readonly sk: string;
}

/** Last claim per group by this process: its time and a process-wide claim counter. */
export type ClaimHistory = Map<string, { at: number; seq: number }>;

/** The candidates one read of the shard heads found. */
export interface CandidateRead {
  /** Every pending entry read, eligible or not, from every shard. */
  readonly candidates: Candidate[];
  /** Some shard holds entries past the pages read (a batch that used these up reads again). */
  readonly more: boolean;
}

/**
 * Reads the head of every pending shard (one Query each, in parallel), more pages of a shard only
 * where nothing eligible was found yet; 'paused' when a shard's head holds the pause marker.
 */
export async function readCandidates(
  db: Db,
  shards: number,
  eligible: (c: Candidate) => boolean,
): Promise<CandidateRead | 'paused'> {
  // Set by any shard's reader (an object, so the flow analysis sees the writes in the callbacks).
  const seen = { paused: false, more: false };
  const perShard = await Promise.all(
    Array.from({ length: shards }, async (_, shard) => {
      const out: Candidate[] = [];
      let start: Item | undefined;
      for (let page = 0; page < MAX_CLAIM_PAGES; page++) {
        const res = await db.queryPage(
          {
            IndexName: WORK_INDEX,
            KeyConditionExpression: '#gk = :gk',
            ExpressionAttributeNames: { '#gk': KEY_ATTRS.workPk },
            ExpressionAttributeValues: { ':gk': pendingPk(shard) },
            Limit: CLAIM_PAGE,
            ...(start === undefined ? {} : { ExclusiveStartKey: start }),
          },
          'Query(claim)',
        );
        let found = false;
        for (const item of res.items) {
          const sk = item[KEY_ATTRS.workSk];
          if (sk === PAUSE_SK) {
            seen.paused = true;
            return out;
          }
          const key = item[A.key];
          const group = item[A.group];
          const readyAt = item[A.readyAt];
          const expiresAt = item[A.pendingExpiresAt];
          if (typeof key !== 'string' || typeof group !== 'string' || typeof sk !== 'string') continue;
          const c: Candidate = {
            key,
            group,
            readyAt: typeof readyAt === 'number' ? readyAt : 0,
            pendingExpiresAt: typeof expiresAt === 'number' ? expiresAt : undefined,
            sk,
          };
          out.push(c);
          if (eligible(c)) found = true;
        }
        start = res.next;
        if (found || start === undefined) break;
      }
      if (start !== undefined) seen.more = true;
      return out;
    }),
  );
  return seen.paused ? 'paused' : { candidates: perShard.flat(), more: seen.more };
}

/** What {@link pickCandidate} weighs besides the candidates. */
export interface PickContext {
  /** Keys already tried by this batch of claims. */
  readonly tried: ReadonlySet<string>;
  /** Groups found full by this round of the batch. */
  readonly blocked: ReadonlySet<string>;
  /** When the group may next be claimed from, or undefined when it may not now. */
  readonly readyTime: (group: string) => number | undefined;
  readonly lastClaim: ClaimHistory;
}

/**
 * The next candidate to try: per group its head (lowest sort key: priority, then seq); the
 * group with the highest head priority, then the earliest ready time (fairness), then the one
 * claimed least recently here, then the name.
 */
export function pickCandidate(candidates: readonly Candidate[], context: PickContext): Candidate | undefined {
  const { tried, blocked, readyTime, lastClaim } = context;
  const heads = new Map<string, Candidate>();
  for (const c of candidates) {
    if (tried.has(c.key) || blocked.has(c.group)) continue;
    const head = heads.get(c.group);
    if (head === undefined || c.sk < head.sk) heads.set(c.group, c);
  }
  let best: { c: Candidate; ready: number; last: number } | undefined;
  for (const c of heads.values()) {
    const ready = readyTime(c.group);
    if (ready === undefined) continue;
    const last = lastClaim.get(c.group)?.seq ?? -1;
    if (best === undefined) {
      best = { c, ready, last };
      continue;
    }
    // Sort keys start with the inverted priority, so comparing their first 7 characters compares priorities.
    const p = c.sk.slice(0, 7);
    const q = best.c.sk.slice(0, 7);
    const better =
      p !== q
        ? p < q
        : ready !== best.ready
          ? ready < best.ready
          : last !== best.last
            ? last < best.last
            : c.group < best.c.group;
    if (better) best = { c, ready, last };
  }
  return best?.c;
}
