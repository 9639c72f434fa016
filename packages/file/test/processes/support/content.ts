import type { BatchRequest } from '@armlib/core';

/** What a test request asks the child handler to do (carried in the request body). */
export interface JobSpec {
  /**
   * `work`: write every format. `gate`: wait until the gate file exists, then work. `stall`: on
   * the first attempt block the event loop for `stallMs`, then write stale content and return.
   * `stall-observe`: on the first attempt block, then wait for the abort and try to write.
   * `commit-stall`: on the first attempt write stale content; the child blocks the event loop
   * for `stallMs` as that commit starts (before the fence can do anything about it).
   * `until-abort`: wait until the job's signal aborts.
   */
  readonly op: 'work' | 'gate' | 'stall' | 'stall-observe' | 'commit-stall' | 'until-abort';
  readonly formats: readonly string[];
  /** Chunks per format; the handler awaits `chunkDelayMs` between chunks so writes are in flight. */
  readonly chunks: number;
  readonly chunkDelayMs: number;
  readonly gate?: string;
  readonly stallMs?: number;
}

/** The request a test submits for `key`: the spec rides in the body, the key is explicit. */
export function requestFor(key: string, spec: JobSpec): BatchRequest {
  const body: Record<string, string | number | string[]> = {
    op: spec.op,
    formats: [...spec.formats],
    chunks: spec.chunks,
    chunkDelayMs: spec.chunkDelayMs,
  };
  if (spec.gate !== undefined) body['gate'] = spec.gate;
  if (spec.stallMs !== undefined) body['stallMs'] = spec.stallMs;
  return { uri: '/test/processes', key, body };
}

/** Reads the spec back from a request body (the child side). */
export function specOf(body: unknown): JobSpec {
  if (typeof body !== 'object' || body === null) throw new Error('request body is not a job spec');
  return body as JobSpec;
}

/** 32-bit FNV-1a: a stable hash to derive sizes and content from keys. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The exact content every correct run writes for (key, format): a few hundred bytes to ~30 KB,
 * derived from the key so any torn, partial, stale or swapped result shows.
 */
export function contentFor(key: string, format: string): string {
  const lines = 10 + (hash32(`${key}/${format}`) % 400);
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push(`${key};${format};${String(i)};${String(hash32(`${key}${String(i)}`))}`);
  return out.join('\n') + '\n';
}

/** Content a stale holder writes: it must never become visible. */
export function staleContentFor(key: string, format: string): string {
  return `STALE ${key} ${format} ${String(process.pid)}\n`;
}

/** Splits a string into `n` nearly equal parts (at least one). */
export function split(text: string, n: number): string[] {
  const parts: string[] = [];
  const size = Math.max(1, Math.ceil(text.length / Math.max(1, n)));
  for (let i = 0; i < text.length; i += size) parts.push(text.slice(i, i + size));
  return parts.length === 0 ? [''] : parts;
}

/** A small seeded PRNG (mulberry32): the crash test's schedule is reproducible from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
