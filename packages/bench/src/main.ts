// Entry point of `npm run bench` (node --expose-gc packages/bench/dist/src/main.js):
//   [--quick] [--count=<lifecycles per run>] [--seconds=<cap per run>] [--out=<dir>] [--memory-only]
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { armlibSystem } from './armlib-system.js';
import { FILE_PROCESSES_SYSTEM, FILE_SYSTEM, runBackendBenches, SMALL_YOUNG_GENERATION } from './backends.js';
import type { BackendResults } from './backends.js';
import { bareSystem } from './bare-system.js';
import { drive } from './drive.js';
import type { DriveOptions, LifecycleSystem, ThroughputResult } from './drive.js';
import type { FileStreamingResult } from './file-streaming.js';
import type { S3StreamingResult } from './s3-streaming.js';
import { dependentReadNs, pageTouchUs } from './memory-latency.js';
import { fixed, int, machineInfo, mib, table, writeResults } from './report.js';
import { collectGarbage } from './stats.js';
import { measureManyGroups } from './many-groups.js';
import type { ManyGroupsResult } from './many-groups.js';
import { HOT_KEYS, measureStatusReads } from './status-read.js';
import type { StatusReadResult } from './status-read.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    count: { type: 'string' },
    seconds: { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
    'memory-only': { type: 'boolean', default: false },
  },
});

const quick = values.quick;
const count = positive('count', values.count ?? (quick ? '20000' : '200000'));
const maxMs = positive('seconds', values.seconds ?? (quick ? '3' : '8')) * 1000;
const CONCURRENCIES = [1, 10, 100] as const;
const BASELINE_CONCURRENCY = 10;
const QUEUE_SIZES = quick ? [1_000, 100_000] : [1_000, 1_000_000];
const GROUP_COUNTS = [10, 10_000];
const MANY_GROUPS_REQUESTS = quick ? 10_000 : 20_000;
const MANY_GROUPS_SUBMITS = quick ? 500 : 2_000;
const GOAL_LIFECYCLES_PER_SECOND = 100_000;
const GOAL_STATUS_RATIO = 2;
const GOAL_STREAM_RSS_MB = 100;
const GOAL_DYNAMO_WRITE_UNITS = 6;
const GOAL_DYNAMO_READ_UNITS = 3;
const GOAL_STREAM_COPY_RATIO = 0.8;
const FILE_STREAM_BYTES = quick ? 128 * 2 ** 20 : 2 ** 30;
const S3_STREAM_BYTES = quick ? 50 * 2 ** 20 : 200 * 2 ** 20;
/** The 1 KB csv every job writes. */
const PAYLOAD = Buffer.from(`id,region,amount\n${'0123456789,EU,42.00\n'.repeat(60)}`.slice(0, 1024));
const driveOptions: DriveOptions = { count, maxMs, batch: 500, window: 2000 };

function positive(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`--${name} must be a positive number, got '${raw}'\n`);
    process.exit(2);
  }
  return n;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function measure(system: LifecycleSystem, options: DriveOptions): Promise<ThroughputResult> {
  try {
    return await drive(system, options);
  } finally {
    await system.close();
    collectGarbage();
  }
}

const startedAt = new Date();
const machine = machineInfo();
say(
  `armlib bench: ${String(machine.cpus)} × ${machine.cpuModel}, node ${machine.node}${machine.exposeGc ? '' : ' (no --expose-gc: heap figures skipped)'}`,
);
say(`load average ${fixed(machine.loadAverage1m, 2)} at start (other processes skew every figure)`);
say(`lifecycle runs: up to ${int(count)} lifecycles or ${String(maxMs / 1000)} s each, 1 KB csv result per job`);
say('');

// Warm-up so the first measured run is not paying for JIT compilation.
await measure(armlibSystem(10, PAYLOAD, 'warmup'), { ...driveOptions, count: Math.min(count, 10_000), maxMs: 2000 });
await measure(bareSystem(10, PAYLOAD, 'warmup'), { ...driveOptions, count: Math.min(count, 10_000), maxMs: 2000 });

const lifecycle: (ThroughputResult & { system: string; concurrency: number })[] = [];
for (const concurrency of CONCURRENCIES) {
  say(`armlib memory, concurrency ${String(concurrency)}…`);
  const result = await measure(armlibSystem(concurrency, PAYLOAD, `c${String(concurrency)}`), driveOptions);
  lifecycle.push({ system: 'armlib memory', concurrency, ...result });
}
say(`bare in-process queue (baseline), concurrency ${String(BASELINE_CONCURRENCY)}…`);
const baseline = await measure(bareSystem(BASELINE_CONCURRENCY, PAYLOAD, 'baseline'), driveOptions);
lifecycle.push({ system: 'bare queue (baseline)', concurrency: BASELINE_CONCURRENCY, ...baseline });

