import { once } from 'node:events';
import net from 'node:net';
import { Worker } from 'node:worker_threads';

/** A loopback endpoint that never answers, for adapters' timeout tests. */
export interface Unresponsive {
  /** `http://127.0.0.1:<port>`: an `endpoint` for the adapter. */
  readonly url: string;
  /** Connections the server has accepted so far. */
  accepted(): number;
  /** Stops it, dropping its connections. */
  close(): Promise<void>;
}

/**
 * A TCP server on a random loopback port that accepts every connection and never sends a byte:
 * a request to it waits for an answer until the client's request (idle) timeout gives up.
 */
export async function silentServer(): Promise<Unresponsive> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    // A client that gives up resets the connection: nothing to report.
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${String(port)}`,
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}

// The listener runs in a worker that blocks (Atomics.wait) as soon as it listens: its event loop
// never turns, so no connection is ever accepted. CommonJS, run with `eval`.
const NEVER_ACCEPTS = `
const { parentPort, workerData } = require('node:worker_threads');
const server = require('node:net').createServer();
server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  parentPort.postMessage(server.address().port);
  Atomics.wait(workerData, 0, 0);
  server.close();
});
`;

/**
 * A loopback port whose listen queue is full and never drained: the kernel drops further SYNs, so
 * a new connection to it stays in progress until the client's connection timeout gives up (on
 * Linux, where a full accept queue drops SYNs rather than refusing them).
 */
export async function unacceptingServer(): Promise<Unresponsive> {
  const release = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(NEVER_ACCEPTS, { eval: true, workerData: release });
  const [port] = (await once(worker, 'message')) as [number];
  // A backlog of 1 queues at most two connections: these fill it.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const filler = net.connect(port, '127.0.0.1');
    filler.on('error', () => undefined);
    fillers.push(filler);
  }
  await once(fillers[0] as net.Socket, 'connect');
  return {
    url: `http://127.0.0.1:${String(port)}`,
    accepted: () => 0,
    close: async () => {
      for (const filler of fillers) filler.destroy();
      Atomics.store(release, 0, 1);
      Atomics.notify(release, 0);
      await once(worker, 'exit');
    },
  };
}
