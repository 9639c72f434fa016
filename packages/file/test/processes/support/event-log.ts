import { appendFileSync, readFileSync } from 'node:fs';

/**
 * One line of the shared event log. Every process appends its own lines (one `write` with
 * O_APPEND each, so lines of different processes never interleave and a SIGKILL leaves whole
 * lines only); `t` is `Date.now()` when the line was written, `t0` when the logged call started.
 */
export interface LogEvent {
  readonly ev: string;
  readonly pid: number;
  readonly t: number;
  readonly t0?: number;
  readonly key?: string;
  readonly token?: string;
  readonly attempt?: number;
  /** Lease expiry returned by a claim or heartbeat (adapter clock, epoch ms). */
  readonly exp?: number;
  readonly leaseMs?: number;
  readonly outcome?: string;
  readonly cancel?: boolean;
  readonly code?: string;
  readonly reason?: string;
  readonly message?: string;
  readonly format?: string;
  readonly formats?: readonly string[];
  readonly chunk?: number;
  readonly state?: string;
  readonly context?: string;
}

/** What a process passes to {@link EventLog.write}: `pid` and `t` are added. */
export type LogFields = Omit<LogEvent, 'pid' | 't'>;

/** Appends JSON lines to the log file shared by every process of a test. */
export class EventLog {
  readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  /** Writes one line synchronously: it is on disk before the logged call goes on, so a kill cannot reorder it. */
  write(fields: LogFields): void {
    const line = JSON.stringify({ ...fields, pid: process.pid, t: Date.now() }) + '\n';
    appendFileSync(this.file, line, { flag: 'a' });
  }
}

/**
 * Parses the log. A line cut short by a kill (possible only at the very end of a process's
 * output) is skipped rather than failing the parse; `skipped` reports how many.
 */
export function readEvents(file: string): { events: LogEvent[]; skipped: number } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { events: [], skipped: 0 };
    throw error;
  }
  const events: LogEvent[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      events.push(JSON.parse(line) as LogEvent);
    } catch {
      skipped++;
    }
  }
  return { events, skipped };
}

/** Events of one key, in log order. */
export function eventsOf(events: readonly LogEvent[], key: string): LogEvent[] {
  return events.filter((e) => e.key === key);
}
