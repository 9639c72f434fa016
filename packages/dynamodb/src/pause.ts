import type { Db } from './db.js';
import { KEY_ATTRS, PAUSE_SK, pauseKey, pauseStateKey, pendingPk } from './layout.js';

/** Attribute of the pause state item: how many pause and resume calls began (their order). */
const EPOCH = 'pn';
/** Attribute of the pause state item: whether the queue reads as paused. */
const PAUSED = 'pp';
/** Attributes of the pause state item: which call took which epoch, so that a repair knows what to finish. */
const CALL = 'pc';
const CALL_EPOCH = 'pe';
/** Attribute of a shard's pause marker: the epoch of the pause that wrote it. */
const MARKER_EPOCH = 'pz';
/**
 * How often a process repairs at most: a repair reads the state item, and while the queue is paused
 * every shard's marker too, which is not worth doing on every sweep.
 */
const REPAIR_EVERY_MS = 60_000;

type Call = 'pause' | 'resume';

/** The pause state item as read. */
interface PauseState {
  readonly epoch: number;
  readonly paused: boolean;
  /**
   * The call that took the epoch; undefined when not recorded with this epoch (an armlib that did
   * not record calls took it).
   */
  readonly call: Call | undefined;
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
 * A call that stops half-way and is not called again (its process died, or its caller gave up)
 * would leave the state saying paused while claims run: a pause that wrote its state but not every
 * marker, a resume that removed the markers but did not set the state to running. Claims look at
 * the markers only, so the two disagree until the next call. The state records which call took
 * the epoch, and {@link PauseControl.repair} (run by the sweeps) finishes that call as it would
 * have finished itself.
 *
 * A table paused by an armlib without the state item (markers only) reads as paused through
 * shard 0's marker, and the next pause or resume writes the state.
 */
export class PauseControl {
  readonly #db: Db;
  readonly #shards: readonly number[];
  /** When this process may next run {@link PauseControl.repair}. */
  #nextRepair = Number.NEGATIVE_INFINITY;

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

  /**
   * Finishes the last pause or resume if it stopped half-way, so that the state and the claims
   * agree: under a state that says paused, a pause's markers missing from some shard are put (with
   * its epoch, and withdrawn as the pause itself would if a later call began meanwhile); a resume's
   * markers are removed and the state set to running (only if no later call took it). Either is
   * what the call itself writes, so a repair racing the call, or another repair, changes nothing.
   * At most once per {@link REPAIR_EVERY_MS} per process (`now`: the caller's clock); a failure
   * throws and the next call tries again. A state without the call recorded (written by an older
   * armlib) is left to the next pause or resume.
   */
  async repair(now: number): Promise<void> {
    if (now < this.#nextRepair) return;
    const state = await this.#state();
    // Running: a marker that outlived a resume is removed by the first claim that meets it.
    if (state?.paused === true && state.call === 'pause') {
      const missing = await this.#shardsWithoutMarker(state.epoch);
      if (missing.length > 0) await this.#placeMarkers(state.epoch, missing);
    } else if (state?.paused === true && state.call === 'resume') {
      await this.#finishResume(state.epoch);
    }
    this.#nextRepair = now + REPAIR_EVERY_MS;
  }

  async #pause(): Promise<void> {
    const epoch = await this.#nextEpoch('pause');
    await this.#placeMarkers(epoch, this.#shards);
  }

  /** Puts `epoch`'s marker on each shard given, then removes them again if a later call began meanwhile. */
  async #placeMarkers(epoch: number, shards: readonly number[]): Promise<void> {
    await Promise.all(shards.map((shard) => this.#putMarker(shard, epoch)));
    const now = await this.#state();
    if (now !== undefined && now.epoch !== epoch) {
      await Promise.all(shards.map((shard) => this.#deleteMarker(shard, 'own', epoch)));
    }
  }

  /** The shards whose head holds no marker of `epoch` or later (reads, cheaper than conditional puts that fail). */
  async #shardsWithoutMarker(epoch: number): Promise<number[]> {
    const found = await Promise.all(
      this.#shards.map(async (shard) => {
        const marker = await this.#db.get(pauseKey(shard), 'GetItem(pause)');
        const at = marker?.[MARKER_EPOCH];
        return typeof at === 'number' && at >= epoch;
      }),
    );
    return this.#shards.filter((_, i) => found[i] !== true);
  }

  async #resume(): Promise<void> {
    await this.#finishResume(await this.#nextEpoch('resume'));
  }

  /** A resume's writes after its epoch: its markers go, then the state says running unless a later call took it. */
  async #finishResume(epoch: number): Promise<void> {
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

  /**
   * Takes the next epoch for `call` and records the call with that epoch (an older armlib's call
   * takes an epoch without recording one, and so leaves no call on record); a pause also sets the
   * state to paused in the same write.
   */
  async #nextEpoch(call: Call): Promise<number> {
    const next = 'if_not_exists(#n, :zero) + :one';
    const out = await this.#db.update(
      {
        Key: pauseStateKey(),
        UpdateExpression: `SET #n = ${next}, #e = ${next}, #c = :call${call === 'pause' ? ', #p = :true' : ''}`,
        ExpressionAttributeNames: {
          '#n': EPOCH,
          '#e': CALL_EPOCH,
          '#c': CALL,
          ...(call === 'pause' ? { '#p': PAUSED } : {}),
        },
        ExpressionAttributeValues: {
          ':zero': 0,
          ':one': 1,
          ':call': call,
          ...(call === 'pause' ? { ':true': true } : {}),
        },
      },
      call === 'pause' ? 'UpdateItem(pause)' : 'UpdateItem(resume)',
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
    const call = item?.[CALL];
    const known = item?.[CALL_EPOCH] === epoch && (call === 'pause' || call === 'resume');
    return { epoch, paused: item?.[PAUSED] === true, call: known ? call : undefined };
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
