import { expect } from 'chai';

import { loadConfig } from '../src/config/load.js';
import type { ArmConfig } from '../src/config/types.js';
import { ConfigError, InvalidRequestError } from '../src/errors.js';

const NO_ENV = {};
const BOOM = new Error('boom');

/** The issues of the ConfigError `promise` rejects with (anything else fails), as `path: message` lines. */
async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ConfigError.is(error), `expected a ConfigError, got ${String(error)}`).to.equal(true);
  return (error as ConfigError).issues.map((issue) => `${issue.path}: ${issue.message}`);
}

/** The config as JavaScript callers can pass it, hostile values and all. */
function hostile(config: unknown): ArmConfig {
  return config as ArmConfig;
}

/** An object whose enumerable field `name` throws `thrown` when read. */
function throwingField(name: string, thrown: unknown = BOOM): object {
  return Object.defineProperty({}, name, {
    enumerable: true,
    get(): never {
      throw thrown;
    },
  });
}

/** A proxy every trap of which throws: it cannot be inspected at all. */
function trappedProxy(): object {
  const trap = (): never => {
    throw BOOM;
  };
  return new Proxy({}, { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap });
}

/** A revoked proxy: even Array.isArray throws on it. */
function revokedProxy(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

const CANNOT_READ = 'cannot be read: Error: boom';

describe('loadConfig: hostile values are reported at their own path', () => {
  describe('a field whose getter throws', () => {
    it('names a section of the config', async () => {
      expect(await issuesOf(loadConfig(hostile(throwingField('manager')), { env: NO_ENV }))).to.deep.equal([
        `/manager: ${CANNOT_READ}`,
      ]);
    });

    it('names a manager setting', async () => {
      expect(await issuesOf(loadConfig(hostile({ manager: throwingField('leaseMs') }), { env: NO_ENV }))).to.deep.equal(
        [`/manager/leaseMs: ${CANNOT_READ}`],
      );
    });

    it('names the adapter of a section, without also calling it missing', async () => {
      expect(await issuesOf(loadConfig(hostile({ queue: throwingField('adapter') }), { env: NO_ENV }))).to.deep.equal([
        `/queue/adapter: ${CANNOT_READ}`,
      ]);
    });

    it('names a group and a field of a group policy', async () => {
      expect(await issuesOf(loadConfig(hostile({ groups: throwingField('reports') }), { env: NO_ENV }))).to.deep.equal([
        `/groups/reports: ${CANNOT_READ}`,
      ]);
      expect(
        await issuesOf(loadConfig(hostile({ groups: { reports: throwingField('maxConcurrent') } }), { env: NO_ENV })),
      ).to.deep.equal([`/groups/reports/maxConcurrent: ${CANNOT_READ}`]);
    });

    it('names an adapter option when an environment variable merges into the options', async () => {
      const config = hostile({ queue: { adapter: 'memory', options: throwingField('maxFinishedBytes') } });
      expect(await issuesOf(loadConfig(config, { env: { ARMLIB_QUEUE_OPTIONS: '{}' } }))).to.deep.equal([
        `/queue/options/maxFinishedBytes: ${CANNOT_READ}`,
      ]);
    });

    it('names a manager setting when an environment variable overrides another', async () => {
      const config = hostile({ manager: throwingField('maxAttempts') });
      expect(await issuesOf(loadConfig(config, { env: { ARMLIB_LEASE_MS: '1000' } }))).to.deep.equal([
        `/manager/maxAttempts: ${CANNOT_READ}`,
      ]);
    });

    it('is reported with the other problems of the config, and keeps the error as cause', async () => {
      const manager = Object.defineProperty({ maxAttempts: 0 }, 'leaseMs', {
        enumerable: true,
        get(): never {
          throw BOOM;
        },
      });
      const config = hostile({ manager });
      const error: unknown = await loadConfig(config, { env: NO_ENV }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(ConfigError.is(error)).to.equal(true);
      const issues = (error as ConfigError).issues;
      expect(issues.map((issue) => issue.path)).to.have.members(['/manager/leaseMs', '/manager/maxAttempts']);
      expect(issues.find((issue) => issue.path === '/manager/leaseMs')?.cause).to.equal(BOOM);
    });

    it('throws a value that cannot be shown: still a ConfigError at the field', async () => {
      const unshowable = [
        Object.create(null) as object,
        {
          toString(): never {
            throw new Error('nope');
          },
        },
      ];
      for (const thrown of unshowable) {
        const issues = await issuesOf(
          loadConfig(hostile({ manager: throwingField('leaseMs', thrown) }), { env: NO_ENV }),
        );
        expect(issues).to.have.length(1);
        expect(issues[0]).to.match(/^\/manager\/leaseMs: cannot be read/);
      }
    });
  });

  describe('a proxy whose traps throw', () => {
    for (const section of ['manager', 'queue', 'cache', 'groups'] as const) {
      it(`names the ${section} section`, async () => {
        expect(await issuesOf(loadConfig(hostile({ [section]: trappedProxy() }), { env: NO_ENV }))).to.deep.equal([
          `/${section}: ${CANNOT_READ}`,
        ]);
      });
    }

    it('names a group policy', async () => {
      expect(
        await issuesOf(loadConfig(hostile({ groups: { reports: trappedProxy() } }), { env: NO_ENV })),
      ).to.deep.equal([`/groups/reports: ${CANNOT_READ}`]);
    });
  });

  describe('a revoked proxy', () => {
    const REVOKED = /: cannot be read: TypeError: .*revoked/;

    it('names a setting, an adapter, adapter options and a group policy field', async () => {
      const cases: [unknown, string][] = [
        [{ manager: { leaseMs: revokedProxy() } }, '/manager/leaseMs'],
        [{ manager: revokedProxy() }, '/manager'],
        [{ queue: { adapter: revokedProxy() } }, '/queue/adapter'],
        [{ cache: { adapter: 'memory', options: revokedProxy() } }, '/cache/options'],
        [{ groups: { reports: { maxConcurrent: revokedProxy() } } }, '/groups/reports/maxConcurrent'],
      ];
      for (const [config, path] of cases) {
        const issues = await issuesOf(loadConfig(hostile(config), { env: NO_ENV }));
        expect(issues, path).to.have.length(1);
        expect(issues[0], path).to.match(new RegExp(`^${path}${REVOKED.source}`));
      }
    });

    it('as the whole config is reported at the root', async () => {
      const issues = await issuesOf(loadConfig(hostile(revokedProxy()), { env: NO_ENV }));
      expect(issues).to.have.length(1);
      expect(issues[0]).to.match(new RegExp(`^${REVOKED.source}`));
    });
  });

  describe('options of loadConfig that cannot be read', () => {
    /** The field of the InvalidRequestError `promise` rejects with (anything else fails). */
    async function refusedField(promise: Promise<unknown>): Promise<string> {
      const error: unknown = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(InvalidRequestError.is(error), `expected an InvalidRequestError, got ${String(error)}`).to.equal(true);
      return (error as InvalidRequestError).field;
    }

    it('are refused by name, not passed on raw', async () => {
      expect(await refusedField(loadConfig(undefined, throwingField('env')))).to.equal('options.env');
      expect(await refusedField(loadConfig(undefined, revokedProxy()))).to.equal('options');
      const env = throwingField('ARMLIB_CONFIG') as NodeJS.ProcessEnv;
      expect(await refusedField(loadConfig(undefined, { env }))).to.equal('options.env.ARMLIB_CONFIG');
      const lease = throwingField('ARMLIB_LEASE_MS') as NodeJS.ProcessEnv;
      expect(await refusedField(loadConfig({}, { env: lease }))).to.equal('options.env.ARMLIB_LEASE_MS');
    });
  });

  describe('values that are read without misbehaving', () => {
    it('are read once: a getter that would answer differently the second time is checked as it answered', async () => {
      let reads = 0;
      const manager = {
        get maxAttempts(): unknown {
          reads++;
          return reads === 1 ? 5 : 'five';
        },
      };
      const config = await loadConfig(hostile({ manager }), { env: NO_ENV });
      expect(config.manager.maxAttempts).to.equal(5);
      expect(reads).to.equal(1);
    });

    it('keep adapter options by reference when no variable merges into them', async () => {
      const options = { maxFinishedBytes: 1024 };
      const config = await loadConfig({ queue: { adapter: 'memory', options } }, { env: NO_ENV });
      expect(config.queue.options).to.equal(options);
    });
  });
});
