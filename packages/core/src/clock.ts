import { injectable } from 'inversify';

/** An opaque timer handle returned by {@link Clock.setTimeout}. */
export interface TimerHandle {
  /** Prevents the timer from keeping the process alive (no-op on manual clocks). */
  unref?(): void;
}

/**
 * Time source for everything in armlib: timestamps, leases, backoff, polling.
 * Tests inject a {@link ManualClock} to move time without sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` after `ms` milliseconds of this clock's time. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer from {@link Clock.setTimeout}. */
  clearTimeout(handle: TimerHandle): void;
}

/** The longest delay one Node timer takes; a longer one fires after 1 ms (with a warning). */
const MAX_NODE_TIMER_MS = 2 ** 31 - 1;

/**
 * The real clock (Date.now and Node timers). A delay longer than Node's timers take (about 24.8
 * days) runs as a chain of timers, so that a long `waitFor` timeout or grace period does not fire
 * at once.
 */
@injectable()
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const delay = Number.isNaN(ms) ? 0 : Math.max(0, ms);
    if (delay <= MAX_NODE_TIMER_MS) return setTimeout(fn, delay);
    return new LongTimer(fn, Date.now() + delay);
  }
  clearTimeout(handle: TimerHandle): void {
    if (handle instanceof LongTimer) handle.cancel();
    else clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
}

/** A {@link SystemClock} timer beyond one Node timer's range: re-armed until its time comes. */
class LongTimer implements TimerHandle {
  readonly #fn: () => void;
  readonly #at: number;
  #timer: ReturnType<typeof setTimeout>;
  #unref = false;

  constructor(fn: () => void, at: number) {
    this.#fn = fn;
    this.#at = at;
    this.#timer = this.#arm();
  }

  #arm(): ReturnType<typeof setTimeout> {
    const timer = setTimeout(
      () => {
        const left = this.#at - Date.now();
        if (left > 0) this.#timer = this.#arm();
        else this.#fn();
      },
      Math.min(MAX_NODE_TIMER_MS, Math.max(0, this.#at - Date.now())),
    );
    if (this.#unref) timer.unref();
    return timer;
  }

  unref(): void {
    this.#unref = true;
    this.#timer.unref();
  }

  cancel(): void {
    clearTimeout(this.#timer);
  }
}

interface ManualTimer extends TimerHandle {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. `advance(ms)` fires due timers in time order and lets
 * the promise jobs they start settle between timers, so code driven by it runs as it would in
 * real time, without sleeps.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
    this.#timers = this.#timers.filter((t) => t !== handle);
  }

  /** Number of timers waiting to fire. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + Math.max(0, ms);
    await settle();
    for (;;) {
      const next = this.#nextDue(target);
      if (next === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /** Sets the time (never backwards) and fires due timers. */
  async set(time: number): Promise<void> {
    await this.advance(time - this.#now);
  }

  /** Lets pending promise jobs and I/O callbacks run without moving time. */
  async tick(): Promise<void> {
    await settle();
  }

  #nextDue(target: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers) {
      if (t.at > target) continue;
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

async function settle(): Promise<void> {
  // Two macrotask turns let chains of awaits (and fs/stream callbacks) started by a timer finish.
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
