import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  checkClaimMax,
  ClosedError,
  ConflictError,
  InvalidRequestError,
  LeaseLostError,
  QUEUE_STATES,
  QueueFullError,
  QuotaExceededError,
  SystemClock,
  TOKENS,
} from '@armlib/core';
import type {
  ActivityBucket,
  CancelOptions,
  CancelResult,
  ClaimOptions,
  Clock,
  CompleteOptions,
  EnqueueOptions,
  EnqueueResult,
  ErrorInfo,
  FailOptions,
  HeartbeatOptions,
  HeartbeatResult,
  Lease,
  NewQueueEntry,
  QueueCapabilities,
  QueueCounts,
  QueueListPage,
  QueueListQuery,
  QueueManager,
  QueueRecord,
  QueueState,
  ReleaseOptions,
  SweepOptions,
  SweepResult,
  UriStats,
  WorkerCapacity,
} from '@armlib/core';
import { inject, injectable } from 'inversify';

import {
  A,
  asSeenAt,
  decodeRecord,
  encodeError,
  encodeRequest,
  isExpired,
  isFinished,
  isLapsed,
  lapsedView,
  ttlSeconds,
} from './codec.js';
import type { Item } from './codec.js';
import { ClaimBatch, ClaimRound } from './claim-batch.js';
import type { ClaimOutcome } from './claim-batch.js';
import { readCandidates } from './claim-candidates.js';
import type { Candidate, ClaimHistory } from './claim-candidates.js';
import { Db } from './db.js';
import type { WriteOutcome } from './db.js';
import { Expr } from './expr.js';
import { GroupSlots, needsGroupItem, policyOf } from './groups.js';
import type { GroupItemState } from './groups.js';
import {
  KEY_ATTRS,
  leasePk,
  leaseSk,
  leaseSkBound,
  leaseSkDeadline,
  PENDING_SK_MIN,
  pendingPk,
  pendingSk,
  recordPk,
  recordSk,
  SeqSource,
  WORK_INDEX,
  workShard,
} from './layout.js';
import { itemSize, MAX_ENQUEUE_ITEM_BYTES, TRANSITION_ROOM } from './item-size.js';
import { LiveCounts } from './live-counts.js';
import type { CapReservation } from './live-counts.js';
import { readDynamoOptions, resolveClient, resolveDynamoOptions } from './options.js';
import type { DynamoQueueManagerOptions, ResolvedDynamoOptions } from './options.js';
import { PauseControl } from './pause.js';
import { ActivityBuffer, DurationBuffer, WorkerRegistry } from './side-stats.js';
import { ensureTable } from './table.js';
import { checkTableLayout } from './table-layout.js';
import type { EnsureTableResult } from './table.js';
import { LeaseSlots } from './lease-slots.js';
import { UncertainWrites, UnsettledWrites } from './uncertain-writes.js';

const LEASE_EXPIRED: ErrorInfo = Object.freeze({
  code: 'LEASE_EXPIRED',
  message: 'lease expired on the last attempt',
  retryable: false,
});
const STATE_SET: ReadonlySet<string> = new Set(QUEUE_STATES);
/** Least time between two passes of the group-slot repair (and before a stale slot goes), ms. */
const SLOT_REPAIR_MS = 60_000;
/** How long a record read by `get` is reused by `position` (same status read), ms of real time. */
const READ_REUSE_MS = 250;
/** Expiries this process applied outside a sweep, kept for the next one to report; beyond this they are not reported. */
const MAX_UNREPORTED = 100_000;

/** What a sweep writes of a record it finds due. */
type SweepKind = 'requeued' | 'failed' | 'cancelled' | 'expired';

/** A sweep's transition write: enough to recognise it on the record and report it. */
interface SweepWrite {
  readonly key: string;
  readonly writeId: string;
  readonly kind: SweepKind;
  /** The expired lease (none for a pending expiry): its token, and the group its slot may be in. */
  readonly lease: { readonly token: string; readonly group: string } | undefined;
  /** The sweep's time. */
  readonly at: number;
}

/** A claim whose outcome is unknown: its record may run under its token, held by no one. */
interface UnsettledClaim {
  readonly key: string;
  readonly token: string;
  readonly group: string;
  /** It took a group slot (under its token). */
  readonly slot: boolean;
}

/** A list position: the last record listed, by seq and then key (two processes may draw one seq). */
interface ListCursor {
  readonly seq: number;
  readonly key: string;
}

