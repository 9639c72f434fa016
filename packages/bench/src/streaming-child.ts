// A fresh process for one streaming measurement, so that its peak RSS is the streaming's own and
// not the heap the lifecycle runs left behind: node --expose-gc streaming-child.js <file|s3> <bytes> [dir]
import { tmpdir } from 'node:os';

import { measureFileStreaming } from './file-streaming.js';
import { measureS3Streaming } from './s3-streaming.js';

const [kind, rawBytes, dir] = process.argv.slice(2);
const bytes = Number(rawBytes);
if (!Number.isSafeInteger(bytes) || bytes < 1 || (kind !== 'file' && kind !== 's3')) {
  process.stderr.write('usage: streaming-child.js <file|s3> <bytes> [dir]\n');
  process.exit(2);
}
const result =
  kind === 'file' ? await measureFileStreaming({ bytes, dir: dir ?? tmpdir() }) : await measureS3Streaming({ bytes });
process.stdout.write(`${JSON.stringify(result)}\n`);
