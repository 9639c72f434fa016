import { expect } from 'chai';
import fc from 'fast-check';

import { FenwickFlags } from '../src/memory/queue-index/fenwick.js';
import { IndexedHeap } from '../src/memory/queue-index/indexed-heap.js';
import { LazyTimeQueue } from '../src/memory/queue-index/lazy-time-queue.js';
import { PendingRank } from '../src/memory/queue-index/pending-rank.js';
import { SeqIndex } from '../src/memory/queue-index/seq-index.js';
import { TimeQueue } from '../src/memory/queue-index/time-queue.js';

/** A test item: a key, a tie-break seq and every position field the structures may write. */
interface Item {
  key: number;
  readonly seq: number;
  pos: number;
}

function byKeyThenSeq(a: { key: number; seq: number }, b: { key: number; seq: number }): number {
  return a.key - b.key || a.seq - b.seq;
}

/** Operations drawn by fast-check: add with a key, or act on the n-th item held (modulo). */
type Op =
  | { kind: 'add'; key: number }
  | { kind: 'pop' }
  | { kind: 'remove'; index: number }
  | { kind: 'rekey'; index: number; key: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), key: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pop' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), index: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('rekey' as const),
      index: fc.nat(),
      key: fc.integer({ min: 0, max: 40 }),
    }),
  },
);

