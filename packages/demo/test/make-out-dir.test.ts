import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { ConfigError } from '@armlib/core';

import { makeOutDir } from '../src/make-out-dir.js';

use(chaiAsPromised);

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
/** Far above a work-scale-0 run on the memory backend (about a second); a hang is killed here. */
const CHILD_TIMEOUT_MS = 60_000;

describe('demo --out', function () {
  let root: string;

  beforeEach(async function () {
    root = await mkdtemp(join(tmpdir(), 'armlib-demo-out-'));
  });

  afterEach(async function () {
    await rm(root, { recursive: true, force: true });
  });

  it('creates a missing chain of directories and accepts an existing one', async function () {
    const dir = join(root, 'a', 'b', 'c');
    await makeOutDir(dir);
    await makeOutDir(dir);
    expect((await stat(dir)).isDirectory()).to.equal(true);
  });

  it('refuses a file in the way with a ConfigError naming --out and the path', async function () {
    const file = join(root, 'file');
    await writeFile(file, '');
    for (const dir of [file, join(file, 'sub')]) {
      const error = await makeOutDir(dir).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(ConfigError.is(error), String(error)).to.equal(true);
      expect((error as Error).message)
        .to.include('--out')
        .and.include(dir);
    }
  });

  it('ends the demo with a clear error for --out under /proc instead of hanging', async function () {
    // The memory backend keeps the child off ./var/armlib; it runs the demo to the saving step.
    const config = join(root, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        queue: { adapter: 'memory' },
        cache: { adapter: 'memory' },
        manager: { retryBaseMs: 5, retryMaxMs: 10, pollMs: 10 },
      }),
    );
    const out = '/proc/armlib-demo-test/out';
    const child = spawnSync(process.execPath, [MAIN, '--out', out, '--work-scale=0', '--plain'], {
      env: { ...process.env, ARMLIB_CONFIG: config },
      encoding: 'utf8',
      timeout: CHILD_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    expect(child.signal, `killed after ${String(CHILD_TIMEOUT_MS)} ms: the demo hung`).to.equal(null);
    expect(child.status, child.stderr).to.equal(1);
    expect(child.stderr).to.include('--out').and.include(out);
    // An armlib error is printed as its message, not buried under a stack trace.
    expect(child.stderr).to.not.match(/^\s+at /m);
  });
});
