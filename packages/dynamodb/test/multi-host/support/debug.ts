const DEBUG = process.env['ARMLIB_TEST_DEBUG'] === '1';
const T0 = Date.now();

/** A progress line on stderr when ARMLIB_TEST_DEBUG=1 (the phases of long multi-process tests). */
export function debug(message: string): void {
  if (DEBUG) process.stderr.write(`[+${String(Date.now() - T0)} ms] ${message}\n`);
}
