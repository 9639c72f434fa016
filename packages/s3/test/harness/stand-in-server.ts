import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers as S3 does for an object that is not there (the SDK reads it as NoSuchKey). */
export function notFound(res: http.ServerResponse): void {
  res
    .writeHead(404, { 'Content-Type': 'application/xml' })
    .end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>none</Message></Error>');
}

/**
 * Starts an S3 stand-in `server` on a loopback port. Its close runs `beforeClose` (timers of the
 * stand-in, answers it holds), drops the connections still open and waits for the server to stop.
 */
export async function listenOnLoopback(
  server: http.Server,
  beforeClose: () => void = () => undefined,
): Promise<{ url: string; close: () => Promise<void> }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${String(port)}`,
    close: async () => {
      beforeClose();
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
