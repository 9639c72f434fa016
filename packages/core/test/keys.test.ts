import { readFileSync } from 'node:fs';

import { expect } from 'chai';
import fc from 'fast-check';

import { InvalidRequestError } from '../src/errors.js';
import {
  assertValidFormat,
  assertValidKey,
  canonicalJson,
  canonicalParams,
  compareStrings,
  deriveKey,
  isValidKey,
  KEY_PATTERN,
  keyOf,
} from '../src/keys.js';
import type { BatchRequest } from '../src/model.js';
import { normalizeRequest } from '../src/request.js';

/** One vector of test-fixtures/keys.json. */
interface KeyVector {
  name: string;
  note?: string;
  request: BatchRequest;
  /** Requests that must get the same key as `request`. */
  equivalent?: BatchRequest[];
  key: string;
}

// Resolved from the compiled file, packages/core/dist/test/keys.test.js.
const FIXTURE = new URL('../../../../test-fixtures/keys.json', import.meta.url);
const vectors = JSON.parse(readFileSync(FIXTURE, 'utf8')) as KeyVector[];

describe('keys', () => {
  describe('test vectors (test-fixtures/keys.json)', () => {
    it('has vectors with unique names', () => {
      expect(vectors.length).to.be.greaterThan(20);
      expect(new Set(vectors.map((v) => v.name)).size).to.equal(vectors.length);
    });

    it('gives every vector a different key (requests that must share a key are listed as equivalent)', () => {
      const byKey = new Map<string, string>();
      for (const v of vectors) {
        expect(byKey.get(v.key), `'${v.name}' shares its key with`).to.equal(undefined);
        byKey.set(v.key, v.name);
      }
    });

    for (const v of vectors) {
      describe(v.name, () => {
        it('keyOf and normalizeRequest give the recorded key', () => {
          expect(keyOf(v.request)).to.equal(v.key);
          expect(normalizeRequest(v.request).key).to.equal(v.key);
          expect(v.key).to.match(KEY_PATTERN);
        });

        if (v.request.key === undefined) {
          it('deriveKey gives the recorded key', () => {
            expect(deriveKey(v.request)).to.equal(v.key);
          });
        }

        (v.equivalent ?? []).forEach((other, i) => {
          it(`equivalent request #${String(i)} gets the same key`, () => {
            expect(keyOf(other)).to.equal(v.key);
            expect(normalizeRequest(other).key).to.equal(v.key);
          });
        });
      });
    }
  });

  describe('deriveKey', () => {
    it('carries at least 128 bits of hash after the readable prefix', () => {
      const key = deriveKey({ uri: '/reports/sales', params: { region: 'north' } });
      expect(key).to.match(/^reports_sales-[0-9a-f]{32}$/);
    });

    it('keeps the key within 200 characters whatever the uri length', () => {
      const key = deriveKey({ uri: `/${'segment/'.repeat(300)}` });
      expect(key.length).to.be.at.most(200);
      expect(key).to.match(KEY_PATTERN);
    });

    it('does not read sticky, group, priority, estimatedMs, owner or key', () => {
      const plain = deriveKey({ uri: '/x' });
      const decorated: BatchRequest = {
        uri: '/x',
        key: 'chosen',
        sticky: true,
        group: 'g',
        priority: 9,
        estimatedMs: 5,
        owner: 'o',
      };
      expect(deriveKey(decorated)).to.equal(plain);
    });
  });

  describe('keyOf', () => {
    it('rejects an invalid caller-chosen key, naming the key field', () => {
      expect(() => keyOf({ uri: '/x', key: 'a/b' }))
        .to.throw(InvalidRequestError)
        .with.property('field', 'key');
    });
  });

  describe('isValidKey', () => {
    it('agrees with KEY_PATTERN plus no trailing dot and no double dot, on any string', () => {
      const charArb = fc.constantFrom('a', 'Z', '0', '9', '.', '_', '-', '/', ' ', 'é', '\u0000', ':');
      const keyArb = fc.oneof(
        fc.string({ unit: charArb, maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        fc.integer({ min: 195, max: 205 }).map((n) => 'k'.repeat(n)),
      );
      fc.assert(
        fc.property(keyArb, (key) => {
          const expected = KEY_PATTERN.test(key) && !key.endsWith('.') && !key.includes('..');
          expect(isValidKey(key)).to.equal(expected);
        }),
        { numRuns: 2000 },
      );
    });
  });

  describe('assertValidKey', () => {
    it('accepts letters, digits, dot, underscore and dash up to 200 characters', () => {
      for (const key of ['a', 'A.b_c-d', '0', 'x'.repeat(200), 'v1.2.3']) {
        expect(() => {
          assertValidKey(key);
        }, key).not.to.throw();
      }
    });

    it('rejects what could escape a path, a URL segment or an S3 name', () => {
      for (const key of [
        '',
        '.',
        '..',
        'a..b',
        'a.',
        '.a',
        '-a',
        '_a',
        'a/b',
        'a\\b',
        'a b',
        'a\u0000',
        'x'.repeat(201),
      ]) {
        expect(() => {
          assertValidKey(key);
        }, JSON.stringify(key)).to.throw(InvalidRequestError);
      }
    });

    it('names the field it was given', () => {
      expect(() => {
        assertValidKey(7, 'items[3].key');
      })
        .to.throw(InvalidRequestError)
        .with.property('field', 'items[3].key');
    });

    it('shows control characters escaped in the message', () => {
      expect(() => {
        assertValidKey('a\nb');
      }).to.throw(/a\\u000ab/);
    });
  });

  describe('assertValidFormat', () => {
    it('accepts format names like csv, xlsx and tar.gz', () => {
      for (const format of ['csv', 'xlsx', 'tar.gz', 'geo_json', 'v-2']) {
        expect(() => {
          assertValidFormat(format);
        }, format).not.to.throw();
      }
    });

    it('rejects empty, dotted, slashed and over-long names, naming the field', () => {
      for (const format of ['', '.csv', 'csv.', 'a..b', 'a/b', 'x'.repeat(33), 3]) {
        expect(() => {
          assertValidFormat(format);
        }, String(format))
          .to.throw(InvalidRequestError)
          .with.property('field', 'format');
      }
    });
  });

  describe('canonicalParams', () => {
    it('sorts names and values, turns single strings into lists and drops empty lists', () => {
      expect(canonicalParams({ b: ['2', '1'], a: 'x', c: [] })).to.deep.equal([
        ['a', ['x']],
        ['b', ['1', '2']],
      ]);
    });

    it('keeps duplicate and empty-string values', () => {
      expect(canonicalParams({ a: ['z', '', 'z'] })).to.deep.equal([['a', ['', 'z', 'z']]]);
    });

    it('returns no entries for absent params', () => {
      expect(canonicalParams(undefined)).to.deep.equal([]);
    });

    it('does not reorder the caller’s arrays', () => {
      const values = ['b', 'a'];
      canonicalParams({ v: values });
      expect(values).to.deep.equal(['b', 'a']);
    });
  });

  describe('canonicalJson', () => {
    it('sorts object members at every depth and keeps array order', () => {
      expect(canonicalJson({ b: 1, a: { d: [2, 1], c: null } })).to.equal('{"a":{"c":null,"d":[2,1]},"b":1}');
    });

    it('keeps a member named __proto__ as data', () => {
      const value = JSON.parse('{"__proto__":{"x":1}}') as unknown;
      expect(canonicalJson(value)).to.equal('{"__proto__":{"x":1}}');
    });
  });

  describe('compareStrings', () => {
    it('orders by code unit, not by locale', () => {
      expect(['b', 'a', 'B', 'é', 'e'].sort(compareStrings)).to.deep.equal(['B', 'a', 'b', 'e', 'é']);
      expect(compareStrings('a', 'a')).to.equal(0);
    });
  });
});
