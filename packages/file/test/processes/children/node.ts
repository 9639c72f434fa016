/**
 * A child process of the multi-process tests: opens the file backend on the shared directory
 * (with logging wrappers), optionally runs a worker, and obeys commands from the test over IPC
 * (submit, cancel, start working, arm a self-kill, stop). It exits when the test process goes away, so it can never be orphaned.
 */
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';

import type { Worker } from '@armlib/core';

import { errorCode } from '../support/logging-queue.js';
import { EventLog } from '../support/event-log.js';
import { blockEventLoop, makeHandler } from '../support/handler.js';
import { KillSwitch } from '../support/kill-switch.js';
import { openBackend, openManager } from '../support/open.js';
import { CHILD_CONFIG_ENV } from '../support/protocol.js';
import type { ChildCommand, ChildConfig, ChildMessage, SubmitOutcome } from '../support/protocol.js';

function send(message: ChildMessage): void {
  process.send?.(message);
}

const raw = process.env[CHILD_CONFIG_ENV];
if (raw === undefined || process.send === undefined) {
  process.stderr.write(`children/node.js needs ${CHILD_CONFIG_ENV} and an IPC channel\n`);
  process.exit(2);
}
const config = JSON.parse(raw) as ChildConfig;
const log = new EventLog(config.logFile);
const killSwitch = new KillSwitch(log);
const manager = openManager(
  openBackend(config.dir, log, (phase, key) => {
    killSwitch.at(phase);
    if (phase === 'commit' && key !== undefined) stallFirstCommit(key);
  }),
  config.settings,
);

/**
 * A `commit-stall-*` key's first commit in any process (a marker file created with O_EXCL says
 * which) blocks this process for three leases right as the commit starts, as a descheduled or
 * paused process would: by the time it goes on, another worker has taken the request over.
 */
function stallFirstCommit(key: string): void {
  if (!key.startsWith('commit-stall') || config.worker === undefined) return;
  try {
    closeSync(openSync(path.join(config.gateDir, `stalled-${key}`), 'wx'));
  } catch {
    return;
  }
  log.write({ ev: 'commit-stall', key });
  blockEventLoop(3 * config.worker.leaseMs);
  log.write({ ev: 'commit-stall-end', key });
}
manager.events.on('error', ({ error, context }) => {
  log.write({ ev: 'manager-error', context, code: errorCode(error), message: String(error) });
});

let worker: Worker | undefined;

function startWorker(): void {
  if (config.worker === undefined || worker !== undefined) return;
  worker = manager.process(makeHandler(log, config.gateDir), config.worker);
  log.write({ ev: 'worker-started', context: config.name });
}

if (config.deferWorker !== true) startWorker();

async function execute(command: ChildCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'submit': {
      const outcomes = await Promise.all(
        command.requests.map(async (request): Promise<SubmitOutcome> => {
          const key = request.key ?? '';
          try {
            const status = await manager.submit(request);
            return { key, state: status.state };
          } catch (error) {
            return { key, error: `${errorCode(error)}: ${String(error)}` };
          }
        }),
      );
      return outcomes;
    }
    case 'cancel':
      return (await manager.cancel(command.key)).state;
    case 'work':
      startWorker();
      return 'working';
    case 'arm':
      killSwitch.arm(command.phase, command.delayMs);
      return 'armed';
    case 'stop':
      await worker?.stop({ graceMs: 0 });
      await manager.close();
      return 'stopped';
  }
}

process.on('message', (message: ChildCommand) => {
  execute(message).then(
    (value) => {
      send({ type: 'reply', id: message.id, ok: true, value });
      if (message.cmd === 'stop') process.disconnect();
    },
    (error: unknown) => {
      send({ type: 'reply', id: message.id, ok: false, error: `${errorCode(error)}: ${String(error)}` });
    },
  );
});
// The test process is gone (or let us go): never linger.
process.on('disconnect', () => {
  process.exit(0);
});
log.write({ ev: 'child-ready', context: config.name });
send({ type: 'ready', pid: process.pid });
