// A worker process of the multi-process file row (see file-processes.ts), forked with an IPC
// channel: node file-worker-child.js <dir> <concurrency> <payload as base64>. It reports each
// completion's request index to its parent, batched per turn of the event loop, and stops
// (worker, then request manager) when the parent sends 'stop'. Indices only: this process is
// the row's bottleneck, and sending the keys as well took a tenth of its time (JSON over the pipe).
import { fileRequestManager } from './file-system.js';

const [dir, rawConcurrency, payloadBase64] = process.argv.slice(2);
const concurrency = Number(rawConcurrency);
if (dir === undefined || payloadBase64 === undefined || !Number.isSafeInteger(concurrency) || concurrency < 1) {
  process.stderr.write('usage: file-worker-child.js <dir> <concurrency> <payload base64>\n');
  process.exit(2);
}
const payload = Buffer.from(payloadBase64, 'base64');
const rm = fileRequestManager(dir);

let completed: number[] = [];
const report = (): void => {
  if (completed.length === 0) return;
  process.send?.({ completed });
  completed = [];
};
rm.events.on('completed', (e) => {
  if (completed.length === 0) setImmediate(report);
  const i = e.status.request?.params?.['i'];
  completed.push(typeof i === 'string' ? Number(i) : Number.NaN);
});

const worker = rm.process(
  async (job) => {
    await job.write('csv', payload);
  },
  { concurrency },
);

process.on('message', (message) => {
  if (message !== 'stop') return;
  void (async () => {
    await worker.stop();
    report();
    await rm.close();
    process.disconnect();
  })();
});
process.send?.({ ready: true });
