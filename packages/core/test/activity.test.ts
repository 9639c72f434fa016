import { expect } from 'chai';

import { ConfigError, InvalidRequestError } from '../src/errors.js';
import { ActivityTracker } from '../src/util/activity.js';
import { DurationStats } from '../src/util/duration-stats.js';

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('ActivityTracker', () => {
  it('counts per minute, overall and per group, oldest minute first with empty minutes filled', () => {
    const tracker = new ActivityTracker();
    tracker.record('submitted', 'a', T0 + 1_000);
    tracker.record('submitted', 'b', T0 + 2_000);
    tracker.record('claimed', 'a', T0 + 59_999);
    tracker.record('completed', 'a', T0 + 2 * MINUTE + 5, 3);
    const buckets = tracker.buckets(4, T0 + 2 * MINUTE + 10);
    expect(buckets.map((b) => b.minute)).to.deep.equal([T0 - MINUTE, T0, T0 + MINUTE, T0 + 2 * MINUTE]);
    expect(buckets[0]).to.deep.equal({
      minute: T0 - MINUTE,
      total: { submitted: 0, claimed: 0, completed: 0, failed: 0 },
      byGroup: {},
    });
    expect(buckets[1]?.total).to.deep.equal({ submitted: 2, claimed: 1, completed: 0, failed: 0 });
    expect(buckets[1]?.byGroup).to.deep.equal({
      a: { submitted: 1, claimed: 1, completed: 0, failed: 0 },
      b: { submitted: 1, claimed: 0, completed: 0, failed: 0 },
    });
    expect(buckets[2]?.total.submitted).to.equal(0);
    expect(buckets[3]?.byGroup).to.deep.equal({ a: { submitted: 0, claimed: 0, completed: 3, failed: 0 } });
  });

  it('forgets minutes older than it keeps, and caps the minutes asked for', () => {
    const tracker = new ActivityTracker({ keepMinutes: 3 });
    tracker.record('failed', 'g', T0);
    tracker.record('failed', 'g', T0 + 3 * MINUTE); // reuses T0's slot
    const buckets = tracker.buckets(10, T0 + 3 * MINUTE);
    expect(buckets).to.have.length(3);
    expect(buckets.map((b) => b.total.failed)).to.deep.equal([0, 0, 1]);
    // A late event for a minute whose slot now holds a newer one is dropped, not mixed in.
    tracker.record('failed', 'g', T0);
    expect(tracker.buckets(3, T0 + 3 * MINUTE).map((b) => b.total.failed)).to.deep.equal([0, 0, 1]);
  });

  it('returns copies that later records do not change', () => {
    const tracker = new ActivityTracker();
    tracker.record('claimed', 'g', T0);
    const before = tracker.buckets(1, T0);
    tracker.record('claimed', 'g', T0);
    expect(before[0]?.total.claimed).to.equal(1);
    expect(before[0]?.byGroup['g']?.claimed).to.equal(1);
    expect(tracker.buckets(1, T0)[0]?.total.claimed).to.equal(2);
    expect(tracker.buckets(0, T0)).to.deep.equal([]);
  });

  it('rejects bad options and arguments', () => {
    expect(() => new ActivityTracker({ keepMinutes: 0 }))
      .to.throw(ConfigError)
      .with.property('issues')
      .that.deep.includes({ path: '/keepMinutes', message: 'must be an integer from 1 to 10080, got 0' });
    const tracker = new ActivityTracker();
    expect(() => tracker.buckets(-1, T0)).to.throw(InvalidRequestError, /minutes/);
    expect(() => tracker.buckets(1.5, T0)).to.throw(InvalidRequestError, /minutes/);
  });
});

describe('DurationStats', () => {
  it('keeps an exponential moving average and nearest-rank p50/p95', () => {
    const stats = new DurationStats({ alpha: 0.5 });
    stats.record('/a', 100);
    expect(stats.get('/a')).to.deep.equal({ uri: '/a', count: 1, avgMs: 100, p50Ms: 100, p95Ms: 100 });
    stats.record('/a', 200);
    expect(stats.get('/a')?.avgMs).to.equal(150);
    for (let i = 3; i <= 100; i++) stats.record('/a', i * 100);
    const s = stats.get('/a');
    expect(s?.count).to.equal(100);
    expect(s?.p50Ms).to.equal(5_000);
    expect(s?.p95Ms).to.equal(9_500);
    expect(s?.avgMs).to.be.within(9_800, 10_000);
  });

  it('takes percentiles over the recent window only', () => {
    const stats = new DurationStats({ window: 4 });
    for (const ms of [1_000, 1_000, 1_000, 1_000, 10, 20, 30, 40]) stats.record('/w', ms);
    const s = stats.get('/w');
    expect(s?.count).to.equal(8);
    expect(s?.p50Ms).to.equal(20);
    expect(s?.p95Ms).to.equal(40);
  });

  it('re-sorts for percentiles only once a sixteenth of the window is new', () => {
    const stats = new DurationStats({ window: 32 });
    for (let i = 0; i < 20; i++) stats.record('/r', 10);
    expect(stats.get('/r')?.p95Ms).to.equal(10);
    stats.record('/r', 1_000);
    // One new sample of 32: the percentiles are not refreshed yet (the average is).
    expect(stats.get('/r')).to.deep.include({ count: 21, p95Ms: 10 });
    stats.record('/r', 1_000);
    expect(stats.get('/r')).to.deep.include({ count: 22, p50Ms: 10, p95Ms: 1_000 });
  });

  it('tracks a bounded number of uris, forgetting the least recently updated', () => {
    const stats = new DurationStats({ maxUris: 2 });
    stats.record('/a', 1);
    stats.record('/b', 2);
    stats.record('/a', 3);
    stats.record('/c', 4);
    expect(stats.size).to.equal(2);
    expect(stats.get('/b')).to.equal(undefined);
    expect(stats.all().map((s) => s.uri)).to.deep.equal(['/a', '/c']);
  });

  it('ignores non-finite samples and counts negative ones as 0', () => {
    const stats = new DurationStats();
    stats.record('/x', Number.NaN);
    stats.record('/x', Infinity);
    expect(stats.get('/x')).to.equal(undefined);
    stats.record('/x', -5);
    expect(stats.get('/x')).to.deep.equal({ uri: '/x', count: 1, avgMs: 0, p50Ms: 0, p95Ms: 0 });
  });

  it('rejects bad options with their paths', () => {
    try {
      new DurationStats({ window: 0, maxUris: 1.5, alpha: 2 });
      expect.fail('should throw');
    } catch (error) {
      expect(ConfigError.is(error)).to.equal(true);
      expect((error as ConfigError).issues.map((i) => i.path)).to.deep.equal(['/window', '/maxUris', '/alpha']);
    }
  });
});
