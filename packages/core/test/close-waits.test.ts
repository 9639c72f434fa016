import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ManualClock } from '../src/clock.js';
import { ClosedError } from '../src/errors.js';
import { buildRequestManager } from '../src/index.js';
import { MemoryCacheManager } from '../src/memory/memory-cache-manager.js';
import { MemoryQueueManager } from '../src/memory/memory-queue-manager.js';

use(chaiAsPromised);

describe('Request manager: close() and the waits in progress', function () {
  it('rejects a waitFor still waiting with ClosedError at once, and leaves no timer behind', async function () {
    const clock = new ManualClock();
    const rm = buildRequestManager({
      queue: new MemoryQueueManager({}, clock),
      cache: new MemoryCacheManager({}, clock),
      clock,
    });
    const { key } = await rm.submit({ uri: '/never', key: 'never' });
    const waiting = rm.waitFor(key, { timeoutMs: 60_000 });
    // Let it read the status and start polling.
    await clock.tick();
    await rm.close();
    // The clock does not move: nothing but close() can settle the wait.
    await expect(waiting).to.be.rejectedWith(ClosedError);
    expect(clock.pendingTimers).to.equal(0);
  });
});
