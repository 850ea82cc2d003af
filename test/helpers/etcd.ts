/**
 * A throwaway single-member etcd for tests: Debian's /usr/bin/etcd with a
 * temporary data directory, on free ports of 127.0.0.1 or, with `netnsPath`,
 * on an address inside a network namespace (entered with nsenter, so the
 * process sees the same mount namespace as everyone else). Optionally with
 * TLS for clients and with authentication enabled.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './kernel.js';

export interface EtcdOptions {
  /** Address to listen on; default 127.0.0.1. Inside a namespace, one of its addresses. */
  readonly host?: string;
  /** Run etcd in this network namespace (e.g. /var/run/netns/NAME). */
  readonly netnsPath?: string;
  /** Serve clients over TLS (the URL becomes etcds://); peers stay plain. */
  readonly tls?: EtcdTlsFiles;
  /** Enable authentication once started: a `root` user with this password and the root role. */
  readonly rootPassword?: string;
}

/** PEM files, as etcd's --cert-file, --key-file and --trusted-ca-file take them. */
export interface EtcdTlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustedCaFile: string;
  /** Require client certificates signed by trustedCaFile (--client-cert-auth); etcdctl then uses this pair. */
  readonly clientAuth?: { readonly certFile: string; readonly keyFile: string };
}

export interface RunningEtcd {
  /** Client URL for EtcdStore.open, `etcd://host:port` (`etcds://` with TLS). */
  readonly url: string;
  readonly dataDir: string;
  /** SIGTERM, wait for the exit, remove the data directory. */
  stop(): Promise<void>;
  /** SIGKILL and wait, keeping the data directory (a crash; `restart` brings it back). */
  kill(): Promise<void>;
  /** Stops etcd if it runs (keeping its data) and starts it again on the same ports and data. */
  restart(): Promise<void>;
}

const ETCD = '/usr/bin/etcd';
const ETCDCTL = '/usr/bin/etcdctl';
const READY_TIMEOUT_MS = 20_000;

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port assigned'));
      });
    });
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startEtcd(options: EtcdOptions = {}): Promise<RunningEtcd> {
  const host = options.host ?? '127.0.0.1';
  const { netnsPath } = options;
  // A namespace made for the test has its ports to itself; ours are found by binding port 0.
  const clientPort = netnsPath === undefined ? await freePort(host) : 2379;
  let peerPort = netnsPath === undefined ? await freePort(host) : 2380;
  while (peerPort === clientPort) peerPort = await freePort(host);
  const { tls, rootPassword } = options;
  const clientUrl = `${tls === undefined ? 'http' : 'https'}://${hostPort(host, clientPort)}`;
  const peerUrl = `http://${hostPort(host, peerPort)}`;
  // On tmpfs where there is one: etcd fsyncs every write, and a loaded disk made a test's write miss its 5 s bound.
  const dataDir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'netctl-etcd-'));
  const name = 'netctl-test';
  const args = [
    '--name', name,
    '--data-dir', dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`,
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-level', 'error',
    ...(tls === undefined ? [] : ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.trustedCaFile]),
    ...(tls?.clientAuth === undefined ? [] : ['--client-cert-auth']),
  ];
  // etcdctl's flags to reach this member; the user is added once authentication is on.
  const ctlAccess = [
    `--endpoints=${clientUrl}`,
    ...(tls === undefined ? [] : [`--cacert=${tls.trustedCaFile}`]),
    ...(tls?.clientAuth === undefined ? [] : [`--cert=${tls.clientAuth.certFile}`, `--key=${tls.clientAuth.keyFile}`]),
  ];
  let authEnabled = false;
  const inNamespace = (command: string, commandArgs: string[]): [string, string[]] =>
    netnsPath === undefined ? [command, commandArgs] : ['nsenter', [`--net=${netnsPath}`, command, ...commandArgs]];

  let child: ChildProcess | undefined;
  let output = '';

  const exited = (process: ChildProcess): Promise<void> =>
    process.exitCode !== null || process.signalCode !== null
      ? Promise.resolve()
      : new Promise((resolve) => process.once('exit', () => resolve()));

  const launch = async (): Promise<void> => {
    output = '';
    // nsenter execs etcd in place, so the PID is etcd's either way.
    const [command, commandArgs] = inNamespace(ETCD, args);
    const started = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-4000);
    };
    started.stdout?.on('data', keep);
    started.stderr?.on('data', keep);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (started.exitCode !== null || started.signalCode !== null) {
        throw new Error(`etcd exited at start (${started.exitCode ?? started.signalCode}): ${output}`);
      }
      const [ctl, ctlArgs] = inNamespace(ETCDCTL, [
        ...ctlAccess,
        ...(authEnabled && rootPassword !== undefined ? [`--user=root:${rootPassword}`] : []),
        '--dial-timeout=1s',
        '--command-timeout=2s',
        'endpoint',
        'health',
      ]);
      const health = await run(ctl, ctlArgs, { timeoutMs: 5000 });
      if (health.code === 0) return;
      if (Date.now() > deadline) {
        await signal('SIGKILL');
        throw new Error(`etcd at ${clientUrl} did not become healthy: ${health.stderr} ${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const signal = async (name: NodeJS.Signals): Promise<void> => {
    const running = child;
    if (running === undefined) return;
    if (running.exitCode === null && running.signalCode === null) running.kill(name);
    await exited(running);
    child = undefined;
  };

  const enableAuth = async (password: string): Promise<void> => {
    for (const command of [['user', 'add', `root:${password}`, '--interactive=false'], ['role', 'add', 'root'], ['user', 'grant-role', 'root', 'root'], ['auth', 'enable']]) {
      const [ctl, ctlArgs] = inNamespace(ETCDCTL, [...ctlAccess, '--command-timeout=5s', ...command]);
      const result = await run(ctl, ctlArgs, { timeoutMs: 10_000 });
      if (result.code !== 0) throw new Error(`etcdctl ${command.join(' ')}: ${result.stderr}`);
    }
    authEnabled = true;
  };

  try {
    await launch();
    if (rootPassword !== undefined) await enableAuth(rootPassword);
  } catch (err) {
    await signal('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: `${tls === undefined ? 'etcd' : 'etcds'}://${hostPort(host, clientPort)}`,
    dataDir,
    stop: async () => {
      await signal('SIGTERM');
      await rm(dataDir, { recursive: true, force: true });
    },
    kill: () => signal('SIGKILL'),
    restart: async () => {
      await signal('SIGTERM');
      await launch();
    },
  };
}
