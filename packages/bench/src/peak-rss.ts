import { readFileSync } from 'node:fs';

/**
 * The peak resident set size of this process so far, bytes, from the kernel's high-water mark of
 * its address space (`VmHWM` in `/proc/self/status`), or undefined where there is no such file.
 *
 * Not `process.resourceUsage().maxRSS`: Linux carries that figure across `exec`, so a child
 * spawned by a large parent reports the parent's size (the forked copy, before its exec). `VmHWM`
 * belongs to the address space, which `exec` replaces.
 */
export function peakRssBytes(): number | undefined {
  let status: string;
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
}