// A discarded pass, so the first measured size does not pay for compiling the read path.
await measureStatusReads({ pending: QUEUE_SIZES[0] ?? 1000, reads: 20_000, maxMs: 1000 });
const statusReads: StatusReadResult[] = [];
for (const pending of QUEUE_SIZES) {
  say(`status reads with ${int(pending)} pending…`);
  statusReads.push(await measureStatusReads({ pending, reads: 50_000, maxMs: 3000 }));
  collectGarbage();
}
// Work spread over many groups (one per tenant): claims and positions across groups.
const manyGroups: ManyGroupsResult[] = [];
for (const groups of GROUP_COUNTS) {
  say(`memory, ${int(MANY_GROUPS_REQUESTS)} requests in ${int(groups)} groups…`);
  manyGroups.push(
    await measureManyGroups({ groups, requests: MANY_GROUPS_REQUESTS, concurrency: 10, submits: MANY_GROUPS_SUBMITS }),
  );
  collectGarbage();
}

const smallest = statusReads[0];
const largest = statusReads[statusReads.length - 1];
const statusRatio = smallest !== undefined && largest !== undefined ? largest.statusUs / smallest.statusUs : Number.NaN;
// The same read over the same number of distinct requests at both sizes (see hotStatusUs).
const hotStatusRatio =
  smallest !== undefined && largest !== undefined ? largest.hotStatusUs / smallest.hotStatusUs : Number.NaN;
// The machine's floor under those reads: one dependent access within each size's working set.
const bytesPerPending =
  largest === undefined ? Number.NaN : (largest.heapAfterBytes - largest.heapBeforeBytes) / largest.pending;
const memoryLatency = Number.isFinite(bytesPerPending)
  ? statusReads.map((r) => {
      const bytes = Math.max(64 * 1024, Math.round(r.pending * bytesPerPending));
      return { pending: r.pending, workingSetBytes: bytes, dependentReadNs: dependentReadNs(bytes) };
    })
  : [];
const pageTouch = pageTouchUs();
const bestArmlib = Math.max(...lifecycle.filter((r) => r.system === 'armlib memory').map((r) => r.perSecond));

say('');
say('Lifecycle: submit → claim → write 1 KB csv → complete → status read (latency: submit → completed event)');
for (const line of table(
  ['system', 'concurrency', 'lifecycles', 'seconds', 'lifecycles/s', 'p50 ms', 'p99 ms', 'bad reads'],
  lifecycle.map((r) => [
    r.system,
    String(r.concurrency),
    int(r.lifecycles),
    fixed(r.elapsedMs / 1000, 2),
    int(r.perSecond),
    fixed(r.p50Ms, 2),
    fixed(r.p99Ms, 2),
    String(r.badReads),
  ]),
)) {
  say(`  ${line}`);
}
say(
  `  goal ≥ ${int(GOAL_LIFECYCLES_PER_SECOND)}/s: best armlib ${int(bestArmlib)}/s (${bestArmlib >= GOAL_LIFECYCLES_PER_SECOND ? 'met' : 'not met'})`,
);
say(
  `  this machine: writing a 4 KiB page of fresh memory costs ${fixed(pageTouch.firstTouchUs, 2)} µs the first time ` +
    `(a page fault), ${fixed(pageTouch.rewriteUs, 2)} µs once mapped; each lifecycle keeps its record and its result`,
);
say('');
say('Status with position (keys spread across the queue)');
for (const line of table(
  [
    'pending',
    'fill s',
    'reads',
    'status µs/read',
    'position µs/read',
    `status µs/read, ${int(HOT_KEYS)} keys`,
    'heapUsed after fill',
  ],
  statusReads.map((r) => [
    int(r.pending),
    fixed(r.fillMs / 1000, 2),
    int(r.reads),
    fixed(r.statusUs, 2),
    fixed(r.positionUs, 2),
    fixed(r.hotStatusUs, 2),
    mib(r.heapAfterBytes),
  ]),
)) {
  say(`  ${line}`);
}
say(
  `  ratio ${int(largest?.pending ?? Number.NaN)} vs ${int(smallest?.pending ?? Number.NaN)} pending: ${fixed(statusRatio, 2)}× ` +
    `(goal ≤ ${String(GOAL_STATUS_RATIO)}×: ${statusRatio <= GOAL_STATUS_RATIO ? 'met' : 'not met'})`,
);
say(
  `  ratio of the same read over the same ${int(HOT_KEYS)} requests (spread evenly; the records stay in cache at both sizes): ` +
    `${fixed(hotStatusRatio, 2)}× (${hotStatusRatio <= GOAL_STATUS_RATIO ? 'within' : 'beyond'} ${String(GOAL_STATUS_RATIO)}×)`,
);
if (largest !== undefined && machine.exposeGc) {
  say(
    `  memory: heapUsed ${mib(largest.heapAfterBytes)} with ${int(largest.pending)} pending (≈${int(bytesPerPending)} bytes per pending request)`,
  );
}
if (memoryLatency.length > 0) {
  say(
    `  this machine: one dependent read of a random cache line costs ` +
      memoryLatency
        .map((m) => `${fixed(m.dependentReadNs, 0)} ns within ${mib(m.workingSetBytes)} (${int(m.pending)} pending)`)
        .join(', '),
  );
}

