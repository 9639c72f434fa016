import * as fs from 'node:fs';
import { dirname } from 'node:path';

import { ArmError, BackendError } from '@armlib/core';

import { isRetryableStorageError } from '../queue/sqlite-errors.js';

// Absent on Windows; there a planted symlink is caught by the lstat checks only.
const constants = fs.constants as Partial<typeof fs.constants>;
/** Refuses to open a path whose last component is a symlink (ELOOP). */
export const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;
/** Flags of a new file: never an existing one, never through a symlink. */
export const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW;
/**
 * Flags of a file read. Non-blocking, so that a FIFO planted at a name the cache reads cannot
 * hang the process in `open` (it is then refused: see {@link assertRegularFile}); on a regular
 * file the flag changes nothing.
 */
export const READ_FLAGS = fs.constants.O_RDONLY | O_NOFOLLOW | (constants.O_NONBLOCK ?? 0);

/** Refuses an open file that is not a regular one (a FIFO, a device or a socket planted in the cache). */
export function assertRegularFile(fd: number, path: string): void {
  if (!fs.fstatSync(fd).isFile()) {
    throw new BackendError(`file cache: refusing to read ${path}: it is not a regular file`);
  }
}

/** fsync off the event loop; `fs.fsync` is looked up at each call, so that tests can count the calls. */
function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fsync(fd, (error) => {
      if (error === null) resolve();
      else reject(error);
    });
  });
}

/** The `code` of a Node system error, if it is one. */
export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True for "no such file or directory" (or a path component that is not a directory). */
export function isMissing(error: unknown): boolean {
  const code = errnoOf(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Translates an fs error into a {@link BackendError} (armlib errors pass through), keeping it as `cause`. */
export function fsError(error: unknown, what: string): Error {
  if (ArmError.is(error)) return error;
  const code = errnoOf(error);
  if (code === undefined)
    return error instanceof Error ? error : new BackendError(`file cache: ${what}: ${String(error)}`);
  if (code === 'ELOOP') {
    return new BackendError(`file cache: ${what}: refusing to follow a symlink inside the cache directory`, {
      cause: error,
    });
  }
  return new BackendError(`file cache: ${what}: ${code}`, { retryable: isRetryableStorageError(error), cause: error });
}

/**
 * What is at `path`, without following a symlink: `missing`, or `dir` for a real directory.
 * Anything else (a symlink planted inside the cache, a file) is refused with a {@link BackendError}.
 */
export function dirState(path: string): 'missing' | 'dir' {
  let stat: fs.Stats | undefined;
  try {
    stat = fs.lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if (isMissing(error)) return 'missing';
    throw fsError(error, `checking ${path}`);
  }
  if (stat === undefined) return 'missing';
  if (stat.isDirectory()) return 'dir';
  throw new BackendError(
    stat.isSymbolicLink()
      ? `file cache: refusing to follow the symlink at ${path} (nothing is read or written outside the cache directory)`
      : `file cache: ${path} should be a directory`,
  );
}

/** Makes sure `path` is a real directory (creating it, not its parents); true when it was created. */
export function ensureDir(path: string): boolean {
  if (dirState(path) === 'dir') return false;
  try {
    fs.mkdirSync(path, { mode: 0o755 });
    return true;
  } catch (error) {
    // Another process created it in between: check what it is.
    if (errnoOf(error) === 'EEXIST' && dirState(path) === 'dir') return false;
    throw fsError(error, `creating ${path}`);
  }
}

/** Removes a file or directory tree, ignoring its absence (rm never follows symlinks). */
export function removeQuietly(path: string): void {
  try {
    fs.rmSync(path, { recursive: true, force: true });
  } catch {
    // Garbage left behind is collected by a later sweep.
  }
}

/** Removes a file (or a symlink, never its target), ignoring any failure; false when nothing went. */
export function unlinkQuietly(path: string): boolean {
  try {
    fs.unlinkSync(path);
    return true;
  } catch {
    // Already gone, or garbage left for a later sweep.
    return false;
  }
}

/** Flushes a file descriptor to stable storage (off the event loop). */
export async function syncFd(fd: number): Promise<void> {
  await fsyncAsync(fd);
}

/** Flushes a file, opened by name (a copy made outside this module), to stable storage. */
export async function syncFile(path: string): Promise<void> {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    throw fsError(error, `opening ${path} to sync it`);
  }
  try {
    await fsyncAsync(fd);
  } catch (error) {
    throw fsError(error, `syncing ${path}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flushes a directory's entries (creations, renames, unlinks in it) to stable storage. */
export async function syncDir(path: string): Promise<void> {
  const fd = openDir(path);
  try {
    await fsyncAsync(fd);
  } catch (error) {
    throwUnlessDirSyncUnsupported(error, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** {@link syncDir} on the event loop, for the one-off writes of opening a cache. */
export function syncDirSync(path: string): void {
  const fd = openDir(path);
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    throwUnlessDirSyncUnsupported(error, path);
  } finally {
    fs.closeSync(fd);
  }
}

function openDir(path: string): number {
  try {
    return fs.openSync(path, fs.constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (error) {
    throw fsError(error, `opening ${path} to sync it`);
  }
}

/** Some file systems cannot fsync a directory; the data files themselves were synced. */
function throwUnlessDirSyncUnsupported(error: unknown, path: string): void {
  if (errnoOf(error) !== 'EINVAL' && errnoOf(error) !== 'EISDIR') throw fsError(error, `syncing ${path}`);
}

/** Flushes the parent directory of `path` (after `path` was created, renamed or removed). */
export function syncParent(path: string): Promise<void> {
  return syncDir(dirname(path));
}