describe('queue index', () => {
  describe('IndexedHeap', () => {
    function heap(): IndexedHeap<Item> {
      return new IndexedHeap<Item>(
        (a, b) => byKeyThenSeq(a, b) < 0,
        (i) => i.pos,
        (i, p) => (i.pos = p),
      );
    }

    it('matches a sorted array under random push, pop, remove and re-key', () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
          const h = heap();
          let model: Item[] = [];
          let seq = 0;
          for (const op of ops) {
            if (op.kind === 'add') {
              const item = { key: op.key, seq: seq++, pos: -1 };
              h.push(item);
              model.push(item);
            } else if (op.kind === 'pop') {
              model.sort(byKeyThenSeq);
              const expected = model.shift();
              expect(h.pop()).to.equal(expected);
              if (expected !== undefined) expect(expected.pos).to.equal(-1);
            } else if (model.length > 0) {
              const item = model[op.index % model.length]!;
              if (op.kind === 'remove') {
                expect(h.remove(item)).to.equal(true);
                expect(h.remove(item)).to.equal(false);
                model = model.filter((i) => i !== item);
              } else {
                item.key = op.key;
                h.update(item);
              }
            }
            expect(h.size).to.equal(model.length);
            const sorted = [...model].sort(byKeyThenSeq);
            expect(h.peek()).to.equal(sorted[0]);
            for (const item of model) expect(h.has(item)).to.equal(true);
          }
        }),
      );
    });

    it('clear resets the positions of the items it held', () => {
      const h = heap();
      const items = [3, 1, 2].map((key, seq) => ({ key, seq, pos: -1 }));
      for (const i of items) h.push(i);
      h.clear();
      expect(h.size).to.equal(0);
      expect(items.map((i) => i.pos)).to.deep.equal([-1, -1, -1]);
      expect(h.has(items[0]!)).to.equal(false);
    });
  });

  describe('FenwickFlags', () => {
    it('counts set flags up to each slot like a plain array', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 70 }),
          fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 150 }),
          (capacity, flips) => {
            const tree = new FenwickFlags(capacity);
            const model = new Array<number>(capacity).fill(0);
            for (const [at, on] of flips) {
              const slot = at % capacity;
              expect(tree.set(slot, on), 'set tells whether the flag changed').to.equal(model[slot] !== (on ? 1 : 0));
              model[slot] = on ? 1 : 0;
            }
            let sum = 0;
            for (let i = 0; i < capacity; i++) {
              expect(tree.before(i), `before(${String(i)})`).to.equal(sum);
              sum += model[i]!;
              expect(tree.prefix(i), `prefix(${String(i)})`).to.equal(sum);
              expect(tree.get(i)).to.equal(model[i] === 1);
            }
            // Rebuilding from the flags gives the same sums at a larger capacity.
            tree.reset(capacity * 2, model);
            expect(tree.capacity).to.equal(capacity * 2);
            expect(tree.prefix(capacity * 2 - 1)).to.equal(sum);
            if (capacity > 1) expect(tree.prefix(capacity - 2)).to.equal(sum - model[capacity - 1]!);
          },
        ),
      );
    });
  });

  describe('PendingRank', () => {
    interface RankTestItem {
      readonly priority: number;
      readonly seq: number;
      rankSlot: number;
      rankPending: boolean;
      pending: boolean;
      /** Waiting out a backoff (meaningful while pending). */
      waiting?: boolean;
    }

    type RankOp =
      | { kind: 'add'; priority: number }
      | { kind: 'toggle'; index: number }
      | { kind: 'wait'; index: number }
      | { kind: 'remove'; index: number };

    const rankOp: fc.Arbitrary<RankOp> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({ kind: fc.constant('add' as const), priority: fc.integer({ min: -3, max: 3 }) }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('toggle' as const), index: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), index: fc.nat() }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), index: fc.nat() }) },
    );

    /**
     * Rank of every pending item in the model: the ready pending items before it in (priority desc,
     * seq asc) order, plus one. A waiting item counts for no one but itself.
     */
    function expectedRanks(items: RankTestItem[]): Map<RankTestItem, number> {
      const before = (a: RankTestItem, b: RankTestItem): boolean =>
        a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);
      const ready = items.filter((i) => i.pending && i.waiting !== true);
      return new Map(
        items.filter((i) => i.pending).map((item) => [item, ready.filter((r) => before(r, item)).length + 1]),
      );
    }

    it('gives every pending item its rank in (priority desc, seq asc) order, through compactions', () => {
      fc.assert(
        fc.property(fc.array(rankOp, { maxLength: 300 }), (ops) => {
          const index = new PendingRank<RankTestItem>();
          let items: RankTestItem[] = [];
          let seq = 0;
          for (const op of ops) {
            if (op.kind === 'add') {
              const item = { priority: op.priority, seq: seq++, rankSlot: -1, rankPending: false, pending: true };
              index.add(item, true);
              items.push(item);
            } else if (items.length > 0) {
              const item = items[op.index % items.length]!;
              if (op.kind === 'toggle' || op.kind === 'wait') {
                // A claim (pending → running), a requeue (ready or into a backoff), a backoff ending.
                if (op.kind === 'toggle') item.pending = !item.pending;
                item.waiting = op.kind === 'wait' && item.pending && item.waiting !== true;
                index.setPending(item, item.pending, !item.waiting);
              } else {
                index.remove(item);
                expect(item.rankSlot).to.equal(-1);
                items = items.filter((i) => i !== item);
              }
            }
          }
          const ranks = expectedRanks(items);
          for (const item of items) expect(index.rank(item), `item seq ${String(item.seq)}`).to.equal(ranks.get(item));
          expect(index.pending).to.equal(items.filter((i) => i.pending && i.waiting !== true).length);
        }),
        { numRuns: 300 },
      );
    });

    it('counts an item waiting out a backoff ahead of no one, ranking it after the ready items ahead of it', () => {
      const index = new PendingRank<RankTestItem>();
      const make = (priority: number, seq: number): RankTestItem => ({
        priority,
        seq,
        rankSlot: -1,
        rankPending: false,
        pending: true,
      });
      const [a, b, c, d] = [make(0, 1), make(0, 2), make(0, 3), make(5, 4)];
      for (const item of [a, b, c, d]) index.add(item, true);
      expect([d, a, b, c].map((i) => index.rank(i))).to.deep.equal([1, 2, 3, 4]);
      // b and d wait: the ready ones ahead of b (a) count, b and d themselves count for no one.
      index.setPending(b, true, false);
      index.setPending(d, true, false);
      expect([d, a, b, c].map((i) => index.rank(i))).to.deep.equal([1, 1, 2, 2]);
      expect(index.pending).to.equal(2);
      // Their backoff over, they are back at their places.
      index.setPending(b, true);
      index.setPending(d, true);
      expect([d, a, b, c].map((i) => index.rank(i))).to.deep.equal([1, 2, 3, 4]);
      // A waiting item that is claimed has no rank; removing a waiting item leaves the others exact.
      index.setPending(b, true, false);
      index.remove(b);
      index.setPending(a, false);
      expect([d, a, c].map((i) => index.rank(i))).to.deep.equal([1, undefined, 2]);
    });

    it('stays exact over many appends and removals (slot reuse and lane shrinking)', () => {
      const index = new PendingRank<RankTestItem>();
      const live: RankTestItem[] = [];
      let seq = 0;
      for (let round = 0; round < 20_000; round++) {
        const item = { priority: round % 3, seq: seq++, rankSlot: -1, rankPending: false, pending: true };
        index.add(item, true);
        live.push(item);
        if (round % 5 !== 0) index.remove(live.shift()!);
        if (round % 7 === 0 && live.length > 2) {
          const running = live[1]!;
          running.pending = false;
          index.setPending(running, false);
        }
      }
      const ranks = expectedRanks(live);
      for (const item of live) expect(index.rank(item)).to.equal(ranks.get(item));
      for (const item of live) index.remove(item);
      expect(index.pending).to.equal(0);
      // An emptied index starts afresh.
      const again = { priority: 1, seq, rankSlot: -1, rankPending: false, pending: true };
      index.add(again, true);
      expect(index.rank(again)).to.equal(1);
    });

    it('returns undefined for an item that is not pending or not indexed', () => {
      const index = new PendingRank<RankTestItem>();
      const a = { priority: 0, seq: 1, rankSlot: -1, rankPending: false, pending: true };
      const b = { priority: 0, seq: 2, rankSlot: -1, rankPending: false, pending: true };
      expect(index.rank(a)).to.equal(undefined);
      index.add(a, true);
      index.add(b, true);
      expect(index.rank(b)).to.equal(2);
      index.setPending(a, false);
      expect(index.rank(a)).to.equal(undefined);
      expect(index.rank(b)).to.equal(1);
      // Back to pending: the old place (ahead of b), not the end.
      index.setPending(a, true);
      expect(index.rank(a)).to.equal(1);
      expect(index.rank(b)).to.equal(2);
    });
  });

  describe('SeqIndex', () => {
    it('pages items in seq order after removals, replacements and compaction', () => {
      const index = new SeqIndex<string>();
      const model = new Map<number, string>();
      for (let seq = 1; seq <= 5000; seq += 2) {
        index.append(`v${String(seq)}`, seq);
        model.set(seq, `v${String(seq)}`);
      }
      for (let seq = 1; seq <= 5000; seq += 2) {
        if (seq % 3 === 0) {
          expect(index.remove(seq)).to.equal(true);
          model.delete(seq);
        } else if (seq % 5 === 0) {
          expect(index.replace(seq, `w${String(seq)}`)).to.equal(true);
          model.set(seq, `w${String(seq)}`);
        }
      }
      expect(index.remove(3)).to.equal(false);
      expect(index.remove(2)).to.equal(false);
      expect(index.replace(2, 'x')).to.equal(false);
      expect(index.size).to.equal(model.size);
      const seen: string[] = [];
      for (let slot = index.slotAfter(1000); slot < index.length; slot++) {
        const item = index.at(slot);
        if (item !== undefined) seen.push(item);
      }
      const expected = [...model.entries()].filter(([seq]) => seq > 1000).map(([, v]) => v);
      expect(seen).to.deep.equal(expected);
    });

    it('refuses a seq that is not increasing', () => {
      const index = new SeqIndex<string>();
      index.append('a', 5);
      expect(() => {
        index.append('b', 5);
      }).to.throw(/seq/);
    });
  });

  describe('TimeQueue', () => {
    function queue(): TimeQueue<Item> {
      return new TimeQueue<Item>(
        (i) => i.key,
        (i) => i.pos,
        (i, p) => (i.pos = p),
      );
    }

    it('pops in (time, seq) order for in-order and out-of-order times, with removals', () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
          const q = queue();
          let model: Item[] = [];
          let seq = 0;
          let clock = 0;
          for (const op of ops) {
            if (op.kind === 'add') {
              // Mostly increasing times, as retention and lease times are, with some out of order.
              clock += op.key % 3;
              const item = { key: op.key % 4 === 0 ? op.key : clock, seq: seq++, pos: -1 };
              q.push(item);
              model.push(item);
            } else if (op.kind === 'pop') {
              model.sort(byKeyThenSeq);
              expect(q.pop()).to.equal(model.shift());
            } else if (model.length > 0) {
              const item = model[op.index % model.length]!;
              expect(q.remove(item)).to.equal(true);
              expect(q.has(item)).to.equal(false);
              model = model.filter((i) => i !== item);
            }
            expect(q.size).to.equal(model.length);
            expect(q.peek()).to.equal([...model].sort(byKeyThenSeq)[0]);
          }
        }),
      );
    });

    it('orders equal times by seq even when an older seq arrives later (a retried record)', () => {
      fc.assert(
        fc.property(
          fc.uniqueArray(fc.nat(1000), { minLength: 1, maxLength: 60 }),
          fc.array(fc.integer({ min: -1, max: 1 }), { minLength: 60, maxLength: 60 }),
          (seqs, times) => {
            const q = queue();
            const items = seqs.map((seq, i) => ({ key: times[i] ?? 0, seq, pos: -1 }));
            for (const item of items) q.push(item);
            const popped: Item[] = [];
            for (let item = q.pop(); item !== undefined; item = q.pop()) popped.push(item);
            expect(popped).to.deep.equal([...items].sort(byKeyThenSeq));
          },
        ),
      );
    });

    it('compacts holes left by removals without losing order', () => {
      const q = queue();
      const items = Array.from({ length: 5000 }, (_, i) => ({ key: i, seq: i, pos: -1 }));
      for (const i of items) q.push(i);
      for (const i of items) if (i.key % 4 !== 0) q.remove(i);
      expect(q.size).to.equal(1250);
      for (let k = 0; k < 5000; k += 4) expect(q.pop()?.key).to.equal(k);
      expect(q.pop()).to.equal(undefined);
    });
  });

  describe('LazyTimeQueue', () => {
    it('pops live items in (time, seq) order and skips the ones reported dead', () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
          const dead = new Set<Item>();
          const q = new LazyTimeQueue<Item>({ time: (i) => i.key, seq: (i) => i.seq, isLive: (i) => !dead.has(i) });
          let model: Item[] = [];
          let seq = 0;
          let clock = 0;
          for (const op of ops) {
            if (op.kind === 'add') {
              clock += op.key % 3;
              const item = { key: op.key % 4 === 0 ? op.key : clock, seq: seq++, pos: -1 };
              q.push(item);
              model.push(item);
            } else if (op.kind === 'pop') {
              model.sort(byKeyThenSeq);
              expect(q.pop()).to.equal(model.shift());
            } else if (model.length > 0) {
              const item = model[op.index % model.length]!;
              dead.add(item);
              model = model.filter((i) => i !== item);
              q.compactIfSparse(model.length);
            }
            const first = [...model].sort(byKeyThenSeq)[0];
            expect(q.peek()).to.equal(first);
            expect(q.nextTime()).to.be.at.most(first?.key ?? Infinity);
          }
        }),
      );
    });

    it('removes an item at the front at once, without asking isLive', () => {
      let asked = 0;
      const q = new LazyTimeQueue<number>({
        time: (i) => i,
        seq: (i) => i,
        isLive: () => {
          asked++;
          return true;
        },
      });
      for (const i of [5, 6, 7, 1]) q.push(i); // 1 is out of order: heap
      expect(q.removeIfFirst(6)).to.equal(false);
      expect(q.removeIfFirst(5)).to.equal(true);
      expect(q.removeIfFirst(1)).to.equal(true);
      expect(q.size).to.equal(2);
      expect(asked).to.equal(0);
      expect(q.pop()).to.equal(6);
      expect(q.pop()).to.equal(7);
    });

    it('keeps memory within a constant factor of the live items', () => {
      const dead = new Set<number>();
      const q = new LazyTimeQueue<number>({ time: (i) => i, seq: (i) => i, isLive: (i) => !dead.has(i) });
      // One early item stays live forever, so dead ones behind it never reach the front.
      q.push(0);
      for (let i = 1; i < 50_000; i++) {
        q.push(i);
        if (i > 10) dead.add(i - 10);
        q.compactIfSparse(12);
      }
      expect(q.size).to.be.below(2100);
      expect(q.pop()).to.equal(0);
      expect(q.pop()).to.equal(49_990);
    });
  });
});