say('');
say(`Many groups: memory backend, ${int(MANY_GROUPS_REQUESTS)} requests spread over the groups round robin`);
for (const line of table(
  ['groups', 'worker jobs/s (concurrency 10)', 'submit + status µs'],
  manyGroups.map((r) => [int(r.groups), int(r.drainPerSecond), fixed(r.submitStatusUs, 1)]),
)) {
  say(`  ${line}`);
}
say('  (claims find the group whose turn it is in O(log groups); a position still counts every group with ready work)');

let backends: BackendResults | undefined;
if (!values['memory-only']) {
  say('');
  backends = await runBackendBenches({
    drive: driveOptions,
    fileStreamBytes: FILE_STREAM_BYTES,
    s3StreamBytes: S3_STREAM_BYTES,
    say,
  });
  reportBackends(backends);
}

const path = await writeResults(resolve(values.out), startedAt, {
  date: startedAt.toISOString(),
  machine,
  settings: { ...driveOptions, payloadBytes: PAYLOAD.length, quick },
  lifecycle,
  statusReads,
  manyGroups,
  statusRatio,
  hotStatusRatio,
  memoryLatency,
  pageTouch,
  memory:
    largest === undefined
      ? undefined
      : {
          pending: largest.pending,
          heapUsedBytes: largest.heapAfterBytes,
          bytesPerPending,
        },
  goals: {
    lifecyclesPerSecond: {
      goal: GOAL_LIFECYCLES_PER_SECOND,
      best: bestArmlib,
      met: bestArmlib >= GOAL_LIFECYCLES_PER_SECOND,
    },
    statusRatio: { goal: GOAL_STATUS_RATIO, measured: statusRatio, met: statusRatio <= GOAL_STATUS_RATIO },
  },
  backends,
});
say('');
say(`Results written to ${path} (${String(Math.round((Date.now() - startedAt.getTime()) / 1000))} s in all).`);

