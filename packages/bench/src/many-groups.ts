import { performance } from 'node:perf_hooks';

import type { BatchRequest, RequestManager } from '@armlib/core';

import { memoryRequestManager } from './armlib-system.js';

/** Options of {@link measureManyGroups}. */
export interface ManyGroupsOptions {
  /** Groups the requests are spread over, round robin. */
  readonly groups: number;
  /** Requests queued before the worker starts. */
  readonly requests: number;
  /** The worker's concurrency. */
  readonly concurrency: number;
  /** Submits timed for the submit cost (each followed by a status read). */
  readonly submits: number;
}

/** What {@link measureManyGroups} measured. */
export interface ManyGroupsResult {
  readonly groups: number;
  readonly requests: number;
  readonly concurrency: number;
  /** Jobs per second of one worker draining the queued requests (claim → complete, no result). */
  readonly drainPerSecond: number;
  /** One submit into a queue that holds `requests` plus one status read of it, µs (both carry a position). */
  readonly submitStatusUs: number;
}

/**
 * The memory backend with work spread over many groups (a group per tenant): how fast a worker
 * drains it, where each claim picks the group whose turn it is, and what a submit plus a status
 * read costs, where each position counts the other groups' turns.
 */
export async function measureManyGroups(options: ManyGroupsOptions): Promise<ManyGroupsResult> {
  const { groups, requests, concurrency, submits } = options;
  const drain = memoryRequestManager();
  let drainPerSecond: number;
  try {
    await fill(drain, groups, requests, 'd');
    let done = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const started = performance.now();
    const worker = drain.process(
      () => {
        if (++done === requests) finish();
        return Promise.resolve();
      },
      { concurrency },
    );
    await finished;
    const elapsedMs = performance.now() - started;
    await worker.stop();
    drainPerSecond = (requests / elapsedMs) * 1000;
  } finally {
    await drain.close();
  }

  const read = memoryRequestManager();
  let submitStatusUs: number;
  try {
    await fill(read, groups, requests, 'r');
    const started = performance.now();
    for (let i = 0; i < submits; i++) {
      const status = await read.submit(tenantRequest('s', i, groups));
      await read.status(status.key);
    }
    submitStatusUs = ((performance.now() - started) / submits) * 1000;
  } finally {
    await read.close();
  }
  return { groups, requests, concurrency, drainPerSecond, submitStatusUs };
}

async function fill(rm: RequestManager, groups: number, requests: number, tag: string): Promise<void> {
  for (let i = 0; i < requests; i++) {
    await rm.submit(tenantRequest(tag, i, groups));
  }
}

/** Request number `i` of a run (`tag`), in group `tenant-<i mod groups>`. */
function tenantRequest(tag: string, i: number, groups: number): BatchRequest {
  return { uri: '/bench/tenant', params: { i: `${tag}${String(i)}` }, group: `tenant-${String(i % groups)}` };
}
