import { spawnSync } from 'node:child_process';

/** The built `@armlib/file` entry, by absolute path (this file runs from `dist/test/`). */
const FILE_ENTRY = new URL('../src/index.js', import.meta.url).href;
/** The built directory helper, for its own tests. */
const HELPER_ENTRY = new URL('../src/make-directories.js', import.meta.url).href;
const CORE_ENTRY = import.meta.resolve('@armlib/core');
/** Far longer than the calls take; a call that never returns is killed then. */
const CHILD_TIMEOUT_MS = 10_000;

/** What a child process reported of the error its code threw. */
export interface ChildOutcome {
  /** False when the code returned without throwing. */
  readonly threw: boolean;
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly retryable?: boolean;
  readonly issues?: readonly { path: string; message: string }[];
}

/**
 * Runs `body` (the body of an async function that sees `file` = `@armlib/file`, `core` =
 * `@armlib/core` and `makeDirectories`, all built) in a fresh Node process and returns what it threw.
 * In a child because the bug these tests guard against blocks the event loop for ever: in this
 * process mocha's timeout could never fire; the child is killed after 10 s and the test fails.
 */
export function childOutcome(body: string): ChildOutcome {
  const script = `
    const file = await import(${JSON.stringify(FILE_ENTRY)});
    const core = await import(${JSON.stringify(CORE_ENTRY)});
    const { makeDirectories } = await import(${JSON.stringify(HELPER_ENTRY)});
    void file, core, makeDirectories;
    let outcome = { threw: false };
    try {
      await (async () => { ${body} })();
    } catch (e) {
      outcome = { threw: true, name: e.name, code: e.code, message: String(e.message), retryable: e.retryable,
        issues: e.issues?.map((i) => ({ path: i.path, message: i.message })) };
    }
    console.log(JSON.stringify(outcome));
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
  });
  if (child.error !== undefined || child.status !== 0) {
    const how = child.error?.message ?? `exit ${String(child.status ?? child.signal)}`;
    throw new Error(`the child failed or ran past ${String(CHILD_TIMEOUT_MS)} ms (${how}): ${child.stderr}`);
  }
  const lines = child.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? '') as ChildOutcome;
}
