/**
 * The socket file a server listens on: one left by a server that died is
 * replaced, one a live server answers on is not taken over; and the HTTP
 * servers on such files (the API and the Docker plugin), which go with
 * their file.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { type RequestListener, type Server, createServer } from 'node:http';
import { connect } from 'node:net';
import { Conflict } from '../errors.js';

/** Unlinks a socket file nobody answers on; throws Conflict when a live server does. */
export async function ensureSocketFree(socketPath: string): Promise<void> {
  const stat = await lstat(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (stat === undefined) return;
  if (!stat.isSocket()) throw new Conflict(`${socketPath} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
  if (live) throw new Conflict(`another daemon is already listening on ${socketPath}`);
  await unlink(socketPath);
}

/** An HTTP server listening on `socketPath` (made free first, see ensureSocketFree), the file's mode set to `mode`. */
export async function listenHttpOnSocket(socketPath: string, mode: number, handler: RequestListener): Promise<Server> {
  await ensureSocketFree(socketPath);
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(socketPath, mode);
  return server;
}

/** Stops accepting connections, lets requests in flight finish, and removes the socket file. */
export async function closeHttpOnSocket(server: Server, socketPath: string): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
  await unlink(socketPath).catch(() => undefined);
}
