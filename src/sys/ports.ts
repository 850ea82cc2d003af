/**
 * Whether a port of this host is taken, asked of the kernel the only way it
 * answers: by binding the port on every address of the daemon's own
 * namespace and closing the socket at once.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { NetctlError } from '../errors.js';
import type { PortProtocol } from '../records.js';

/**
 * True when some socket holds the port (the bind fails with EADDRINUSE):
 * one bound to any address of the namespace, or a TCP listener on one
 * address, since 0.0.0.0 covers them all. Any other failure rejects: it
 * tells nothing about the port.
 */
export async function portInUse(protocol: PortProtocol, port: number): Promise<boolean> {
  try {
    await (protocol === 'tcp' ? bindTcp(port) : bindUdp(port));
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') return true;
    throw new NetctlError('Internal', `cannot tell whether port ${port}/${protocol} is in use: ${(err as Error).message}`, { cause: err });
  }
}

function bindTcp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve()));
  });
}

function bindUdp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind({ port, address: '0.0.0.0', exclusive: true }, () => socket.close(() => resolve()));
  });
}
