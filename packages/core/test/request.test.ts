import { readFileSync } from 'node:fs';

import { expect } from 'chai';

import { ArmError, InvalidRequestError } from '../src/errors.js';
import { deriveKey } from '../src/keys.js';
import { normalizeRequest, REQUEST_LIMITS } from '../src/request.js';

/** One entry of test-fixtures/invalid-requests.json. */
interface InvalidCase {
  name: string;
  note?: string;
  request: unknown;
  /** A value JSON cannot hold, put at `at` before validating. */
  jsValue?: { at: (string | number)[]; value: keyof typeof JS_VALUES };
  field: string;
}

const JS_VALUES = {
  NaN: () => NaN,
  Infinity: () => Infinity,
  '-Infinity': () => -Infinity,
  undefined: () => undefined,
  Date: () => new Date(0),
  bigint: () => 1n,
  function: () => () => 1,
} as const;

// Resolved from the compiled file, packages/core/dist/test/request.test.js.
const FIXTURE = new URL('../../../../test-fixtures/invalid-requests.json', import.meta.url);
const invalid = JSON.parse(readFileSync(FIXTURE, 'utf8')) as InvalidCase[];

function materialise(c: InvalidCase): unknown {
  if (c.jsValue === undefined) return c.request;
  const { at, value } = c.jsValue;
  const root = { request: structuredClone(c.request) } as Record<string | number, unknown>;
  let holder = root['request'] as Record<string | number, unknown>;
  for (const step of at.slice(0, -1)) holder = holder[step] as Record<string | number, unknown>;
  const last = at[at.length - 1];
  if (last === undefined) throw new Error(`${c.name}: jsValue.at is empty`);
  if (!(value in JS_VALUES)) throw new Error(`${c.name}: unknown jsValue '${value}'`);
  holder[last] = JS_VALUES[value]();
  return root['request'];
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function rejection(input: unknown): InvalidRequestError {
  try {
    normalizeRequest(input);
  } catch (error) {
    if (InvalidRequestError.is(error)) return error;
    throw error;
  }
  throw new Error(`accepted: ${JSON.stringify(input)}`);
}

describe('normalizeRequest', () => {
  describe('defaults', () => {
    it('fills in the derived key, group default and priority 0, and nothing else', () => {
      const out = normalizeRequest({ uri: '/reports/sales' });
      expect(out).to.deep.equal({
        uri: '/reports/sales',
        key: deriveKey({ uri: '/reports/sales' }),
        group: 'default',
        priority: 0,
      });
    });

    it('keeps every given field', () => {
      const out = normalizeRequest({
        uri: 'https://svc.example/x',
        params: { a: '1' },
        body: { q: [1, 2] },
        key: 'my-key',
        sticky: true,
        group: 'reports',
        priority: -5,
        estimatedMs: 1500,
        owner: 'alice@example.org',
      });
      expect(out).to.deep.equal({
        uri: 'https://svc.example/x',
        params: { a: '1' },
        body: { q: [1, 2] },
        key: 'my-key',
        sticky: true,
        group: 'reports',
        priority: -5,
        estimatedMs: 1500,
        owner: 'alice@example.org',
      });
    });

    it('ignores optional fields that are present but undefined', () => {
      const out = normalizeRequest({ uri: '/x', key: undefined, group: undefined, prio: undefined });
      expect(out.group).to.equal('default');
      expect(out.key).to.equal(deriveKey({ uri: '/x' }));
      expect(out).not.to.have.property('prio');
    });

    it('keeps sticky false and priority 0 when given', () => {
      const out = normalizeRequest({ uri: '/x', sticky: false, priority: 0, estimatedMs: 0 });
      expect(out.sticky).to.equal(false);
      expect(out.priority).to.equal(0);
      expect(out.estimatedMs).to.equal(0);
    });
  });

  describe('input that is hard to read', () => {
    function invalid(input: unknown): InvalidRequestError {
      try {
        normalizeRequest(input);
      } catch (error) {
        expect(InvalidRequestError.is(error), String(error)).to.equal(true);
        return error as InvalidRequestError;
      }
      throw new Error('accepted');
    }

    it('refuses params over the total length limit, though each name and value is within its own', () => {
      const params: Record<string, string> = {};
      for (let i = 0; i < 100; i++) params[`p${String(i)}`] = 'v'.repeat(REQUEST_LIMITS.paramLength - 8);
      const error = invalid({ uri: '/x', key: 'explicit', params });
      expect(error.field).to.equal('params');
      expect(error.message).to.match(/over the 262144 limit/);
    });

    it('copies a proxied body (as reactive frameworks make) and reads each field once', () => {
      const body = new Proxy({ region: 'eu', rows: [1, 2] }, {});
      expect(normalizeRequest({ uri: '/x', body }).body).to.deep.equal({ region: 'eu', rows: [1, 2] });
      let reads = 0;
      const shifty = {
        get value(): unknown {
          return reads++ === 0 ? 1 : 1n;
        },
      };
      const out = normalizeRequest({ uri: '/x', body: shifty });
      expect(out.body).to.deep.equal({ value: 1 });
      expect(reads).to.equal(1);
      let keyReads = 0;
      const request = {
        uri: '/x',
        get key(): string {
          return keyReads++ === 0 ? 'fine-key' : '../../etc/x';
        },
      };
      expect(normalizeRequest(request).key).to.equal('fine-key');
    });

    it('reads each param value once: a proxied array cannot answer differently when stored', () => {
      let reads = 0;
      const values = new Proxy(['b', 'a'], {
        get(target, property, receiver) {
          if (property === '0' && reads++ > 0) return 'x'.repeat(REQUEST_LIMITS.paramLength + 1);
          return Reflect.get(target, property, receiver) as unknown;
        },
      });
      const out = normalizeRequest({ uri: '/x', params: { v: values } });
      expect(out.params).to.deep.equal({ v: ['a', 'b'] });
      expect(out.key).to.equal(normalizeRequest({ uri: '/x', params: { v: ['a', 'b'] } }).key);
    });

    it('turns a throwing getter into InvalidRequestError, and says a cyclic body is cyclic', () => {
      const throwing = {
        uri: '/x',
        get params(): never {
          throw new Error('boom');
        },
      };
      const error = invalid(throwing);
      expect(error.field).to.equal('request');
      expect(error.message).to.contain('boom');
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic['self'] = cyclic;
      expect(invalid({ uri: '/x', body: cyclic }).message).to.contain('cyclic');
    });

    it('refuses an estimatedMs too large to build an ETA on', () => {
      expect(invalid({ uri: '/x', estimatedMs: 1e308 }).field).to.equal('estimatedMs');
      expect(normalizeRequest({ uri: '/x', estimatedMs: REQUEST_LIMITS.maxEstimatedMs }).estimatedMs).to.equal(
        REQUEST_LIMITS.maxEstimatedMs,
      );
    });
  });

  describe('canonical params', () => {
    it('orders names and values and drops names without values', () => {
      const out = normalizeRequest({ uri: '/x', params: { z: ['2', '1'], a: 'x', empty: [] } });
      expect(out.params).to.deep.equal({ a: 'x', z: ['1', '2'] });
      expect(Object.keys(out.params ?? {})).to.deep.equal(['a', 'z']);
    });

    it('keeps a single string as a string and a one-element array as an array', () => {
      const out = normalizeRequest({ uri: '/x', params: { s: 'v', l: ['v'] } });
      expect(out.params).to.deep.equal({ l: ['v'], s: 'v' });
    });

    it('gives equal requests equal params', () => {
      const a = normalizeRequest({ uri: '/x', params: { b: ['2', '1'], a: 'x' } });
      const b = normalizeRequest({ uri: '/x', params: { a: 'x', b: ['1', '2'] } });
      expect(JSON.stringify(a.params)).to.equal(JSON.stringify(b.params));
    });

    it('keeps a parameter named __proto__ as an own parameter', () => {
      const out = normalizeRequest({ uri: '/x', params: JSON.parse('{"__proto__":"v"}') as unknown });
      expect(Object.keys(out.params ?? {})).to.deep.equal(['__proto__']);
      expect(out.key).not.to.equal(normalizeRequest({ uri: '/x' }).key);
    });
  });

  describe('validation (test-fixtures/invalid-requests.json)', () => {
    it('has cases with unique names', () => {
      expect(invalid.length).to.be.greaterThan(30);
      expect(new Set(invalid.map((c) => c.name)).size).to.equal(invalid.length);
    });

    for (const c of invalid) {
      it(`rejects ${c.name}, naming '${c.field}'`, () => {
        const error = rejection(materialise(c));
        expect(error).to.be.instanceOf(InvalidRequestError);
        expect(error.code).to.equal('INVALID_REQUEST');
        expect(error.field).to.equal(c.field);
        expect(error.message.startsWith(`${c.field}: `), error.message).to.equal(true);
      });
    }
  });

  describe('limits', () => {
    it('accepts a body of exactly the byte limit and rejects one byte more, naming body', () => {
      const overhead = JSON.stringify({ s: '' }).length;
      const atLimit = { s: 'x'.repeat(REQUEST_LIMITS.bodyBytes - overhead) };
      expect(() => normalizeRequest({ uri: '/x', body: atLimit })).not.to.throw();
      const over = { s: 'x'.repeat(REQUEST_LIMITS.bodyBytes - overhead + 1) };
      expect(rejection({ uri: '/x', body: over }).field).to.equal('body');
    });

    it('counts the body in UTF-8 bytes, not characters', () => {
      const overhead = JSON.stringify({ s: '' }).length;
      // '€' is 3 bytes in UTF-8: a third of the limit in characters is already at it.
      const chars = Math.ceil((REQUEST_LIMITS.bodyBytes - overhead) / 3) + 1;
      expect(rejection({ uri: '/x', body: { s: '€'.repeat(chars) } }).field).to.equal('body');
    });

    it('rejects a body nested deeper than the limit', () => {
      let deep: unknown = 1;
      for (let i = 0; i <= REQUEST_LIMITS.bodyDepth + 1; i++) deep = [deep];
      expect(rejection({ uri: '/x', body: deep }).field).to.match(/^body(\[0\])+$/);
    });

    it('rejects a cyclic body instead of looping', () => {
      const cyclic: Record<string, unknown> = {};
      cyclic['self'] = cyclic;
      expect(rejection({ uri: '/x', body: cyclic }).field).to.match(/^body(\.self)+$/);
    });

    it('rejects a uri over the length limit', () => {
      expect(() => normalizeRequest({ uri: `/${'u'.repeat(REQUEST_LIMITS.uriLength - 1)}` })).not.to.throw();
      expect(rejection({ uri: `/${'u'.repeat(REQUEST_LIMITS.uriLength)}` }).field).to.equal('uri');
    });

    it('rejects too many parameter names and too many values', () => {
      const names = Object.fromEntries(
        Array.from({ length: REQUEST_LIMITS.paramNames + 1 }, (_, i) => [`p${String(i)}`, 'v']),
      );
      expect(rejection({ uri: '/x', params: names }).field).to.equal('params');
      const values = Array.from({ length: REQUEST_LIMITS.paramValues + 1 }, (_, i) => String(i));
      expect(rejection({ uri: '/x', params: { v: values } }).field).to.equal('params.v');
    });

    it('rejects an over-long parameter value', () => {
      const long = 'v'.repeat(REQUEST_LIMITS.paramLength + 1);
      expect(rejection({ uri: '/x', params: { v: long } }).field).to.equal('params.v');
      expect(rejection({ uri: '/x', params: { v: ['ok', long] } }).field).to.equal('params.v[1]');
    });

    it('accepts priorities at both limits', () => {
      expect(normalizeRequest({ uri: '/x', priority: REQUEST_LIMITS.maxPriority }).priority).to.equal(
        REQUEST_LIMITS.maxPriority,
      );
      expect(normalizeRequest({ uri: '/x', priority: -REQUEST_LIMITS.maxPriority }).priority).to.equal(
        -REQUEST_LIMITS.maxPriority,
      );
    });
  });

  describe('errors', () => {
    it('throws an ArmError with a field-prefixed message', () => {
      const error = rejection({ uri: '/x', group: 'a b' });
      expect(ArmError.is(error)).to.equal(true);
      expect(error.message).to.match(/^group: 'a b' must match/);
    });
  });

  describe('input', () => {
    it('does not mutate the input, even when frozen', () => {
      const input = {
        uri: '/x',
        params: { b: ['2', '1'], a: 'x', e: [] as string[] },
        body: { z: 1, a: [3, 1, { y: 2, x: 1 }] },
        sticky: true,
      };
      const before = JSON.stringify(input);
      const out = normalizeRequest(deepFreeze(input));
      expect(JSON.stringify(input)).to.equal(before);
      expect(out.params).to.deep.equal({ a: 'x', b: ['1', '2'] });
    });

    it('returns params and body that do not alias the input', () => {
      const input = { uri: '/x', params: { v: ['b', 'a'] }, body: { list: [1, 2] } };
      const out = normalizeRequest(input);
      (out.params?.['v'] as string[]).push('c');
      (out.body as { list: number[] }).list.push(3);
      expect(input.params.v).to.deep.equal(['b', 'a']);
      expect(input.body.list).to.deep.equal([1, 2]);
    });

    it('is idempotent: normalising a normalised request changes nothing', () => {
      const once = normalizeRequest({ uri: '/x', params: { b: ['2', '1'], a: 'x' }, body: { k: 'v' }, owner: 'o' });
      expect(normalizeRequest(once)).to.deep.equal(once);
    });
  });
});
