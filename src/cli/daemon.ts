/**
 * `netctl daemon`: one Controller for this host behind the HTTP API. On
 * SIGTERM or SIGINT it stops serving and closes the controller; kernel
 * state stays, and the next daemon restores it from the state directory.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { socketPathOf } from '../api/client.js';
import type { MetricsServer } from '../api/metrics.js';
import { InvalidArgument } from '../errors.js';
import { levelLogger, LOG_LEVELS, parseLogLevel } from '../log.js';
import type { Command } from './command.js';
import { LogLimiter } from './log-limit.js';

/** How long SIGTERM may take before the daemon exits regardless. */
const SHUTDOWN_DEADLINE_MS = 10_000;

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new InvalidArgument(`invalid --data-path-port "${text}": an integer from 1 to 65535`);
  }
  return port;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration as Docker's flags take one: "300ms", "30s", "5m", "1h", or "0". */
export function parseDuration(flag: string, text: string): number {
  if (text === '0') return 0;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (match === null) throw new InvalidArgument(`invalid --${flag} "${text}": a number with a unit (ms, s, m, h), e.g. 5m, or 0`);
  return Math.round(Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? 's'] ?? 1000));
}

/** The first line of --store-password-file: a password on the command line would show in ps. */
async function readPasswordFile(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).split(/\r?\n/)[0] ?? '';
  } catch (err) {
    throw new InvalidArgument(`cannot read --store-password-file ${path}: ${(err as Error).message}`);
  }
}

/** Keys are renewed at least every 10 minutes (forward secrecy); more often than every 10 s only churns SAs. */
function parseRotateInterval(text: string): number {
  const ms = parseDuration('esp-rotate-interval', text);
  if (ms < 10_000 || ms > 600_000) throw new InvalidArgument(`invalid --esp-rotate-interval "${text}": from 10s to 10m`);
  return ms;
}

