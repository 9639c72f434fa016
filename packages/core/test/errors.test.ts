import { expect } from 'chai';

import {
  AbortedError,
  ArmError,
  BackendError,
  ClosedError,
  ConfigError,
  ConflictError,
  ERROR_CODES,
  InvalidRequestError,
  LeaseLostError,
  NotFoundError,
  PermanentError,
  QueueFullError,
  QuotaExceededError,
  TimeoutError,
} from '../src/errors.js';

const BRAND = Symbol.for('@armlib/core/ArmError');

/** What an error thrown by a second installed copy of @armlib/core looks like to this copy. */
function foreignError(code: string, extra: Record<string, unknown> = {}): Error {
  class ArmError extends Error {}
  const error = new ArmError(`foreign ${code}`);
  Object.assign(error, { [BRAND]: true, code, ...extra });
  return error;
}

const SAMPLES: [new (...args: never[]) => ArmError, ArmError, string][] = [
  [InvalidRequestError, new InvalidRequestError('key', 'bad'), 'INVALID_REQUEST'],
  [NotFoundError, new NotFoundError('nothing'), 'NOT_FOUND'],
  [ConflictError, new ConflictError('clash'), 'CONFLICT'],
  [LeaseLostError, new LeaseLostError('k1'), 'LEASE_LOST'],
  [QueueFullError, new QueueFullError(10), 'QUEUE_FULL'],
  [QuotaExceededError, new QuotaExceededError('alice', 3), 'QUOTA_EXCEEDED'],
  [ConfigError, new ConfigError('bad config'), 'CONFIG'],
  [BackendError, new BackendError('down'), 'BACKEND'],
  [PermanentError, new PermanentError('no'), 'PERMANENT'],
  [TimeoutError, new TimeoutError('late'), 'TIMEOUT'],
  [ClosedError, new ClosedError(), 'CLOSED'],
  [AbortedError, new AbortedError('k1', 'cancelled'), 'ABORTED'],
];

