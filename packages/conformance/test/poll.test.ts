import { expect } from 'chai';

import { pollUntil } from '../src/index.js';

describe('pollUntil', function () {
  it('returns the first value the probe gives that is not undefined or false', async function () {
    let calls = 0;
    const value = await pollUntil(() => (++calls < 3 ? false : { calls }), { what: 'three calls', intervalMs: 1 });
    expect(value).to.deep.equal({ calls: 3 });
  });

  it('gives up after its deadline, naming what it waited for and the last state seen', async function () {
    let seen = 0;
    const error = await pollUntil(
      () => {
        seen++;
        return undefined;
      },
      { what: 'a state that never comes', timeoutMs: 20, intervalMs: 1, describe: () => `${String(seen)} probes` },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message)
      .to.match(/^timed out after 20 ms waiting for a state that never comes: \d+ probes$/)
      .and.not.include(': 0 probes');
  });
});
