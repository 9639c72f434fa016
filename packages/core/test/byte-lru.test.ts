import { expect } from 'chai';
import fc from 'fast-check';

import { ByteLru } from '../src/util/byte-lru.js';

type Op =
  | { kind: 'set'; key: string; size: number }
  | { kind: 'get'; key: string }
  | { kind: 'peek'; key: string }
  | { kind: 'delete'; key: string }
  | { kind: 'clear' };

const keyArb = fc.integer({ min: 0, max: 40 }).map((i) => `k${String(i)}`);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key: keyArb, size: fc.nat(40) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('get' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('peek' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

/** The obvious model: an array of [key, value, size], most recently used first. */
class ModelLru {
  entries: [string, number, number][] = [];
  removed: [string, number][] = [];
  constructor(readonly max: number) {}

  bytes(): number {
    return this.entries.reduce((n, e) => n + e[2], 0);
  }

  set(key: string, value: number, size: number): boolean {
    const i = this.entries.findIndex((e) => e[0] === key);
    if (size > this.max) {
      if (i >= 0) this.delete(key);
      return false;
    }
    if (i >= 0) this.entries.splice(i, 1);
    while (this.bytes() + size > this.max && this.entries.length > 0) {
      const [k, v] = this.entries.pop() as [string, number, number];
      this.removed.push([k, v]);
    }
    this.entries.unshift([key, value, size]);
    return true;
  }

  get(key: string): number | undefined {
    const i = this.entries.findIndex((e) => e[0] === key);
    if (i < 0) return undefined;
    const [entry] = this.entries.splice(i, 1);
    this.entries.unshift(entry as [string, number, number]);
    return entry?.[1];
  }

  peek(key: string): number | undefined {
    return this.entries.find((e) => e[0] === key)?.[1];
  }

  delete(key: string): boolean {
    const i = this.entries.findIndex((e) => e[0] === key);
    if (i < 0) return false;
    const [[k, v]] = this.entries.splice(i, 1) as [[string, number, number]];
    this.removed.push([k, v]);
    return true;
  }
}

describe('ByteLru', () => {
  it('evicts the least recently used entries until a new one fits; get counts as a use, peek does not', () => {
    const removed: string[] = [];
    const lru = new ByteLru<string>(10, (_value, key) => removed.push(key));
    lru.set('a', 'A', 4);
    lru.set('b', 'B', 4);
    expect(lru.get('a')).to.equal('A');
    expect(lru.peek('b')).to.equal('B');
    lru.set('c', 'C', 4);
    expect(removed).to.deep.equal(['b']);
    expect([...lru.keys()]).to.deep.equal(['c', 'a']);
    expect(lru.bytes).to.equal(8);
  });

  it('refuses a value bigger than the bound, dropping the old value of its key', () => {
    const removed: string[] = [];
    const lru = new ByteLru<string>(10, (value) => removed.push(value));
    lru.set('a', 'A1', 5);
    expect(lru.set('a', 'A2', 11)).to.equal(false);
    expect(lru.has('a')).to.equal(false);
    expect(removed).to.deep.equal(['A1']);
    expect(lru.size).to.equal(0);
    expect(lru.bytes).to.equal(0);
  });

  it('replaces a value under its key without telling onRemove, resizing it', () => {
    const removed: string[] = [];
    const lru = new ByteLru<string>(10, (value) => removed.push(value));
    lru.set('a', 'A1', 5);
    lru.set('b', 'B', 5);
    lru.set('a', 'A2', 2);
    expect(removed).to.deep.equal([]);
    expect(lru.bytes).to.equal(7);
    expect([...lru.entries()]).to.deep.equal([
      ['a', 'A2'],
      ['b', 'B'],
    ]);
  });

  it('behaves like a list-based LRU under any sequence of operations', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 120 }), fc.array(opArb, { maxLength: 300 }), (max, ops) => {
        const removed: [string, number][] = [];
        const lru = new ByteLru<number>(max, (value, key) => removed.push([key, value]));
        const model = new ModelLru(max);
        let n = 0;
        for (const op of ops) {
          if (op.kind === 'set') {
            n++;
            expect(lru.set(op.key, n, op.size)).to.equal(model.set(op.key, n, op.size));
          } else if (op.kind === 'get') expect(lru.get(op.key)).to.equal(model.get(op.key));
          else if (op.kind === 'peek') expect(lru.peek(op.key)).to.equal(model.peek(op.key));
          else if (op.kind === 'delete') expect(lru.delete(op.key)).to.equal(model.delete(op.key));
          else {
            lru.clear();
            model.entries = [];
          }
          expect(lru.size).to.equal(model.entries.length);
          expect(lru.bytes).to.equal(model.bytes());
          expect(lru.bytes).to.be.at.most(max);
        }
        expect([...lru.entries()]).to.deep.equal(model.entries.map(([k, v]) => [k, v]));
        expect([...lru.values()]).to.deep.equal(model.entries.map(([, v]) => v));
        expect(removed).to.deep.equal(model.removed);
      }),
      { numRuns: 300 },
    );
  });
});
