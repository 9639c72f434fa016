// A fresh process for one streaming measurement, so that its peak RSS is the streaming's own and
// not the heap the lifecycle runs left behind: node --expose-gc streaming-child.js <file|s3> <bytes> [dir]
import { tmpdir } from 'node:os';

const [kind, rawBytes, dir] = process.argv.slice(2);
const bytes = Number(rawBytes);
if (!Number.isSafeInteger(bytes) || bytes < 1 || (kind !== 'file' && kind !== 's3')) {
  process.stderr.write('usage: streaming-child.js <file|s3> <bytes> [dir]\n');
  process.exit(2);
}
// Only the measured kind's module is loaded: the other's dependencies (the AWS SDK for s3) would
// count in this process's RSS.
const result =
  kind === 'file'
    ? await (await import('./file-streaming.js')).measureFileStreaming({ bytes, dir: dir ?? tmpdir() })
    : await (await import('./s3-streaming.js')).measureS3Streaming({ bytes });
process.stdout.write(`${JSON.stringify(result)}\n`);
