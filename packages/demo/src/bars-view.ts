import cliProgress from 'cli-progress';

import { isTerminal } from '@armlib/core';
import type { RequestManager, RequestStatus } from '@armlib/core';

import { between, formatMs } from './format.js';
import type { LiveView, TrackedRequest } from './live-view.js';

/** How often statuses (state, position, ETA) are re-read, ms. */
const POLL_MS = 200;
const BAR_WIDTH = 16;

/** What one bar shows; passed to cli-progress as the bar's payload. */
interface BarPayload {
  label: string;
  status: RequestStatus | undefined;
  /** Progress shown: the latest of events and polls, so a lagging poll never moves the bar back. */
  value: number;
}

/**
 * The live view for terminals: one cli-progress bar per request with its state, queue position,
 * progress and ETA. Statuses are polled through `status()` (position and ETA are not events);
 * progress events move a bar between polls.
 */
export class BarsView implements LiveView {
  readonly #rm: RequestManager;
  readonly #tracked: readonly TrackedRequest[];
  readonly #labelWidth: number;
  readonly #multibar: cliProgress.MultiBar;
  readonly #bars = new Map<string, { bar: cliProgress.SingleBar; payload: BarPayload }>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  readonly #onProgress = (e: { key: string; progress: number }): void => {
    const entry = this.#bars.get(e.key);
    if (entry === undefined) return;
    entry.payload.value = e.progress;
    entry.bar.update(e.progress, entry.payload);
  };

  constructor(rm: RequestManager, tracked: readonly TrackedRequest[], stream: NodeJS.WritableStream = process.stdout) {
    this.#rm = rm;
    this.#tracked = tracked;
    this.#labelWidth = Math.max(...tracked.map((t) => t.label.length));
    this.#multibar = new cliProgress.MultiBar({
      stream,
      format: (_options, params, payload: BarPayload) => this.#render(params.value, payload),
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    });
  }

  start(): void {
    for (const t of this.#tracked) {
      const payload: BarPayload = { label: t.label, status: undefined, value: 0 };
      this.#bars.set(t.key, { bar: this.#multibar.create(100, 0, payload), payload });
    }
    this.#rm.events.on('progress', this.#onProgress);
    this.#timer = setInterval(() => {
      this.#tick();
    }, POLL_MS);
    this.#tick();
  }

  log(line: string): void {
    this.#multibar.log(`${line}\n`);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#rm.events.off('progress', this.#onProgress);
    await this.#polling;
    await this.#poll();
    this.#multibar.stop();
  }

  /** Starts a poll unless one is still running (a slow backend must not pile polls up). */
  #tick(): void {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
  }

  async #poll(): Promise<void> {
    await Promise.all(
      [...this.#bars.entries()].map(async ([key, entry]) => {
        if (entry.payload.status !== undefined && isTerminal(entry.payload.status.state)) return;
        const status = await this.#rm.status(key);
        entry.payload.status = status;
        entry.payload.value = shownProgress(status, entry.payload.value);
        entry.bar.update(entry.payload.value, entry.payload);
      }),
    );
  }

  #render(value: number, payload: BarPayload): string {
    const filled = Math.round((Math.min(100, Math.max(0, value)) / 100) * BAR_WIDTH);
    const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
    const pct = `${String(Math.round(value)).padStart(3)}%`;
    return ` ${payload.label.padEnd(this.#labelWidth)} ${bar} ${pct}  ${describe(payload.status)}`;
  }
}

function shownProgress(status: RequestStatus, shown: number): number {
  switch (status.state) {
    case 'completed':
      return 100;
    case 'running':
      return Math.max(shown, status.progress ?? 0);
    case 'pending':
      // Back in the queue (a retry): the next attempt starts from scratch.
      return 0;
    default:
      return status.progress ?? shown;
  }
}

/** Where the request is: queue position and ETA, running with ETA and message, or how it ended. */
function describe(status: RequestStatus | undefined): string {
  if (status === undefined) return '';
  switch (status.state) {
    case 'pending': {
      const parts = [status.position === undefined ? 'queued' : `queued #${String(status.position)}`];
      if (status.etaMs !== undefined) parts.push(`ETA ${formatMs(status.etaMs)}`);
      if (status.attempts > 0) parts.push(`retry ${String(status.attempts + 1)}`);
      return parts.join(' · ');
    }
    case 'running': {
      const parts = [status.cancelRequested === true ? 'cancelling' : 'running'];
      if (status.etaMs !== undefined) parts.push(`ETA ${formatMs(status.etaMs)}`);
      if (status.message !== undefined && status.message !== '') parts.push(status.message);
      return parts.join(' · ');
    }
    case 'completed': {
      const retried = status.attempts > 1 ? ` (attempt ${String(status.attempts)})` : '';
      return `done in ${formatMs(between(status.startedAt, status.finishedAt))}${retried}`;
    }
    case 'failed':
      return `failed: ${status.error?.message ?? ''}`;
    default:
      return status.state;
  }
}
