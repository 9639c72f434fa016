import type { QueueState } from '../model.js';
import { QUEUE_STATES } from '../model.js';
import type { ManagerSettings } from '../settings.js';
import type { ActivityBucket, ActivityCounts, QueueManager } from '../spi/queue.js';
import type { Metrics, MinuteCounts } from './types.js';

const WINDOW_MINUTES = 10;

/** Builds the metrics snapshot from the queue's counters. */
export async function computeMetrics(
  queue: QueueManager,
  now: number,
  settings: Readonly<ManagerSettings>,
): Promise<Metrics> {
  const [counts, activity, stats, capacity, paused] = await Promise.all([
    queue.counts(),
    queue.activity(WINDOW_MINUTES),
    queue.uriStats(),
    queue.capacity(),
    queue.isPaused(),
  ]);
  const byState = { ...zeroStates(), ...counts.byState };
  const byGroup: Record<string, Record<QueueState, number>> = {};
  for (const [group, c] of Object.entries(counts.byGroup)) byGroup[group] = { ...zeroStates(), ...c };

  const durations: Metrics['durations'] = {};
  let weighted = 0;
  let samples = 0;
  for (const s of stats) {
    durations[s.uri] = {
      count: s.count,
      avgMs: Math.round(s.avgMs),
      p50Ms: Math.round(s.p50Ms),
      p95Ms: Math.round(s.p95Ms),
    };
    weighted += s.avgMs * s.count;
    samples += s.count;
  }
  const avgMs = samples > 0 ? weighted / samples : settings.defaultEstimatedMs;
  const pending = byState.pending;
  const slots = Math.max(1, capacity.slots);
  const expectedWaitMs = Math.round((pending * avgMs) / slots);
  const slotsNeeded =
    pending === 0 ? 0 : Math.max(1, Math.ceil((pending * avgMs) / Math.max(1, settings.targetWaitMs)));

  const perMinuteByGroup: Record<string, MinuteCounts[]> = {};
  const groups = new Set<string>();
  for (const bucket of activity) for (const g of Object.keys(bucket.byGroup)) groups.add(g);
  for (const g of groups) perMinuteByGroup[g] = activity.map((b) => minuteCounts(b.minute, b.byGroup[g]));

  return {
    at: new Date(now).toISOString(),
    pause: paused ? (byState.running > 0 ? 'pausing' : 'paused') : 'running',
    queueLength: byState.pending + byState.running,
    byState,
    byGroup,
    perMinute: activity.map((b: ActivityBucket) => minuteCounts(b.minute, b.total)),
    perMinuteByGroup,
    durations,
    workers: { workers: capacity.workers, slots: capacity.slots },
    scaling: { expectedWaitMs, targetWaitMs: settings.targetWaitMs, slotsNeeded },
  };
}

function minuteCounts(minute: number, c: ActivityCounts | undefined): MinuteCounts {
  return {
    minute: new Date(minute).toISOString(),
    submitted: c?.submitted ?? 0,
    claimed: c?.claimed ?? 0,
    completed: c?.completed ?? 0,
    failed: c?.failed ?? 0,
  };
}

function zeroStates(): Record<QueueState, number> {
  return Object.fromEntries(QUEUE_STATES.map((s) => [s, 0])) as Record<QueueState, number>;
}
