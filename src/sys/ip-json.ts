/**
 * What `ip -json` shows of one interface and of the default routes, in this
 * process's network namespace or in one given by path (through
 * `nsenter --net=PATH`, which, unlike `ip netns exec`, takes any nsfs path
 * and leaves the mount namespace alone). Read only: for callers outside the
 * daemon, such as the CNI plugin, that check what the daemon built without
 * loading the addon.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { InvalidArgument, NetctlError, NotFound } from '../errors.js';
import { systemTool } from './tools.js';

export interface InterfaceState {
  readonly index: number;
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** For a veth: its peer's index, in the peer's own namespace. */
  readonly peerIndex?: number;
  /** Addresses in CIDR form, link-local ones left out. */
  readonly addresses: readonly string[];
}

export interface DefaultRoute {
  readonly family: 4 | 6;
  readonly gateway?: string;
  readonly dev?: string;
}

interface IpOutput {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runIp(netnsPath: string | undefined, args: readonly string[]): Promise<IpOutput> {
  if (netnsPath !== undefined && !existsSync(netnsPath)) {
    return Promise.reject(new NotFound(`network namespace ${netnsPath} does not exist`));
  }
  const [command, argv] =
    netnsPath === undefined ? [systemTool('ip'), args] : [systemTool('nsenter'), [`--net=${netnsPath}`, systemTool('ip'), ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      // nsenter says why it could not enter before ip ever runs.
      if (code !== 0 && /^nsenter: /m.test(stderr)) {
        reject(new InvalidArgument(`${netnsPath ?? ''} is not a network namespace: ${stderr.trim()}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new NetctlError('Internal', `ip ${what}: unreadable JSON output`);
  }
}

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  link_index?: number;
  addr_info?: { local: string; prefixlen: number; scope: string }[];
}

/** The interface named `ifName`, or undefined when there is none; throws NotFound when the namespace itself is gone. */
export async function readInterface(netnsPath: string | undefined, ifName: string): Promise<InterfaceState | undefined> {
  const output = await runIp(netnsPath, ['-j', '-d', 'addr', 'show', 'dev', ifName]);
  if (output.code !== 0) {
    if (/does not exist/.test(output.stderr)) return undefined;
    throw new NetctlError('Internal', `ip addr show dev ${ifName}: ${output.stderr.trim() || `exit status ${String(output.code)}`}`);
  }
  const [link] = parseJson<IpAddrJson[]>('addr show', output.stdout);
  if (link === undefined) return undefined;
  return {
    index: link.ifindex,
    name: link.ifname,
    mac: link.address ?? '',
    mtu: link.mtu,
    up: (link.flags ?? []).includes('UP'),
    ...(link.link_index !== undefined ? { peerIndex: link.link_index } : {}),
    addresses: (link.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`),
  };
}

/** The default routes of the main table, IPv4 and IPv6. */
export async function readDefaultRoutes(netnsPath: string | undefined): Promise<DefaultRoute[]> {
  const routes: DefaultRoute[] = [];
  for (const family of [4, 6] as const) {
    const output = await runIp(netnsPath, [`-${family}`, '-j', 'route', 'show', 'default']);
    if (output.code !== 0) throw new NetctlError('Internal', `ip -${family} route show default: ${output.stderr.trim()}`);
    const parsed = output.stdout.trim() === '' ? [] : parseJson<{ gateway?: string; dev?: string }[]>('route show', output.stdout);
    for (const route of parsed) {
      routes.push({ family, ...(route.gateway !== undefined ? { gateway: route.gateway } : {}), ...(route.dev !== undefined ? { dev: route.dev } : {}) });
    }
  }
  return routes;
}
