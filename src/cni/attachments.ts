/**
 * What each CNI verb does with the daemon. A container (CNI_CONTAINERID)
 * is one netctl sandbox on the runtime's namespace (CNI_NETNS), made by
 * its first ADD and removed by the DEL of its last attachment; each
 * attachment (CNI_IFNAME on one netctl network) is that sandbox's endpoint
 * on the network, its interface named CNI_IFNAME. One sandbox per
 * namespace, not one per attachment, because the daemon serves a
 * sandbox's DNS on 127.0.0.11:53 and its default route inside the
 * namespace: two sandboxes on one namespace would fight over both.
 */
import { createHash } from 'node:crypto';
import { BlockList } from 'node:net';
import { type ApiClient, DaemonUnreachable, isDaemonError } from '../api/client.js';
import type { DockerNetwork } from '../api/docker.js';
import { IFNAME_DRIVER_OPT, type NetworkConnectBody, type SandboxJson, type SandboxNetworkJson } from '../api/types.js';
import { NetctlError } from '../errors.js';
import { type InterfaceState, readDefaultRoutes, readInterface } from '../sys/ip-json.js';
import {
  type Attachment,
  type CniDns,
  CniError,
  type CniInterface,
  type CniIpConfig,
  type CniResult,
  type CniRoute,
  ErrorCode,
  type NetConf,
  ipFamily,
  parseCidr,
} from './spec.js';

/** Label on the sandboxes this plugin makes: the container they belong to. */
export const CONTAINER_LABEL = 'org.netctl.cni.container';
/** netctl's embedded DNS answers here in every sandbox. */
export const EMBEDDED_DNS = '127.0.0.11';
const SANDBOX_PREFIX = 'cni-';
/** netctl's limit on sandbox names. */
const MAX_SANDBOX_NAME = 200;

/** One attachment as the runtime names it. */
export interface AttachmentRequest {
  readonly containerId: string;
  readonly ifName: string;
  /** CNI_NETNS; DEL may come without it. */
  readonly netns?: string;
  /** CNI_ARGS `IP`, used when the configuration asks for no address itself. */
  readonly argsIps?: readonly string[];
}

/**
 * The sandbox of a container: `cni-<container id>`, readable in `netctl
 * sandbox ls`; an id too long for a sandbox name is cut and a hash of the
 * whole id keeps names apart.
 */
export function sandboxNameFor(containerId: string): string {
  const name = `${SANDBOX_PREFIX}${containerId}`;
  if (name.length <= MAX_SANDBOX_NAME) return name;
  const hash = createHash('sha256').update(containerId).digest('hex').slice(0, 16);
  return `${name.slice(0, MAX_SANDBOX_NAME - hash.length - 1)}-${hash}`;
}

/** Turns what the daemon (or reaching it) threw into the CNI error a runtime acts on. */
export function daemonError(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof DaemonUnreachable) return new CniError(ErrorCode.tryAgainLater, 'the netctl daemon is not reachable; try again later', err.message);
  if (err instanceof NetctlError && isDaemonError(err)) {
    if (err.code === 'Unavailable' || err.code === 'StoreClosed' || err.code === 'LockTimeout') {
      return new CniError(ErrorCode.tryAgainLater, `${what}: the netctl daemon cannot do it now; try again later`, err.message);
    }
    if (err.code === 'InvalidArgument') return new CniError(ErrorCode.invalidNetworkConfig, `${what}: the netctl daemon refused the request`, err.message);
    if (err.code !== 'Internal') return new CniError(ErrorCode.daemonRefused, `${what}: the netctl daemon refused the request`, err.message);
  }
  return new CniError(ErrorCode.internal, `${what} failed`, err instanceof Error ? err.message : String(err));
}

function isNotFound(err: unknown): boolean {
  return err instanceof NetctlError && isDaemonError(err) && /NotFound$/.test(err.code);
}