export const daemonCommand: Command = {
  name: 'daemon',
  usage: '[OPTIONS]',
  summary: 'Run the netctl daemon',
  args: { exactly: 0 },
  flags: [
    { name: 'socket', type: 'string', help: 'Unix socket to serve the API on (default: the -H address)' },
    {
      name: 'docker-plugin-socket',
      type: 'string',
      help: "Also serve Docker's remote network and IPAM plugin protocol here (dockerd looks in /run/docker/plugins/NAME.sock; NAME is the driver name)",
    },
    { name: 'state-dir', type: 'string', help: 'Directory for the daemon state', defaultText: '"/var/lib/netctl"' },
    {
      name: 'predefined-networks',
      type: 'bool',
      help: "Make Docker's predefined networks when missing: bridge (on the kernel bridge netctl0), host and none",
      defaultText: 'true',
    },
    { name: 'bridge', type: 'string', help: 'none: make no default bridge network (the predefined bridge), as dockerd --bridge=none' },
    { name: 'store', type: 'string', help: 'Cluster store for overlay networks (etcd://HOST:PORT, or etcds://HOST:PORT for TLS)' },
    { name: 'store-cacert', type: 'string', help: "PEM file of the CA that signed the cluster store's certificates" },
    { name: 'store-cert', type: 'string', help: 'PEM file of the client certificate for the cluster store' },
    { name: 'store-key', type: 'string', help: 'PEM file of the key of --store-cert' },
    { name: 'store-user', type: 'string', help: 'User name for the cluster store' },
    { name: 'store-password-file', type: 'string', help: 'File whose first line is the password of --store-user' },
    {
      name: 'store-compact-interval',
      type: 'string',
      help: "How often to compact the cluster store's history, keeping one interval of it (0: leave it to etcd's --auto-compaction flags)",
      defaultText: '"5m"',
    },
    { name: 'advertise-addr', type: 'string', help: "This host's underlay address, where other hosts send overlay traffic" },
    { name: 'data-path-port', type: 'string', help: 'UDP port of the overlay data path', defaultText: '4789' },
    {
      name: 'fast-path',
      type: 'bool',
      help: 'Move the frames of flows between overlay endpoints in the addon, without waking JavaScript (false: every frame through the VTEP in TypeScript)',
      defaultText: 'true',
    },
    { name: 'dns', type: 'list', help: 'Upstream DNS server for names netctl does not know (default: /etc/resolv.conf)' },
    { name: 'metrics-addr', type: 'string', help: 'Also serve Prometheus metrics at http://IP:PORT/metrics (they are always at /metrics on the socket)' },
    { name: 'node-name', type: 'string', help: 'Name other hosts show for this one in Peers', defaultText: 'the host name' },
    {
      name: 'esp-keylog',
      type: 'string',
      help: "Write the keys of encrypted networks' security associations to FILE, as Wireshark's esp_sa table (for debugging only: whoever reads it can decrypt captured traffic)",
    },
    {
      name: 'esp-rotate-interval',
      type: 'string',
      help: 'How often the keys of encrypted networks are renewed (at most 10m)',
      defaultText: '"10m"',
    },
    { name: 'log-level', type: 'string', help: `Lowest level of the lines logged (${LOG_LEVELS.join(', ')})`, defaultText: '"info"' },
  ],
  async run(ctx, parsed) {
    const logLevel = parseLogLevel(parsed.string('log-level') ?? 'info');
    const bridge = parsed.string('bridge');
    if (bridge !== undefined && bridge !== 'none') {
      throw new InvalidArgument(`invalid --bridge "${bridge}": only none (no default bridge network) is supported`);
    }
    // Loaded here only: the server pulls in prom-client, which would cost every other command ~0.2 s of start-up.
    const { ApiServer } = await import('../api/server.js');
    const { ensureSocketFree } = await import('../sys/socket-file.js');
    const { DaemonMetrics, MetricsServer, parseMetricsAddress } = await import('../api/metrics.js');
    const socketPath = parsed.string('socket') ?? socketPathOf(ctx.host);
    const dockerPluginSocket = parsed.string('docker-plugin-socket');
    const metricsAddrText = parsed.string('metrics-addr');
    const metricsAddress = metricsAddrText !== undefined ? parseMetricsAddress(metricsAddrText) : undefined;
    await mkdir(dirname(socketPath), { recursive: true });
    // Before the controller opens: a second daemon must not touch the kernel state the live one owns.
    await ensureSocketFree(socketPath);
    // Loaded here only: it pulls in the kernel bindings, which no other command needs.
    const { DEFAULT_STATE_DIR, openHost } = await import('../host.js');
    const { raiseOpenFileLimit } = await import('../sys/rlimit.js');
    // Each sandbox costs descriptors (DNS listeners and connections); the caps are sized by this limit.
    try {
      raiseOpenFileLimit();
    } catch (err) {
      ctx.io.stderr(`netctl daemon: cannot raise the open-file limit: ${(err as Error).message}\n`);
    }
    // One failing upstream under a flood would otherwise log a line per query.
    const logLimiter = new LogLimiter({ write: (line) => ctx.io.stderr(`${line}\n`) });
    const logger = levelLogger((level, message) => logLimiter.log(`${level.toUpperCase().padEnd(5)} ${message}`), logLevel);
    const stateDir = parsed.string('state-dir');
    const clusterStore = parsed.string('store');
    const storeCaFile = parsed.string('store-cacert');
    const storeCertFile = parsed.string('store-cert');
    const storeKeyFile = parsed.string('store-key');
    const storeUser = parsed.string('store-user');
    const storePasswordFile = parsed.string('store-password-file');
    const clusterStoreAccess = {
      ...(storeCaFile !== undefined ? { caFile: storeCaFile } : {}),
      ...(storeCertFile !== undefined ? { certFile: storeCertFile } : {}),
      ...(storeKeyFile !== undefined ? { keyFile: storeKeyFile } : {}),
      ...(storeUser !== undefined ? { user: storeUser } : {}),
      ...(storePasswordFile !== undefined ? { password: await readPasswordFile(storePasswordFile) } : {}),
    };
    const compactInterval = parsed.string('store-compact-interval');
    const clusterStoreCompactIntervalMs = compactInterval !== undefined ? parseDuration('store-compact-interval', compactInterval) : undefined;
    const advertiseAddress = parsed.string('advertise-addr');
    const dataPathPort = parsed.string('data-path-port');
    const nodeName = parsed.string('node-name');
    const espKeylog = parsed.string('esp-keylog');
    const espRotateInterval = parsed.string('esp-rotate-interval');
    const espRotateEveryMs = espRotateInterval !== undefined ? parseRotateInterval(espRotateInterval) : undefined;
    const dns = parsed.list('dns');
    const metrics = new DaemonMetrics({ processMetrics: true });
    const host = await openHost({
      ...(stateDir !== undefined ? { stateDir } : {}),
      ...(clusterStore !== undefined ? { clusterStore } : {}),
      ...(Object.keys(clusterStoreAccess).length > 0 ? { clusterStoreAccess } : {}),
      ...(clusterStoreCompactIntervalMs !== undefined ? { clusterStoreCompactIntervalMs } : {}),
      ...(advertiseAddress !== undefined ? { advertiseAddress } : {}),
      ...(dataPathPort !== undefined ? { dataPathPort: parsePort(dataPathPort) } : {}),
      ...(parsed.has('fast-path') ? { fastPath: parsed.bool('fast-path') } : {}),
      ...(nodeName !== undefined ? { nodeName } : {}),
      ...(espKeylog !== undefined ? { espKeylog } : {}),
      ...(espRotateEveryMs !== undefined ? { espRotateEveryMs } : {}),
      ...(dns.length > 0 ? { dns } : {}),
      ...(parsed.has('predefined-networks') ? { predefinedNetworks: parsed.bool('predefined-networks') } : {}),
      ...(bridge === 'none' ? { defaultBridge: false } : {}),
      ...(metricsAddress !== undefined ? { metricsAddress } : {}),
      storeObserver: (store) => metrics.storeObserver(store),
      onDnsQuery: metrics.onDnsQuery,
      logger,
    });
    if (host.vtep !== undefined) metrics.setVtep(host.vtep);
    metrics.setDns(() => host.dns);
    if (host.esp !== undefined) metrics.setEsp(host.esp);
    const server = new ApiServer(host.controller, { version: ctx.version, metrics, stateDir: stateDir ?? DEFAULT_STATE_DIR });
    let metricsServer: MetricsServer | undefined;
    let pluginServer: { close(): Promise<void> } | undefined;
    try {
      await server.listen(socketPath);
      if (metricsAddress !== undefined) metricsServer = await MetricsServer.listen(metrics, metricsAddress);
      if (dockerPluginSocket !== undefined) {
        const { DockerPluginServer } = await import('../plugins/docker/server.js');
        const plugin = new DockerPluginServer({
          controller: host.controller,
          localStore: host.stores.local,
          routedSubnets: host.routedSubnets,
          ...(host.stores.cluster !== undefined ? { clusterStore: host.stores.cluster } : {}),
          logger,
        });
        await mkdir(dirname(dockerPluginSocket), { recursive: true });
        await plugin.listen(dockerPluginSocket);
        pluginServer = plugin;
      }
    } catch (err) {
      await metricsServer?.close();
      await server.close();
      await host.close();
      throw err;
    }
    ctx.io.stdout(`netctl daemon listening on unix://${socketPath}\n`);
    if (dockerPluginSocket !== undefined) ctx.io.stdout(`netctl daemon serving the Docker plugin on unix://${dockerPluginSocket}\n`);
    // Changes wait for the restore of what the store holds; this line says it is done and the DNS answers.
    void host.ready.then(
      () => ctx.io.stdout('netctl daemon ready: stored state restored, embedded DNS answering\n'),
      () => undefined,
    );
    if (metricsAddress !== undefined) {
      const { address, port } = metricsAddress;
      ctx.io.stdout(`netctl daemon serving metrics on http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics\n`);
    }
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
    // A store or client library that never lets go (etcd3's lease keep-alives after an outage) must not keep
    // the daemon alive: past the deadline it exits anyway, and the next daemon restores what the store holds.
    const deadline = setTimeout(() => {
      ctx.io.stderr(`netctl daemon: shutdown did not finish within ${SHUTDOWN_DEADLINE_MS / 1000} s; exiting\n`);
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    await pluginServer?.close();
    await metricsServer?.close();
    await server.close();
    await host.close();
    logLimiter.flush();
    clearTimeout(deadline);
    // Closed is closed: a timer or socket a library leaked does not hold the process either.
    setTimeout(() => process.exit(0), 1000).unref();
    return 0;
  },
};
