import { expect } from 'chai';

import { fencingViolations } from './support/checks.js';
import type { LogEvent } from './support/event-log.js';

/**
 * The fencing checker of the multi-process tests, on hand-made logs: it must flag what it is
 * there to flag, or those tests could not fail.
 */

const LEASE = 1000;

function claim(pid: number, token: string, at: number): LogEvent {
  return {
    ev: 'claim',
    outcome: 'ok',
    pid,
    t0: at,
    t: at,
    key: 'k',
    token,
    attempt: 1,
    exp: at + LEASE,
    leaseMs: LEASE,
  };
}

function call(ev: string, pid: number, token: string, t0: number, t: number, exp?: number): LogEvent {
  return exp === undefined ? { ev, pid, t0, t, key: 'k', token } : { ev, pid, t0, t, key: 'k', token, exp };
}

describe('multi-process fencing checker', function () {
  it('accepts a takeover after the old lease expired, and a refused late call', function () {
    const log = [
      claim(1, 'a', 0),
      call('hb', 1, 'a', 300, 301, 1301),
      claim(2, 'b', 1400),
      call('hb-err', 1, 'a', 1500, 1501),
      call('complete', 2, 'b', 1800, 1801),
    ];
    expect(fencingViolations(log, 0)).to.deep.equal([]);
  });

  it('accepts a new lease at once after the holder gave the request back', function () {
    const log = [claim(1, 'a', 0), call('release', 1, 'a', 100, 101), claim(2, 'b', 200)];
    expect(fencingViolations(log, 0)).to.deep.equal([]);
  });

  it('flags a lease issued while the previous one was still valid', function () {
    const log = [claim(1, 'a', 0), call('hb', 1, 'a', 300, 301, 1301), claim(2, 'b', 1200)];
    expect(fencingViolations(log, 0)).to.have.length(1);
    expect(fencingViolations(log, 0)[0]).to.match(/issued at 1200 while a .* valid until 1301/);
    expect(fencingViolations(log, 200)).to.deep.equal([]);
  });

  it('flags a call of an old holder that succeeded after a newer lease was issued', function () {
    const log = [claim(1, 'a', 0), claim(2, 'b', 1100), call('hb', 1, 'a', 1200, 1201, 2201)];
    expect(fencingViolations(log, 5000).join('\n')).to.match(/hb by old holder a .* succeeded after b/);
  });

  it('flags two completions, and a claim after a completion', function () {
    const log = [
      claim(1, 'a', 0),
      call('complete', 1, 'a', 100, 101),
      claim(2, 'b', 2000),
      call('complete', 2, 'b', 2100, 2101),
    ];
    const violations = fencingViolations(log, 0).join('\n');
    expect(violations).to.match(/2 holders completed it/);
    expect(violations).to.match(/claimed again \(b\) after a completed it/);
  });
});
