import { resolve } from 'node:path';

import { createRequestManager } from '@armlib/core';
import type { ArmConfig, Metrics, RequestManager, RequestStatus, State } from '@armlib/core';

import { BarsView } from './bars-view.js';
import { CancelWhenRunning } from './canceller.js';
import { loadDemoRequests } from './fixtures.js';
import type { DemoEntry } from './fixtures.js';
import { formatMs, formatTable } from './format.js';
import { createReportHandler } from './handler.js';
import { LinesView } from './lines-view.js';
import type { LiveView, TrackedRequest } from './live-view.js';
import { simulation } from './report.js';
import { makeOutDir } from './make-out-dir.js';
import { saveResults } from './results.js';
import type { SavedFile } from './results.js';
import { metricsLines, summaryLines } from './summary.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Where results are written, as `<outDir>/<key>.<format>` (created when missing). */
  readonly outDir: string;
  /** Multiplies the simulated work (default 1: a few seconds in all); 0 runs without timers. */
  readonly workScale?: number;
  /** Receives every output line (default: stdout). Giving it also selects the line-per-transition view. */
  readonly out?: (line: string) => void;
  /** armlib configuration (default: the default configuration, as `createRequestManager()` loads it). */
  readonly config?: ArmConfig;
  /** Progress bars (true) or one line per transition (false); default: bars when stdout is a terminal. */
  readonly live?: boolean;
  /** The request set to run (default: `test-fixtures/requests/demo-requests.json`). */
  readonly requestsPath?: string;
}

/** What happened to one entry of the request set when it was submitted. */
export interface DemoSubmission {
  readonly label: string;
  readonly key: string;
  /** The state `submit` returned. */
  readonly state: State;
  /** Label of the earlier entry with the same key, when this one was deduplicated. */
  readonly duplicateOf?: string;
}

/** What {@link runDemo} did, for callers that check it. */
export interface DemoResult {
  readonly submissions: readonly DemoSubmission[];
  /** One per distinct key, in first-submission order, with its label. */
  readonly tracked: readonly TrackedRequest[];
  /** Final status of each distinct key, in the order of `tracked`. */
  readonly statuses: readonly RequestStatus[];
  readonly files: readonly SavedFile[];
  readonly metrics: Metrics;
  /** `submitted` and `deduplicated` events seen while submitting. */
  readonly events: { readonly submitted: number; readonly deduplicated: number };
  readonly elapsedMs: number;
}

/** Jobs the demo's worker runs at once. */
export const DEMO_CONCURRENCY = 3;
/** Real time between the marked request being claimed and the demo cancelling it, at work scale 1, ms. */
const CANCEL_AFTER_MS = 2500;
/** Short lease so a cancel from another process would also be seen within a couple of seconds. */
const DEMO_LEASE_MS = 6000;
/** Bound on the wait for every request to finish, so a misbehaving backend cannot hang the demo. */
const FINISH_TIMEOUT_MS = 120_000;

