import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

/** The machine a bench ran on. */
export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly totalMemoryBytes: number;
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  /** Whether `global.gc` was available (heap figures need it). */
  readonly exposeGc: boolean;
  /** 1-minute load average when the bench started: other work on the machine skews every figure. */
  readonly loadAverage1m: number;
}

/** Describes this machine and process. */
export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    totalMemoryBytes: totalmem(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    exposeGc: typeof (globalThis as { gc?: unknown }).gc === 'function',
    loadAverage1m: loadavg()[0] ?? Number.NaN,
  };
}

/** Renders rows as a plain-text table; columns after the first are right-aligned (numbers). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

/** `123,456` style integers; `-` for NaN. */
export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-';
}

/** A number with `digits` decimals; `-` for NaN. */
export function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

/** Bytes as MiB with one decimal; `-` for NaN. */
export function mib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : '-';
}

/** Writes `results` as `<dir>/bench-<ISO date>.json` (colons made file-name safe); returns the path. */
export async function writeResults(dir: string, at: Date, results: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `bench-${at.toISOString().replace(/:/g, '-')}.json`);
  await writeFile(
    path,
    `${JSON.stringify(results, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`,
  );
  return path;
}
