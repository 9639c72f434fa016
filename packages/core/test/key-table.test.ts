import { expect } from 'chai';
import fc from 'fast-check';

import { hashKey, KeyTable } from '../src/memory/queue-index/key-table.js';

interface Item {
  readonly key: string;
  readonly n: number;
}

type Op = { kind: 'set'; key: string; n: number } | { kind: 'delete'; key: string } | { kind: 'clear' };

/** Few distinct keys, so sets replace, deletes hit and runs of colliding slots form. */
const keyArb = fc.integer({ min: 0, max: 300 }).map((i) => `k${String(i)}`);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key: keyArb, n: fc.integer() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
);

describe('KeyTable', () => {
  it('finds, replaces and removes items by key', () => {
    const table = new KeyTable<Item>();
    expect(table.get('a')).to.equal(undefined);
    table.set({ key: 'a', n: 1 });
    table.set({ key: 'b', n: 2 });
    table.set({ key: 'a', n: 3 });
    expect(table.size).to.equal(2);
    expect(table.get('a')).to.deep.equal({ key: 'a', n: 3 });
    expect(table.delete('a')).to.equal(true);
    expect(table.delete('a')).to.equal(false);
    expect(table.get('a')).to.equal(undefined);
    expect(table.get('b')).to.deep.equal({ key: 'b', n: 2 });
    table.clear();
    expect(table.size).to.equal(0);
    expect(table.get('b')).to.equal(undefined);
  });

  it('matches keys by content, not by string identity', () => {
    const table = new KeyTable<Item>();
    const stored = ['status', String(123456)].join('-');
    table.set({ key: stored, n: 1 });
    expect(table.get(`status-${String(123456)}`)?.n).to.equal(1);
  });

  it('grows and shrinks while keeping every item (runs of colliding slots included)', () => {
    const table = new KeyTable<Item>();
    const n = 20_000;
    for (let i = 0; i < n; i++) table.set({ key: `key-${String(i)}`, n: i });
    expect(table.size).to.equal(n);
    for (let i = 0; i < n; i += 2) expect(table.delete(`key-${String(i)}`)).to.equal(true);
    for (let i = 0; i < n; i++) expect(table.get(`key-${String(i)}`)?.n).to.equal(i % 2 === 1 ? i : undefined);
    for (let i = 1; i < n; i += 2) expect(table.delete(`key-${String(i)}`)).to.equal(true);
    expect(table.size).to.equal(0);
    table.set({ key: 'again', n: 7 });
    expect(table.get('again')?.n).to.equal(7);
  });

  it('behaves like a Map under any sequence of operations', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 400 }), (ops) => {
        const table = new KeyTable<Item>();
        const model = new Map<string, Item>();
        for (const op of ops) {
          if (op.kind === 'set') {
            const item = { key: op.key, n: op.n };
            table.set(item);
            model.set(op.key, item);
          } else if (op.kind === 'delete') {
            expect(table.delete(op.key)).to.equal(model.delete(op.key));
          } else {
            table.clear();
            model.clear();
          }
          expect(table.size).to.equal(model.size);
        }
        for (let i = 0; i <= 300; i++) {
          const key = `k${String(i)}`;
          expect(table.get(key)).to.equal(model.get(key));
        }
      }),
    );
  });

  it('hashes to a non-zero 32-bit integer that depends on every character', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const h = hashKey(`status-${String(i)}`);
      expect(h).to.not.equal(0);
      expect(h | 0).to.equal(h);
      seen.add(h);
    }
    expect(seen.size).to.equal(1000);
    expect(hashKey('ab')).to.not.equal(hashKey('ba'));
  });
});