function encodeCursor(at: ListCursor): string {
  return Buffer.from(`${String(at.seq)}:${at.key}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): ListCursor {
  const match = /^(\d{1,16}):([A-Za-z0-9._-]{1,200})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const seq = Number(match?.[1]);
  const key = match?.[2];
  if (key === undefined || !Number.isSafeInteger(seq) || encodeCursor({ seq, key }) !== cursor) {
    throw new InvalidRequestError('cursor', 'is not a cursor returned by a previous list call');
  }
  return { seq, key };
}

/** List order: seq, then key. */
function compareListed(a: ListCursor, b: ListCursor): number {
  return a.seq - b.seq || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

function checkLeaseMs(leaseMs: number): void {
  if (!(leaseMs > 0) || !Number.isFinite(leaseMs)) {
    throw new InvalidRequestError('leaseMs', `must be a positive number of ms, got ${String(leaseMs)}`);
  }
}

/**
 * The DynamoDB queue: many processes on many hosts share one table.
 *
 * - Records live in `R#<n>` partitions (n from a hash of the key), so a key is one GetItem away
 *   and list/counts/prune Query the partitions — there is no Scan anywhere.
 * - Pending records carry the keys of the sparse, sharded `work` index (`P#<shard>`, sorted by
 *   inverted priority then seq); a claim Queries the shards, picks the best ready candidate
 *   (priority, FIFO, group fairness, intervals, caps, pause) and claims it with a conditional
 *   UpdateItem that issues a fresh random lease token and moves the entry to the lease partition
 *   (`L#<shard>`, sorted by the first lease deadline) where sweeps find expired leases. A batch
 *   (`claimMany`) claims one candidate after another from one such read.
 * - Every transition is a conditional write; every fenced call conditions on `leaseToken = :t`.
 * - Finished records carry a TTL attribute (`xt`, epoch seconds) from `retainUntil`; reads ignore
 *   records past it, as DynamoDB deletes them lazily (and prune deletes them where TTL does not run).
 * - Seq numbers come from the clock (ms × 2^11 + random bits), not from a counter item; activity and
 *   duration statistics are buffered in the process and flushed periodically.
 *
 * Due transitions are written by {@link DynamoQueueManager.sweep} only, but reads do not wait for
 * it: a pending record past its pending deadline reads as expired (from its deadline on, as the
 * memory and file queues report it), counts in no position, and an enqueue of its key replaces it
 * (the next sweep of that process reports the expiry). See the package README for the request-unit
 * cost of a lifecycle and the bounds of what is approximate.
 */
@injectable()
export class DynamoQueueManager implements QueueManager {
  /**
   * Positions are estimates; shared by every process on the table; 1 ms resolution. `capacity()`
   * has no running count: the leases are counted nowhere without a Query per shard (read units on
   * every capacity read), so ETAs assume every slot free.
   */
  readonly capabilities: QueueCapabilities = Object.freeze({
    exactPosition: false,
    sharedAcrossProcesses: true,
    clockGranularityMs: 1,
    reportsBusy: false,
  });

  /** The table this queue uses. */
  readonly tableName: string;
  /** This instance's id (names its activity items). */
  readonly instanceId = randomUUID();

  readonly #clock: Clock;
  readonly #options: ResolvedDynamoOptions;
  readonly #client: DynamoDBClient;
  readonly #ownsClient: boolean;
  readonly #db: Db;
  readonly #seq = new SeqSource();
  readonly #groups: GroupSlots;
  readonly #activity: ActivityBuffer;
  readonly #durations: DurationBuffer;
  readonly #workers: WorkerRegistry;
  readonly #live: LiveCounts;
  readonly #pause: PauseControl;
  /** Last claim per group by this process (fairness between groups without a policy item). */
  readonly #lastClaim: ClaimHistory = new Map();
  readonly #uncertain = new UncertainWrites();
  /** Group slots of the leases this process's claims returned, for the calls that end in LeaseLostError. */
  readonly #leaseSlots = new LeaseSlots();
  /** Sweep transitions whose outcome is unknown, by write id: the next sweep reads and reports them. */
  readonly #unsettledSweeps = new UnsettledWrites<SweepWrite>();
  /** Claims whose outcome is unknown, by lease token: the next claim or sweep undoes them. */
  readonly #unsettledClaims = new UnsettledWrites<UnsettledClaim>();
  #claimSeq = 0;
  #ready: Promise<EnsureTableResult | undefined> | undefined;
  /** The check of this process's shard options against the table's, once (again after a failure). */
  #layoutChecked: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #lastRead: { key: string; record: QueueRecord | undefined; at: number } | undefined;
  /**
   * Lapsed pending records this process replaced (enqueue) or pruned before a sweep wrote their
   * expiry: the next sweep of this process reports them, as the memory queue reports the expiries
   * it applied lazily.
   */
  #unreported: QueueRecord[] = [];

  /**
   * @param options - see {@link DynamoQueueManagerOptions}; invalid values throw `ConfigError`.
   * @param clock - time source of every timestamp and expiry.
   */
  constructor(
    @inject(TOKENS.QueueOptions) options: DynamoQueueManagerOptions = {},
    @inject(TOKENS.Clock) clock: Clock = new SystemClock(),
  ) {
    const given = readDynamoOptions(options);
    this.#options = resolveDynamoOptions(given);
    this.tableName = this.#options.tableName;
    this.#clock = clock;
    const { client, owned } = resolveClient(given);
    this.#client = client;
    this.#ownsClient = owned;
    this.#db = new Db(client, this.tableName);
    this.#groups = new GroupSlots(this.#db);
    this.#activity = new ActivityBuffer(this.#db, this.instanceId);
    this.#durations = new DurationBuffer(this.#db, this.#options.statsCacheMs);
    this.#workers = new WorkerRegistry(this.#db, this.#options.statsCacheMs);
    this.#live = new LiveCounts(this.#db, this.#options.shards, this.#options.capsRefreshMs);
    this.#pause = new PauseControl(this.#db, this.#options.shards);
  }

  /** The underlying SDK client (for middleware in tests and the cost helper). */
  get client(): DynamoDBClient {
    return this.#client;
  }

  /** Creates the table when missing (idempotent); see {@link ensureTable}. */
  async ensureTable(): Promise<EnsureTableResult> {
    // Not through #begin, which calls this method: a closed manager's client may be destroyed.
    this.#checkOpen();
    return ensureTable(this.#client, this.tableName);
  }

  // ---------------------------------------------------------------- enqueue

  async enqueue(entry: NewQueueEntry, options: EnqueueOptions): Promise<EnqueueResult> {
    const now = await this.#begin();
    if (!Number.isSafeInteger(entry.maxAttempts) || entry.maxAttempts < 1) {
      throw new InvalidRequestError('maxAttempts', `must be an integer >= 1, got ${String(entry.maxAttempts)}`);
    }
    const request = entry.request;
    const key = entry.key;
    const limits = options.limits;
    const capped =
      limits.maxQueueLength !== undefined ||
      limits.groupMaxQueueLength !== undefined ||
      (limits.maxPendingPerOwner !== undefined && request.owner !== undefined);
    for (let attempt = 0; attempt < 8; attempt++) {
      let place: CapReservation | undefined;
      if (capped) {
        const reserved = await this.#live.reserve(limits, key, request.group, request.owner, now);
        if (!('commit' in reserved)) {
          // A live record is returned as is, without any cap check, and so is a finished one that
          // keepFinishedSince keeps (as the put below would): the caps are about adding records.
          const current = await this.#read(key, now);
          if (current !== undefined && !isFinished(current.state))
            return { outcome: 'existing', record: (await this.#joinSticky(current, entry, now)) ?? current };
          if (kept(current, options.keepFinishedSince)) return { outcome: 'existing', record: current };
          if (reserved.kind === 'owner') throw new QuotaExceededError(reserved.owner, reserved.limit);
          throw reserved.group === undefined
            ? new QueueFullError(reserved.limit)
            : new QueueFullError(reserved.limit, reserved.group);
        }
        place = reserved;
      }
      // The place under the caps is kept only when this put created the record; any other way out
      // of this attempt (existing, a retry, a thrown error) gives it back.
      try {
        const result = await this.#putOnce(entry, options, now, place);
        if (result === 'retry') continue;
        return result;
      } finally {
        place?.cancel();
      }
    }
    throw new ConflictError(`enqueue of '${key}' kept racing with other writers; try again`);
  }

  /**
   * One conditional put of an enqueue: its result, or 'retry' when the live record it met finished
   * meanwhile. `place` is the enqueue's place under the caps, kept when the put created the record.
   */
  async #putOnce(
    entry: NewQueueEntry,
    options: EnqueueOptions,
    now: number,
    place: CapReservation | undefined,
  ): Promise<EnqueueResult | 'retry'> {
    const request = entry.request;
    const key = entry.key;
    const seq = this.#seq.next(now);
    // Seqs of different processes can coincide; only this id tells our own landed put apart.
    const writeId = randomUUID();
    const shard = workShard(key, this.#options.shards);
    const sk = pendingSk(request.priority, seq);
    const item: Item = {
      [KEY_ATTRS.pk]: recordPk(key, this.#options.recordShards),
      [KEY_ATTRS.sk]: recordSk(key),
      [A.key]: key,
      [A.request]: encodeRequest(request),
      [A.state]: 'pending',
      [A.group]: request.group,
      [A.priority]: request.priority,
      [A.seq]: seq,
      [A.submittedAt]: now,
      [A.readyAt]: now,
      [A.attempts]: 0,
      [A.maxAttempts]: entry.maxAttempts,
      [A.writeId]: writeId,
      [A.enqueueId]: writeId,
      ps: sk,
      [KEY_ATTRS.workPk]: pendingPk(shard),
      [KEY_ATTRS.workSk]: sk,
    };
    if (request.sticky === true) item[A.sticky] = true;
    if (request.owner !== undefined) item[A.owner] = request.owner;
    if (entry.pendingExpiresAt !== undefined) item[A.pendingExpiresAt] = entry.pendingExpiresAt;
    // Core's request limits (params and body of 256 KiB each) allow more than one DynamoDB item
    // holds; the put would fail with a ValidationException that no retry can cure.
    const size = itemSize(item);
    if (size > MAX_ENQUEUE_ITEM_BYTES) {
      throw new InvalidRequestError(
        'request',
        `is ${String(size)} bytes as a queue record, over the DynamoDB item size limit (${String(MAX_ENQUEUE_ITEM_BYTES)} bytes: 400 KB less ${String(TRANSITION_ROOM)} kept for what later transitions write)`,
      );
    }
    const e = new Expr();
    const keep = options.keepFinishedSince;
    // A finished record is replaced, unless it finished at or after keepFinishedSince.
    const finished = `NOT (${e.n(A.state)} IN (${e.v('pending')}, ${e.v('running')}))`;
    const replaceable =
      keep === undefined
        ? finished
        : `(${finished} AND (attribute_not_exists(${e.n(A.finishedAt)}) OR ${e.n(A.finishedAt)} < ${e.v(keep)}))`;
    // Never over the record this very put made (its first attempt landed, its answer was lost, and
    // the request has run since): the SDK's retry must not queue it again.
    const notOurs = `(attribute_not_exists(${e.n(A.enqueueId)}) OR ${e.n(A.enqueueId)} <> ${e.v(writeId)})`;
    // A pending record past its deadline is replaced too (reads report it expired already; it holds
    // no result, so keepFinishedSince does not keep it), but not by this put: see #overLapsed.
    const condition = `attribute_not_exists(${e.n(KEY_ATTRS.pk)}) OR (${replaceable} AND ${notOurs})`;
    let out = await this.#db.put(
      { Item: item, ConditionExpression: condition, ReturnValues: 'ALL_OLD', ...e.attributes() },
      'PutItem(enqueue)',
    );
    this.#forget(key);
    // DynamoDB returns the item that failed the condition; dynalite does not, so it is read.
    let oldItem = out.ok ? undefined : (out.old ?? (await this.#db.get(this.#recordKey(key), 'GetItem(record)')));
    // The lapsed record this enqueue replaced: its expiry is reported from here, as it is never swept.
    let replaced: QueueRecord | undefined;
    const seen = decodeRecord(oldItem);
    if (!out.ok && !ownWrite(oldItem, writeId) && seen !== undefined && isLapsed(seen, now)) {
      out = await this.#overLapsed(item, seen, oldItem, now);
      oldItem = out.ok ? undefined : (out.old ?? (await this.#db.get(this.#recordKey(key), 'GetItem(record)')));
      if (out.ok || ownWrite(oldItem, writeId)) replaced = seen;
    }
    const old = decodeRecord(oldItem);
    // A retried put whose first attempt landed (its answer was lost) finds its own record, in
    // whatever state another host has moved it to since (even finished).
    if (out.ok || ownWrite(oldItem, writeId)) {
      if (replaced !== undefined) this.#lapsedGone(replaced);
      if (place === undefined) this.#live.adjust(request.group, request.owner, undefined, 'pending');
      else place.commit();
      this.#activity.record('submitted', request.group, now);
      this.#scheduleFlush();
      const record = decodeRecord(item);
      if (record === undefined) throw new Error('unreachable: a fresh record item did not decode');
      return { outcome: 'created', record };
    }
    if (old !== undefined && isFinished(old.state) && keep !== undefined && (old.finishedAt ?? -Infinity) >= keep) {
      return { outcome: 'existing', record: old };
    }
    // A lapsed record met here is one that another writer put in place of the one #overLapsed
    // aimed at: it is expired to every read, so the put is tried again (readLive leaves it out).
    const live =
      old !== undefined && !isFinished(old.state) && !isLapsed(old, now) ? old : await this.#readLive(key, now);
    if (live === undefined) return 'retry'; // finished meanwhile: try the put again
    const joined = await this.#joinSticky(live, entry, now);
    return joined === undefined ? 'retry' : { outcome: 'existing', record: joined };
  }

  /**
   * The put of an enqueue in place of one lapsed record (pending past its deadline, never claimed:
   * see isLapsed), conditioned on that very record (its enqueue id, or its seq for a record written
   * without one). Its expiry is reported by the enqueue, so the enqueue must know what its put
   * replaced even when the put's answer is lost and the SDK's retry meets its own record: a put
   * that may replace only this record has replaced it if it landed at all. The first put does not
   * replace lapsed records for that reason (it cannot tell, from a retry, whether it replaced
   * nothing, a finished record or a lapsed one); replacing one costs a second put, and the normal
   * path (no record, or a finished one) stays one put.
   */
  async #overLapsed(item: Item, lapsed: QueueRecord, lapsedItem: Item | undefined, now: number): Promise<WriteOutcome> {
    const e = new Expr();
    const enqueueId = lapsedItem?.[A.enqueueId];
    const same =
      typeof enqueueId === 'string'
        ? `${e.n(A.enqueueId)} = ${e.v(enqueueId)}`
        : `attribute_not_exists(${e.n(A.enqueueId)}) AND ${e.n(A.seq)} = ${e.v(lapsed.seq)}`;
    // The sweep's expiry condition (isLapsed), so that the two never both apply to one record.
    const stillLapsed = `${e.n(A.state)} = ${e.v('pending')} AND ${e.n(A.pendingExpiresAt)} <= ${e.v(now)} AND ${e.n(A.attempts)} = ${e.v(0)}`;
    const out = await this.#db.put(
      { Item: item, ConditionExpression: `${same} AND ${stillLapsed}`, ReturnValues: 'ALL_OLD', ...e.attributes() },
      'PutItem(enqueue over lapsed)',
    );
    this.#forget(lapsed.key);
    return out;
  }

  /** The live record, made sticky when the entry is and it is not; undefined when it finished meanwhile. */
  async #joinSticky(live: QueueRecord, entry: NewQueueEntry, now: number): Promise<QueueRecord | undefined> {
    if (entry.request.sticky !== true || live.request.sticky === true) return live;
    const e = new Expr();
    e.set(A.sticky, true);
    const out = await this.#db.update(
      {
        Key: this.#recordKey(live.key),
        UpdateExpression: e.update(),
        ConditionExpression: `${e.n(A.state)} IN (${e.v('pending')}, ${e.v('running')})`,
        ...e.attributes(),
      },
      'UpdateItem(sticky)',
    );
    this.#forget(live.key);
    if (!out.ok) {
      const again = await this.#readLive(live.key, now);
      return again === undefined ? undefined : this.#joinSticky(again, entry, now);
    }
    return decodeRecord(out.item);
  }

  // ---------------------------------------------------------------- reads

  async get(key: string): Promise<QueueRecord | undefined> {
    const now = await this.#begin();
    const record = await this.#read(key, now);
    this.#lastRead = { key, record, at: performance.now() };
    return record;
  }

  async position(key: string): Promise<number | undefined> {
    const now = await this.#begin();
    // The manager reads the record and then its position: the record just read is reused.
    const last = this.#lastRead;
    const read =
      last !== undefined && last.key === key && performance.now() - last.at < READ_REUSE_MS
        ? last.record
        : await this.#read(key, now);
    const record = read === undefined ? undefined : asSeenAt(read, now);
    if (record?.state !== 'pending') return undefined;
    const mine = pendingSk(record.priority, record.seq);
    // Every shard counts its entries up to this one (its own shard includes it): one small Query
    // each. Entries waiting out a backoff are served after every ready one, and entries past their
    // deadline are expired: neither counts (filtered on the projected `ra` and `pe`; the filter
    // reads the same index entries, so it costs nothing more).
    const counts = await Promise.all(
      Array.from({ length: this.#options.shards }, async (_, shard) => {
        const { count } = await this.#db.queryAll(
          {
            IndexName: WORK_INDEX,
            KeyConditionExpression: '#gk = :gk AND #gs BETWEEN :lo AND :hi',
            FilterExpression: '#ra <= :now AND (attribute_not_exists(#pe) OR #pe > :now)',
            ExpressionAttributeNames: {
              '#gk': KEY_ATTRS.workPk,
              '#gs': KEY_ATTRS.workSk,
              '#ra': A.readyAt,
              '#pe': A.pendingExpiresAt,
            },
            ExpressionAttributeValues: { ':gk': pendingPk(shard), ':lo': PENDING_SK_MIN, ':hi': mine, ':now': now },
            Select: 'COUNT',
          },
          'Query(position)',
        );
        return count;
      }),
    );
    // A request itself waiting out a backoff did not count itself: it takes the place after the
    // ready requests ahead of it, where it would be were it ready now.
    const waiting = record.readyAt > now ? 1 : 0;
    return Math.max(
      1,
      counts.reduce((a, b) => a + b, waiting),
    );
  }

  // ---------------------------------------------------------------- claim

  /** The batch of one: claims go through the batch's code path. */
  async claim(options: ClaimOptions): Promise<Lease | undefined> {
    const [lease] = await this.#claimBatch(options, 1);
    return lease;
  }

  async claimMany(options: ClaimOptions, max: number): Promise<Lease[]> {
    checkClaimMax(max);
    return this.#claimBatch(options, max);
  }

  /**
   * Claims up to `max` requests as that many claims in a row would, from one read of the shard
   * heads rather than one per claim: the candidates read are picked and claimed one after another
   * (conditional updates in sequence: claims sent at once would race each other for the same head
   * entries, and pay for the writes that lose), and the heads are read again only when they ran out
   * while more may be claimable ({@link ClaimRound.readAgain}). A pause marker ends the batch.
   *
   * A round that throws after some claims succeeded ends the batch with the leases taken so far
   * rather than the error: thrown, those leases would be held by no one until they expire. The
   * next claim meets the error again if it lasts.
   */
  async #claimBatch(options: ClaimOptions, max: number): Promise<Lease[]> {
    const now = await this.#begin();
    checkLeaseMs(options.leaseMs);
    const batch = new ClaimBatch(options, max, this.#clock, now);
    try {
      for (;;) {
        const round = await this.#readRound(batch);
        if (round === undefined) break;
        await this.#claimFrom(round, batch);
        if (!round.readAgain) break;
      }
    } catch (error) {
      if (batch.leases.length === 0) throw error;
    }
    return batch.leases;
  }

  /**
   * One round's read: the group items the batch's policies use, then the head of every pending
   * shard; undefined when a shard's head holds a pause marker.
   */
  async #readRound(batch: ClaimBatch): Promise<ClaimRound | undefined> {
    // A request an earlier claim may have left running under no one's lease is claimable again first.
    await this.#settleClaims(this.#clock.now());
    let groupItems = new Map<string, GroupItemState>();
    if (batch.usesGroupItems) {
      // Slots this process failed to give back go first, so that they count as free again at once.
      await this.#groups.settleOwed();
      groupItems = await this.#groups.readAll();
    }
    const round = new ClaimRound(batch, groupItems, this.#lastClaim);
    batch.tick();
    const read = await readCandidates(this.#db, this.#options.shards, round.eligible);
    if (read === 'paused') {
      // Paused, or a marker outlived a resume it raced with: then it goes, and the next claim runs.
      await this.#pause.clearStale();
      return undefined;
    }
    round.load(read);
    return round;
  }

  /** Claims the round's candidates, best first, until the batch is done or none is left. */
  async #claimFrom(round: ClaimRound, batch: ClaimBatch): Promise<void> {
    for (let pick = round.pick(); pick !== undefined; pick = round.pick()) {
      round.settle(pick.c, await this.#claimOne(pick.c, batch.options, pick.now, round.groupItems));
    }
  }

  async #claimOne(
    c: Candidate,
    options: ClaimOptions,
    now: number,
    groupItems: Map<string, GroupItemState>,
  ): Promise<ClaimOutcome> {
    const token = randomUUID();
    // `now` is the pick's time, not the read's (see ClaimBatch.tick): the lease starts at its claim.
    const leaseExpiresAt = now + options.leaseMs;
    const policy = policyOf(options, c.group);
    let slot: { prevLc: number | undefined } | undefined;
    if (needsGroupItem(policy) && policy !== undefined) {
      let taken: { prevLc: number | undefined } | false;
      try {
        taken = await this.#groups.take(c.group, policy, c.key, token, now);
      } catch (error) {
        // The take may have landed before it failed (its answer lost): the slot would be held by a
        // token nobody has until the repair pass, two passes a minute apart. The release is
        // conditional on this token, so it does nothing when the take did not land; one the table
        // refuses is owed and retried by the next claim or sweep.
        await this.#groups.releaseOrOwe(c.group, c.key, token);
        throw error;
      }
      if (taken === false) return 'group-blocked';
      slot = taken;
    }
    const shard = workShard(c.key, this.#options.shards);
    const e = new Expr();
    e.set(A.state, 'running')
      .setRaw(`${e.n(A.attempts)} = ${e.n(A.attempts)} + ${e.v(1)}`)
      .set(A.startedAt, now)
      .set(A.leaseToken, token)
      .set(A.leaseExpiresAt, leaseExpiresAt)
      .set(A.workerId, options.workerId)
      .set(KEY_ATTRS.workPk, leasePk(shard))
      .set(KEY_ATTRS.workSk, leaseSk(leaseExpiresAt, c.key))
      .remove(A.pendingExpiresAt, A.progress, A.message, A.cancelRequested);
    if (slot === undefined) e.remove(A.groupSlot);
    else e.set(A.groupSlot, true);
    // A request past its pending deadline is left to the sweep, which expires it.
    const condition = `${e.n(A.state)} = ${e.v('pending')} AND ${e.n(KEY_ATTRS.workSk)} = ${e.v(c.sk)} AND ${e.n(A.readyAt)} <= ${e.v(now)} AND (attribute_not_exists(${e.n(A.pendingExpiresAt)}) OR ${e.n(A.pendingExpiresAt)} > ${e.v(now)})`;
    const input = {
      Key: this.#recordKey(c.key),
      UpdateExpression: e.update(),
      ConditionExpression: condition,
      ...e.attributes(),
    };
    let out: WriteOutcome;
    try {
      out = await this.#db.update(input, 'UpdateItem(claim)');
    } catch (error) {
      this.#forget(c.key);
      // The update may have landed before it failed (a timeout after the write, retries that ran
      // out): only the record tells, by this claim's token. Landed, the lease is returned (else the
      // request would sit running under a token nobody holds until its lease ran out).
      const seen = await this.#readAfterFailure(c.key);
      if (seen === 'unknown') {
        // The claim may have landed: the request would run under a token nobody holds, and its
        // lease running out would cost it an attempt it never ran. The next claim or sweep undoes
        // it (see #settleClaims); the slot stays taken until then (the safe side of the cap).
        this.#unsettledClaims.remember(token, { key: c.key, token, group: c.group, slot: slot !== undefined });
        throw error;
      }
      if (seen?.[A.leaseToken] !== token) {
        // Not claimed: the slot goes back now instead of leaking until the repair pass.
        if (slot !== undefined) await this.#giveBackSlot(c.group, c.key, token, slot.prevLc, now);
        throw error;
      }
      out = { ok: true, item: seen };
    }
    this.#forget(c.key);
    // A retried update whose first attempt landed shows this claim's token: it is ours.
    const current = out.ok ? undefined : (out.old ?? (await this.#db.get(this.#recordKey(c.key), 'GetItem(record)')));
    const landed = current?.[A.leaseToken] === token ? current : undefined;
    if (!out.ok && landed === undefined) {
      if (slot !== undefined) await this.#giveBackSlot(c.group, c.key, token, slot.prevLc, now);
      return undefined;
    }
    const record = decodeRecord(out.ok ? out.item : landed);
    if (record === undefined) throw new Error('unreachable: a claimed record did not decode');
    if (slot !== undefined) {
      const item = groupItems.get(c.group);
      groupItems.set(c.group, { running: (item?.running ?? 0) + 1, lastClaimAt: now });
      this.#leaseSlots.held(token, { group: c.group, key: c.key });
    }
    this.#lastClaim.set(c.group, { at: now, seq: ++this.#claimSeq });
    this.#live.adjust(record.group, record.owner, 'pending', 'running');
    this.#activity.record('claimed', record.group, now);
    this.#scheduleFlush();
    return { token, record };
  }

  // ---------------------------------------------------------------- fenced calls

  async heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    return this.#asHolder(key, token, () => this.#heartbeat(key, token, options));
  }

  async complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    return this.#asHolder(key, token, () => this.#complete(key, token, options));
  }

  async fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    return this.#asHolder(key, token, () => this.#fail(key, token, options));
  }

  async release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    return this.#asHolder(key, token, () => this.#release(key, token, options));
  }

  async acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    return this.#asHolder(key, token, () => this.#acknowledgeCancel(key, token, options));
  }

  /**
   * A lease holder's call. One that ends in LeaseLostError gives back the group slot its lease
   * held: the call may be a misread (a transition that landed, its answer lost, the record moved
   * on — re-submitted, claimed — before the SDK's retry could find its write id), after which no
   * bookkeeping of this process would ever give the slot back.
   */
  async #asHolder<T>(key: string, token: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (LeaseLostError.is(error)) await this.#lostLeaseSlot(key, token);
      throw error;
    }
  }

  /**
   * The slot of a lease lost (or misread as lost), given back when the record no longer runs
   * under its token — the repair pass's rule, applied at once. A record still running under it
   * (its lease ran out, no sweep yet) keeps the slot until the sweep that ends it gives it back;
   * an unreadable record leaves it to the repair pass. The release is conditional on the token:
   * a slot freed already (by the sweep that took the lease) is left alone.
   */
  async #lostLeaseSlot(key: string, token: string): Promise<void> {
    const slot = this.#leaseSlots.end(token, key);
    if (slot === undefined) return;
    const seen = await this.#readAfterFailure(key);
    if (seen === 'unknown' || (seen?.[A.state] === 'running' && seen[A.leaseToken] === token)) return;
    await this.#groups.releaseOrOwe(slot.group, key, token);
  }

  async #heartbeat(key: string, token: string, options: HeartbeatOptions): Promise<HeartbeatResult> {
    const now = await this.#begin();
    checkLeaseMs(options.leaseMs);
    const leaseExpiresAt = now + options.leaseMs;
    const e = new Expr();
    e.set(A.leaseExpiresAt, leaseExpiresAt);
    if (options.progress !== undefined) e.set(A.progress, options.progress);
    if (options.message !== undefined) e.set(A.message, options.message);
    const item = await this.#fenced(key, token, now, e, 'UpdateItem(heartbeat)');
    if (leaseSkDeadline(item[KEY_ATTRS.workSk]) > leaseExpiresAt) {
      // A lease shortened below its index deadline: the index entry must come due no later than it,
      // or a sweep would miss it (rare: workers keep one lease length).
      const f = new Expr();
      f.set(KEY_ATTRS.workSk, leaseSk(leaseExpiresAt, key));
      await this.#db.update(
        {
          Key: this.#recordKey(key),
          UpdateExpression: f.update(),
          ConditionExpression: `${f.n(A.state)} = ${f.v('running')} AND ${f.n(A.leaseToken)} = ${f.v(token)}`,
          ...f.attributes(),
          ReturnValues: 'NONE',
        },
        'UpdateItem(lease index)',
      );
    }
    return { cancelRequested: item[A.cancelRequested] === true, leaseExpiresAt };
  }

  async #complete(key: string, token: string, options: CompleteOptions): Promise<QueueRecord> {
    const now = await this.#begin();
    const e = new Expr();
    this.#finishExpr(e, 'completed', now, options.retainUntil, undefined);
    const record = await this.#finished(
      await this.#fenced(key, token, now, e, 'UpdateItem(complete)', 'complete'),
      token,
      'running',
    );
    this.#durations.record(record.request.uri, options.durationMs);
    this.#activity.record('completed', record.group, now);
    this.#scheduleFlush();
    return record;
  }

  async #fail(key: string, token: string, options: FailOptions): Promise<QueueRecord> {
    const now = await this.#begin();
    if (options.retryAt === undefined) {
      const e = new Expr();
      this.#finishExpr(e, 'failed', now, options.retainUntil, options.error);
      const item = await this.#fencedUnlessCancel(key, token, now, e, 'fail');
      // A failure would drop the cancel request: the cancel wins.
      if (item === undefined) return this.#cancelRunning(key, token, now, options.retainUntil, options.error);
      const record = await this.#finished(item, token, 'running');
      this.#activity.record('failed', record.group, now);
      this.#scheduleFlush();
      return record;
    }
    if (Number.isNaN(options.retryAt)) throw new InvalidRequestError('retryAt', 'must be a time in epoch ms');
    const e = new Expr();
    this.#pendingAgainExpr(e, key, options.retryAt, options.error, 0);
    const item = await this.#fencedUnlessCancel(key, token, now, e, 'retry');
    if (item !== undefined) return this.#requeued(item, token);
    // A retry would drop the cancel request: the cancel wins.
    return this.#cancelRunning(key, token, now, options.retainUntil, options.error);
  }

  async #release(key: string, token: string, options: ReleaseOptions): Promise<QueueRecord> {
    const now = await this.#begin();
    const e = new Expr();
    this.#pendingAgainExpr(e, key, now, undefined, options.countAttempt ? 0 : -1);
    const item = await this.#fencedUnlessCancel(key, token, now, e, 'release');
    if (item !== undefined) return this.#requeued(item, token);
    return this.#cancelRunning(key, token, now, options.retainUntil, undefined);
  }

  async #acknowledgeCancel(key: string, token: string, options: CancelOptions): Promise<QueueRecord> {
    const now = await this.#begin();
    return this.#cancelRunning(key, token, now, options.retainUntil, undefined, true);
  }

  async #cancelRunning(
    key: string,
    token: string,
    now: number,
    retainUntil: number | undefined,
    error: ErrorInfo | undefined,
    acknowledging = false,
  ): Promise<QueueRecord> {
    const e = new Expr();
    this.#finishExpr(e, 'cancelled', now, retainUntil, error);
    const item = await this.#uncertain.run('cancel', token, async (writeId) => {
      e.set(A.writeId, writeId);
      const out = await this.#db.update(
        {
          Key: this.#recordKey(key),
          UpdateExpression: e.update(),
          ConditionExpression: `${this.#leaseCondition(e, token, now)} AND ${e.n(A.cancelRequested)} = ${e.v(true)}`,
          ...e.attributes(),
        },
        'UpdateItem(cancelled)',
      );
      this.#forget(key);
      if (out.ok) return out.item;
      const landed = await this.#landed(key, writeId, out.old);
      if (landed !== undefined) return landed;
      const current = await this.#read(key, now);
      if (acknowledging && current !== undefined && leaseValid(current, token, now)) {
        throw new ConflictError(`cannot acknowledge a cancel of '${key}': no cancel was requested`);
      }
      throw new LeaseLostError(key);
    });
    return this.#finished(item, token, 'running');
  }

  async cancel(key: string, options: CancelOptions): Promise<CancelResult> {
    const now = await this.#begin();
    for (let attempt = 0; attempt < 8; attempt++) {
      const prev = await this.#read(key, now);
      if (prev === undefined) return { outcome: 'missing' };
      if (prev.state === 'pending') {
        const e = new Expr();
        this.#finishExpr(e, 'cancelled', now, options.retainUntil, undefined);
        const writeId = randomUUID();
        e.set(A.writeId, writeId);
        const out = await this.#db.update(
          {
            Key: this.#recordKey(key),
            UpdateExpression: e.update(),
            ConditionExpression: `${e.n(A.state)} = ${e.v('pending')} AND ${e.n(A.seq)} = ${e.v(prev.seq)}`,
            ...e.attributes(),
          },
          'UpdateItem(cancel)',
        );
        this.#forget(key);
        // A retried update whose first attempt landed finds its own cancel.
        const item = out.ok ? out.item : await this.#landed(key, writeId, out.old);
        if (item !== undefined)
          return { outcome: 'cancelled', record: await this.#finished(item, undefined, 'pending') };
        continue;
      }
      if (prev.state === 'running') {
        if (prev.cancelRequested === true) return { outcome: 'unchanged', record: prev };
        const e = new Expr();
        e.set(A.cancelRequested, true);
        const out = await this.#db.update(
          {
            Key: this.#recordKey(key),
            UpdateExpression: e.update(),
            ConditionExpression: `${e.n(A.state)} = ${e.v('running')} AND ${e.n(A.leaseToken)} = ${e.v(prev.leaseToken ?? '')}`,
            ...e.attributes(),
          },
          'UpdateItem(cancel request)',
        );
        this.#forget(key);
        const record = out.ok ? decodeRecord(out.item) : undefined;
        if (record !== undefined) return { outcome: 'requested', record };
        continue;
      }
      return { outcome: 'unchanged', record: prev };
    }
    throw new ConflictError(`cancel of '${key}' kept racing with other writers; try again`);
  }

  // ---------------------------------------------------------------- list, counts, prune

  async list(query: QueueListQuery): Promise<QueueListPage> {
    const now = await this.#begin();
    const limit = query.limit;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new InvalidRequestError('limit', `must be an integer >= 1, got ${String(limit)}`);
    }
    let states: ReadonlySet<string> | undefined;
    if (query.states !== undefined && query.states.length > 0) {
      for (const s of query.states) {
        if (!STATE_SET.has(s)) throw new InvalidRequestError('states', `unknown state '${s}'`);
      }
      states = new Set(query.states);
    }
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const records = (await this.#allRecords(now))
      .filter(
        (r) =>
          (after === undefined || compareListed(r, after) > 0) &&
          (states === undefined || states.has(r.state)) &&
          (query.group === undefined || r.group === query.group) &&
          (query.owner === undefined || r.owner === query.owner),
      )
      .sort(compareListed);
    const items = records.slice(0, limit);
    const last = items[items.length - 1];
    return records.length > limit && last !== undefined ? { items, cursor: encodeCursor(last) } : { items };
  }

  async counts(): Promise<QueueCounts> {
    const now = await this.#begin();
    const zero = (): Record<QueueState, number> =>
      Object.fromEntries(QUEUE_STATES.map((s) => [s, 0])) as Record<QueueState, number>;
    const byState = zero();
    const byGroup: Record<string, Record<QueueState, number>> = {};
    for (const r of await this.#allRecords(now)) {
      byState[r.state]++;
      (byGroup[r.group] ??= zero())[r.state]++;
    }
    return { byState, byGroup };
  }

  async prune(finishedBefore: number): Promise<number> {
    const now = await this.#begin();
    if (Number.isNaN(finishedBefore)) throw new InvalidRequestError('finishedBefore', 'must be a time in epoch ms');
    let dropped = 0;
    for (const r of await this.#allRecords(now, 'retained')) {
      const seen = asSeenAt(r, now);
      // Records past their retention are hidden from every read already; TTL deletes them, but
      // not on a table without it (dynalite, TTL not enabled) and only up to days late on AWS:
      // prune removes them whatever finishedBefore says. They are not counted: for every reader
      // they were gone already (the memory queue has evicted them), and the count is of records
      // this call made disappear.
      const retained = isExpired(r, now);
      if (!retained && (!isFinished(seen.state) || (seen.finishedAt ?? -Infinity) >= finishedBefore)) continue;
      const e = new Expr();
      // A lapsed record is still pending as stored: the condition is the sweep's.
      const lapsed = r.state === 'pending';
      const condition = lapsed
        ? `${e.n(A.state)} = ${e.v('pending')} AND ${e.n(A.seq)} = ${e.v(r.seq)} AND ${e.n(A.pendingExpiresAt)} <= ${e.v(now)} AND ${e.n(A.attempts)} = ${e.v(0)}`
        : `${e.n(A.state)} = ${e.v(r.state)} AND ${e.n(A.seq)} = ${e.v(r.seq)}`;
      const out = await this.#db.delete(
        { Key: this.#recordKey(r.key), ConditionExpression: condition, ...e.attributes() },
        'DeleteItem(prune)',
      );
      this.#forget(r.key);
      if (retained || !(out.ok || (await this.#deletedByRetry(r.key, out)))) continue;
      dropped++;
      if (lapsed) this.#lapsedGone(r);
    }
    return dropped;
  }

  /**
   * Whether a prune's delete whose condition failed deleted the record after all: the SDK sent it
   * again (an earlier attempt timed out, its connection dropped, a 5xx) and the retry found no
   * record, i.e. the earlier attempt landed and its answer was lost. A delete leaves nothing to
   * recognise it by, so one case reads the same and is counted too: another process's prune
   * deleting the record between the attempts of one whose first attempt did not land (both then
   * count it). A record of the key found instead (queued again since) is not counted: whether this
   * delete removed the record before it, or the enqueue replaced it, cannot be told either.
   */
  async #deletedByRetry(key: string, out: WriteOutcome & { ok: false }): Promise<boolean> {
    // The delete asks for no old item, so the record is read: only here, after a failed condition
    // of a retried delete, so a prune without faults costs what it did.
    if (!out.retried || out.old !== undefined) return false;
    return (await this.#db.get(this.#recordKey(key), 'GetItem(record)')) === undefined;
  }

  /**
   * Every visible record: one Query per record partition (no Scan), records past retention left
   * out; as reads see them (lapsed pending records expired, see asSeenAt). `'retained'`: as stored,
   * and with the records past retention (for prune).
   */
  async #allRecords(now: number, stored?: 'retained'): Promise<QueueRecord[]> {
    const pages = await Promise.all(
      Array.from({ length: this.#options.recordShards }, async (_, n) => {
        const { items } = await this.#db.queryAll(
          {
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': KEY_ATTRS.pk },
            ExpressionAttributeValues: { ':pk': `R#${String(n)}` },
            ConsistentRead: true,
          },
          'Query(records)',
        );
        return items;
      }),
    );
    const out: QueueRecord[] = [];
    for (const item of pages.flat()) {
      const r = decodeRecord(item);
      if (r === undefined) continue;
      if (stored === 'retained') out.push(r);
      else if (!isExpired(r, now)) out.push(asSeenAt(r, now));
    }
    return out;
  }

  // ---------------------------------------------------------------- sweep

  /**
   * The expiries of records this instance replaced or pruned since the last sweep or take (see
   * `QueueManager.takeTransitions`). Lease expiries and other pending expiries are applied only by
   * `sweep`, which reports them.
   */
  takeTransitions(): SweepResult | undefined {
    if (this.#unreported.length === 0) return undefined;
    const expired = this.#unreported;
    this.#unreported = [];
    return { requeued: [], failed: [], expired, cancelled: [], dropped: 0 };
  }

  async sweep(options: SweepOptions = {}): Promise<SweepResult> {
    const retainUntil = options.retainUntil;
    if (retainUntil !== undefined && Number.isNaN(retainUntil)) {
      throw new InvalidRequestError('retainUntil', 'must be a time in epoch ms');
    }
    const now = await this.#begin();
    const result = {
      requeued: [] as QueueRecord[],
      failed: [] as QueueRecord[],
      expired: [] as QueueRecord[],
      cancelled: [] as QueueRecord[],
      dropped: 0,
    };
    // Both index reads at once (one round trip), then the transitions: leases first, as the model has it.
    const [leaseKeys, expiredKeys] = await Promise.all([
      this.#queryWork((shard) => leasePk(shard), '#gs < :bound', { ':bound': leaseSkBound(now) }),
      this.#queryWork((shard) => pendingPk(shard), '#gs >= :lo', { ':lo': PENDING_SK_MIN }, now),
    ]);
    try {
      // Claims and transitions of this process whose outcome was unknown come first: what landed
      // is reported (and its slot given back), a claim that landed is undone.
      await this.#settleClaims(now);
      await this.#settleSweeps(result);
      await this.#sweepLeases(leaseKeys, now, retainUntil, result);
      await this.#sweepPendingExpiry(expiredKeys, now, retainUntil, result);
    } catch (error) {
      // The transitions written before the failure have committed, and the records have moved on,
      // so no later sweep finds them again: they are reported now, as a part (`more`), and the next
      // sweep meets the failure again, if it lasts, with nothing of its own to lose.
      if (sweptCount(result) === 0) throw error;
      result.expired.push(...this.#unreported);
      this.#unreported = [];
      return { ...result, more: true };
    }
    // Expiries of records that no longer exist to be swept (replaced or pruned here since the last sweep).
    result.expired.push(...this.#unreported);
    this.#unreported = [];
    // The transitions above have committed: from here on nothing may throw their report away.
    try {
      await this.#groups.settleOwed();
      await this.#groups.repair(now, SLOT_REPAIR_MS, async (key) => {
        const r = await this.#read(key, now);
        return r?.state === 'running' ? r.leaseToken : undefined;
      });
    } catch {
      // Slots still owed stay owed; the repair pass runs again within a minute.
    }
    // A pause or resume whose process died half-way is finished here; a failure is tried again by
    // a later sweep.
    await this.#pause.repair(now).catch(() => undefined);
    try {
      await this.#flush();
    } catch {
      // Counters only feed metrics and ETAs, and stay buffered for the next flush.
    }
    return result;
  }

  async #sweepLeases(keys: string[], now: number, retainUntil: number | undefined, result: SweepResult): Promise<void> {
    for (const key of keys) {
      let r = await this.#read(key, now);
      // Twice at most: a cancel requested between the read and the write changes what is due.
      for (let tries = 0; tries < 2; tries++) {
        if (r?.state !== 'running' || r.leaseToken === undefined || (r.leaseExpiresAt ?? Infinity) > now) break;
        const token = r.leaseToken;
        const e = new Expr();
        let kind: SweepKind;
        if (r.cancelRequested === true) {
          kind = 'cancelled';
          this.#finishExpr(e, 'cancelled', now, retainUntil, undefined);
        } else if (r.attempts >= r.maxAttempts) {
          kind = 'failed';
          this.#finishExpr(e, 'failed', now, retainUntil, LEASE_EXPIRED);
        } else {
          kind = 'requeued';
          this.#pendingAgainExpr(e, key, now, undefined, 0);
        }
        const write: SweepWrite = { key, writeId: randomUUID(), kind, lease: { token, group: r.group }, at: now };
        e.set(A.writeId, write.writeId);
        const expired = `${e.n(A.state)} = ${e.v('running')} AND ${e.n(A.leaseToken)} = ${e.v(token)} AND ${e.n(A.leaseExpiresAt)} <= ${e.v(now)}`;
        const item = await this.#sweepWrite(
          write,
          {
            Key: this.#recordKey(key),
            UpdateExpression: e.update(),
            // A cancel requested since the read must not be erased by a requeue or a failure.
            ConditionExpression:
              kind === 'cancelled' ? expired : `${expired} AND attribute_not_exists(${e.n(A.cancelRequested)})`,
            ...e.attributes(),
          },
          'UpdateItem(lease expiry)',
        );
        if (item === undefined) {
          r = await this.#read(key, now);
          continue;
        }
        await this.#reportSwept(write, item, result);
        break;
      }
    }
  }

  async #sweepPendingExpiry(
    keys: string[],
    now: number,
    retainUntil: number | undefined,
    result: SweepResult,
  ): Promise<void> {
    for (const key of keys) {
      const e = new Expr();
      this.#finishExpr(e, 'expired', now, retainUntil, undefined);
      const write: SweepWrite = { key, writeId: randomUUID(), kind: 'expired', lease: undefined, at: now };
      e.set(A.writeId, write.writeId);
      const item = await this.#sweepWrite(
        write,
        {
          Key: this.#recordKey(key),
          UpdateExpression: e.update(),
          ConditionExpression: `${e.n(A.state)} = ${e.v('pending')} AND ${e.n(A.pendingExpiresAt)} <= ${e.v(now)} AND ${e.n(A.attempts)} = ${e.v(0)}`,
          ...e.attributes(),
        },
        'UpdateItem(expire)',
      );
      if (item !== undefined) await this.#reportSwept(write, item, result);
    }
  }

  /**
   * A sweep's transition: the item when it landed (a retry of the SDK or a failed write whose
   * answer was lost finds its write id on the record), undefined when its condition failed. A
   * write that throws is read back: the record has moved on when it landed, so no later sweep
   * would find it due again, and its report and slot would be lost. Landed, it is returned;
   * not landed, the error is thrown; unreadable, it is kept for the next sweep
   * ({@link DynamoQueueManager.#settleSweeps}) and the error thrown.
   */
  async #sweepWrite(write: SweepWrite, input: Parameters<Db['update']>[0], op: string): Promise<Item | undefined> {
    let out: WriteOutcome;
    try {
      out = await this.#db.update(input, op);
    } catch (error) {
      this.#forget(write.key);
      const seen = await this.#readAfterFailure(write.key);
      if (seen === 'unknown') this.#unsettledSweeps.remember(write.writeId, write);
      else if (seen?.[A.writeId] === write.writeId) return seen;
      throw error;
    }
    this.#forget(write.key);
    return out.ok ? out.item : this.#landed(write.key, write.writeId, out.old);
  }

  /** Bookkeeping and report of a sweep's transition that landed. */
  async #reportSwept(write: SweepWrite, item: Item, result: SweepResult): Promise<void> {
    const token = write.lease?.token;
    if (write.kind === 'expired' || token === undefined) {
      result.expired.push(await this.#finished(item, undefined, 'pending'));
    } else if (write.kind === 'requeued') {
      result.requeued.push(await this.#requeued(item, token));
    } else {
      const record = await this.#finished(item, token, 'running');
      if (write.kind === 'failed') {
        this.#activity.record('failed', record.group, write.at);
        result.failed.push(record);
      } else result.cancelled.push(record);
    }
  }

  /**
   * Sweep transitions of this process whose outcome was unknown: each landed one (its write id on
   * the record) is reported now. A requeued record may have been claimed since (a claim keeps
   * the write id): it is reported as it is, as the requeue did happen. One whose record has moved
   * on past another write since is not reported (its id is gone). Either way the slot of its lease
   * is given back when the record no longer runs under that lease — the repair pass's rule, not
   * the record's slot flag, which a later claim rewrites; conditional on the token, so a slot
   * freed already is left alone. One that cannot be read yet waits for the next sweep.
   */
  async #settleSweeps(result: SweepResult): Promise<void> {
    for (const [id, write] of this.#unsettledSweeps.list()) {
      const seen = await this.#readAfterFailure(write.key);
      if (seen === 'unknown') continue;
      this.#unsettledSweeps.forget(id);
      const lease = write.lease;
      if (seen?.[A.writeId] === write.writeId) await this.#reportSwept(write, seen, result);
      if (lease !== undefined && !(seen?.[A.state] === 'running' && seen[A.leaseToken] === lease.token)) {
        await this.#groups.releaseOrOwe(lease.group, write.key, lease.token);
      }
    }
  }

  /**
   * Claims of this process whose outcome was unknown (the update and its read-back both threw): a
   * record running under such a claim's token is held by no one, and its lease running out would
   * charge it an attempt it never ran. It goes back to pending with its attempts unchanged (as a
   * release with `countAttempt: false`), and the slot the claim took is given back. A record no
   * longer running under the token (the claim did not land, or a sweep ended it) gives the slot
   * back only; one with a cancel requested is left to the sweep, which cancels it. Never throws:
   * what cannot be settled now waits for the next claim or sweep.
   */
  async #settleClaims(now: number): Promise<void> {
    for (const [id, claim] of this.#unsettledClaims.list()) {
      try {
        const e = new Expr();
        this.#pendingAgainExpr(e, claim.key, now, undefined, -1);
        e.set(A.writeId, randomUUID());
        const out = await this.#db.update(
          {
            Key: this.#recordKey(claim.key),
            UpdateExpression: e.update(),
            ConditionExpression: `${e.n(A.state)} = ${e.v('running')} AND ${e.n(A.leaseToken)} = ${e.v(claim.token)} AND attribute_not_exists(${e.n(A.cancelRequested)})`,
            ...e.attributes(),
          },
          'UpdateItem(undo claim)',
        );
        this.#forget(claim.key);
        // Not counted back to pending: the claim was never counted as running.
        if (out.ok) {
          const record = decodeRecord(out.item);
          if (record !== undefined && out.item !== undefined) await this.#releaseSlotOf(out.item, record, claim.token);
        } else if (claim.slot) {
          const current = out.old ?? (await this.#db.get(this.#recordKey(claim.key), 'GetItem(record)'));
          const running = current?.[A.state] === 'running' && current[A.leaseToken] === claim.token;
          if (!running) await this.#groups.releaseOrOwe(claim.group, claim.key, claim.token);
        }
        this.#unsettledClaims.forget(id);
      } catch {
        // The table still refuses: tried again by the next claim or sweep.
      }
    }
  }

  /** Keys in the work index partitions matching a sort-key condition (and, with `expiredAt`, a pending deadline passed). */
  async #queryWork(
    pk: (shard: number) => string,
    skCondition: string,
    values: Record<string, unknown>,
    expiredAt?: number,
  ): Promise<string[]> {
    const shards = await Promise.all(
      Array.from({ length: this.#options.shards }, async (_, shard) => {
        const { items } = await this.#db.queryAll(
          {
            IndexName: WORK_INDEX,
            KeyConditionExpression: `#gk = :gk AND ${skCondition}`,
            ExpressionAttributeNames: {
              '#gk': KEY_ATTRS.workPk,
              '#gs': KEY_ATTRS.workSk,
              ...(expiredAt === undefined ? {} : { '#pe': A.pendingExpiresAt }),
            },
            ExpressionAttributeValues: {
              ':gk': pk(shard),
              ...values,
              ...(expiredAt === undefined ? {} : { ':now': expiredAt }),
            },
            ...(expiredAt === undefined ? {} : { FilterExpression: '#pe <= :now' }),
          },
          'Query(sweep)',
        );
        return items.map((i) => i[A.key]).filter((k): k is string => typeof k === 'string');
      }),
    );
    return shards.flat();
  }

  // ---------------------------------------------------------------- pause

  async setPaused(paused: boolean): Promise<void> {
    await this.#begin();
    await this.#pause.setPaused(paused);
  }

  async isPaused(): Promise<boolean> {
    await this.#begin();
    return this.#pause.isPaused();
  }

  // ---------------------------------------------------------------- statistics

  async activity(minutes: number): Promise<ActivityBucket[]> {
    // Checked before any request: each minute is one Query, and only a day of them is kept (TTL).
    if (!Number.isSafeInteger(minutes) || minutes < 0) {
      throw new InvalidRequestError('minutes', `must be an integer >= 0, got ${String(minutes)}`);
    }
    const now = await this.#begin();
    await this.#flush();
    return this.#activity.read(minutes, now);
  }

  async uriStats(uri?: string): Promise<UriStats[]> {
    const now = await this.#begin();
    return this.#durations.read(uri, now);
  }

  async reportWorker(workerId: string, slots: number, ttlMs: number): Promise<void> {
    const now = await this.#begin();
    if (!Number.isSafeInteger(slots) || slots < 0) {
      throw new InvalidRequestError('slots', `must be an integer >= 0, got ${String(slots)}`);
    }
    if (!(ttlMs > 0)) throw new InvalidRequestError('ttlMs', `must be a positive number of ms, got ${String(ttlMs)}`);
    await this.#workers.report(workerId, slots, ttlMs, now);
  }

  async removeWorker(workerId: string): Promise<void> {
    await this.#begin();
    await this.#workers.remove(workerId);
  }

  async capacity(): Promise<WorkerCapacity> {
    const now = await this.#begin();
    return this.#workers.capacity(now);
  }

  /** Writes buffered counters now (also done periodically, on sweeps and on close). */
  async flush(): Promise<void> {
    await this.#begin();
    await this.#flush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await this.#flush();
    } catch {
      // Counters only feed metrics and ETAs; closing must not fail on them.
    } finally {
      if (this.#ownsClient) this.#client.destroy();
    }
  }

  // ---------------------------------------------------------------- helpers

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('dynamodb queue is closed');
  }

  async #begin(): Promise<number> {
    this.#checkOpen();
    if (this.#options.ensureTable) {
      this.#ready ??= this.ensureTable().catch((error: unknown) => {
        this.#ready = undefined;
        throw error;
      });
      await this.#ready;
    }
    this.#layoutChecked ??= checkTableLayout(this.#db, this.#options).catch((error: unknown) => {
      this.#layoutChecked = undefined;
      throw error;
    });
    await this.#layoutChecked;
    return this.#clock.now();
  }

  #recordKey(key: string): Item {
    return { [KEY_ATTRS.pk]: recordPk(key, this.#options.recordShards), [KEY_ATTRS.sk]: recordSk(key) };
  }

  /** Drops the record kept for `position` after this process changed it. */
  #forget(key: string): void {
    if (this.#lastRead?.key === key) this.#lastRead = undefined;
  }

  /** The record as reads see it (see asSeenAt); undefined when absent or past its retention. */
  async #read(key: string, now: number): Promise<QueueRecord | undefined> {
    const record = decodeRecord(await this.#db.get(this.#recordKey(key), 'GetItem(record)'));
    return record === undefined || isExpired(record, now) ? undefined : asSeenAt(record, now);
  }

  /**
   * A lapsed pending record left the table (replaced by an enqueue, or pruned) before any sweep
   * expired it: counted out of the live counts, and kept for this process's next sweep to report.
   */
  #lapsedGone(record: QueueRecord): void {
    this.#live.lapsed(record.group, record.owner, record.pendingExpiresAt);
    if (this.#unreported.length < MAX_UNREPORTED) this.#unreported.push(lapsedView(record));
  }

  async #readLive(key: string, now: number): Promise<QueueRecord | undefined> {
    const r = await this.#read(key, now);
    return r !== undefined && !isFinished(r.state) ? r : undefined;
  }

  #leaseCondition(e: Expr, token: string, now: number): string {
    return `${e.n(A.state)} = ${e.v('running')} AND ${e.n(A.leaseToken)} = ${e.v(token)} AND ${e.n(A.leaseExpiresAt)} > ${e.v(now)}`;
  }

  /**
   * A fenced update: the lease must be the current, unexpired one, else LeaseLostError. A
   * `transition` writes a write id (see {@link UncertainWrites}), so that a retry of a write that
   * landed finds it and returns it; a heartbeat is no transition.
   */
  async #fenced(key: string, token: string, now: number, e: Expr, op: string, transition?: 'complete'): Promise<Item> {
    if (transition === undefined) return this.#fencedOnce(key, token, now, e, op, undefined);
    return this.#uncertain.run(transition, token, (writeId) => this.#fencedOnce(key, token, now, e, op, writeId));
  }

  async #fencedOnce(
    key: string,
    token: string,
    now: number,
    e: Expr,
    op: string,
    writeId: string | undefined,
  ): Promise<Item> {
    const transition = writeId !== undefined;
    if (transition) e.set(A.writeId, writeId);
    const out = await this.#db.update(
      {
        Key: this.#recordKey(key),
        UpdateExpression: e.update(),
        ConditionExpression: this.#leaseCondition(e, token, now),
        ...e.attributes(),
      },
      op,
    );
    this.#forget(key);
    if (out.ok && out.item !== undefined) return out.item;
    const landed = transition ? await this.#landed(key, writeId, out.ok ? undefined : out.old) : undefined;
    if (landed !== undefined) return landed;
    throw new LeaseLostError(key);
  }

  /**
   * The item when this call's own write already landed — a retried write (after a dropped
   * connection or a timeout) whose first attempt landed — else undefined.
   */
  async #landed(key: string, writeId: string, old: Item | undefined): Promise<Item | undefined> {
    const item = old ?? (await this.#db.get(this.#recordKey(key), 'GetItem(record)'));
    return item !== undefined && item[A.writeId] === writeId ? item : undefined;
  }

  /**
   * A fenced update that must not happen when a cancel was requested: the new item, or undefined
   * when the lease holds but a cancel is requested (the caller cancels instead); LeaseLostError else.
   * `state` is the state the update writes (how a retried write that landed is recognised).
   */
  async #fencedUnlessCancel(
    key: string,
    token: string,
    now: number,
    e: Expr,
    op: 'fail' | 'retry' | 'release',
  ): Promise<Item | undefined> {
    return this.#uncertain.run(op, token, (writeId) => this.#fencedUnlessCancelOnce(key, token, now, e, op, writeId));
  }

  async #fencedUnlessCancelOnce(
    key: string,
    token: string,
    now: number,
    e: Expr,
    op: 'fail' | 'retry' | 'release',
    writeId: string,
  ): Promise<Item | undefined> {
    const state = op === 'fail' ? 'failed' : 'pending';
    e.set(A.writeId, writeId);
    const out = await this.#db.update(
      {
        Key: this.#recordKey(key),
        UpdateExpression: e.update(),
        ConditionExpression: `${this.#leaseCondition(e, token, now)} AND attribute_not_exists(${e.n(A.cancelRequested)})`,
        ...e.attributes(),
      },
      `UpdateItem(${op})`,
    );
    this.#forget(key);
    if (out.ok && out.item !== undefined) return out.item;
    const landed = await this.#landed(key, writeId, out.ok ? undefined : out.old);
    // Landed as the transition it asked for (a cancel that finished it instead is its own path).
    if (landed !== undefined && landed[A.state] === state) return landed;
    // A cancel this call fell back to before (a cancel was requested) landed, though its answer
    // was lost: the caller finishes the run as that cancel, which finds its own write.
    const cancelId = this.#uncertain.peek('cancel', token);
    if (cancelId !== undefined && (await this.#landed(key, cancelId, out.ok ? undefined : out.old)) !== undefined) {
      return undefined;
    }
    const current = !out.ok && out.old !== undefined ? decodeRecord(out.old) : await this.#read(key, now);
    if (current !== undefined && leaseValid(current, token, now) && current.cancelRequested === true) return undefined;
    throw new LeaseLostError(key);
  }

  /** SET/REMOVE of a transition to a terminal state (lease fields and index keys go; the run's report stays). */
  #finishExpr(
    e: Expr,
    state: QueueState,
    now: number,
    retainUntil: number | undefined,
    error: ErrorInfo | undefined,
  ): void {
    e.set(A.state, state).set(A.finishedAt, now);
    if (retainUntil !== undefined) e.set(A.retainUntil, retainUntil).set(A.ttl, ttlSeconds(retainUntil));
    if (error !== undefined) e.set(A.error, encodeError(error));
    e.remove(A.leaseToken, A.leaseExpiresAt, KEY_ATTRS.workPk, KEY_ATTRS.workSk);
  }

  /** SET/REMOVE of running → pending at `readyAt`, at its old place (the stored pending sort key). */
  #pendingAgainExpr(e: Expr, key: string, readyAt: number, error: ErrorInfo | undefined, attemptDelta: number): void {
    e.set(A.state, 'pending')
      .set(A.readyAt, readyAt)
      .set(KEY_ATTRS.workPk, pendingPk(workShard(key, this.#options.shards)))
      .setRaw(`${e.n(KEY_ATTRS.workSk)} = ${e.n('ps')}`)
      .remove(A.leaseToken, A.leaseExpiresAt, A.workerId, A.progress, A.message, A.cancelRequested, A.startedAt);
    if (attemptDelta !== 0) e.setRaw(`${e.n(A.attempts)} = ${e.n(A.attempts)} + ${e.v(attemptDelta)}`);
    if (error !== undefined) e.set(A.error, encodeError(error));
  }

  /** Bookkeeping after a record went back to pending; returns it. */
  async #requeued(item: Item | undefined, token: string): Promise<QueueRecord> {
    const record = decodeRecord(item);
    if (record === undefined || item === undefined) throw new Error('unreachable: a requeued record did not decode');
    this.#live.adjust(record.group, record.owner, 'running', 'pending');
    await this.#releaseSlotOf(item, record, token);
    return record;
  }

  /** Bookkeeping after a record finished; returns it. */
  async #finished(
    item: Item | undefined,
    token: string | undefined,
    from: 'pending' | 'running',
  ): Promise<QueueRecord> {
    const record = decodeRecord(item);
    if (record === undefined || item === undefined) throw new Error('unreachable: a finished record did not decode');
    if (record.state === 'expired') this.#live.lapsed(record.group, record.owner, record.pendingExpiresAt);
    else this.#live.adjust(record.group, record.owner, from, record.state);
    if (token !== undefined) await this.#releaseSlotOf(item, record, token);
    return record;
  }

  /**
   * Gives the group slot back when the claim took one (the flag stays on the item until the next
   * claim). Best-effort: the record transition before it has committed and must be reported as
   * done, so a failed release is kept to be retried by this process's next claim or sweep (and
   * the repair pass frees it should this process die first).
   */
  async #releaseSlotOf(item: Item, record: QueueRecord, token: string): Promise<void> {
    this.#leaseSlots.end(token, record.key);
    if (item[A.groupSlot] !== true) return;
    await this.#groups.releaseOrOwe(record.group, record.key, token);
  }

  /** A claim that did not land gives its slot back, with the last claim time before it (best-effort, as above). */
  async #giveBackSlot(
    group: string,
    key: string,
    token: string,
    prevLc: number | undefined,
    now: number,
  ): Promise<void> {
    await this.#groups.releaseOrOwe(group, key, token, { prev: prevLc, now });
  }

  /** The record after a write threw, or 'unknown' when it cannot be read either. */
  async #readAfterFailure(key: string): Promise<Item | undefined | 'unknown'> {
    try {
      return await this.#db.get(this.#recordKey(key), 'GetItem(record)');
    } catch {
      return 'unknown';
    }
  }

  #scheduleFlush(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      this.#flush().catch(() => {
        // Kept in the buffers for the next flush.
      });
    }, this.#options.flushIntervalMs);
    this.#timer.unref();
  }

  async #flush(): Promise<void> {
    // One flush at a time: a second caller waits for the running one, then flushes what is left.
    while (this.#flushing !== undefined) await this.#flushing;
    if (!this.#activity.dirty && !this.#durations.dirty) return;
    this.#flushing = (async () => {
      await this.#activity.flush();
      await this.#durations.flush();
    })();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }
}

function leaseValid(r: QueueRecord, token: string, now: number): boolean {
  return r.state === 'running' && r.leaseToken === token && (r.leaseExpiresAt ?? -Infinity) > now;
}

/** Transitions a sweep has written so far. */
function sweptCount(result: SweepResult): number {
  return result.requeued.length + result.failed.length + result.expired.length + result.cancelled.length;
}

/** Whether `item` is the record of the enqueue that wrote with `writeId` (see A.enqueueId). */
function ownWrite(item: Item | undefined, writeId: string): boolean {
  return item?.[A.writeId] === writeId || item?.[A.enqueueId] === writeId;
}

/**
 * A finished record that an enqueue with `keepFinishedSince` keeps rather than replaces: one that
 * finished at or after it. Not an expired one (a request that never ran holds no result; a lapsed
 * pending record reads as expired too, and the put replaces it whatever keepFinishedSince says).
 */
function kept(record: QueueRecord | undefined, keepFinishedSince: number | undefined): record is QueueRecord {
  return (
    record !== undefined &&
    keepFinishedSince !== undefined &&
    isFinished(record.state) &&
    record.state !== 'expired' &&
    record.finishedAt !== undefined &&
    record.finishedAt >= keepFinishedSince
  );
}
