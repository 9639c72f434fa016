import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { ConfigError } from '@armlib/core';
import type { BatchRequest, ConfigIssue, GroupPolicy } from '@armlib/core';

/** One request of the demo's request set, with a label for display. */
export interface DemoEntry {
  /** Short human name shown in the live view and the summary. */
  readonly label: string;
  readonly request: BatchRequest;
}

/** The demo's request set: group policies and the requests to submit, in order. */
export interface DemoRequestSet {
  readonly groups: Readonly<Record<string, GroupPolicy>>;
  readonly entries: readonly DemoEntry[];
}

/**
 * Where the demo's request set lives. Resolved from this compiled file
 * (`packages/demo/dist/src/fixtures.js`) rather than the cwd, so `npm start` works from anywhere.
 */
export const DEMO_REQUESTS_PATH = fileURLToPath(
  new URL('../../../../test-fixtures/requests/demo-requests.json', import.meta.url),
);

/** Reads and checks the demo's request set. Request contents are validated later by `submit`. */
export async function loadDemoRequests(path: string = DEMO_REQUESTS_PATH): Promise<DemoRequestSet> {
  const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
  return parseDemoRequests(parsed, path);
}

/** Checks the shape of a parsed request set; throws {@link ConfigError} naming every bad field. */
export function parseDemoRequests(value: unknown, source = 'request set'): DemoRequestSet {
  const issues: ConfigIssue[] = [];
  if (!isObject(value)) throw new ConfigError(`${source}: expected an object with 'requests'`);
  const groups = value['groups'] ?? {};
  if (!isObject(groups)) issues.push({ path: '/groups', message: 'expected an object of group name -> policy' });
  const rawEntries = value['requests'];
  if (!Array.isArray(rawEntries) || rawEntries.length === 0) {
    issues.push({ path: '/requests', message: 'expected a non-empty array' });
  }
  const entries: DemoEntry[] = [];
  (Array.isArray(rawEntries) ? (rawEntries as unknown[]) : []).forEach((raw, i) => {
    if (!isObject(raw)) {
      issues.push({ path: `/requests/${String(i)}`, message: 'expected an object with label and request' });
      return;
    }
    const label = raw['label'];
    const request = raw['request'];
    if (typeof label !== 'string' || label === '') {
      issues.push({ path: `/requests/${String(i)}/label`, message: 'expected a non-empty string' });
    }
    if (!isObject(request) || typeof request['uri'] !== 'string') {
      issues.push({ path: `/requests/${String(i)}/request`, message: 'expected a request object with a uri' });
    }
    if (typeof label === 'string' && isObject(request))
      entries.push({ label, request: request as unknown as BatchRequest });
  });
  if (issues.length > 0) throw new ConfigError(`${source} is invalid`, issues);
  return { groups: groups as Record<string, GroupPolicy>, entries };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
