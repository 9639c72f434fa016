import { expect } from 'chai';

import { ManualClock, SystemClock } from '../src/clock.js';

const START = Date.UTC(2026, 0, 1);

describe('clock', () => {
  describe('ManualClock', () => {
    it('starts at 2026-01-01T00:00:00Z by default, or at the given time', () => {
      expect(new ManualClock().now()).to.equal(START);
      expect(new ManualClock(1000).now()).to.equal(1000);
    });

    it('does not move on its own', async () => {
      const clock = new ManualClock();
      await clock.tick();
      expect(clock.now()).to.equal(START);
    });

    it('fires timers in time order, and timers due at the same time in the order they were set', async () => {
      const clock = new ManualClock();
      const fired: string[] = [];
      clock.setTimeout(() => fired.push('c@30'), 30);
      clock.setTimeout(() => fired.push('a@10'), 10);
      clock.setTimeout(() => fired.push('b1@20'), 20);
      clock.setTimeout(() => fired.push('b2@20'), 20);
      await clock.advance(100);
      expect(fired).to.deep.equal(['a@10', 'b1@20', 'b2@20', 'c@30']);
    });

    it('shows each timer its own due time, and ends at the target time', async () => {
      const clock = new ManualClock();
      const seen: number[] = [];
      clock.setTimeout(() => seen.push(clock.now() - START), 10);
      clock.setTimeout(() => seen.push(clock.now() - START), 25);
      await clock.advance(40);
      expect(seen).to.deep.equal([10, 25]);
      expect(clock.now()).to.equal(START + 40);
    });

    it('fires a timer due exactly at the target, and none after it', async () => {
      const clock = new ManualClock();
      const fired: number[] = [];
      clock.setTimeout(() => fired.push(50), 50);
      clock.setTimeout(() => fired.push(51), 51);
      await clock.advance(50);
      expect(fired).to.deep.equal([50]);
      expect(clock.pendingTimers).to.equal(1);
      await clock.advance(1);
      expect(fired).to.deep.equal([50, 51]);
      expect(clock.pendingTimers).to.equal(0);
    });

    it('treats a negative delay as zero', async () => {
      const clock = new ManualClock();
      let fired = false;
      clock.setTimeout(() => (fired = true), -5);
      await clock.advance(0);
      expect(fired).to.equal(true);
    });

    it('clearTimeout stops a timer from firing', async () => {
      const clock = new ManualClock();
      const fired: string[] = [];
      const handle = clock.setTimeout(() => fired.push('cleared'), 10);
      clock.setTimeout(() => fired.push('kept'), 10);
      clock.clearTimeout(handle);
      expect(clock.pendingTimers).to.equal(1);
      await clock.advance(20);
      expect(fired).to.deep.equal(['kept']);
    });

    it('lets a timer clear a later one', async () => {
      const clock = new ManualClock();
      const fired: string[] = [];
      const later = clock.setTimeout(() => fired.push('later'), 20);
      clock.setTimeout(() => {
        fired.push('first');
        clock.clearTimeout(later);
      }, 10);
      await clock.advance(30);
      expect(fired).to.deep.equal(['first']);
    });

    it('clearing a timer that already fired is harmless', async () => {
      const clock = new ManualClock();
      const handle = clock.setTimeout(() => undefined, 1);
      await clock.advance(1);
      expect(() => {
        clock.clearTimeout(handle);
      }).not.to.throw();
    });

    it('fires timers set by timers within the same advance, at their own due times', async () => {
      const clock = new ManualClock();
      const fired: [string, number][] = [];
      clock.setTimeout(() => {
        fired.push(['outer', clock.now() - START]);
        clock.setTimeout(() => {
          fired.push(['inner', clock.now() - START]);
          clock.setTimeout(() => fired.push(['innermost', clock.now() - START]), 0);
        }, 15);
      }, 10);
      clock.setTimeout(() => fired.push(['other', clock.now() - START]), 20);
      await clock.advance(100);
      expect(fired).to.deep.equal([
        ['outer', 10],
        ['other', 20],
        ['inner', 25],
        ['innermost', 25],
      ]);
    });

    it('leaves a nested timer that falls after the target for a later advance', async () => {
      const clock = new ManualClock();
      let ticks = 0;
      const tick = (): void => {
        ticks++;
        clock.setTimeout(tick, 10);
      };
      clock.setTimeout(tick, 10);
      await clock.advance(35);
      expect(ticks).to.equal(3);
      await clock.advance(10);
      expect(ticks).to.equal(4);
    });

    it('lets chains of awaits started by a timer finish before the next timer fires', async () => {
      const clock = new ManualClock();
      const log: string[] = [];
      clock.setTimeout(() => {
        void (async () => {
          await Promise.resolve();
          await new Promise<void>((resolve) => setImmediate(resolve));
          await Promise.resolve();
          log.push('chain done');
        })();
      }, 10);
      clock.setTimeout(() => log.push('second timer'), 20);
      await clock.advance(30);
      expect(log).to.deep.equal(['chain done', 'second timer']);
    });

    it('lets an async loop that awaits its own timers run as it would in real time', async () => {
      const clock = new ManualClock();
      const sleep = (ms: number): Promise<void> =>
        new Promise((resolve) => {
          clock.setTimeout(resolve, ms);
        });
      const stamps: number[] = [];
      const loop = (async () => {
        for (let i = 0; i < 3; i++) {
          await sleep(100);
          await Promise.resolve();
          stamps.push(clock.now() - START);
        }
      })();
      await clock.advance(250);
      expect(stamps).to.deep.equal([100, 200]);
      await clock.advance(50);
      await loop;
      expect(stamps).to.deep.equal([100, 200, 300]);
    });

    it('runs pending promise jobs before the first timer', async () => {
      const clock = new ManualClock();
      const log: string[] = [];
      void Promise.resolve().then(() => {
        clock.setTimeout(() => log.push('set by a promise job'), 5);
      });
      await clock.advance(5);
      expect(log).to.deep.equal(['set by a promise job']);
    });

    it('set() moves to an absolute time and never backwards', async () => {
      const clock = new ManualClock();
      let fired = false;
      clock.setTimeout(() => (fired = true), 1000);
      await clock.set(START + 1000);
      expect(fired).to.equal(true);
      expect(clock.now()).to.equal(START + 1000);
      await clock.set(START);
      expect(clock.now()).to.equal(START + 1000);
    });

    it('tick() lets promise jobs run without moving time or firing timers', async () => {
      const clock = new ManualClock();
      let resolved = false;
      let fired = false;
      void Promise.resolve().then(() => (resolved = true));
      clock.setTimeout(() => (fired = true), 1);
      await clock.tick();
      expect(resolved).to.equal(true);
      expect(fired).to.equal(false);
      expect(clock.now()).to.equal(START);
    });
  });

  describe('SystemClock', () => {
    it('reads Date.now', () => {
      const clock = new SystemClock();
      const before = Date.now();
      const now = clock.now();
      expect(now).to.be.within(before, Date.now());
    });

    it('runs a zero-delay timer on the event loop, and clearTimeout cancels one', async () => {
      const clock = new SystemClock();
      let cleared = false;
      const handle = clock.setTimeout(() => (cleared = true), 0);
      clock.clearTimeout(handle);
      await new Promise<void>((resolve) => clock.setTimeout(resolve, 0));
      expect(cleared).to.equal(false);
    });
  });
});