/**
 * Runs armlib's main job end to end on one request manager: submits the request set (showing
 * deduplication), runs a worker over it with a live view, cancels the marked request while it
 * runs, saves every result under `outDir`, and prints a summary and the metrics.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const out = options.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const workScale = options.workScale ?? 1;
  const live = options.live ?? (options.out === undefined && process.stdout.isTTY);
  const requestSet = await loadDemoRequests(options.requestsPath);
  // Before any work: an --out that cannot be made fails the run at once, not after it.
  await makeOutDir(options.outDir);
  const rm = await createRequestManager(options.config);
  try {
    for (const [group, policy] of Object.entries(requestSet.groups)) rm.configureGroup(group, policy);

    const events = { submitted: 0, deduplicated: 0 };
    const count = (name: keyof typeof events) => (): void => {
      events[name]++;
    };
    const onSubmitted = count('submitted');
    const onDeduplicated = count('deduplicated');
    rm.events.on('submitted', onSubmitted).on('deduplicated', onDeduplicated);
    const submissions = await submitAll(rm, requestSet.entries, out);
    rm.events.off('submitted', onSubmitted).off('deduplicated', onDeduplicated);

    const tracked = distinct(submissions);
    const duplicates = submissions.length - tracked.length;
    out(
      `${String(submissions.length)} submitted, ${String(tracked.length)} distinct keys, ${String(duplicates)} deduplicated ` +
        `(events: ${String(events.submitted)} submitted, ${String(events.deduplicated)} deduplicated)`,
    );
    out('');
    await printQueue(rm, tracked, out);

    const labels = new Map(tracked.map((t) => [t.key, t.label]));
    const view: LiveView = live ? new BarsView(rm, tracked) : new LinesView(rm, tracked, out);
    const toCancel = requestSet.entries
      .filter((e) => simulation(e.request) === 'cancel-while-running')
      .map((e) => submissions.find((s) => s.label === e.label)?.key)
      .filter((key): key is string => key !== undefined);
    const canceller = new CancelWhenRunning(rm, toCancel, CANCEL_AFTER_MS * workScale, (key, line) => {
      view.log(`${labels.get(key) ?? key}: ${line}`);
    });

    out(`Running a worker with concurrency ${String(DEMO_CONCURRENCY)}…`);
    view.start();
    const worker = rm.process(createReportHandler({ workScale }), {
      concurrency: DEMO_CONCURRENCY,
      leaseMs: DEMO_LEASE_MS,
    });
    let finals: RequestStatus[];
    let metrics: Metrics;
    try {
      finals = await Promise.all(tracked.map((t) => rm.waitFor(t.key, { timeoutMs: FINISH_TIMEOUT_MS })));
      // Before the worker stops, so the snapshot still counts its capacity.
      metrics = await rm.metrics();
    } finally {
      await canceller.finish();
      await worker.stop({ graceMs: 1000 });
      await view.stop();
    }

    const outDir = resolve(options.outDir);
    const files = await saveResults(rm, finals, outDir);
    out('');
    out(`Results (${String(files.length)} files written to ${outDir}):`);
    for (const line of summaryLines(tracked, finals)) out(indent(line));
    out('');
    out('Metrics:');
    for (const line of metricsLines(metrics)) out(indent(line));
    const elapsedMs = Date.now() - started;
    out('');
    out(`Done in ${formatMs(elapsedMs)}.`);
    return { submissions, tracked, statuses: finals, files, metrics, events, elapsedMs };
  } finally {
    await rm.close();
  }
}

/** Submits the entries one by one, in order, and prints what `submit` made of each. */
async function submitAll(
  rm: RequestManager,
  entries: readonly DemoEntry[],
  out: (line: string) => void,
): Promise<DemoSubmission[]> {
  const firstByKey = new Map<string, string>();
  const submissions: DemoSubmission[] = [];
  for (const entry of entries) {
    const status = await rm.submit(entry.request);
    const duplicateOf = firstByKey.get(status.key);
    if (duplicateOf === undefined) firstByKey.set(status.key, entry.label);
    submissions.push({
      label: entry.label,
      key: status.key,
      state: status.state,
      ...(duplicateOf === undefined ? {} : { duplicateOf }),
    });
  }
  out(`Submitting ${String(entries.length)} requests:`);
  const rows = submissions.map((s, i) => [
    String(i + 1),
    s.label,
    s.key,
    s.state,
    s.duplicateOf !== undefined
      ? `deduplicated: same key as "${s.duplicateOf}"`
      : s.state === 'completed'
        ? 'already in the cache'
        : 'queued',
  ]);
  for (const line of formatTable(['#', 'request', 'key', 'state', 'outcome'], rows, ['right'])) out(indent(line));
  return submissions;
}

/** The distinct keys of the submissions, labelled by their first submission. */
function distinct(submissions: readonly DemoSubmission[]): TrackedRequest[] {
  return submissions.filter((s) => s.duplicateOf === undefined).map((s) => ({ key: s.key, label: s.label }));
}

/** Prints the queue in serving order (priority first, then FIFO) with each request's ETA. */
async function printQueue(
  rm: RequestManager,
  tracked: readonly TrackedRequest[],
  out: (line: string) => void,
): Promise<void> {
  const statuses = await Promise.all(tracked.map(async (t) => ({ t, s: await rm.status(t.key) })));
  const pending = statuses
    .filter(({ s }) => s.state === 'pending')
    .sort((a, b) => (a.s.position ?? Infinity) - (b.s.position ?? Infinity));
  out(`Queue before the worker starts (${String(pending.length)} pending):`);
  const rows = pending.map(({ t, s }) => [
    String(s.position ?? '?'),
    t.label,
    s.request?.group ?? 'default',
    String(s.request?.priority ?? 0),
    formatMs(s.etaMs),
  ]);
  for (const line of formatTable(['position', 'request', 'group', 'priority', 'ETA'], rows, [
    'right',
    'left',
    'left',
    'right',
    'right',
  ])) {
    out(indent(line));
  }
  out('');
}

function indent(line: string): string {
  return line === '' ? '' : `  ${line}`;
}
