import fc from 'fast-check';

import { canonicalJson } from '@armlib/core';
import type { CacheArea, CacheManager, ManualClock, StagedResult } from '@armlib/core';

import { bytesOf, collect } from './helpers.js';

const KEYS = ['c0', 'c1', 'c2'] as const;
const FORMATS = ['csv', 'json'] as const;
const AREAS: readonly CacheArea[] = ['persistent', 'temporary'];

/** One step of a model-based cache sequence. `slot` picks a staging opened earlier (modulo). */
export type CacheCommand =
  | { op: 'stage'; key: string }
  | { op: 'write'; slot: number; format: string; text: string }
  | { op: 'commit'; slot: number; area: CacheArea }
  | { op: 'abort'; slot: number }
  | { op: 'promote'; key: string }
  | { op: 'delete'; key: string; area?: CacheArea }
  | { op: 'clear'; area: CacheArea }
  | { op: 'sweep'; area: CacheArea; agoMs: number }
  | { op: 'advance'; ms: number };

const key = fc.constantFrom(...KEYS);
const area = fc.constantFrom<CacheArea>(...AREAS);
const slot = fc.nat({ max: 7 });

/** Random cache commands. */
export function cacheCommandArb(): fc.Arbitrary<CacheCommand> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('stage' as const), key }) },
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant('write' as const),
        slot,
        format: fc.constantFrom(...FORMATS),
        text: fc.string({ maxLength: 12 }),
      }),
    },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('commit' as const), slot, area }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('abort' as const), slot }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('promote' as const), key }) },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('delete' as const), key, area }, { requiredKeys: ['op', 'key'] }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const), area }) },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('sweep' as const), area, agoMs: fc.constantFrom(0, 100, 1_000) }),
    },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(1, 100, 1_000) }) },
  );
}

interface ModelResult {
  area: CacheArea;
  createdAt: number;
  formats: Record<string, string>;
}

interface Staging {
  key: string;
  state: 'open' | 'committed' | 'aborted';
  formats: Map<string, string>;
  handle: StagedResult;
}

/**
 * Reference semantics of the cache SPI: a key has at most one committed result, in one area;
 * commit publishes every staged format at once and replaces the key's result in both areas;
 * staged data is invisible; abort discards it; promote moves temporary to persistent; sweep
 * removes results committed before the cut-off.
 */
class CacheModel {
  readonly results = new Map<string, ModelResult>();

  inArea(a: CacheArea): string[] {
    return [...this.results]
      .filter(([, r]) => r.area === a)
      .map(([k]) => k)
      .sort();
  }
}

