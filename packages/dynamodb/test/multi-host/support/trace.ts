/**
 * What a traced queue reports about every lease-related call: enough to reconstruct, per request,
 * who held it with which token, and whether each fenced call landed.
 */

/** An error as it crosses a process boundary. */
export interface TracedError {
  readonly name: string;
  readonly code?: string;
  readonly retryable?: boolean;
}

/** Where a trace event comes from (a process name, or a worker name in one process). */
export interface TraceSource {
  readonly source: string;
  readonly pid: number;
}

/** One fenced call (or a claim / enqueue) and how it ended, as the traced queue reports it. */
export type TraceRecord =
  | {
      readonly op: 'claim';
      readonly key: string;
      readonly token: string;
      readonly attempt: number;
      readonly leaseExpiresAt: number;
      readonly at: number;
    }
  | { readonly op: 'heartbeat-start'; readonly key: string; readonly token: string; readonly seq: number }
  | {
      readonly op: 'heartbeat';
      readonly key: string;
      readonly token: string;
      readonly ok: boolean;
      readonly cancelRequested?: boolean;
      readonly leaseExpiresAt?: number;
      readonly error?: TracedError;
    }
  | {
      readonly op: 'complete' | 'fail' | 'release' | 'acknowledgeCancel';
      readonly key: string;
      readonly token: string;
      readonly ok: boolean;
      readonly state?: string;
      readonly error?: TracedError;
    }
  | {
      readonly op: 'enqueue';
      readonly key: string;
      readonly outcome?: 'created' | 'existing';
      readonly error?: TracedError;
    };

/** A trace record stamped with the process (or in-process worker) that made the call. */
export type TraceEvent = TraceRecord & TraceSource;

/** Receives trace events. */
export type TraceSink = (event: TraceRecord) => void;

/** The parts of an error worth sending to another process. */
export function traceError(error: unknown): TracedError {
  if (typeof error !== 'object' || error === null) return { name: typeof error };
  const e = error as { name?: unknown; code?: unknown; retryable?: unknown };
  return {
    name: typeof e.name === 'string' ? e.name : 'Error',
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.retryable === 'boolean' ? { retryable: e.retryable } : {}),
  };
}

/** Everything known about one lease (one claim's token). */
export interface LeaseHistory {
  readonly key: string;
  readonly token: string;
  readonly attempt: number;
  readonly source: string;
  /** When the claim returned to its worker (the claiming process's clock). */
  readonly claimedAt: number;
  /** Latest lease expiry the holder was told of (claim or a successful heartbeat). */
  believedUntil: number;
  /** A fenced call of this token was refused with LeaseLostError. */
  lost: boolean;
  /** complete() returned for this token. */
  completed: boolean;
  /** Any fenced finishing call (complete/fail/release/acknowledgeCancel) returned. */
  finished: boolean;
}

/** Groups the claim and fenced-call events by request and token. */
export function leaseHistories(events: readonly TraceEvent[]): Map<string, LeaseHistory[]> {
  const byToken = new Map<string, LeaseHistory>();
  const byKey = new Map<string, LeaseHistory[]>();
  for (const e of events) {
    if (e.op !== 'claim') continue;
    const h: LeaseHistory = {
      key: e.key,
      token: e.token,
      attempt: e.attempt,
      source: e.source,
      claimedAt: e.at,
      believedUntil: e.leaseExpiresAt,
      lost: false,
      completed: false,
      finished: false,
    };
    byToken.set(e.token, h);
    const list = byKey.get(e.key) ?? [];
    list.push(h);
    byKey.set(e.key, list);
  }
  for (const e of events) {
    if (e.op === 'claim' || e.op === 'enqueue' || e.op === 'heartbeat-start') continue;
    const h = byToken.get(e.token);
    if (h === undefined) continue;
    if (!e.ok) {
      if (e.error?.code === 'LEASE_LOST') h.lost = true;
      continue;
    }
    if (e.op === 'heartbeat') {
      if (e.leaseExpiresAt !== undefined) h.believedUntil = Math.max(h.believedUntil, e.leaseExpiresAt);
      continue;
    }
    h.finished = true;
    if (e.op === 'complete') h.completed = true;
  }
  for (const list of byKey.values()) list.sort((a, b) => a.attempt - b.attempt);
  return byKey;
}

/**
 * Breaches of "one live holder at a time", from lease histories stamped with one host clock
 * (the adapter's lease times and the claim return times come from the same `Date.now`):
 * - a request completed by two leases, or claimed again after a lease completed it;
 * - a lease its holder was told runs until T, while another claim of the request returned before T.
 *   A correct queue only hands the request out again after the sweep found the old lease expired
 *   (stored expiry ≤ the sweep's now < the new claim), and the holder only ever learns expiries it stored.
 * A lease given back by fail/release ends at that call instead, which the holder's clock cannot
 * place against the next claim; such pairs are left to the token fencing checked elsewhere.
 */
export function holderViolations(histories: ReadonlyMap<string, readonly LeaseHistory[]>): string[] {
  const out: string[] = [];
  for (const [key, leases] of histories) {
    const completed = leases.filter((l) => l.completed);
    if (completed.length > 1) {
      out.push(
        `${key}: completed by ${String(completed.length)} leases (${completed.map((l) => `attempt ${String(l.attempt)} by ${l.source}`).join(', ')})`,
      );
    }
    for (let i = 1; i < leases.length; i++) {
      const a = leases[i - 1];
      const b = leases[i];
      if (a === undefined || b === undefined) continue;
      if (a.completed)
        out.push(
          `${key}: attempt ${String(a.attempt)} completed it, yet attempt ${String(b.attempt)} (${b.source}) claimed it again`,
        );
      if (a.finished && !a.completed) continue;
      if (a.believedUntil > b.claimedAt) {
        out.push(
          `${key}: attempt ${String(a.attempt)} (${a.source}) was told its lease ran until ${new Date(a.believedUntil).toISOString()}, ` +
            `but attempt ${String(b.attempt)} (${b.source}) had claimed it at ${new Date(b.claimedAt).toISOString()}`,
        );
      }
    }
  }
  return out;
}
