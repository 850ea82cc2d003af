/**
 * Test hosts made of network namespaces, and the probes a person would use
 * on them (`ip`, `ping`). Every namespace made here is removed by
 * `removeNetns`, which tests call from teardown.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const exec = promisify(execFile);
let counter = 0;
/** Sessions sharing one machine set their own prefix, so each can tell (and clean up) the namespaces it made. */
const namePrefix = process.env['NETCTL_TEST_PREFIX'] ?? 'nct';

/** A namespace or link name unique to this process, at most 15 characters. */
export function uniqueName(tag: string): string {
  counter += 1;
  return `${namePrefix}${tag}${process.pid % 100000}x${counter}`.slice(0, 15);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  try {
    const { stdout, stderr } = await exec(command, [...args], {
      timeout: options.timeoutMs ?? 30_000,
      maxBuffer: 16 << 20,
      ...(options.env !== undefined ? { env: options.env } : {}),
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

export async function addNetns(name: string): Promise<string> {
  const result = await run('ip', ['netns', 'add', name]);
  if (result.code !== 0) throw new Error(`ip netns add ${name}: ${result.stderr}`);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return `/var/run/netns/${name}`;
}

/**
 * Removes a named namespace if it exists; links inside go with it. Also its
 * /etc/netns/NAME (the resolv.conf netctl writes there), which `ip netns del`
 * leaves behind when a test kills the daemon before it removed the sandbox.
 */
export async function removeNetns(name: string): Promise<void> {
  if (existsSync(`/var/run/netns/${name}`)) await run('ip', ['netns', 'del', name]);
  await rm(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** Runs a command inside a namespace by path, as nsenter does (no private mount namespace). */
export function inNetns(netnsPath: string, command: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run('nsenter', [`--net=${netnsPath}`, command, ...args], options);
}

export async function pings(netnsPath: string, address: string, options: { count?: number; waitSeconds?: number } = {}): Promise<boolean> {
  const result = await inNetns(netnsPath, 'ping', ['-c', String(options.count ?? 1), '-W', String(options.waitSeconds ?? 2), '-q', address]);
  return result.code === 0;
}

export interface IpLink {
  ifname: string;
  mtu: number;
  address?: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
}

export async function links(netnsPath: string): Promise<IpLink[]> {
  const result = await inNetns(netnsPath, 'ip', ['-d', '-j', 'link', 'show']);
  if (result.code !== 0) throw new Error(result.stderr);
  return JSON.parse(result.stdout) as IpLink[];
}

/** Addresses in CIDR form on one interface, undefined when the interface does not exist. */
export async function addresses(netnsPath: string, ifName: string): Promise<string[] | undefined> {
  const result = await inNetns(netnsPath, 'ip', ['-j', 'addr', 'show', 'dev', ifName]);
  if (result.code !== 0) return undefined;
  const parsed = JSON.parse(result.stdout) as { addr_info?: { local: string; prefixlen: number; scope: string }[] }[];
  return (parsed[0]?.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
}

export async function routes(netnsPath: string, family: 4 | 6 = 4): Promise<{ dst: string; gateway?: string; dev?: string }[]> {
  const result = await inNetns(netnsPath, 'ip', [`-${family}`, '-j', 'route', 'show']);
  if (result.code !== 0) throw new Error(result.stderr);
  return JSON.parse(result.stdout) as { dst: string; gateway?: string; dev?: string }[];
}

export async function nftRuleset(netnsPath: string): Promise<string> {
  return (await inNetns(netnsPath, '/usr/sbin/nft', ['list', 'ruleset'])).stdout;
}

/** Every named namespace whose name starts with the prefix (to find leaks). */
export async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  const result = await run('ip', ['-j', 'netns', 'list']);
  if (result.code !== 0 || result.stdout.trim() === '') return [];
  return (JSON.parse(result.stdout) as { name: string }[]).map((n) => n.name).filter((name) => name.startsWith(prefix));
}