/** Runs `commands` against the cache and the model, comparing every observable after each step. */
export async function runCacheSequence(
  target: { cache: CacheManager; clock: ManualClock; scale: number },
  commands: readonly CacheCommand[],
): Promise<void> {
  const { cache, clock } = target;
  const model = new CacheModel();
  const stagings: Staging[] = [];
  const staging = (n: number): Staging | undefined => stagings[n % Math.max(1, stagings.length)];

  for (let step = 0; step < commands.length; step++) {
    const cmd = commands[step];
    if (cmd === undefined) continue;
    const where = `step ${String(step + 1)} ${JSON.stringify(cmd)}`;
    const now = clock.now();
    switch (cmd.op) {
      case 'stage':
        stagings.push({ key: cmd.key, state: 'open', formats: new Map(), handle: await cache.stage(cmd.key) });
        break;
      case 'write': {
        const st = staging(cmd.slot);
        if (st === undefined) break;
        const contentType = cmd.format === 'json' ? 'application/json' : 'text/csv';
        // A write to a committed or aborted staging may be refused; it must never show.
        const wrote = await st.handle.write(cmd.format, bytesOf(cmd.text), { contentType }).then(
          (info) => info,
          (error: unknown) => {
            if (st.state === 'open') throw error;
            return undefined;
          },
        );
        if (st.state === 'open') {
          st.formats.set(cmd.format, cmd.text);
          same(where, 'written size', Buffer.byteLength(cmd.text), wrote?.size);
          same(where, 'staged formats', [...st.formats.keys()].sort(), Object.keys(st.handle.formats()).sort());
        }
        break;
      }
      case 'commit': {
        const st = staging(cmd.slot);
        if (st === undefined) break;
        if (st.state !== 'open') {
          await st.handle.commit(cmd.area).catch(() => undefined);
          break;
        }
        const manifest = await st.handle.commit(cmd.area);
        st.state = 'committed';
        model.results.set(st.key, { area: cmd.area, createdAt: now, formats: Object.fromEntries(st.formats) });
        same(
          where,
          'manifest',
          { key: st.key, area: cmd.area, formats: [...st.formats.keys()].sort() },
          {
            key: manifest.key,
            area: manifest.area,
            formats: Object.keys(manifest.formats).sort(),
          },
        );
        break;
      }
      case 'abort': {
        const st = staging(cmd.slot);
        if (st === undefined) break;
        await st.handle.abort();
        if (st.state === 'open') st.state = 'aborted';
        break;
      }
      case 'promote': {
        const r = model.results.get(cmd.key);
        const expected = r?.area === 'temporary';
        if (r !== undefined && expected) r.area = 'persistent';
        same(where, 'promote', expected, await cache.promote(cmd.key));
        break;
      }
      case 'delete': {
        const r = model.results.get(cmd.key);
        const expected = r !== undefined && (cmd.area === undefined || r.area === cmd.area) ? 1 : 0;
        if (expected === 1) model.results.delete(cmd.key);
        same(where, 'delete count', expected, await cache.delete(cmd.key, cmd.area));
        break;
      }
      case 'clear': {
        const doomed = model.inArea(cmd.area);
        for (const k of doomed) model.results.delete(k);
        same(where, 'clear count', doomed.length, await cache.clear(cmd.area));
        break;
      }
      case 'sweep': {
        const before = now - cmd.agoMs * target.scale;
        const doomed = model.inArea(cmd.area).filter((k) => (model.results.get(k)?.createdAt ?? Infinity) < before);
        for (const k of doomed) model.results.delete(k);
        same(where, 'sweep count', doomed.length, await cache.sweep(cmd.area, before));
        break;
      }
      case 'advance':
        await clock.advance(cmd.ms * target.scale);
        break;
    }
    await compareCache(where, cache, model);
  }
  for (const st of stagings) await st.handle.abort();
}

async function compareCache(where: string, cache: CacheManager, model: CacheModel): Promise<void> {
  for (const k of KEYS) {
    const expected = model.results.get(k);
    const head = await cache.head(k);
    same(
      where,
      `head(${k})`,
      expected === undefined
        ? undefined
        : {
            area: expected.area,
            createdAt: expected.createdAt,
            formats: Object.fromEntries(Object.entries(expected.formats).map(([f, t]) => [f, Buffer.byteLength(t)])),
          },
      head === undefined
        ? undefined
        : {
            area: head.area,
            createdAt: head.createdAt,
            formats: Object.fromEntries(Object.entries(head.formats).map(([f, info]) => [f, info.size])),
          },
    );
    for (const a of AREAS) {
      same(where, `head(${k}, ${a}) present`, expected?.area === a, (await cache.head(k, a)) !== undefined);
    }
    for (const f of FORMATS) {
      const body = await cache.get(k, f);
      const text = body === undefined ? undefined : (await collect(body.body)).toString('utf8');
      same(where, `get(${k}, ${f})`, expected?.formats[f], text);
    }
  }
  for (const a of AREAS) {
    const page = await cache.list(a, { limit: 100 });
    same(where, `list(${a})`, model.inArea(a), page.items.map((m) => m.key).sort());
  }
}

function same(where: string, what: string, expected: unknown, actual: unknown): void {
  const e = canonicalJson(expected ?? null);
  const a = canonicalJson(actual ?? null);
  if (e !== a) throw new Error(`${where}: ${what} differs from the model\n  expected ${e}\n  actual   ${a}`);
}
