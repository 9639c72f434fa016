import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import { deriveKey } from '@armlib/core';
import type { BatchRequest } from '@armlib/core';

import type { LifecycleSystem } from './drive.js';
import { FILE_BENCH_PARENT, fileRequestManager, freshDir, removeDirs } from './file-system.js';

/** What a worker child sends its parent. */
interface ChildMessage {
  readonly ready?: boolean;
  /** Indices of the requests completed. */
  readonly completed?: readonly number[];
}

/**
 * armlib's lifecycle on the file backend as the file backend is deployed: this process submits
 * and reads statuses (the API process), `workers` forked processes run the jobs, all on one
 * directory. A worker process tells this one of each completion over its IPC channel (the
 * bench's plumbing, standing in for the `completed` event a single process would hear); this
 * process then reads the status, which must say completed. The workers start (and poll the
 * empty queue) before the drive does.
 */
export async function fileProcessesSystem(
  workers: number,
  concurrency: number,
  payload: Uint8Array,
  run: string,
  parent = FILE_BENCH_PARENT,
  leftovers?: string[],
): Promise<LifecycleSystem> {
  const dir = freshDir(parent, 'bench-file-processes-');
  const rm = fileRequestManager(dir);
  const script = fileURLToPath(new URL('./file-worker-child.js', import.meta.url));
  const children: ChildProcess[] = [];
  // Keys by request index, as submit returned them; a completion reported before its submit call
  // returned derives the key as submit did.
  const keys: string[] = [];
  const requestOf = (index: number): BatchRequest => ({ uri: '/bench/report', params: { run, i: String(index) } });
  const keyOfIndex = (index: number): string => keys[index] ?? deriveKey(requestOf(index));
  let onCompleted: (key: string, index: number) => void = () => undefined;
  const close = async (): Promise<void> => {
    try {
      await Promise.all(
        children.map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = once(child, 'exit');
          child.send('stop');
          await exited;
        }),
      );
      await rm.close();
    } finally {
      if (leftovers === undefined) removeDirs([dir]);
      else leftovers.push(dir);
    }
  };
  try {
    for (let w = 0; w < workers; w++) {
      const child = fork(script, [dir, String(concurrency), Buffer.from(payload).toString('base64')], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      const ready = new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => {
          reject(new Error(`file worker process exited with code ${String(code)} before it was ready`));
        });
        child.on('message', (message: ChildMessage) => {
          if (message.ready === true) resolve();
          for (const index of message.completed ?? []) onCompleted(keyOfIndex(index), index);
        });
      });
      await ready;
    }
  } catch (error) {
    for (const child of children) child.kill();
    await rm.close();
    removeDirs([dir]);
    throw error;
  }
  return {
    async submit(index) {
      keys[index] = (await rm.submit(requestOf(index))).key;
    },
    onCompleted(callback) {
      onCompleted = callback;
    },
    async isCompleted(key) {
      return (await rm.status(key)).state === 'completed';
    },
    start() {
      // The worker processes run from the start.
    },
    close,
  };
}
