import { readAll } from '@armlib/core';
import type { RequestManager, RequestStatus } from '@armlib/core';

import { contentFor } from './content.js';
import type { LogEvent } from './event-log.js';
import { pollUntil } from '@armlib/conformance';

/** Successful token-fenced calls, as the logging queue names them. */
const FENCED_OK = new Set(['hb', 'complete', 'fail', 'release', 'ack-cancel']);

/** One lease as the logs show it. */
interface LeaseSpan {
  readonly token: string;
  readonly pid: number;
  /** When the claim returned (test clock). */
  readonly claimedAt: number;
  /** Start of validity: the adapter's `now` at the claim (expiry minus lease length). */
  readonly validFrom: number;
  /** Latest expiry the adapter granted (claim or heartbeat). */
  validUntil: number;
  /** Successful fenced calls: start and end time and name. */
  readonly ops: { t0: number; t: number; ev: string }[];
}

/** Fenced calls after which the holder has given the request back. */
const RELEASING = new Set(['complete', 'fail', 'release', 'ack-cancel']);

/** When a lease stopped being valid: its last granted expiry, or when the holder gave it back. */
function validEnd(span: LeaseSpan): number {
  const given = span.ops.filter((o) => RELEASING.has(o.ev)).map((o) => o.t);
  return Math.min(span.validUntil, ...given);
}

/**
 * Checks fencing from the logs of every process: for each key, a lease is issued only once
 * the previous one has expired (within `toleranceMs`, for the adapter reading its clock just
 * before it takes the database lock), no holder's fenced call started after a newer lease was
 * issued succeeds, and at most one `complete` succeeds, by the last holder. Returns violations.
 */
export function fencingViolations(events: readonly LogEvent[], toleranceMs: number): string[] {
  const byKey = new Map<string, Map<string, LeaseSpan>>();
  for (const e of events) {
    if (e.ev !== 'claim' || e.outcome !== 'ok' || e.key === undefined || e.token === undefined) continue;
    const spans = byKey.get(e.key) ?? new Map<string, LeaseSpan>();
    byKey.set(e.key, spans);
    const exp = e.exp ?? Number.NaN;
    spans.set(e.token, {
      token: e.token,
      pid: e.pid,
      claimedAt: e.t,
      validFrom: exp - (e.leaseMs ?? 0),
      validUntil: exp,
      ops: [],
    });
  }
  for (const e of events) {
    if (!FENCED_OK.has(e.ev) || e.key === undefined || e.token === undefined) continue;
    const span = byKey.get(e.key)?.get(e.token);
    if (span === undefined) continue;
    span.ops.push({ t0: e.t0 ?? e.t, t: e.t, ev: e.ev });
    if (e.ev === 'hb' && e.exp !== undefined) span.validUntil = Math.max(span.validUntil, e.exp);
  }
  const violations: string[] = [];
  for (const [key, spans] of byKey) {
    const leases = [...spans.values()].sort((a, b) => a.claimedAt - b.claimedAt);
    const completes = leases.filter((l) => l.ops.some((o) => o.ev === 'complete'));
    if (completes.length > 1) violations.push(`${key}: ${String(completes.length)} holders completed it`);
    for (let i = 1; i < leases.length; i++) {
      const next = leases[i];
      if (next === undefined) continue;
      for (const prev of leases.slice(0, i)) {
        const prevEnd = validEnd(prev);
        if (next.validFrom < prevEnd - toleranceMs) {
          violations.push(
            `${key}: lease ${next.token} (pid ${String(next.pid)}) issued at ${String(next.validFrom)} while ` +
              `${prev.token} (pid ${String(prev.pid)}) was valid until ${String(prevEnd)}`,
          );
        }
        for (const op of prev.ops) {
          if (op.t0 > next.claimedAt) {
            violations.push(
              `${key}: ${op.ev} by old holder ${prev.token} (pid ${String(prev.pid)}) started at ${String(op.t0)} ` +
                `succeeded after ${next.token} was issued at ${String(next.claimedAt)}`,
            );
          }
        }
        if (prev.ops.some((o) => o.ev === 'complete')) {
          violations.push(`${key}: claimed again (${next.token}) after ${prev.token} completed it`);
        }
      }
    }
  }
  return violations;
}

/** The whole stored format as text, or undefined when it is not readable. */
export async function readText(manager: RequestManager, key: string, format: string): Promise<string | undefined> {
  const body = await manager.read(key, format);
  if (body === undefined) return undefined;
  return (await readAll(body.body)).toString('utf8');
}

/**
 * Problems with the visible result of a key: every format must read back exactly what a correct
 * run writes, and the manifest must list exactly the expected formats (all or none).
 */
export async function resultProblems(
  manager: RequestManager,
  status: RequestStatus,
  formats: readonly string[],
): Promise<string[]> {
  const problems: string[] = [];
  const listed = Object.keys(status.result?.formats ?? {}).sort();
  if (listed.join(',') !== [...formats].sort().join(',')) {
    problems.push(`${status.key}: manifest lists [${listed.join(',')}], expected [${[...formats].sort().join(',')}]`);
  }
  for (const format of formats) {
    const text = await readText(manager, status.key, format);
    if (text === undefined) problems.push(`${status.key}/${format}: not readable`);
    else if (text !== contentFor(status.key, format)) {
      problems.push(`${status.key}/${format}: wrong content (${String(text.length)} chars: ${text.slice(0, 60)}…)`);
    }
  }
  return problems;
}

/** Polls until every key is terminal; returns the final statuses. */
export async function waitTerminal(
  manager: RequestManager,
  keys: readonly string[],
  timeoutMs = 60_000,
): Promise<Map<string, RequestStatus>> {
  const done = new Map<string, RequestStatus>();
  await pollUntil(
    async () => {
      for (const key of keys) {
        if (done.has(key)) continue;
        const status = await manager.status(key);
        if (['completed', 'failed', 'cancelled', 'expired'].includes(status.state)) done.set(key, status);
      }
      return done.size === keys.length;
    },
    {
      timeoutMs,
      intervalMs: 100,
      what: `${String(keys.length)} requests to finish`,
      describe: () =>
        `unfinished: ${keys
          .filter((k) => !done.has(k))
          .slice(0, 10)
          .join(', ')}`,
    },
  );
  return done;
}

/** Counts events by key. */
export function countByKey(events: readonly LogEvent[], pick: (e: LogEvent) => boolean): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of events) {
    if (e.key === undefined || !pick(e)) continue;
    counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
  }
  return counts;
}
