// Entry point of `npm start`: runs the demo on the default configuration, results into ./out.
//   node packages/demo/dist/src/main.js [--work-scale=<factor>] [--out=<dir>] [--plain]
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { ArmError } from '@armlib/core';

import { runDemo } from './demo.js';

const { values } = parseArgs({
  options: {
    'work-scale': { type: 'string', default: '1' },
    out: { type: 'string', default: 'out' },
    plain: { type: 'boolean', default: false },
  },
});

const workScale = Number(values['work-scale']);
if (!Number.isFinite(workScale) || workScale < 0) {
  process.stderr.write(`--work-scale must be a number >= 0, got '${values['work-scale']}'\n`);
  process.exit(2);
}

const dir = process.env['ARMLIB_DIR'] ?? './var/armlib';
process.stdout.write(
  process.env['ARMLIB_CONFIG'] === undefined
    ? `Backend: the default configuration, the file backend under ${dir}. Results of earlier runs are ` +
        `served from its cache; delete ${dir} to start over.\n\n`
    : `Backend: the configuration in ${process.env['ARMLIB_CONFIG']}.\n\n`,
);

try {
  await runDemo({ outDir: resolve(values.out), workScale, ...(values.plain ? { live: false } : {}) });
} catch (error) {
  // armlib's own errors say what to do; a stack trace would only bury that. Anything else is a bug.
  const text = ArmError.is(error)
    ? `${error.name}: ${error.message}`
    : error instanceof Error
      ? (error.stack ?? error.message)
      : String(error);
  process.stderr.write(`demo failed: ${text}\n`);
  process.exitCode = 1;
}
