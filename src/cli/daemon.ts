/**
 * `netctl daemon`: one Controller for this host behind the HTTP API. On
 * SIGTERM or SIGINT it stops serving and closes the controller; kernel
 * state stays, and the next daemon restores it from the state directory.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { socketPathOf } from '../api/client.js';
import { ApiServer, ensureSocketFree } from '../api/server.js';
import { InvalidArgument } from '../cnm/errors.js';
import type { Command } from './command.js';

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new InvalidArgument(`invalid --data-path-port "${text}": an integer from 1 to 65535`);
  }
  return port;
}

export const daemonCommand: Command = {
  name: 'daemon',
  usage: '[OPTIONS]',
  summary: 'Run the netctl daemon',
  args: { exactly: 0 },
  flags: [
    { name: 'socket', type: 'string', help: 'Unix socket to serve the API on (default: the -H address)' },
    { name: 'state-dir', type: 'string', help: 'Directory for the daemon state', defaultText: '"/var/lib/netctl"' },
    { name: 'store', type: 'string', help: 'Cluster store for overlay networks (etcd://HOST:PORT)' },
    { name: 'advertise-addr', type: 'string', help: "This host's underlay address, where other hosts send overlay traffic" },
    { name: 'data-path-port', type: 'string', help: 'UDP port of the overlay data path', defaultText: '4789' },
    { name: 'dns', type: 'list', help: 'Upstream DNS server for names netctl does not know (default: /etc/resolv.conf)' },
    { name: 'node-name', type: 'string', help: 'Name other hosts show for this one in Peers', defaultText: 'the host name' },
  ],
  async run(ctx, parsed) {
    const socketPath = parsed.string('socket') ?? socketPathOf(ctx.host);
    await mkdir(dirname(socketPath), { recursive: true });
    // Before the controller opens: a second daemon must not touch the kernel state the live one owns.
    await ensureSocketFree(socketPath);
    // Loaded here only: it pulls in the kernel bindings, which no other command needs.
    const { openHost } = await import('../host.js');
    const stateDir = parsed.string('state-dir');
    const clusterStore = parsed.string('store');
    const advertiseAddress = parsed.string('advertise-addr');
    const dataPathPort = parsed.string('data-path-port');
    const nodeName = parsed.string('node-name');
    const dns = parsed.list('dns');
    const host = await openHost({
      ...(stateDir !== undefined ? { stateDir } : {}),
      ...(clusterStore !== undefined ? { clusterStore } : {}),
      ...(advertiseAddress !== undefined ? { advertiseAddress } : {}),
      ...(dataPathPort !== undefined ? { dataPathPort: parsePort(dataPathPort) } : {}),
      ...(nodeName !== undefined ? { nodeName } : {}),
      ...(dns.length > 0 ? { dns } : {}),
      log: (message) => ctx.io.stderr(`${message}\n`),
    });
    const server = new ApiServer(host.controller, { version: ctx.version });
    try {
      await server.listen(socketPath);
    } catch (err) {
      await host.close();
      throw err;
    }
    ctx.io.stdout(`netctl daemon listening on unix://${socketPath}\n`);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stop = (name: NodeJS.Signals): void => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        resolve(name);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
    ctx.io.stderr(`netctl daemon: ${signal} received, shutting down\n`);
    await server.close();
    await host.close();
    return 0;
  },
};
