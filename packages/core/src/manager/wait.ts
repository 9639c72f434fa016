import type { TimerHandle } from '../clock.js';
import { BackendError, ClosedError, TimeoutError } from '../errors.js';
import type { RequestStatus } from '../model.js';
import { isTerminal } from '../model.js';
import type { DefaultRequestManager } from './default-request-manager.js';
import type { ManagerEvents, WaitOptions } from './types.js';

const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 5_000;

/** A state nothing more will happen to without a new submit. */
function settled(status: RequestStatus): boolean {
  return isTerminal(status.state) || status.state === 'unknown';
}

function isTransient(error: unknown): error is BackendError {
  return BackendError.is(error) && error.retryable;
}

function reportTransient(manager: DefaultRequestManager, key: string, error: BackendError): void {
  manager.events.emit('error', { error, context: `waitFor '${key}': status read failed, polling on` });
}

/** The first status read; undefined when it failed with a transient backend error (the polls try again). */
async function firstStatus(manager: DefaultRequestManager, key: string): Promise<RequestStatus | undefined> {
  try {
    return await manager.status(key);
  } catch (error) {
    if (!isTransient(error)) throw error;
    reportTransient(manager, key, error);
    return undefined;
  }
}

/**
 * Resolves when the key reaches a terminal state (or is unknown). Events from this process wake
 * it at once; polling with backoff (100 ms doubling to 5 s) catches transitions made elsewhere.
 * A status read failing with a retryable {@link BackendError} is reported as an `error` event and
 * polled through; any other failure rejects the wait. `close()` of the manager rejects it with a
 * {@link ClosedError} at once.
 */
export async function waitForTerminal(
  manager: DefaultRequestManager,
  key: string,
  options: WaitOptions,
): Promise<RequestStatus> {
  const { clock, events } = manager;
  options.signal?.throwIfAborted();
  const first = await firstStatus(manager, key);
  if (first !== undefined && settled(first)) return first;
  options.signal?.throwIfAborted();

  return new Promise<RequestStatus>((resolve, reject) => {
    let pollMs = FIRST_POLL_MS;
    let pollTimer: TimerHandle | undefined;
    let timeoutTimer: TimerHandle | undefined;
    let done = false;
    let checking = false;
    let recheck = false;
    // close() of the manager ends the wait at once, rather than at its next poll.
    const untrack = manager.trackWait(() => {
      finish(() => {
        reject(new ClosedError());
      });
    });

    const finish = (fn: () => void): void => {
      if (done) return;
      done = true;
      untrack();
      if (pollTimer !== undefined) clock.clearTimeout(pollTimer);
      if (timeoutTimer !== undefined) clock.clearTimeout(timeoutTimer);
      for (const name of WATCHED) events.off(name, onEvent);
      options.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const check = (): void => {
      if (done) return;
      if (checking) {
        recheck = true;
        return;
      }
      checking = true;
      manager.status(key).then(
        (status) => {
          checking = false;
          if (settled(status))
            finish(() => {
              resolve(status);
            });
          else if (recheck) {
            recheck = false;
            check();
          }
        },
        (error: unknown) => {
          checking = false;
          // A backend hiccup (a throttled read, say) is told and polled through, as the worker
          // does: the wait ends on the request's outcome, its timeout or its signal, not on one read.
          if (isTransient(error)) {
            reportTransient(manager, key, error);
            // An event that came while the read was failing is acted on now, not at the next poll.
            if (recheck) {
              recheck = false;
              check();
            }
            return;
          }
          finish(() => {
            reject(error instanceof Error ? error : new Error(String(error)));
          });
        },
      );
    };
    const onEvent = (payload: { key: string }): void => {
      if (payload.key === key) check();
    };
    const schedulePoll = (): void => {
      pollTimer = clock.setTimeout(() => {
        pollMs = Math.min(MAX_POLL_MS, pollMs * 2);
        check();
        if (!done) schedulePoll();
      }, pollMs);
    };
    const onAbort = (): void => {
      finish(() => {
        reject(options.signal?.reason as Error);
      });
    };

    for (const name of WATCHED) events.on(name, onEvent);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      timeoutTimer = clock.setTimeout(() => {
        finish(() => {
          reject(new TimeoutError(`waitFor('${key}') timed out after ${String(options.timeoutMs)} ms`));
        });
      }, options.timeoutMs);
    }
    schedulePoll();
    // A transition may have happened between the first status read and subscribing.
    check();
  });
}

const WATCHED = ['completed', 'failed', 'cancelled', 'expired'] as const satisfies readonly (keyof ManagerEvents)[];
