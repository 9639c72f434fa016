import fs from 'node:fs';
import path from 'node:path';

/**
 * Creates `dir` and whichever of its ancestors are missing, like `mkdir -p`, without Node's
 * `recursive` mode: Node 20's recursive `mkdir` (sync, callback and promise forms alike) loops for
 * ever when the system's `mkdir` answers ENOENT under a parent that exists (`/proc/armlib`, any
 * path under a pseudo file system that refuses new entries), blocking the event loop or never
 * settling. Here each level is one plain `mkdir`, so every failure is thrown once.
 *
 * It walks up from `dir` while `stat` reports the path missing, then creates each missing level
 * from the top with `mode`. Ancestors that exist are used as they are (a symlinked `/tmp` stays
 * fine, as with `mkdir -p`); a level found existing while creating (another process made it in
 * between) is accepted only when it is a real directory, never a symlink planted there. Nothing
 * is created through a dangling symlink: `mkdir` on its path fails with EEXIST. When `dir`
 * already exists it is only checked to be a directory (following a symlink): callers that refuse
 * a symlink there check it themselves.
 *
 * @param dir - an absolute path.
 * @param mode - the mode of each directory created (before the umask).
 * @throws the file system's error (with its errno `code`, naming the level that failed): ENOENT,
 *   ENOTDIR, EACCES, EEXIST for a non-directory in the way… Callers turn it into their typed error.
 */
export function makeDirectories(dir: string, mode: number): void {
  const missing: string[] = [];
  let current = path.resolve(dir);
  let found = statOrMissing(current);
  // Bounded by the number of path components: each step moves to a strictly shorter parent.
  while (found === undefined) {
    missing.push(current);
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
    found = statOrMissing(current);
  }
  if (missing.length === 0) {
    if (found?.isDirectory() === true) return;
    // Something else is at `dir` (a file, a device): let mkdir report it (EEXIST, naming `dir`).
    missing.push(current);
  }
  for (const level of missing.reverse()) {
    try {
      fs.mkdirSync(level, { mode });
    } catch (error) {
      // Created by someone else since the walk: fine if it is a real directory (not a symlink).
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && isRealDirectory(level)) continue;
      throw error;
    }
  }
}

/**
 * What is at `file`, following symlinks (as `mkdir` does for ancestors); undefined when nothing is.
 * Any other failure (EACCES, ENOTDIR, ELOOP, ENAMETOOLONG…) is thrown: no `mkdir` below that path
 * could succeed either.
 */
function statOrMissing(file: string): fs.Stats | undefined {
  return fs.statSync(file, { throwIfNoEntry: false });
}

function isRealDirectory(file: string): boolean {
  try {
    return fs.lstatSync(file).isDirectory();
  } catch {
    return false;
  }
}
