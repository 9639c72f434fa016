import type { Metrics, RequestStatus } from '@armlib/core';

import { between, formatMs, formatTable } from './format.js';
import type { TrackedRequest } from './live-view.js';

/** The closing table: one row per request with its outcome, attempts, run time and stored formats. */
export function summaryLines(tracked: readonly TrackedRequest[], statuses: readonly RequestStatus[]): string[] {
  const byKey = new Map(statuses.map((s) => [s.key, s]));
  const rows = tracked.map((t) => {
    const s = byKey.get(t.key);
    const formats = Object.keys(s?.result?.formats ?? {}).sort();
    return [
      t.label,
      t.key,
      s?.state ?? '?',
      String(s?.attempts ?? 0),
      formatMs(between(s?.startedAt, s?.finishedAt)),
      s?.result?.area ?? '-',
      formats.length === 0 ? '-' : formats.join(','),
    ];
  });
  return formatTable(['request', 'key', 'state', 'attempts', 'duration', 'area', 'formats'], rows, [
    'left',
    'left',
    'left',
    'right',
    'right',
  ]);
}

/** `metrics()` in a few readable blocks: counts, activity, durations, capacity and scaling hint. */
export function metricsLines(m: Metrics): string[] {
  const lines: string[] = [];
  const counts = Object.entries(m.byState)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${state} ${String(n)}`);
  lines.push(
    `Counts by state: ${counts.length === 0 ? 'none' : counts.join(', ')} (queue length ${String(m.queueLength)})`,
  );
  for (const [group, byState] of Object.entries(m.byGroup).sort(([a], [b]) => a.localeCompare(b))) {
    const parts = Object.entries(byState)
      .filter(([, n]) => n > 0)
      .map(([state, n]) => `${state} ${String(n)}`);
    if (parts.length > 0) lines.push(`  group ${group}: ${parts.join(', ')}`);
  }
  const active = m.perMinute.filter((b) => b.submitted + b.claimed + b.completed + b.failed > 0);
  lines.push('', 'Per minute:');
  lines.push(
    ...formatTable(
      ['minute', 'submitted', 'claimed', 'completed', 'failed'],
      active.map((b) => [b.minute, String(b.submitted), String(b.claimed), String(b.completed), String(b.failed)]),
      ['left', 'right', 'right', 'right', 'right'],
    ).map((l) => `  ${l}`),
  );
  lines.push('', 'Durations by uri:');
  lines.push(
    ...formatTable(
      ['uri', 'count', 'avg', 'p50', 'p95'],
      Object.entries(m.durations)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([uri, d]) => [uri, String(d.count), formatMs(d.avgMs), formatMs(d.p50Ms), formatMs(d.p95Ms)]),
      ['left', 'right', 'right', 'right', 'right'],
    ).map((l) => `  ${l}`),
  );
  lines.push(
    '',
    `Workers: ${String(m.workers.workers)} (${String(m.workers.slots)} slots), queue ${m.pause}`,
    `Scaling hint: a request submitted now would wait ≈${formatMs(m.scaling.expectedWaitMs)}; ` +
      `${String(m.scaling.slotsNeeded)} worker slot(s) keep the wait under ${formatMs(m.scaling.targetWaitMs)}`,
  );
  return lines;
}
