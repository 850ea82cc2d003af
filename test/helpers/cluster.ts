/**
 * Simulated hosts for multi-host tests, as DESIGN.md describes them: an
 * underlay namespace holding a bridge, one namespace per host joined to it
 * by a veth with an address from 198.18.0.0/15, etcd listening on the
 * underlay, and one `netctl daemon` per host started with nsenter.
 * Everything is removed by `destroy`, which tests call from teardown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NETCTL_CLI, type RunningDaemon, startDaemon as startNetctlDaemon } from './daemon.js';
import { startEtcd } from './etcd.js';
import { ingressSandboxName } from '../../src/ingress/mesh.js';
import { keys } from '../../src/repository/keys.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { addNetns, inNetns, namespacesWithPrefix, removeNetns, run, type RunResult, uniqueName } from './kernel.js';


export interface SimHost {
  readonly index: number;
  readonly name: string;
  readonly netnsPath: string;
  readonly address: string;
  readonly socket: string;
  readonly stateDir: string;
  daemon: RunningDaemon | undefined;
}

export interface Cluster {
  readonly hosts: SimHost[];
  readonly underlayNs: string;
  readonly underlayNsPath: string;
  readonly etcdUrl: string;
  /** Runs `netctl` against one host's daemon. */
  netctl(host: SimHost, ...args: string[]): Promise<RunResult>;
  /** Like netctl, but throws with stderr when the command fails; returns stdout. */
  ok(host: SimHost, ...args: string[]): Promise<string>;
  startDaemon(host: SimHost): Promise<void>;
  stopDaemon(host: SimHost, signal: NodeJS.Signals): Promise<void>;
  /** A sandbox name unique to this run, removed by destroy. */
  sandboxName(base: string): string;
  /** Adds a namespace on the underlay with an address, for a foreign VTEP; removed by destroy. */
  addUnderlayHost(address: string): Promise<{ name: string; netnsPath: string }>;
  /**
   * Partitions one host from one port: drops every `protocol` packet to or
   * from `port` inside the host's namespace, both ways (nftables, in a table
   * of its own, added in one transaction). The returned function heals it;
   * destroy does too. The root namespace is never touched.
   */
  dropPort(host: SimHost, protocol: 'tcp' | 'udp', port: number): Promise<() => Promise<void>>;
  /** The port etcd serves clients on. */
  readonly etcdPort: number;
  /** Kills etcd, keeping its data, to simulate an outage; startEtcd brings it back. */
  stopEtcd(): Promise<void>;
  startEtcd(): Promise<void>;
  destroy(): Promise<void>;
}

/** By path: npm puts node_modules/.bin first in PATH, where @vercel/nft has a command of the same name. */
const NFT = '/usr/sbin/nft';

/** A /24 of 198.18.0.0/15 of its own per test process, so overlay namespace names never clash. */
function underlayPrefix(): string {
  return `198.18.${process.pid % 250}`;
}

export interface ClusterOptions {
  /** MTU of the hosts' underlay veths (both ends): one for all, or one per host in order (default the kernel's 1500). */
  readonly underlayMtu?: number | readonly number[];
  /** The `bin/netctl.js` the daemons and `netctl()` run, e.g. another checkout's (default: this checkout's). */
  readonly cli?: string;
  /** More flags for every daemon, after the cluster's own (`--log-level warn`…). */
  readonly daemonArgs?: readonly string[];
  /** More flags for one host's daemon, after daemonArgs (a socket path of its own…). */
  readonly daemonArgsFor?: (host: SimHost) => readonly string[];
  /** What startDaemon waits for (see DaemonOptions.until); `listening` for a checkout whose daemon never says `ready`. */
  readonly daemonUntil?: 'listening' | 'ready';
  /** Whether the daemons make Docker's predefined networks (see DaemonOptions.predefinedNetworks). */
  readonly predefinedNetworks?: boolean;
}

