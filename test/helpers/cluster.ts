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
import { addNetns, namespacesWithPrefix, removeNetns, run, type RunResult, uniqueName } from './kernel.js';


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
  /** Kills etcd, keeping its data, to simulate an outage; startEtcd brings it back. */
  stopEtcd(): Promise<void>;
  startEtcd(): Promise<void>;
  destroy(): Promise<void>;
}

/** A /24 of 198.18.0.0/15 of its own per test process, so overlay namespace names never clash. */
function underlayPrefix(): string {
  return `198.18.${process.pid % 250}`;
}

export async function makeCluster(hostCount: number): Promise<Cluster> {
  const prefix = underlayPrefix();
  const underlayNs = uniqueName('u');
  const underlayNsPath = await addNetns(underlayNs);
  const hosts: SimHost[] = [];
  const extraNamespaces: string[] = [];
  const sandboxes: string[] = [];
  const dirs: string[] = [];
  const must = async (args: string[]) => {
    const result = await run('ip', args);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };
  let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
  const destroy = async () => {
    for (const host of hosts) await stopDaemon(host, 'SIGKILL');
    await etcd?.stop().catch(() => undefined);
    for (const name of sandboxes) await removeNetns(name);
    for (const host of hosts) {
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

  async function plugIntoUnderlay(ns: string, address: string): Promise<void> {
    const port = uniqueName('p');
    await must(['-n', underlayNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must(['-n', underlayNs, 'link', 'set', port, 'master', 'ul0', 'up']);
    await must(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await must(['-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  async function addHost(index: number): Promise<SimHost> {
    const name = uniqueName(`h${index}`);
    const netnsPath = await addNetns(name);
    const address = `${prefix}.${index}`;
    await plugIntoUnderlay(name, address);
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
      ],
    });
  };

  const netctl = (host: SimHost, ...args: string[]) => run(process.execPath, [NETCTL_CLI, '-H', `unix://${host.socket}`, ...args]);
  return {
    hosts,
    underlayNs,
    underlayNsPath,
    get etcdUrl() {
      return etcd?.url ?? '';
    },
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