describe('errors', () => {
  describe('codes and names', () => {
    for (const [cls, error, code] of SAMPLES) {
      it(`${cls.name} has code ${code}, its own name, and is an Error and an ArmError`, () => {
        expect(error.code).to.equal(code);
        expect((cls as unknown as { code: string }).code).to.equal(code);
        expect(error.name).to.equal(cls.name);
        expect(error).to.be.instanceOf(Error);
        expect(error).to.be.instanceOf(ArmError);
        expect(error).to.be.instanceOf(cls);
      });
    }

    it('uses a distinct code per class, every one listed in ERROR_CODES', () => {
      const codes = SAMPLES.map(([, e]) => e.code);
      expect(new Set(codes).size).to.equal(codes.length);
      expect([...codes].sort()).to.deep.equal(Object.values(ERROR_CODES).sort());
    });

    it('serialises to name, code and message', () => {
      const error = new NotFoundError('no such key', { cause: new Error('inner') });
      expect(JSON.parse(JSON.stringify(error))).to.deep.equal({
        name: 'NotFoundError',
        code: 'NOT_FOUND',
        message: 'no such key',
      });
    });
  });

  describe('is()', () => {
    it('recognises instances of this copy', () => {
      expect(ArmError.is(new QueueFullError(1))).to.equal(true);
      expect(QueueFullError.is(new QueueFullError(1))).to.equal(true);
    });

    it('recognises an error branded by a second copy of the package, by brand and code', () => {
      const foreign = foreignError('LEASE_LOST', { key: 'k' });
      expect(foreign).not.to.be.instanceOf(ArmError);
      expect(ArmError.is(foreign)).to.equal(true);
      expect(LeaseLostError.is(foreign)).to.equal(true);
      expect(ConflictError.is(foreign)).to.equal(false);
    });

    it('rejects errors of another code in every subclass', () => {
      for (const [cls] of SAMPLES) {
        for (const [, other, code] of SAMPLES) {
          const expected = (cls as unknown as { code: string }).code === code;
          expect((cls as unknown as typeof ArmError).is(other), `${cls.name}.is(${code})`).to.equal(expected);
          expect(
            (cls as unknown as typeof ArmError).is(foreignError(code)),
            `${cls.name}.is(foreign ${code})`,
          ).to.equal(expected);
        }
      }
    });

    it('rejects unbranded look-alikes and non-objects', () => {
      const lookAlike = Object.assign(new Error('x'), { code: 'NOT_FOUND', name: 'NotFoundError' });
      for (const value of [lookAlike, { code: 'NOT_FOUND' }, null, undefined, 'NOT_FOUND', 42]) {
        expect(ArmError.is(value), typeof value).to.equal(false);
        expect(NotFoundError.is(value), typeof value).to.equal(false);
      }
    });

    it('rejects a brand that is not exactly true', () => {
      const forged = Object.assign(new Error('x'), { [BRAND]: 'yes', code: 'NOT_FOUND' });
      expect(ArmError.is(forged)).to.equal(false);
    });

    it('narrows the type, so subclass fields can be read', () => {
      const value: unknown = new QuotaExceededError('bob', 5);
      if (!QuotaExceededError.is(value)) expect.fail('not recognised');
      expect(value.owner).to.equal('bob');
      expect(value.limit).to.equal(5);
    });
  });

  describe('cause', () => {
    it('keeps the original error as cause', () => {
      const inner = new Error('ECONNRESET');
      const error = new BackendError('queue unavailable', { cause: inner, retryable: true });
      expect(error.cause).to.equal(inner);
      expect(error.retryable).to.equal(true);
    });

    it('keeps non-Error causes and leaves cause absent when none is given', () => {
      expect(new ConflictError('x', { cause: { status: 409 } }).cause).to.deep.equal({ status: 409 });
      expect(new ConflictError('x')).not.to.have.property('cause');
    });

    it('passes cause through every subclass constructor', () => {
      const cause = new Error('root');
      const withCause = [
        new InvalidRequestError('f', 'm', { cause }),
        new LeaseLostError('k', undefined, { cause }),
        new QueueFullError(1, 'g', { cause }),
        new QuotaExceededError('o', 1, { cause }),
        new ConfigError('m', [], { cause }),
        new PermanentError('m', { cause }),
        new TimeoutError('m', { cause }),
        new ClosedError(undefined, { cause }),
        new AbortedError('k', 'shutdown', { cause }),
      ];
      for (const error of withCause) expect(error.cause, error.name).to.equal(cause);
    });
  });

  describe('messages and fields', () => {
    it('InvalidRequestError names the field first', () => {
      const error = new InvalidRequestError('params.region[1]', 'must be a string');
      expect(error.field).to.equal('params.region[1]');
      expect(error.message).to.equal('params.region[1]: must be a string');
    });

    it('ConfigError lists every issue by path, one per line', () => {
      const error = new ConfigError('invalid armlib configuration', [
        { path: '/manager/leaseMs', message: 'must be an integer >= 10' },
        { path: '/queue/adapter', message: 'must be a built-in adapter name or a module specifier' },
        { path: '', message: 'must be an object' },
      ]);
      expect(error.issues).to.have.length(3);
      expect(error.message.split('\n')).to.deep.equal([
        'invalid armlib configuration',
        '  - /manager/leaseMs: must be an integer >= 10',
        '  - /queue/adapter: must be a built-in adapter name or a module specifier',
        '  - /: must be an object',
      ]);
    });

    it('ConfigError without issues is just its message', () => {
      const error = new ConfigError("install '@armlib/file' to use the file adapter");
      expect(error.message).to.equal("install '@armlib/file' to use the file adapter");
      expect(error.issues).to.deep.equal([]);
    });

    it('QueueFullError tells the global cap from a group cap', () => {
      const global = new QueueFullError(100);
      expect(global.group).to.equal(undefined);
      expect(global.message).to.match(/queue is full.*100/);
      const group = new QueueFullError(5, 'reports');
      expect(group.group).to.equal('reports');
      expect(group.message).to.match(/group 'reports' is full.*5/);
    });

    it('QuotaExceededError names the owner and the quota', () => {
      expect(new QuotaExceededError('alice', 3).message).to.match(/alice.*3.*maxPendingPerOwner/);
    });

    it('LeaseLostError carries the key and a default message', () => {
      const error = new LeaseLostError('k9');
      expect(error.key).to.equal('k9');
      expect(error.message).to.contain('k9');
    });

    it('BackendError is not retryable unless said so', () => {
      expect(new BackendError('403').retryable).to.equal(false);
    });

    it('AbortedError carries the key and the reason', () => {
      const error = new AbortedError('k2', 'lease-lost');
      expect(error.key).to.equal('k2');
      expect(error.reason).to.equal('lease-lost');
      expect(error.message).to.contain('lease-lost');
    });
  });
});
