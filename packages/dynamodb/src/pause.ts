import type { Db } from './db.js';
import { KEY_ATTRS, PAUSE_SK, pauseKey, pauseStateKey, pendingPk } from './layout.js';

/** Attribute of the pause state item: how many pause and resume calls began (their order). */
const EPOCH = 'pn';
/** Attribute of the pause state item: whether the queue reads as paused. */
const PAUSED = 'pp';
/** Attribute of a shard's pause marker: the epoch of the pause that wrote it. */
const MARKER_EPOCH = 'pz';

/** The pause state item as read. */
interface PauseState {
  readonly epoch: number;
  readonly paused: boolean;
}

/**
 * Pause and resume on DynamoDB. A marker item at the head of every pending shard stops claims (a
 * claim's Query meets it first, at no extra cost); one state item says whether the queue is paused,
 * and orders the calls: each pause or resume takes the next epoch from it.
 *
 * Two processes may pause and resume at once, and their writes to the shards interleave. Without
 * an order, a pause's marker landing after a concurrent resume removed the markers would stop one
 * shard, and so every claim, under a state that says running. With epochs:
 *
 * - a pause sets the state (paused, next epoch) first, writes its markers only over older ones,
 *   then reads the state again: if a later call began meanwhile, its own markers may have landed
 *   after that call's deletes, so it removes the markers still carrying its epoch;
 * - a resume takes the next epoch, removes the markers older than it, and sets the state to
 *   running last, only if no later call took the state meanwhile.
 *
 * So a call that fails half-way leaves the queue reading as paused (calling again finishes it),
 * and the last call to begin decides. If a pausing process dies between its marker writes and its
 * check while another resumes, a marker can still outlive the resume: a claim that meets a marker
 * under a state that says running removes the markers older than the state's epoch
 * ({@link PauseControl.clearStale}).
 *
 * A table paused by an armlib without the state item (markers only) reads as paused through
 * shard 0's marker, and the next pause or resume writes the state.
 */
export class PauseControl {
  readonly #db: Db;
  readonly #shards: readonly number[];

  constructor(db: Db, shards: number) {
    this.#db = db;
    this.#shards = Array.from({ length: shards }, (_, i) => i);
  }

  async setPaused(paused: boolean): Promise<void> {
    if (paused) await this.#pause();
    else await this.#resume();
  }

  async isPaused(): Promise<boolean> {
    const state = await this.#state();
    if (state !== undefined) return state.paused;
    return (await this.#db.get(pauseKey(0), 'GetItem(pause)')) !== undefined;
  }

  /**
   * Called when a claim met a pause marker: true when the queue is paused. When the state says
   * running, the markers older than its epoch are left over from a pause that lost a race with a
   * resume (see the class comment): they go, and the next claim proceeds.
   */
  async clearStale(): Promise<boolean> {
    const state = await this.#state();
    if (state === undefined || state.paused) return true;
    await Promise.all(this.#shards.map((shard) => this.#deleteMarker(shard, 'older', state.epoch)));
    return false;
  }

  async #pause(): Promise<void> {
    const epoch = await this.#nextEpoch(true);
    await Promise.all(this.#shards.map((shard) => this.#putMarker(shard, epoch)));
    const now = await this.#state();
    if (now !== undefined && now.epoch !== epoch) {
      await Promise.all(this.#shards.map((shard) => this.#deleteMarker(shard, 'own', epoch)));
    }
  }

  async #resume(): Promise<void> {
    const epoch = await this.#nextEpoch(undefined);
    await Promise.all(this.#shards.map((shard) => this.#deleteMarker(shard, 'older', epoch)));
    // Failing the condition means a later pause or resume owns the state: it decides.
    await this.#db.update(
      {
        Key: pauseStateKey(),
        UpdateExpression: 'SET #p = :false',
        ConditionExpression: '#n = :epoch',
        ExpressionAttributeNames: { '#p': PAUSED, '#n': EPOCH },
        ExpressionAttributeValues: { ':false': false, ':epoch': epoch },
      },
      'UpdateItem(resume)',
    );
  }

  /** Takes the next epoch; a pause also sets the state to paused in the same write. */
  async #nextEpoch(paused: true | undefined): Promise<number> {
    const out = await this.#db.update(
      {
        Key: pauseStateKey(),
        UpdateExpression: paused === true ? 'ADD #n :one SET #p = :true' : 'ADD #n :one',
        ExpressionAttributeNames: paused === true ? { '#n': EPOCH, '#p': PAUSED } : { '#n': EPOCH },
        ExpressionAttributeValues: paused === true ? { ':one': 1, ':true': true } : { ':one': 1 },
      },
      paused === true ? 'UpdateItem(pause)' : 'UpdateItem(resume)',
    );
    const epoch = out.ok ? out.item?.[EPOCH] : undefined;
    // An unconditional update cannot fail its condition; the item always comes back with ALL_NEW.
    if (typeof epoch !== 'number') throw new Error('the pause state update returned no epoch');
    return epoch;
  }

  async #state(): Promise<PauseState | undefined> {
    const item = await this.#db.get(pauseStateKey(), 'GetItem(pause)');
    const epoch = item?.[EPOCH];
    if (typeof epoch !== 'number') return undefined;
    return { epoch, paused: item?.[PAUSED] === true };
  }

  async #putMarker(shard: number, epoch: number): Promise<void> {
    // A failed condition means a later pause's marker is there already: it stays.
    await this.#db.put(
      {
        Item: {
          ...pauseKey(shard),
          [KEY_ATTRS.workPk]: pendingPk(shard),
          [KEY_ATTRS.workSk]: PAUSE_SK,
          [MARKER_EPOCH]: epoch,
        },
        ConditionExpression: 'attribute_not_exists(#z) OR #z < :epoch',
        ExpressionAttributeNames: { '#z': MARKER_EPOCH },
        ExpressionAttributeValues: { ':epoch': epoch },
      },
      'PutItem(pause)',
    );
  }

  /** Deletes a shard's marker if it is `epoch`'s own, or older than `epoch` (markers with no epoch are older). */
  async #deleteMarker(shard: number, which: 'own' | 'older', epoch: number): Promise<void> {
    await this.#db.delete(
      {
        Key: pauseKey(shard),
        ConditionExpression: which === 'own' ? '#z = :epoch' : 'attribute_not_exists(#z) OR #z < :epoch',
        ExpressionAttributeNames: { '#z': MARKER_EPOCH },
        ExpressionAttributeValues: { ':epoch': epoch },
      },
      'DeleteItem(pause)',
    );
  }
}
