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