function reportBackends(results: BackendResults): void {
  say('');
  say('Backends: the same lifecycle, durable (latency: submit → completed event)');
  for (const line of table(
    ['system', 'concurrency', 'lifecycles', 'seconds', 'lifecycles/s', 'p50 ms', 'p99 ms', 'bad reads'],
    results.lifecycle.map((r) => [
      r.system,
      String(r.concurrency),
      int(r.lifecycles),
      fixed(r.elapsedMs / 1000, 2),
      int(r.perSecond),
      fixed(r.p50Ms, 2),
      fixed(r.p99Ms, 2),
      String(r.badReads),
    ]),
  )) {
    say(`  ${line}`);
  }
  const best = (prefix: string): number =>
    Math.max(0, ...results.lifecycle.filter((r) => r.system.startsWith(prefix)).map((r) => r.perSecond));
  // Two comparisons, both printed: one node process each (BullMQ's does its queue work in
  // redis-server), and two processes each (armlib's API process and a worker process, as the file
  // backend is deployed, against BullMQ's node process and redis-server).
  const file = best(FILE_SYSTEM);
  const processes = best(FILE_PROCESSES_SYSTEM);
  const bullmq = best('BullMQ');
  const verdict = (rate: number): string => (rate >= bullmq ? 'met' : 'not met');
  if (results.bullmqSkipped === undefined) {
    say(
      `  goal file ≥ BullMQ (${int(bullmq)}/s): one node process ${int(file)}/s (${verdict(file)}); ` +
        `API process + worker process ${int(processes)}/s (${verdict(processes)})`,
    );
  } else {
    say(`  ${results.bullmqSkipped}`);
  }
  const fs = results.fileStreaming;
  const fsSmall = results.fileStreamingSmallYoung;
  const s3 = results.s3Streaming;
  const s3Small = results.s3StreamingSmallYoung;
  say('');
  say('Streaming one result through the cache (put, then get; a fresh process each)');
  const rows: string[][] = [];
  const fileRow = (r: FileStreamingResult, label: string): string[] => [
    label,
    mib(r.bytes),
    fixed(r.putMs / 1000, 2),
    fixed(r.getMs / 1000, 2),
    fixed(r.putGetMiBps, 0),
    `${fixed(r.copyMiBps, 0)} (${fixed(r.ratio, 2)}×)`,
    fixed(r.peakRssMiB, 1),
  ];
  if (fs !== undefined) rows.push(fileRow(fs, `file (${fs.durability})`));
  if (fsSmall !== undefined) rows.push(fileRow(fsSmall, `file (${fsSmall.durability}), ${SMALL_YOUNG_GENERATION}`));
  const s3Row = (r: S3StreamingResult, label: string): string[] => [
    label,
    mib(r.bytes),
    fixed(r.putMs / 1000, 2),
    fixed(r.getMs / 1000, 2),
    fixed(r.bytes / 2 ** 20 / ((r.putMs + r.getMs) / 1000), 0),
    '-',
    `${fixed(r.peakRssMiB, 1)} (put ${fixed(r.putPeakRssMiB, 1)})`,
  ];
  if (s3 !== undefined) rows.push(s3Row(s3, 's3 (s3rver)'));
  if (s3Small !== undefined) rows.push(s3Row(s3Small, `s3 (s3rver), ${SMALL_YOUNG_GENERATION}`));
  const rssOk = (r: { peakRssMiB: number }): string =>
    r.peakRssMiB * 2 ** 20 <= GOAL_STREAM_RSS_MB * 1e6 ? 'met' : 'not met';
  for (const line of table(
    ['cache', 'size', 'put s', 'get s', 'put+get MiB/s', 'plain copy MiB/s', 'peak RSS MiB'],
    rows,
  )) {
    say(`  ${line}`);
  }
  if (fs !== undefined) {
    say(
      `  goal file: peak RSS ≤ ${String(GOAL_STREAM_RSS_MB)} MB (node defaults: ${rssOk(fs)}` +
        `${fsSmall === undefined ? '' : `; ${SMALL_YOUNG_GENERATION}: ${rssOk(fsSmall)}`}), ` +
        `≥ ${String(GOAL_STREAM_COPY_RATIO)}× plain copy (${fs.ratio >= GOAL_STREAM_COPY_RATIO ? 'met' : 'not met'})`,
    );
  }
  if (s3 !== undefined) {
    say(
      `  goal s3: peak RSS ≤ ${String(GOAL_STREAM_RSS_MB)} MB (node defaults: ${rssOk(s3)}` +
        `${s3Small === undefined ? '' : `; ${SMALL_YOUNG_GENERATION}: ${rssOk(s3Small)}`})`,
    );
  }
  const dc = results.dynamoCost;
  say('');
  if (dc?.measured === true) {
    say(
      `DynamoDB: one lifecycle on ${dc.backend}, ${String(dc.shards)} work-index shards (ReturnConsumedCapacity + command counter)`,
    );
    const steps = Object.entries(dc.cost.steps).map(([name, t]) => [
      name,
      String(t.requests),
      Object.entries(t.commands)
        .map(([op, n]) => `${op}×${String(n)}`)
        .join(' '),
      fixed(t.writeUnits, 1),
      fixed(t.readUnits, 1),
      String(t.scans),
    ]);
    const t = dc.cost.total;
    steps.push(['total', String(t.requests), '', fixed(t.writeUnits, 1), fixed(t.readUnits, 1), String(t.scans)]);
    for (const line of table(['step', 'requests', 'commands', 'write units', 'read units', 'scans'], steps)) {
      say(`  ${line}`);
    }
    say(
      `  goal ≤ ${String(GOAL_DYNAMO_WRITE_UNITS)} write units: ${fixed(t.writeUnits, 1)} (${t.writeUnits <= GOAL_DYNAMO_WRITE_UNITS ? 'met' : 'not met'}); ` +
        `≤ ${String(GOAL_DYNAMO_READ_UNITS)} read units: ${fixed(t.readUnits, 1)} (${t.readUnits <= GOAL_DYNAMO_READ_UNITS ? 'met' : 'not met'}); ` +
        `0 scans (${t.scans === 0 ? 'met' : 'not met'})`,
    );
    say(
      `  at on-demand prices ($0.625 per million write units, $0.125 per million read units): ` +
        `$${fixed(t.writeUnits * 0.625 + t.readUnits * 0.125, 2)} per million lifecycles`,
    );
  } else if (dc !== undefined) {
    say(`DynamoDB cost: skipped: ${dc.reason}`);
  }
  for (const error of results.errors) say(`  error: ${error}`);
}