async function sandboxOf(client: ApiClient, containerId: string): Promise<SandboxJson | undefined> {
  try {
    return await client.inspectSandbox(sandboxNameFor(containerId));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function networkOf(client: ApiClient, idOrName: string): Promise<DockerNetwork | undefined> {
  try {
    return await client.inspectNetwork(idOrName);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function ownedBy(sandbox: SandboxJson, containerId: string): boolean {
  return sandbox.Labels[CONTAINER_LABEL] === containerId;
}

// ------------------------------------------------------------------ ADD

/**
 * ADD: the container's sandbox (made on CNI_NETNS if this is its first
 * attachment), connected to the network with its interface named
 * CNI_IFNAME; the result reads back what the daemon and the kernel hold.
 * Anything this ADD made is removed again when a later step fails.
 */
export async function add(client: ApiClient, conf: NetConf, request: AttachmentRequest): Promise<CniResult> {
  const netns = request.netns ?? '';
  const network = await networkOf(client, conf.network);
  if (network === undefined) {
    throw new CniError(ErrorCode.invalidNetworkConfig, 'invalid network configuration', `network: netctl has no network "${conf.network}"`);
  }
  const endpoint = endpointConfig(conf, request);
  // The daemon would replace an interface of that name; §2 wants an error instead.
  const existing = await readInterface(netns, request.ifName).catch((err: unknown) => {
    throw new CniError(ErrorCode.invalidEnvironment, 'invalid CNI_NETNS', `CNI_NETNS ${netns}: ${(err as Error).message}`);
  });
  if (existing !== undefined) {
    throw new CniError(ErrorCode.daemonRefused, `interface ${request.ifName} already exists in ${netns}`, 'CNI_IFNAME must name an interface the container does not have yet');
  }

  let sandbox = await sandboxOf(client, request.containerId);
  if (sandbox !== undefined && !ownedBy(sandbox, request.containerId)) {
    throw new CniError(ErrorCode.daemonRefused, `netctl sandbox ${sandbox.Name} exists and was not made by netctl-cni`, `it has no label ${CONTAINER_LABEL}=${request.containerId}`);
  }
  if (sandbox !== undefined && sandbox.NetnsPath !== netns) {
    throw new CniError(
      ErrorCode.daemonRefused,
      `container ${request.containerId} is attached in another namespace`,
      `its sandbox ${sandbox.Name} is on ${sandbox.NetnsPath}, not ${netns}: DEL its attachments first`,
    );
  }
  const created = sandbox === undefined;
  if (sandbox === undefined) {
    sandbox = await client.createSandbox({ Name: sandboxNameFor(request.containerId), NetnsPath: netns, Labels: { [CONTAINER_LABEL]: request.containerId } });
  }
  const sandboxId = sandbox.Id;
  try {
    await client.connect(network.Id, sandboxId, endpoint);
  } catch (err) {
    if (created) await removeIfEmpty(client, sandboxId).catch(() => undefined);
    throw err;
  }
  try {
    return await resultOf(conf, network, await client.inspectSandbox(sandboxId), netns, request.ifName);
  } catch (err) {
    // A failed ADD leaves nothing behind, whether or not the runtime follows it with a DEL.
    await client.disconnect(network.Id, sandboxId, true).catch(() => undefined);
    await removeIfEmpty(client, sandboxId).catch(() => undefined);
    throw err;
  }
}

function endpointConfig(conf: NetConf, request: AttachmentRequest): NonNullable<NetworkConnectBody['EndpointConfig']> {
  const wanted = conf.ips ?? request.argsIps ?? [];
  const bare = wanted.map((ip) => parseCidr(ip)?.address ?? ip);
  const v4 = bare.filter((ip) => ipFamily(ip) === 4);
  const v6 = bare.filter((ip) => ipFamily(ip) === 6);
  if (v4.length > 1 || v6.length > 1) {
    throw new CniError(ErrorCode.invalidNetworkConfig, 'invalid network configuration', `ips: netctl gives an interface at most one IPv4 and one IPv6 address, not ${bare.join(', ')}`);
  }
  return {
    IPAMConfig: { ...(v4[0] !== undefined ? { IPv4Address: v4[0] } : {}), ...(v6[0] !== undefined ? { IPv6Address: v6[0] } : {}) },
    ...(conf.aliases !== undefined ? { Aliases: [...conf.aliases] } : {}),
    DriverOpts: { [IFNAME_DRIVER_OPT]: request.ifName },
  };
}

/** The endpoint of `sandbox` on `network`, when its interface is `ifName`. */
function endpointIn(sandbox: SandboxJson, network: DockerNetwork, ifName: string): SandboxNetworkJson | undefined {
  const endpoint = sandbox.Networks[network.Id];
  return endpoint?.InterfaceName === ifName ? endpoint : undefined;
}

/** The gateway of the network's pool that holds `address`. */
function gatewayFor(network: DockerNetwork, address: string): string | undefined {
  const parsed = parseCidr(address);
  if (parsed === undefined) return undefined;
  for (const pool of network.IPAM.Config) {
    const subnet = parseCidr(pool.Subnet);
    if (subnet === undefined || subnet.family !== parsed.family || pool.Gateway === undefined || pool.Gateway === '') continue;
    const type = parsed.family === 4 ? 'ipv4' : 'ipv6';
    const blocks = new BlockList();
    blocks.addSubnet(subnet.address, subnet.prefix, type);
    if (blocks.check(parsed.address, type)) return pool.Gateway;
  }
  return undefined;
}

/**
 * The ADD result: the host-side interface when it is in this process's
 * namespace (where the runtime runs the chained plugins that act on it),
 * the interface in the container, its addresses and gateways, the default
 * routes through it, and the embedded DNS when the daemon serves the
 * sandbox.
 */
async function resultOf(conf: NetConf, network: DockerNetwork, sandbox: SandboxJson, netns: string, ifName: string): Promise<CniResult> {
  const endpoint = endpointIn(sandbox, network, ifName);
  if (endpoint === undefined) throw new CniError(ErrorCode.internal, `the daemon shows no interface ${ifName} of sandbox ${sandbox.Name} on network ${network.Name}`);
  const inside = await readInterface(netns, ifName);
  if (inside === undefined) throw new CniError(ErrorCode.internal, `interface ${ifName} is not in ${netns} after the connect`);
  const host = await hostSide(endpoint, inside);
  // `mtu` is 1.1.0's; encodeResult leaves it out of older versions.
  const interfaces: CniInterface[] = [
    ...(host !== undefined ? [{ name: host.name, mac: host.mac, mtu: host.mtu }] : []),
    { name: ifName, mac: inside.mac, mtu: inside.mtu, sandbox: netns },
  ];
  const index = interfaces.length - 1;
  const ips: CniIpConfig[] = [];
  for (const address of [endpoint.IPv4Address, endpoint.IPv6Address]) {
    if (address === '') continue;
    const gateway = gatewayFor(network, address);
    ips.push({ address, ...(gateway !== undefined ? { gateway } : {}), interface: index });
  }
  const routes: CniRoute[] = [];
  for (const route of await readDefaultRoutes(netns)) {
    if (route.dev !== ifName) continue;
    routes.push({ dst: route.family === 4 ? '0.0.0.0/0' : '::/0', ...(route.gateway !== undefined ? { gw: route.gateway } : {}) });
  }
  const dns: CniDns | undefined =
    sandbox.ResolvConfPath === '' ? conf.dns : { ...conf.dns, nameservers: [EMBEDDED_DNS, ...(conf.dns?.nameservers ?? []).filter((s) => s !== EMBEDDED_DNS)] };
  return { interfaces, ips, routes, ...(dns !== undefined ? { dns } : {}) };
}

/** The endpoint's host-side interface, when it is here and is the peer of the one inside. */
async function hostSide(endpoint: SandboxNetworkJson, inside: InterfaceState): Promise<InterfaceState | undefined> {
  if (endpoint.HostInterfaceName === '') return undefined;
  const host = await readInterface(undefined, endpoint.HostInterfaceName).catch(() => undefined);
  // ifindexes repeat between namespaces: both ends must name each other.
  if (host === undefined || host.peerIndex !== inside.index || inside.peerIndex !== host.index) return undefined;
  return host;
}

// ------------------------------------------------------------------ DEL

/**
 * DEL: the endpoint of this attachment leaves and goes (forced, so a
 * namespace the runtime already removed is no obstacle), then the sandbox
 * when it has no attachment left. What is already gone is success: a
 * missing sandbox, network or endpoint, a second DEL.
 */
export async function del(client: ApiClient, conf: NetConf, request: AttachmentRequest): Promise<void> {
  const sandbox = await sandboxOf(client, request.containerId);
  if (sandbox === undefined || !ownedBy(sandbox, request.containerId)) return;
  const network = await networkOf(client, conf.network);
  const endpoint = network === undefined ? undefined : endpointIn(sandbox, network, request.ifName);
  if (network !== undefined && endpoint !== undefined) {
    await client.disconnect(network.Id, sandbox.Id, true).catch((err: unknown) => {
      if (!isNotFound(err) && !(err instanceof NetctlError && err.code === 'Forbidden')) throw err;
    });
  }
  await removeIfEmpty(client, sandbox.Id);
}

/** Removes the sandbox when it is on no network any more; one already gone is no error. */
async function removeIfEmpty(client: ApiClient, sandboxId: string): Promise<void> {
  const sandbox = await client.inspectSandbox(sandboxId).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (sandbox === undefined || Object.keys(sandbox.Networks).length > 0) return;
  await client.removeSandbox(sandboxId).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

// ------------------------------------------------------------------ CHECK

function checkFailed(problem: string, details = ''): CniError {
  return new CniError(ErrorCode.checkFailed, problem, details);
}

/**
 * CHECK: the daemon still has the container's sandbox on CNI_NETNS with
 * the endpoint named in prevResult, and the namespace still has that
 * interface, up, with prevResult's MAC, addresses and default routes.
 */
export async function check(client: ApiClient, conf: NetConf, request: AttachmentRequest): Promise<void> {
  const netns = request.netns ?? '';
  const previous = conf.prevResult;
  if (previous === undefined) throw new CniError(ErrorCode.invalidNetworkConfig, 'invalid network configuration', 'prevResult: CHECK needs the result of the ADD');
  const listed = previous.interfaces.findIndex((entry) => entry.name === request.ifName && entry.sandbox === netns);
  if (listed < 0) throw checkFailed(`prevResult lists no interface ${request.ifName} in ${netns}`);
  const expected = previous.interfaces[listed] as CniInterface;
  const addresses = previous.ips.filter((ip) => ip.interface === listed).map((ip) => ip.address);

  const network = await networkOf(client, conf.network);
  if (network === undefined) throw checkFailed(`netctl network ${conf.network} does not exist`);
  const sandbox = await sandboxOf(client, request.containerId);
  if (sandbox === undefined || !ownedBy(sandbox, request.containerId)) throw checkFailed(`netctl has no sandbox for container ${request.containerId}`);
  if (sandbox.NetnsPath !== netns) throw checkFailed(`the sandbox of container ${request.containerId} is on ${sandbox.NetnsPath}, not ${netns}`);
  const endpoint = endpointIn(sandbox, network, request.ifName);
  if (endpoint === undefined) throw checkFailed(`sandbox ${sandbox.Name} has no interface ${request.ifName} on network ${network.Name}`);
  const reserved = [endpoint.IPv4Address, endpoint.IPv6Address].filter((a) => a !== '');
  for (const address of addresses) {
    if (!reserved.includes(address)) throw checkFailed(`the daemon holds ${reserved.join(', ') || 'no address'} for ${request.ifName}, not ${address}`);
  }

  const inside = await readInterface(netns, request.ifName).catch((err: unknown) => {
    throw checkFailed(`cannot read ${netns}`, (err as Error).message);
  });
  if (inside === undefined) throw checkFailed(`interface ${request.ifName} is missing from ${netns}`);
  if (!inside.up) throw checkFailed(`interface ${request.ifName} in ${netns} is down`);
  if (expected.mac !== undefined && inside.mac.toLowerCase() !== expected.mac.toLowerCase()) {
    throw checkFailed(`interface ${request.ifName} has MAC ${inside.mac}, not ${expected.mac}`);
  }
  for (const address of addresses) {
    if (!inside.addresses.includes(address)) throw checkFailed(`interface ${request.ifName} in ${netns} lacks address ${address}`, `it has ${inside.addresses.join(', ') || 'none'}`);
  }
  const defaults = await readDefaultRoutes(netns);
  for (const route of previous.routes) {
    if (route.dst !== '0.0.0.0/0' && route.dst !== '::/0') continue;
    const family = route.dst === '::/0' ? 6 : 4;
    const gateway = route.gw ?? previous.ips.find((ip) => ip.interface === listed && parseCidr(ip.address)?.family === family)?.gateway;
    if (!defaults.some((r) => r.family === family && (gateway === undefined || r.gateway === gateway))) {
      throw checkFailed(`the default route ${route.dst}${gateway !== undefined ? ` via ${gateway}` : ''} is missing from ${netns}`);
    }
  }
}

// ------------------------------------------------------------------ STATUS

/**
 * STATUS: ready while the daemon answers and has the network. A daemon out
 * of reach is 51, not 50: the embedded DNS (and an overlay's data path)
 * run inside it, so existing containers lose name resolution too.
 */
export async function status(client: ApiClient, conf: NetConf): Promise<void> {
  let network: DockerNetwork | undefined;
  try {
    network = await networkOf(client, conf.network);
  } catch (err) {
    if (err instanceof DaemonUnreachable) {
      throw new CniError(ErrorCode.notAvailableLimitedConnectivity, 'the netctl daemon is not reachable', `${err.message} Its embedded DNS serves the containers, so they cannot resolve names meanwhile.`);
    }
    throw new CniError(ErrorCode.notAvailable, 'the netctl daemon cannot serve ADD now', err instanceof Error ? err.message : String(err));
  }
  if (network === undefined) throw new CniError(ErrorCode.notAvailable, `netctl network ${conf.network} does not exist`, 'create it with `netctl network create`');
}

// ------------------------------------------------------------------ GC

/**
 * GC: every attachment of this plugin to the network whose (container,
 * interface) the runtime did not list is disconnected, and sandboxes left
 * on no network are removed. Each failure is collected; the rest goes on.
 */
export async function gc(client: ApiClient, conf: NetConf): Promise<void> {
  const valid = conf.validAttachments;
  if (valid === undefined) {
    throw new CniError(ErrorCode.invalidNetworkConfig, 'invalid network configuration', 'cni.dev/valid-attachments: GC needs the list of attachments to keep');
  }
  const keep = new Set(valid.map((a: Attachment) => `${a.containerID}\u0000${a.ifname}`));
  const network = await networkOf(client, conf.network);
  const failures: string[] = [];
  for (const sandbox of await client.listSandboxes()) {
    const containerId = sandbox.Labels[CONTAINER_LABEL];
    if (containerId === undefined) continue;
    const endpoint = network === undefined ? undefined : sandbox.Networks[network.Id];
    const stale = endpoint !== undefined && !keep.has(`${containerId}\u0000${endpoint.InterfaceName}`);
    // A sandbox on no network (an ADD that died half-way) is stale unless the runtime still lists its container.
    const empty = Object.keys(sandbox.Networks).length === 0 && !valid.some((a) => a.containerID === containerId);
    if (!stale && !empty) continue;
    try {
      if (stale && network !== undefined) await client.disconnect(network.Id, sandbox.Id, true);
      await removeIfEmpty(client, sandbox.Id);
    } catch (err) {
      if (err instanceof DaemonUnreachable) throw err;
      failures.push(`${sandbox.Name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failures.length > 0) throw new CniError(ErrorCode.daemonRefused, `GC could not remove ${failures.length} stale attachment(s)`, failures.join('; '));
}
