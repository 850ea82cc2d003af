/**
 * The socket file a server listens on: one left by a server that died is
 * replaced, one a live server answers on is not taken over.
 */
import { lstat, unlink } from 'node:fs/promises';
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
