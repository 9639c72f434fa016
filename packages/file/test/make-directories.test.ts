import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { expect } from 'chai';

import { makeDirectories } from '../src/make-directories.js';
import { childOutcome } from './child-outcome.js';

/** The errno code makeDirectories throws for `dir` (fails when it returns). */
function refusal(dir: string): string | undefined {
  try {
    makeDirectories(dir, 0o755);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code;
  }
  throw new Error('expected an error');
}

describe('makeDirectories (mkdir -p without Node’s recursive mode)', function () {
  let root: string;

  beforeEach(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'armlib-file-mkdir-'));
  });

  afterEach(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('creates a deep chain of missing directories, each with the mode given', function () {
    const levels = Array.from({ length: 12 }, (_, i) => `level-${String(i)}`);
    const dir = path.join(root, ...levels);
    makeDirectories(dir, 0o700);
    for (let depth = 1; depth <= levels.length; depth++) {
      const stat = fs.lstatSync(path.join(root, ...levels.slice(0, depth)));
      expect(stat.isDirectory(), `level ${String(depth)}`).to.equal(true);
      // The umask can only take bits away: none for the group or others.
      expect(stat.mode & 0o077, `level ${String(depth)}`).to.equal(0);
    }
  });

  it('accepts an existing directory and creates only what is missing below an existing part', function () {
    const kept = path.join(root, 'a', 'kept');
    fs.mkdirSync(path.join(root, 'a'));
    fs.writeFileSync(kept, 'kept');
    makeDirectories(path.join(root, 'a'), 0o755);
    makeDirectories(path.join(root, 'a', 'b', 'c'), 0o755);
    expect(fs.readdirSync(path.join(root, 'a')).sort()).to.deep.equal(['b', 'kept']);
    expect(fs.readFileSync(kept, 'utf8')).to.equal('kept');
    expect(fs.statSync(path.join(root, 'a', 'b', 'c')).isDirectory()).to.equal(true);
  });

  it('refuses a file at the path (EEXIST) or in the chain (ENOTDIR), creating nothing', function () {
    const file = path.join(root, 'file');
    fs.writeFileSync(file, '');
    expect(refusal(file)).to.equal('EEXIST');
    expect(refusal(path.join(file, 'a', 'b'))).to.equal('ENOTDIR');
    expect(fs.readdirSync(root)).to.deep.equal(['file']);
  });

  it('creates nothing through a dangling symlink in the chain', function () {
    const target = path.join(root, 'target');
    fs.symlinkSync(target, path.join(root, 'link'));
    expect(refusal(path.join(root, 'link', 'a'))).to.equal('EEXIST');
    expect(fs.existsSync(target)).to.equal(false);
  });

  it('throws once where mkdir fails under an existing parent (/proc), where Node’s recursive mode loops for ever', function () {
    const outcome = childOutcome(`makeDirectories('/proc/armlib-test/x', 0o755);`);
    expect(outcome.threw, JSON.stringify(outcome)).to.equal(true);
    expect(outcome.message).to.include('/proc/armlib-test');
    // Linux's /proc answers ENOENT, the case that made Node loop; elsewhere /proc is missing or read-only.
    if (process.platform === 'linux') expect(outcome.code).to.equal('ENOENT');
  });
});
