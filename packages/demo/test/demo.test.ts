import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ConfigError, keyOf } from '@armlib/core';
import type { ArmConfig, RequestStatus } from '@armlib/core';

import { runDemo } from '../src/demo.js';
import type { DemoResult } from '../src/demo.js';
import { loadDemoRequests, parseDemoRequests } from '../src/fixtures.js';
import type { DemoRequestSet } from '../src/fixtures.js';
import { renderCsv, renderJson, requestedFormats, simulation } from '../src/report.js';

use(chaiAsPromised);

// Memory backend with quick retries and polling, so the run is short; the demo itself adds no delays at workScale 0.
const CONFIG: ArmConfig = {
  queue: { adapter: 'memory' },
  cache: { adapter: 'memory' },
  manager: { retryBaseMs: 5, retryMaxMs: 10, pollMs: 10 },
};

describe('demo', () => {
  let outDir: string;
  let lines: string[];
  let result: DemoResult;
  let set: DemoRequestSet;

  before(async () => {
    set = await loadDemoRequests();
    outDir = await mkdtemp(join(tmpdir(), 'armlib-demo-'));
    lines = [];
    result = await runDemo({
      outDir,
      workScale: 0,
      config: CONFIG,
      out: (line) => {
        lines.push(line);
      },
    });
  });

  after(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  function statusOf(label: string): RequestStatus {
    const entry = set.entries.find((e) => e.label === label);
    expect(entry, `fixture entry '${label}'`).to.not.equal(undefined);
    const status = result.statuses.find((s) => s.key === keyOf(entry!.request));
    expect(status, `status of '${label}'`).to.not.equal(undefined);
    return status!;
  }

  it('submits every entry and dedupes exact and reordered duplicates to one key each', () => {
    const distinctKeys = new Set(set.entries.map((e) => keyOf(e.request)));
    expect(result.submissions).to.have.length(set.entries.length);
    expect(result.tracked.map((t) => t.key)).to.have.members([...distinctKeys]);
    expect(result.tracked).to.have.length(10);
    const reordered = result.submissions.find((s) => s.label === 'sales EU 2024 (reordered)');
    expect(reordered?.duplicateOf).to.equal('sales EU 2024');
    expect(result.events).to.deep.equal({ submitted: 10, deduplicated: 3 });
    expect(lines.some((l) => l.includes('deduplicated: same key as "sales EU 2024"'))).to.equal(true);
  });

  it('completes every request except the cancelled one, retrying the flaky one once', () => {
    for (const t of result.tracked) {
      const entry = set.entries.find((e) => e.label === t.label)!;
      const status = statusOf(t.label);
      const mode = simulation(entry.request);
      if (mode === 'cancel-while-running') {
        expect(status.state, t.label).to.equal('cancelled');
      } else {
        expect(status.state, t.label).to.equal('completed');
        expect(status.attempts, t.label).to.equal(mode === 'fail-once' ? 2 : 1);
      }
    }
    expect(statusOf('stock south (flaky)').attempts).to.equal(2);
    expect(statusOf('audit 2024 (to cancel)').state).to.equal('cancelled');
  });

  it('stores the sticky result in the persistent area and the others in the temporary one', () => {
    expect(statusOf('valuation 2024-Q4 (sticky)').result?.area).to.equal('persistent');
    expect(statusOf('sales US 2024').result?.area).to.equal('temporary');
  });

  it('writes each requested format of each completed request to <outDir>/<key>.<format>', async () => {
    const expected: string[] = [];
    for (const t of result.tracked) {
      const entry = set.entries.find((e) => e.label === t.label)!;
      if (simulation(entry.request) === 'cancel-while-running') continue;
      for (const format of requestedFormats(entry.request)) {
        const name = `${t.key}.${format}`;
        expected.push(name);
        const content = await readFile(join(outDir, name), 'utf8');
        expect(content, name).to.equal(format === 'json' ? renderJson(entry.request) : renderCsv(entry.request));
      }
    }
    expect(await readdir(outDir)).to.have.members(expected);
    expect(result.files.map((f) => `${f.key}.${f.format}`)).to.have.members(expected);
  });

  it('never exposes the partial output of the cancelled request', async () => {
    const cancelled = statusOf('audit 2024 (to cancel)');
    expect(cancelled.result).to.equal(undefined);
    expect((await readdir(outDir)).filter((name) => name.startsWith(cancelled.key))).to.deep.equal([]);
  });

  it('logs the transitions and ends with the summary and metrics', () => {
    expect(lines.some((l) => /retrying\s+stock south \(flaky\)/.test(l))).to.equal(true);
    expect(lines.some((l) => /cancelled\s+audit 2024 \(to cancel\)/.test(l))).to.equal(true);
    expect(lines.some((l) => l.includes('Metrics:'))).to.equal(true);
    expect(result.metrics.byState.completed).to.equal(9);
    expect(result.metrics.byState.cancelled).to.equal(1);
  });
});

describe('demo request set', () => {
  it('gives the same report for the same params in another order', () => {
    const a = { uri: '/reports/sales', params: { region: 'EU', year: '2024', formats: ['csv', 'json'] } };
    const b = { uri: '/reports/sales', params: { formats: ['json', 'csv'], year: '2024', region: 'EU' } };
    expect(renderCsv(b)).to.equal(renderCsv(a));
    expect(renderJson(b)).to.equal(renderJson(a));
    expect(renderCsv(a).split('\n')[0]).to.equal('line,region,year,amount');
  });

  it('rejects a malformed request set, naming each bad field', () => {
    const bad = {
      requests: [
        { label: '', request: { uri: '/x' } },
        { label: 'y', request: {} },
      ],
    };
    expect(() => parseDemoRequests(bad))
      .to.throw(ConfigError)
      .with.property('issues')
      .that.deep.equals([
        { path: '/requests/0/label', message: 'expected a non-empty string' },
        { path: '/requests/1/request', message: 'expected a request object with a uri' },
      ]);
  });

  it('rejects a request set file that does not exist', async () => {
    await expect(loadDemoRequests(join(tmpdir(), 'armlib-demo-missing.json'))).to.be.rejectedWith(/ENOENT/);
  });
});
