/**
 * A child process of `retryability.test.ts`, started under a file size limit (`ulimit -f`): opens
 * the file queue on the directory in argv[2] and enqueues requests one after the other until one
 * fails, which it does when SQLite's write-ahead log reaches the limit (the kernel refuses the
 * write with EFBIG, which SQLite reports as SQLITE_IOERR_WRITE). It then prints, as one JSON line,
 * the keys whose enqueue resolved and how the queue and the cache translate that real error.
 * Node ignores SIGXFSZ, so the process is not killed by the limit.
 */
import { BackendError, SystemClock } from '@armlib/core';

import { sqliteError } from '../../src/cache/open-cache-database.js';
import { FileQueueManager } from '../../src/queue/file-queue-manager.js';
import { entry, NO_LIMITS } from '../queue/fixtures.js';

/** What the child reports. */
export interface FileSizeLimitReport {
  readonly acknowledged: readonly string[];
  readonly failure?: {
    readonly isBackendError: boolean;
    readonly retryable: boolean | undefined;
    readonly message: string;
    readonly causeCode: unknown;
    readonly cache: { readonly retryable: boolean | undefined; readonly message: string; readonly sameCause: boolean };
  };
}

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write('usage: file-size-limit-child.js <dir>\n');
  process.exit(2);
}
const PAD = 'x'.repeat(2000);
const queue = new FileQueueManager({ dir }, new SystemClock());
const acknowledged: string[] = [];
let failure: unknown;
for (let i = 0; i < 100_000 && failure === undefined; i++) {
  const key = `k${String(i).padStart(6, '0')}`;
  try {
    await queue.enqueue(entry(key, { body: PAD }), NO_LIMITS);
    acknowledged.push(key);
  } catch (error) {
    failure = error;
  }
}
const report: FileSizeLimitReport =
  failure === undefined ? { acknowledged } : { acknowledged, failure: describe(failure) };
process.stdout.write(`${JSON.stringify(report)}\n`);
try {
  // Its last checkpoint may hit the limit too; the next open recovers from the log.
  await queue.close();
} catch {
  // Reported above; nothing else to do.
}

function describe(error: unknown): NonNullable<FileSizeLimitReport['failure']> {
  const cause = BackendError.is(error) ? error.cause : undefined;
  const cache = sqliteError(cause, 'testing');
  return {
    isBackendError: BackendError.is(error),
    retryable: BackendError.is(error) ? error.retryable : undefined,
    message: error instanceof Error ? error.message : String(error),
    causeCode: (cause as { code?: unknown } | undefined)?.code,
    cache: {
      retryable: BackendError.is(cache) ? cache.retryable : undefined,
      message: cache.message,
      sameCause: cache.cause === cause,
    },
  };
}
