import type { ClaimOptions, GroupPolicy } from '@armlib/core';

import type { Item } from './codec.js';
import type { Db } from './db.js';
import { Expr } from './expr.js';
import { GROUPS_PK } from './layout.js';

/** Releases a process keeps to retry (see {@link GroupSlots.releaseOrOwe}). */
const MAX_OWED = 10_000;

/** What the table says about a group with a policy. */
export interface GroupItemState {
  /** Last claim time written by any process (groups with a policy only). */
  readonly lastClaimAt?: number;
  /** Running requests holding a slot. */
  readonly running: number;
}

/** Whether claims in a group must go through its group item (a concurrency cap or an interval). */
export function needsGroupItem(policy: GroupPolicy | undefined): boolean {
  return policy !== undefined && (policy.maxConcurrent !== undefined || (policy.minIntervalMs ?? 0) > 0);
}

/** The policy of a group from claim options, when it has one. */
export function policyOf(options: ClaimOptions, group: string): GroupPolicy | undefined {
  return Object.hasOwn(options.policies, group) ? options.policies[group] : undefined;
}

/**
 * Group items (`GROUPS` / group name): the last claim time and a map of lease tokens to running
 * keys, changed only by claims in groups with a policy. A slot is taken by a conditional write
 * before the record is claimed and given back (compensation) when the record claim fails, as
 * there are no transactions; a process dying between the two leaves a slot taken until the sweep
 * repairs it (see {@link GroupSlots.repair}).
 */
export class GroupSlots {
  readonly #ensured = new Set<string>();
  /** Slots seen stale by a repair pass (`group key token` → when), removed if still stale at the next. */
  #suspects = new Map<string, number>();
  #lastRepair = -Infinity;
  /** This process claims in groups with a policy (so it repairs their slots too). */
  #used = false;
  /** Slots this process failed to give back (`group key token` → slot), retried by its next claim or sweep. */
  readonly #owed = new Map<string, { readonly group: string; readonly key: string; readonly token: string }>();

  constructor(private readonly db: Db) {}

  /** Every group item (one Query of one small partition). */
  async readAll(): Promise<Map<string, GroupItemState & { run: Record<string, string> }>> {
    this.#used = true;
    const { items } = await this.db.queryAll(
      {
        KeyConditionExpression: '#pk = :pk',
        ExpressionAttributeNames: { '#pk': 'pk' },
        ExpressionAttributeValues: { ':pk': GROUPS_PK },
        ConsistentRead: true,
      },
      'Query(groups)',
    );
    const out = new Map<string, GroupItemState & { run: Record<string, string> }>();
    for (const item of items) {
      const name = item['sk'];
      if (typeof name !== 'string') continue;
      const run = runOf(item);
      const lc = item['lc'];
      out.set(name, {
        running: Object.keys(run).length,
        run,
        ...(typeof lc === 'number' ? { lastClaimAt: lc } : {}),
      });
    }
    return out;
  }

  /**
   * Takes a slot for `key` under `token`: last claim + interval must have passed and fewer than
   * `maxConcurrent` may run. Returns the previous last-claim time for compensation, or false.
   */
  async take(
    group: string,
    policy: GroupPolicy,
    key: string,
    token: string,
    now: number,
  ): Promise<{ prevLc: number | undefined } | false> {
    await this.#ensure(group);
    const e = new Expr();
    const conditions: string[] = [];
    const interval = policy.minIntervalMs ?? 0;
    // A last claim more than an interval ahead is taken for a clock that stepped back (as
    // ClaimRound.readyTime does): left to block, it would hold the group until the clock caught up.
    // One less than an interval ahead may be another host's clock, and keeps the group waiting.
    if (interval > 0) {
      const lc = e.n('lc');
      conditions.push(
        `(attribute_not_exists(${lc}) OR ${lc} <= ${e.v(now - interval)} OR ${lc} > ${e.v(now + interval)})`,
      );
    }
    if (policy.maxConcurrent !== undefined) conditions.push(`size(${e.n('run')}) < ${e.v(policy.maxConcurrent)}`);
    e.set('lc', now);
    // Keyed by the claim's token, not the request's key: two claimers racing for one request each
    // hold a slot of their own until the loser gives its back, so the cap counts both (keyed by
    // request, the second write replaced the first and the loser's release then freed the winner's).
    e.setRaw(`${e.path('run', token)} = ${e.v(key)}`);
    const out = await this.db.update(
      {
        Key: { pk: GROUPS_PK, sk: group },
        UpdateExpression: e.update(),
        ...(conditions.length > 0 ? { ConditionExpression: conditions.join(' AND ') } : {}),
        ...e.attributes(),
        ReturnValues: 'UPDATED_OLD',
      },
      'UpdateItem(group slot)',
    );
    if (!out.ok) {
      // A retried update whose first attempt landed (its answer lost) fails its own condition, but
      // the slot holds this claim's token (unique to it): the slot is ours. The claim time before
      // it is unknown then; a failed claim keeps `now` as the last claim time (the safe side).
      const old = out.old ?? (await this.db.get({ pk: GROUPS_PK, sk: group }, 'GetItem(group)'));
      return old !== undefined && runOf(old)[token] === key ? { prevLc: now } : false;
    }
    const lc = out.item?.['lc'];
    return { prevLc: typeof lc === 'number' ? lc : undefined };
  }

