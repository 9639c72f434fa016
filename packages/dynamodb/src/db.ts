import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { DeleteCommandInput, PutCommandInput, QueryCommandInput, UpdateCommandInput } from '@aws-sdk/lib-dynamodb';

import type { Item } from './codec.js';
import { isConditionFailed, translateError } from './errors.js';

/**
 * Outcome of a conditional write: the new item (and, for a put asking `ReturnValues: 'ALL_OLD'`, the
 * item it replaced), or the condition failed (with the old item when the backend returns it).
 * `retried`: the SDK sent the write more than once, so an earlier attempt may have landed and
 * had its answer lost (the failed condition may then be this very write's own effect).
 */
export type WriteOutcome =
  | { readonly ok: true; readonly item: Item | undefined; readonly old?: Item | undefined }
  | { readonly ok: false; readonly old: Item | undefined; readonly retried: boolean };

type Update = Omit<UpdateCommandInput, 'TableName'>;
type Put = Omit<PutCommandInput, 'TableName'>;
type Del = Omit<DeleteCommandInput, 'TableName'>;
type Query = Omit<QueryCommandInput, 'TableName'>;

/**
 * The table as the adapter uses it: the few commands it needs, each asking for its consumed
 * capacity (free, and what the cost helper reads), SDK errors translated into armlib errors and
 * failed conditions returned as values, never thrown.
 */
export class Db {
  readonly doc: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    readonly tableName: string,
  ) {
    this.doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  /** GetItem, strongly consistent. */
  async get(key: Item, op = 'GetItem'): Promise<Item | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true, ReturnConsumedCapacity: 'TOTAL' }),
      );
      return out.Item;
    } catch (error) {
      throw translateError(error, op);
    }
  }

  /** Conditional PutItem (with `ReturnValues: 'ALL_OLD'`, the outcome carries the replaced item). */
  async put(input: Put, op = 'PutItem'): Promise<WriteOutcome> {
    try {
      const out = await this.doc.send(
        new PutCommand({
          ...input,
          TableName: this.tableName,
          ReturnConsumedCapacity: 'TOTAL',
          ...(input.ConditionExpression === undefined ? {} : { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }),
        }),
      );
      return { ok: true, item: input.Item, old: out.Attributes };
    } catch (error) {
      return conditionOutcome(error, op);
    }
  }

  /** UpdateItem returning the whole new item. */
  async update(input: Update, op = 'UpdateItem'): Promise<WriteOutcome> {
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          ReturnValues: 'ALL_NEW',
          ...input,
          TableName: this.tableName,
          ReturnConsumedCapacity: 'TOTAL',
          ...(input.ConditionExpression === undefined ? {} : { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }),
        }),
      );
      return { ok: true, item: out.Attributes };
    } catch (error) {
      return conditionOutcome(error, op);
    }
  }

  /** DeleteItem (conditional when a condition is given). */
  async delete(input: Del, op = 'DeleteItem'): Promise<WriteOutcome> {
    try {
      await this.doc.send(new DeleteCommand({ ...input, TableName: this.tableName, ReturnConsumedCapacity: 'TOTAL' }));
      return { ok: true, item: undefined };
    } catch (error) {
      return conditionOutcome(error, op);
    }
  }

  /** One Query page. */
  async queryPage(input: Query, op = 'Query'): Promise<{ items: Item[]; next: Item | undefined; count: number }> {
    try {
      const out = await this.doc.send(
        new QueryCommand({ ...input, TableName: this.tableName, ReturnConsumedCapacity: 'TOTAL' }),
      );
      return { items: out.Items ?? [], next: out.LastEvaluatedKey, count: out.Count ?? 0 };
    } catch (error) {
      throw translateError(error, op);
    }
  }

  /** Every page of a Query (items, or only the count with `Select: 'COUNT'`). */
  async queryAll(input: Query, op = 'Query'): Promise<{ items: Item[]; count: number }> {
    const items: Item[] = [];
    let count = 0;
    let start: Item | undefined;
    do {
      const page = await this.queryPage(start === undefined ? input : { ...input, ExclusiveStartKey: start }, op);
      items.push(...page.items);
      count += page.count;
      start = page.next;
    } while (start !== undefined);
    return { items, count };
  }
}

function conditionOutcome(error: unknown, op: string): WriteOutcome {
  if (!isConditionFailed(error)) throw translateError(error, op);
  // DynamoDB Local returns the old item; dynalite does not (callers read it then).
  const item = (error as { Item?: unknown }).Item;
  return {
    ok: false,
    old: typeof item === 'object' && item !== null ? unmarshallLoose(item) : undefined,
    retried: attemptsOf(error) > 1,
  };
}

/**
 * How many times the SDK sent the call that ended in `error`: its retry middleware writes it on
 * the error it gives up with. 1 when unknown (a retry strategy that does not say): the callers
 * then read the failed condition as someone else's doing, as they would without retries.
 */
function attemptsOf(error: unknown): number {
  const metadata = (error as { $metadata?: unknown }).$metadata;
  const attempts =
    typeof metadata === 'object' && metadata !== null ? (metadata as { attempts?: unknown }).attempts : undefined;
  return typeof attempts === 'number' && Number.isSafeInteger(attempts) ? attempts : 1;
}

/**
 * The exception's `Item` is in the low-level attribute-value form; this decodes the few types
 * records use (S, N, BOOL, M, L, NULL). Anything unexpected gives undefined, and the caller reads.
 */
function unmarshallLoose(raw: object): Item | undefined {
  const out: Item = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const v = decodeValue(value);
    if (v === INVALID) return undefined;
    out[name] = v;
  }
  return out;
}

const INVALID = Symbol('invalid');

function decodeValue(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return INVALID;
  const v = value as Record<string, unknown>;
  if (typeof v['S'] === 'string') return v['S'];
  if (typeof v['N'] === 'string') return Number(v['N']);
  if (typeof v['BOOL'] === 'boolean') return v['BOOL'];
  if (v['NULL'] === true) return null;
  if (Array.isArray(v['L'])) {
    const list = (v['L'] as unknown[]).map(decodeValue);
    return list.includes(INVALID) ? INVALID : list;
  }
  if (typeof v['M'] === 'object' && v['M'] !== null) {
    const m = unmarshallLoose(v['M']);
    return m ?? INVALID;
  }
  return INVALID;
}
