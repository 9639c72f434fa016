import { createHash } from 'node:crypto';

import { canonicalParams } from '@armlib/core';
import type { BatchRequest } from '@armlib/core';

/** Lines in every simulated report. */
export const REPORT_ROWS = 12;

/** Params that steer the demo handler rather than name report columns. */
const CONTROL_PARAMS = new Set(['formats', 'simulate']);

/** Formats a request asks for (its `formats` param), `csv` when none. */
export function requestedFormats(request: BatchRequest): string[] {
  const raw = request.params?.['formats'];
  if (raw === undefined) return ['csv'];
  const list = typeof raw === 'string' ? [raw] : [...raw];
  return list.length === 0 ? ['csv'] : [...new Set(list)].sort();
}

/** The value of the `simulate` param, which makes the demo handler misbehave on purpose. */
export function simulation(request: BatchRequest): string | undefined {
  const raw = request.params?.['simulate'];
  return typeof raw === 'string' ? raw : raw?.[0];
}

/** One row of a simulated report. */
export interface ReportRow {
  readonly line: number;
  readonly [column: string]: string | number;
}

/**
 * The rows of a simulated report. Deterministic in the request (same params, in any order,
 * give the same rows), so a test can check written results against it.
 */
export function reportRows(request: BatchRequest): ReportRow[] {
  const columns = canonicalParams(request.params).filter(([name]) => !CONTROL_PARAMS.has(name));
  const seed = `${request.uri}?${columns.map(([n, v]) => `${n}=${v.join('|')}`).join('&')}`;
  const rows: ReportRow[] = [];
  for (let line = 1; line <= REPORT_ROWS; line++) {
    const digest = createHash('sha256')
      .update(`${seed}#${String(line)}`)
      .digest();
    const row: Record<string, string | number> = { line };
    for (const [name, values] of columns) row[name] = values.join('|');
    row['amount'] = digest.readUInt32BE(0) % 100_000;
    rows.push(row as ReportRow);
  }
  return rows;
}

/** The report as CSV (header line, then one line per row, `\n`-terminated). */
export function renderCsv(request: BatchRequest): string {
  return csvLines(request).join('');
}

/** The report as CSV lines, each ending in `\n`, so it can be streamed line by line. */
export function csvLines(request: BatchRequest): string[] {
  const rows = reportRows(request);
  const header = Object.keys(rows[0] ?? { line: 0 });
  return [header, ...rows.map((row) => header.map((h) => String(row[h] ?? '')))].map(
    (cells) => `${cells.map(csvCell).join(',')}\n`,
  );
}

/** The report as pretty-printed JSON: the request's uri, its params (canonical order) and rows. */
export function renderJson(request: BatchRequest): string {
  const params = Object.fromEntries(canonicalParams(request.params));
  return `${JSON.stringify({ uri: request.uri, params, rows: reportRows(request) }, null, 2)}\n`;
}

function csvCell(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