  /** Gives a slot back (the lease's token must still hold it); restores the last claim time when given. */
  async release(
    group: string,
    key: string,
    token: string,
    restoreLc?: { prev: number | undefined; now: number },
  ): Promise<void> {
    const e = new Expr();
    e.removeRaw(e.path('run', token));
    let condition = `${e.path('run', token)} = ${e.v(key)}`;
    if (restoreLc !== undefined) {
      if (restoreLc.prev === undefined) e.remove('lc');
      else e.set('lc', restoreLc.prev);
      condition += ` AND ${e.n('lc')} = ${e.v(restoreLc.now)}`;
    }
    const out = await this.db.update(
      {
        Key: { pk: GROUPS_PK, sk: group },
        UpdateExpression: e.update(),
        ConditionExpression: condition,
        ...e.attributes(),
        ReturnValues: 'NONE',
      },
      'UpdateItem(group slot)',
    );
    // Someone claimed in between: give the slot back without touching the claim time.
    if (!out.ok && restoreLc !== undefined) await this.release(group, key, token);
  }

  /**
   * {@link GroupSlots.release}, for callers whose record write has already committed (a finish, a
   * requeue) or failed (a claim): a failed release must not fail them. It is kept and retried by
   * {@link GroupSlots.settleOwed}, so the slot comes back at this process's next claim or sweep
   * rather than after two repair passes.
   */
  async releaseOrOwe(
    group: string,
    key: string,
    token: string,
    restoreLc?: { prev: number | undefined; now: number },
  ): Promise<void> {
    try {
      await this.release(group, key, token, restoreLc);
    } catch {
      // Beyond this many the repair pass frees them (as it does after a crash).
      if (this.#owed.size < MAX_OWED) this.#owed.set(`${group} ${key} ${token}`, { group, key, token });
    }
  }

  /** Retries the releases this process owes; never throws (what still fails stays owed). */
  async settleOwed(): Promise<void> {
    for (const [id, slot] of [...this.#owed]) {
      try {
        // Conditional on the token: a slot already gone (repaired meanwhile) is a no-op.
        await this.release(slot.group, slot.key, slot.token);
        this.#owed.delete(id);
      } catch {
        return; // the table still refuses: the rest wait for the next try
      }
    }
  }

  /**
   * Gives back slots whose request no longer runs under that token — left by a process that died
   * between taking a slot and claiming the record, or between finishing it and giving the slot back.
   * A slot is removed only when two passes at least `intervalMs` apart both find it stale, so a
   * claim in progress (milliseconds between its two writes) is never mistaken for a leak. At most
   * one pass per `intervalMs`; only processes that use group slots run it.
   */
  async repair(
    now: number,
    intervalMs: number,
    runningToken: (key: string) => Promise<string | undefined>,
  ): Promise<number> {
    if (!this.#used || now - this.#lastRepair < intervalMs) return 0;
    this.#lastRepair = now;
    const suspects = new Map<string, number>();
    let removed = 0;
    for (const [group, state] of await this.readAll()) {
      for (const [token, key] of Object.entries(state.run)) {
        if ((await runningToken(key)) === token) continue;
        const id = `${group} ${key} ${token}`;
        const since = this.#suspects.get(id);
        if (since !== undefined && now - since >= intervalMs) {
          await this.release(group, key, token);
          removed++;
        } else suspects.set(id, since ?? now);
      }
    }
    this.#suspects = suspects;
    return removed;
  }

  async #ensure(group: string): Promise<void> {
    if (this.#ensured.has(group)) return;
    // A map must exist before a `run.<token>` path can be set in it.
    const e = new Expr();
    e.setRaw(`${e.n('run')} = if_not_exists(${e.n('run')}, ${e.v({})})`);
    await this.db.update(
      { Key: { pk: GROUPS_PK, sk: group }, UpdateExpression: e.update(), ...e.attributes(), ReturnValues: 'NONE' },
      'UpdateItem(group)',
    );
    if (this.#ensured.size > 10_000) this.#ensured.clear();
    this.#ensured.add(group);
  }
}

function runOf(item: Item): Record<string, string> {
  const run = item['run'];
  const out: Record<string, string> = {};
  if (typeof run !== 'object' || run === null) return out;
  for (const [k, v] of Object.entries(run as Record<string, unknown>)) if (typeof v === 'string') out[k] = v;
  return out;
}
