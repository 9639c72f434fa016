// What one memory access costs on this machine, by working-set size: the floor under any read
// that follows pointers through a big heap (the status read at a million pending requests).

/** Bytes per cache line: the probe touches one word per line, so no two reads share a line. */
const LINE_BYTES = 64;
const WORDS_PER_LINE = LINE_BYTES / 4;

/**
 * Average nanoseconds of one dependent read of a random cache line within `bytes` (at least one
 * line): a pointer chase through a single random cycle over every line (Sattolo's shuffle), so
 * each read waits for the one before it, as a lookup that goes key → slot → entry → record does.
 * Past the caches and the TLB's reach, each read pays a cache miss and a page walk.
 */
export function dependentReadNs(bytes: number, reads = 2_000_000): number {
  const lines = Math.max(1, Math.floor(bytes / LINE_BYTES));
  const memory = new Int32Array(lines * WORDS_PER_LINE);
  const order = new Int32Array(lines);
  for (let i = 0; i < lines; i++) order[i] = i;
  for (let i = lines - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * i); // j < i: one cycle through every line
    const t = order[i] as number;
    order[i] = order[j] as number;
    order[j] = t;
  }
  for (let i = 0; i < lines; i++) {
    memory[(order[i] as number) * WORDS_PER_LINE] = (order[(i + 1) % lines] as number) * WORDS_PER_LINE;
  }
  let at = 0;
  for (let i = 0; i < Math.min(reads, lines); i++) at = memory[at] as number; // warm the path once
  const started = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) at = memory[at] as number;
  const ns = Number(process.hrtime.bigint() - started) / reads;
  // Keeps the chase observable, so it cannot be optimised away.
  if (at < 0) throw new Error('unreachable');
  return ns;
}

/** What writing fresh memory costs, from {@link pageTouchUs}. */
export interface PageTouchCost {
  /** µs per 4 KiB page written for the first time (the kernel maps a zeroed page on the fault). */
  readonly firstTouchUs: number;
  /** µs per 4 KiB page written again, once mapped: the copying alone. */
  readonly rewriteUs: number;
}

/**
 * Writes `bytes` of never-touched memory twice and times each pass per 4 KiB page: the first pays
 * a page fault per page, the second only the copying. Memory a process keeps growing (records and
 * results a lifecycle keeps, a heap being filled) pays the first figure; on a virtual machine
 * whose faults are costly it is far above the second.
 */
export function pageTouchUs(bytes = 64 * 1024 * 1024): PageTouchCost {
  const pages = Math.max(1, Math.floor(bytes / 4096));
  // Uninitialised and large: the allocator maps it fresh, so no page of it is resident yet.
  const memory = Buffer.allocUnsafeSlow(pages * 4096);
  let started = process.hrtime.bigint();
  memory.fill(1);
  const first = Number(process.hrtime.bigint() - started) / 1000 / pages;
  started = process.hrtime.bigint();
  memory.fill(2);
  const again = Number(process.hrtime.bigint() - started) / 1000 / pages;
  return { firstTouchUs: first, rewriteUs: again };
}
