/**
 * Two simulated hosts for the overlay benchmark, laid out as DESIGN.md's
 * test hosts: an underlay namespace holding a bridge, two host namespaces
 * on veths with addresses from 198.19.N.0/24 (part of 198.18.0.0/15; the
 * tests use 198.18.x, so a bench and a test run never share a host
 * address), MTU 1500, and optionally etcd on the underlay for netctl.
 * Bridge netfilter (bridge-nf-call-*) is off in every namespace it makes.
 *
 * Everything a testbed makes (namespaces, processes, files, directories) is
 * recorded before or as it is made; `destroy` removes all of it, and
 * `destroyAll` does so for every live testbed. `onInterrupt` wires that to
 * SIGINT and SIGTERM, so an interrupted run leaves nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespacesWithPrefix, removeNetns, run, uniqueName } from '../test/helpers/kernel.js';

export interface BenchHost {
  readonly index: 1 | 2;
  readonly name: string;
  readonly netnsPath: string;
  /** Underlay address, e.g. 198.19.7.1. */
  readonly address: string;
}

export interface Spawned {
  readonly child: ChildProcess;
  /** stdout and stderr, the last 8 kB. */
  output(): string;
  exited(): boolean;
}

export interface Testbed {
  readonly hosts: readonly [BenchHost, BenchHost];
  readonly underlayNs: string;
  readonly underlayNsPath: string;
  /** `http://198.19.N.254:2379` when made with `etcd: true`. */
  readonly etcdUrl: string | undefined;
  /** A new namespace, removed by destroy. */
  addNamespace(tag: string): Promise<{ name: string; netnsPath: string }>;
  /** Records a namespace made by someone else (e.g. a netctl sandbox) so destroy removes it. */
  adoptNamespace(name: string): void;
  /** A temporary directory, removed by destroy. */
  tempDir(tag: string): Promise<string>;
  /** A file made outside the temp dirs (e.g. a UAPI socket), removed by destroy. */
  adoptPath(path: string): void;
  /** Runs a long-lived command in a namespace with nsenter (which execs it, so the PID is the command's). */
  spawnIn(netnsPath: string, command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Spawned;
  /** Runs `ip` with the arguments and throws with stderr when it fails. */
  ip(...args: string[]): Promise<void>;
  destroy(): Promise<void>;
}

const live = new Set<Testbed>();
let interrupted = false;

/** Destroys every testbed not yet destroyed. */
export async function destroyAll(): Promise<void> {
  for (const testbed of [...live]) await testbed.destroy();
}

/** On SIGINT or SIGTERM: destroy every testbed, then exit 130 / 143. */
export function onInterrupt(): void {
  const stop = (code: number) => () => {
    if (interrupted) return;
    interrupted = true;
    console.error('\ninterrupted: removing the testbed');
    void destroyAll().finally(() => process.exit(code));
  };
  process.once('SIGINT', stop(130));
  process.once('SIGTERM', stop(143));
}

const prefix = `198.19.${process.pid % 250}`;

/** Resolves true once the child has exited, or false after `ms` if it has not. */
export async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function makeTestbed(options: { etcd?: boolean } = {}): Promise<Testbed> {
  // Once interrupted, the run only tears down; a loop still going must not build another testbed.
  if (interrupted) throw new Error('interrupted');
  const namespaces: string[] = [];
  const children: ChildProcess[] = [];
  const paths: string[] = [];
  const hostAddresses: string[] = [];
  let destroyed = false;

  const ip = async (...args: string[]) => {
    const result = await run('ip', args);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim()}`);
  };
  let hosts: [BenchHost, BenchHost] | undefined;
  let underlay: { name: string; netnsPath: string } | undefined;
  let etcdUrl: string | undefined;
  // Anything made after destroy (e.g. by a setup still running when SIGINT came) would be left behind.
  const alive = () => {
    if (destroyed || interrupted) throw new Error('testbed destroyed');
  };
  const addNamespace = async (tag: string) => {
    alive();
    const name = uniqueName(tag);
    namespaces.push(name);
    await ip('netns', 'add', name);
    if (destroyed) {
      await removeNetns(name);
      throw new Error('testbed destroyed');
    }
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    // No bridge in the testbed filters anything: with br_netfilter loaded, bridged frames would
    // still walk the IP hooks, which neither a real underlay nor a tuned kernel vxlan does.
    const bridgeNf = await run('ip', ['netns', 'exec', name, 'sh', '-c', 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ ! -e "$f" ] || echo 0 > "$f"; done']);
    if (bridgeNf.code !== 0) throw new Error(`bridge-nf-call in ${name}: ${bridgeNf.stderr.trim()}`);
    return { name, netnsPath: `/var/run/netns/${name}` };
  };
  const spawnIn = (netnsPath: string, command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Spawned => {
    alive();
    const child = spawn('nsenter', [`--net=${netnsPath}`, command, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(env !== undefined ? { env: { ...process.env, ...env } } : {}),
    });
    children.push(child);
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (err) => keep(Buffer.from(String(err))));
    return { child, output: () => output, exited: () => child.exitCode !== null || child.signalCode !== null };
  };

  const testbed: Testbed = {
    get hosts() {
      if (hosts === undefined) throw new Error('testbed not built');
      return hosts;
    },
    get underlayNs() {
      return underlay?.name ?? '';
    },
    get underlayNsPath() {
      return underlay?.netnsPath ?? '';
    },
    get etcdUrl() {
      return etcdUrl;
    },
    addNamespace,
    adoptNamespace: (name) => void namespaces.push(name),
    async tempDir(tag) {
      alive();
      const dir = await mkdtemp(join(tmpdir(), `netctl-bench-${tag}-`));
      paths.push(dir);
      if (destroyed) {
        await rm(dir, { recursive: true, force: true });
        throw new Error('testbed destroyed');
      }
      return dir;
    },
    adoptPath: (path) => void paths.push(path),
    spawnIn,
    ip,
    destroy() {
      destroyed = true;
      // One teardown however often it is asked for; the testbed stays in `live` until it is done, so destroyAll waits for it.
      teardown ??= tearDown().finally(() => live.delete(testbed));
      return teardown;
    },
  };
  let teardown: Promise<void> | undefined;
  const tearDown = async () => {
    // SIGTERM first so daemons can take down what they made; SIGKILL whoever lingers.
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    for (const child of children) if (!(await waitExit(child, 3000))) child.kill('SIGKILL');
    for (const child of children) await waitExit(child, 3000);
    // netctl's overlay namespaces are named ovl-<network>-<host address>.
    for (const address of hostAddresses) {
      for (const name of await namespacesWithPrefix('ovl-')) if (name.endsWith(`-${address}`)) await removeNetns(name);
    }
    for (const name of [...namespaces].reverse()) await removeNetns(name);
    for (const path of paths) await rm(path, { recursive: true, force: true });
  };
  live.add(testbed);

  try {
    underlay = await addNamespace('u');
    await ip('-n', underlay.name, 'link', 'add', 'ul0', 'mtu', '1500', 'type', 'bridge');
    await ip('-n', underlay.name, 'addr', 'add', `${prefix}.254/24`, 'dev', 'ul0');
    await ip('-n', underlay.name, 'link', 'set', 'ul0', 'up');
    const made: BenchHost[] = [];
    for (const index of [1, 2] as const) {
      const host = await addNamespace(`h${index}`);
      const address = `${prefix}.${index}`;
      hostAddresses.push(address);
      const port = uniqueName('p');
      await ip('-n', underlay.name, 'link', 'add', port, 'mtu', '1500', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1500', 'netns', host.name);
      await ip('-n', underlay.name, 'link', 'set', port, 'master', 'ul0', 'up');
      await ip('-n', host.name, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      await ip('-n', host.name, 'link', 'set', 'eth0', 'up');
      made.push({ index, name: host.name, netnsPath: host.netnsPath, address });
    }
    hosts = made as [BenchHost, BenchHost];
    if (options.etcd === true) etcdUrl = await startEtcd(testbed, `${prefix}.254`);
  } catch (err) {
    await testbed.destroy();
    throw err;
  }
  return testbed;
}

/** etcd on the underlay, its process and data directory owned by the testbed. */
async function startEtcd(testbed: Testbed, address: string): Promise<string> {
  const dataDir = await testbed.tempDir('etcd');
  const client = `http://${address}:2379`;
  const peer = `http://${address}:2380`;
  const etcd = testbed.spawnIn(testbed.underlayNsPath, '/usr/bin/etcd', [
    '--name', 'bench', '--data-dir', dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `bench=${peer}`, '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-level', 'error',
  ]);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (etcd.exited()) throw new Error(`etcd exited at start: ${etcd.output()}`);
    const health = await run('nsenter', [`--net=${testbed.underlayNsPath}`, '/usr/bin/etcdctl', `--endpoints=${client}`, '--dial-timeout=1s', 'endpoint', 'health'], {
      timeoutMs: 5000,
    });
    if (health.code === 0) return client;
    if (Date.now() > deadline) throw new Error(`etcd did not become healthy: ${health.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
