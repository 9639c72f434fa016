import { Readable } from 'node:stream';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { InvalidRequestError } from '../src/errors.js';
import { chunksOf, countingIterable, readAll, sliceRange } from '../src/util/bytes.js';

use(chaiAsPromised);

async function* reusing(buffer: Buffer, fills: string[]): AsyncIterable<Uint8Array> {
  for (const fill of fills) {
    buffer.write(fill);
    yield buffer;
    await Promise.resolve();
  }
}

describe('util/bytes', () => {
  describe('readAll', () => {
    it('concatenates async and sync iterables and Readables', async () => {
      expect((await readAll(Readable.from([Buffer.from('ab'), Buffer.from('cd')]))).toString()).to.equal('abcd');
      expect((await readAll([Buffer.from('x'), new Uint8Array([0x79])])).toString()).to.equal('xy');
      expect((await readAll([])).byteLength).to.equal(0);
    });

    it('copies each chunk, so a producer may reuse its buffer', async () => {
      const out = await readAll(reusing(Buffer.alloc(2), ['ab', 'cd']));
      expect(out.toString()).to.equal('abcd');
      const single = Buffer.from('zz');
      const copy = await readAll([single]);
      single.write('qq');
      expect(copy.toString()).to.equal('zz');
    });

    it('rejects string chunks and non-iterables with InvalidRequestError on data', async () => {
      await expect(readAll(['text'] as unknown as Uint8Array[])).to.be.rejectedWith(InvalidRequestError, /data/);
      await expect(readAll(42 as unknown as Uint8Array[])).to.be.rejectedWith(InvalidRequestError, /data/);
    });
  });

  describe('sliceRange', () => {
    it('covers the whole object without a range', () => {
      expect(sliceRange(10)).to.deep.equal({ start: 0, end: 9, length: 10 });
      expect(sliceRange(0)).to.deep.equal({ start: 0, end: -1, length: 0 });
    });

    it('resolves inclusive ranges and clamps end to the last byte', () => {
      expect(sliceRange(10, { start: 2, end: 4 })).to.deep.equal({ start: 2, end: 4, length: 3 });
      expect(sliceRange(10, { start: 7 })).to.deep.equal({ start: 7, end: 9, length: 3 });
      expect(sliceRange(10, { start: 9, end: 100 })).to.deep.equal({ start: 9, end: 9, length: 1 });
      expect(sliceRange(0, { start: 0 })).to.deep.equal({ start: 0, end: -1, length: 0 });
    });

    it('rejects invalid ranges with InvalidRequestError on range', () => {
      const bad = [{ start: -1 }, { start: 1.5 }, { start: Number.NaN }, { start: 5, end: 4 }, { start: 0, end: -1 }];
      for (const range of bad) {
        expect(() => sliceRange(10, range), JSON.stringify(range))
          .to.throw(InvalidRequestError)
          .with.property('field', 'range');
      }
      for (const range of [null, 'bytes=0-4', [0, 4], { end: 4 }, { start: '0' }]) {
        expect(() => sliceRange(10, range as never), JSON.stringify(range))
          .to.throw(InvalidRequestError)
          .with.property('field', 'range');
      }
      expect(() => sliceRange(10, { start: 10 })).to.throw(InvalidRequestError, /past the end/);
      expect(() => sliceRange(0, { start: 1 })).to.throw(InvalidRequestError, /past the end/);
    });
  });

  describe('countingIterable', () => {
    it('counts bytes while passing chunks through', async () => {
      const counted = countingIterable([Buffer.from('abc'), Buffer.from('de')]);
      expect(counted.bytes).to.equal(0);
      const out = await readAll(counted);
      expect(out.toString()).to.equal('abcde');
      expect(counted.bytes).to.equal(5);
    });
  });

  describe('chunksOf', () => {
    it('yields views of at most chunkSize bytes', () => {
      const parts = [...chunksOf(Buffer.from('abcdefg'), 3)].map((b) => b.toString());
      expect(parts).to.deep.equal(['abc', 'def', 'g']);
      expect([...chunksOf(Buffer.alloc(0), 3)]).to.have.length(0);
      expect(() => [...chunksOf(Buffer.alloc(1), 0)]).to.throw(RangeError);
    });
  });
});
