import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** tmpfs when the host has one (fast, and nothing a test writes reaches a disk), else the OS temp dir. */
const BASE = fs.existsSync('/dev/shm') && fs.statSync('/dev/shm').isDirectory() ? '/dev/shm' : os.tmpdir();

/** A fresh empty directory for one test; remove it with {@link removeTempDir}. */
export function makeTempDir(prefix = 'armlib-file-queue-'): string {
  return fs.mkdtempSync(path.join(BASE, prefix));
}

/** Removes a directory made by {@link makeTempDir}, with everything in it. */
export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