export async function makeCluster(hostCount: number, options: ClusterOptions = {}): Promise<Cluster> {
  const prefix = underlayPrefix();
  const underlayNs = uniqueName('u');
  const underlayNsPath = await addNetns(underlayNs);
  const hosts: SimHost[] = [];
  const extraNamespaces: string[] = [];
  const sandboxes: string[] = [];
  const dirs: string[] = [];
  /** nft tables dropPort added and not yet removed, each with its host's namespace. */
  const dropTables = new Map<string, string>();
  const must = async (args: string[]) => {
    const result = await run('ip', args);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };
  let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
  const destroy = async () => {
    for (const [table, netnsPath] of dropTables) await inNetns(netnsPath, NFT, [`delete table inet ${table}`]);
    dropTables.clear();
    for (const host of hosts) await stopDaemon(host, 'SIGKILL');
    await etcd?.stop().catch(() => undefined);
    for (const name of sandboxes) await removeNetns(name);
    for (const host of hosts) {
      // The daemon names its ingress sandbox after its host id, kept in its state directory.
      const name = await ingressSandboxOf(host).catch(() => undefined);
      if (name !== undefined) await removeNetns(name);
      for (const name of await namespacesWithPrefix('ovl-')) if (name.endsWith(`-${host.address}`)) await removeNetns(name);
      await removeNetns(host.name);
    }
    for (const name of extraNamespaces) await removeNetns(name);
    await removeNetns(underlayNs);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  };
  const stopDaemon = async (host: SimHost, signal: NodeJS.Signals) => {
    const daemon = host.daemon;
    host.daemon = undefined;
    await daemon?.stop(signal);
  };
  try {
    await must(['-n', underlayNs, 'link', 'add', 'ul0', 'type', 'bridge']);
    await must(['-n', underlayNs, 'addr', 'add', `${prefix}.254/24`, 'dev', 'ul0']);
    await must(['-n', underlayNs, 'link', 'set', 'ul0', 'up']);
    etcd = await startEtcd({ netnsPath: underlayNsPath, host: `${prefix}.254` });
    for (let index = 1; index <= hostCount; index++) {
      const host = await addHost(index);
      hosts.push(host);
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  async function plugIntoUnderlay(ns: string, address: string, mtu?: number): Promise<void> {
    const port = uniqueName('p');
    const mtuArgs = mtu === undefined ? [] : ['mtu', String(mtu)];
    await must(['-n', underlayNs, 'link', 'add', port, ...mtuArgs, 'type', 'veth', 'peer', 'name', 'eth0', ...mtuArgs, 'netns', ns]);
    await must(['-n', underlayNs, 'link', 'set', port, 'master', 'ul0', 'up']);
    await must(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await must(['-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  async function addHost(index: number): Promise<SimHost> {
    const name = uniqueName(`h${index}`);
    const netnsPath = await addNetns(name);
    const address = `${prefix}.${index}`;
    const mtu = options.underlayMtu;
    await plugIntoUnderlay(name, address, typeof mtu === 'number' ? mtu : mtu?.[index - 1]);
    const stateDir = await mkdtemp(join(tmpdir(), `netctl-host${index}-`));
    dirs.push(stateDir);
    return { index, name, netnsPath, address, socket: join(stateDir, 'netctl.sock'), stateDir, daemon: undefined };
  }

  const startDaemon = async (host: SimHost) => {
    if (etcd === undefined) throw new Error('etcd is not running');
    host.daemon = await startNetctlDaemon({
      netnsPath: host.netnsPath,
      stateDir: host.stateDir,
      socket: host.socket,
      ...(options.cli === undefined ? {} : { cli: options.cli }),
      ...(options.daemonUntil === undefined ? {} : { until: options.daemonUntil }),
      ...(options.predefinedNetworks === undefined ? {} : { predefinedNetworks: options.predefinedNetworks }),
      args: [
        '--store',
        etcd.url.replace(/^http:/, 'etcd:'),
        '--advertise-addr',
        host.address,
        '--node-name',
        `host${host.index}`,
        // Nothing listens there: names netctl does not know fail here instead of going to the machine's resolver.
        '--dns',
        '127.0.0.1',
        ...(options.daemonArgs ?? []),
        ...(options.daemonArgsFor?.(host) ?? []),
      ],
    });
  };

  const netctl = (host: SimHost, ...args: string[]) => run(process.execPath, [options.cli ?? NETCTL_CLI, '-H', `unix://${host.socket}`, ...args]);

  const dropPort = async (host: SimHost, protocol: 'tcp' | 'udp', port: number) => {
    const table = `netctl_test_drop_${protocol}_${port}`;
    // Priority raw (-300): before conntrack, so established flows are cut too.
    const chains = ['input', 'output'].map(
      (hook) =>
        `add chain inet ${table} ${hook} { type filter hook ${hook} priority -300; policy accept; }; ` +
        `add rule inet ${table} ${hook} ${protocol} dport ${port} drop; add rule inet ${table} ${hook} ${protocol} sport ${port} drop`,
    );
    const added = await inNetns(host.netnsPath, NFT, [`add table inet ${table}; ${chains.join('; ')}`]);
    if (added.code !== 0) throw new Error(`nft in host${host.index}: ${added.stderr}`);
    dropTables.set(table, host.netnsPath);
    return async () => {
      if (!dropTables.delete(table)) return;
      const removed = await inNetns(host.netnsPath, NFT, [`delete table inet ${table}`]);
      if (removed.code !== 0) throw new Error(`nft in host${host.index}: ${removed.stderr}`);
    };
  };
  return {
    hosts,
    underlayNs,
    underlayNsPath,
    get etcdUrl() {
      return etcd?.url ?? '';
    },
    get etcdPort() {
      return Number(new URL((etcd?.url ?? '').replace(/^etcd:/, 'http:')).port);
    },
    dropPort,
    netctl,
    async ok(host, ...args) {
      const result = await netctl(host, ...args);
      if (result.code !== 0) throw new Error(`host${host.index}: netctl ${args.join(' ')} failed: ${result.stderr}`);
      return result.stdout;
    },
    startDaemon,
    stopDaemon,
    sandboxName(base) {
      const name = uniqueName(base);
      sandboxes.push(name);
      return name;
    },
    async addUnderlayHost(address) {
      const name = uniqueName('x');
      const netnsPath = await addNetns(name);
      extraNamespaces.push(name);
      await plugIntoUnderlay(name, address);
      return { name, netnsPath };
    },
    async stopEtcd() {
      await etcd?.kill();
    },
    async startEtcd() {
      await etcd?.restart();
    },
    destroy,
  };
}

/** The namespace of the host's ingress sandbox, if its daemon ever had a host id. */
async function ingressSandboxOf(host: SimHost): Promise<string | undefined> {
  const store = await SqliteStore.open(host.stateDir);
  try {
    const id = (await store.get(keys.hostId))?.value;
    return id === undefined ? undefined : ingressSandboxName(id);
  } finally {
    await store.close();
  }
}

/** Creates a sandbox on a host, connects it (with `ip`, or as a task of `service`, when given) and returns its address on the network. */
export async function sandboxOn(
  cluster: Cluster,
  host: SimHost,
  network: string,
  base: string,
  connect: { ip?: string; service?: string } = {},
): Promise<{ name: string; address: string }> {
  const name = cluster.sandboxName(base);
  await cluster.ok(host, 'sandbox', 'create', name);
  const flags = [...(connect.ip !== undefined ? ['--ip', connect.ip] : []), ...(connect.service !== undefined ? ['--service', connect.service] : [])];
  await cluster.ok(host, 'network', 'connect', ...flags, network, name);
  const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
  const address = (await cluster.ok(host, 'network', 'inspect', '-f', template, network)).trim().split('/')[0];
  if (address === undefined || address === '') throw new Error(`no address for ${name} on ${network}`);
  return { name, address };
}
