/**
 * The bridge driver: one Linux bridge per network in the host namespace,
 * the gateway addresses on the bridge, one veth pair per endpoint whose
 * sandbox end becomes eth0, eth1… Isolation, --internal and masquerade are
 * one nftables table per network, so removing a network removes exactly its
 * rules. enable_icc=false uses bridge port isolation: isolated ports reach
 * the gateway but not each other. The same table keeps the sandboxes away
 * from the ports the cluster itself uses (protected endpoints): through our
 * masquerade they would come from this host's address, which other hosts
 * trust.
 */
import { isIP } from 'node:net';
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../../cnm/driver.js';
import { Conflict, InvalidArgument } from '../../errors.js';
import type { EndpointRecord, NetworkRecord } from '../../records.js';
import { currentNetnsPath } from '../../sys/netns.js';
import { NetworkConfigs } from '../configs.js';
import { type DriverKernel, type Links, systemKernel, withLinks } from '../kernel.js';
import { tearDown } from '../teardown.js';
import { hostVethName, plugHandoff, plugVeth, unplugVeth } from '../veth.js';

export const BRIDGE_NAME_OPTION = 'com.docker.network.bridge.name';
export const ENABLE_ICC_OPTION = 'com.docker.network.bridge.enable_icc';
export const ENABLE_MASQUERADE_OPTION = 'com.docker.network.bridge.enable_ip_masquerade';
export const MTU_OPTION = 'com.docker.network.driver.mtu';
/** Marks Docker's default bridge network (the daemon's `bridge`); it is wired as any other bridge network. */
export const DEFAULT_BRIDGE_OPTION = 'com.docker.network.bridge.default_bridge';

export const BRIDGE_OPTIONS: ReadonlySet<string> = new Set([BRIDGE_NAME_OPTION, ENABLE_ICC_OPTION, ENABLE_MASQUERADE_OPTION, MTU_OPTION, DEFAULT_BRIDGE_OPTION]);
const IFNAME_PATTERN = /^[a-zA-Z0-9_.:-]{1,15}$/;

export interface BridgeConfig {
  readonly bridgeName: string;
  readonly enableIcc: boolean;
  readonly enableMasquerade: boolean;
  readonly mtu: number;
}

/** Ports of this host and of the cluster that the sandboxes of bridge networks must not reach. */
export interface ProtectedEndpoints {
  /** UDP ports at every address, this host's and others' (the overlay data path: every host listens there). */
  readonly udpPorts: readonly number[];
  /** TCP services (the cluster store); the address 0.0.0.0 or :: means the port at every address. */
  readonly tcp: readonly { readonly address: string; readonly port: number }[];
}

export interface BridgeDriverOptions {
  /** Namespace the bridges live in; defaults to the process's own. */
  readonly hostNetnsPath?: string;
  /** Dropped from every bridge network's sandboxes, forwarded or addressed to this host; default none. */
  readonly protectedEndpoints?: ProtectedEndpoints;
  /** What the driver does to the kernel goes through this; default the real one. */
  readonly kernel?: DriverKernel;
}

const NO_PROTECTED_ENDPOINTS: ProtectedEndpoints = { udpPorts: [], tcp: [] };

function checkProtectedEndpoints(endpoints: ProtectedEndpoints): void {
  const ports = [...endpoints.udpPorts, ...endpoints.tcp.map((e) => e.port)];
  for (const port of ports) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgument(`invalid protected port ${port}: an integer from 1 to 65535`);
  }
  for (const { address } of endpoints.tcp) {
    if (isIP(address) === 0 || address.includes('%')) throw new InvalidArgument(`invalid protected address "${address}": an IPv4 or IPv6 address`);
  }
}

/**
 * The guard's rules for traffic that enters from the bridge. Forwarded: the
 * UDP ports at any destination and each TCP endpoint at its address.
 * Addressed to this host: each port at any of its addresses, since a
 * listener on a wildcard address answers at the gateway address too.
 */
function guardRules(bridge: string, endpoints: ProtectedEndpoints): { forward: string[]; input: string[] } {
  const set = (ports: readonly number[]) => `{ ${[...new Set(ports)].join(', ')} }`;
  const forward: string[] = [];
  const input: string[] = [];
  if (endpoints.udpPorts.length > 0) {
    forward.push(`iifname ${bridge} oifname != ${bridge} udp dport ${set(endpoints.udpPorts)} drop`);
    input.push(`iifname ${bridge} udp dport ${set(endpoints.udpPorts)} drop`);
  }
  for (const { address, port } of endpoints.tcp) {
    const unspecified = address === '0.0.0.0' || address === '::';
    const destination = unspecified ? '' : `${isIP(address) === 6 ? 'ip6' : 'ip'} daddr ${address} `;
    forward.push(`iifname ${bridge} oifname != ${bridge} ${destination}tcp dport ${port} drop`);
  }
  if (endpoints.tcp.length > 0) input.push(`iifname ${bridge} tcp dport ${set(endpoints.tcp.map((e) => e.port))} drop`);
  return { forward, input };
}

function parseBool(option: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgument(`invalid value "${value}" for option ${option}: expected true or false`);
}

/**
 * Turns the untyped `-o` options into a typed config. Options it does not
 * know are left alone (the controller warns of them); `encrypted` is refused,
 * since storing it would let a user believe the traffic is sealed.
 */
export function bridgeConfig(network: Pick<NetworkRecord, 'id' | 'options'>): BridgeConfig {
  if ('encrypted' in network.options) {
    throw new InvalidArgument('option "encrypted" is for overlay networks (-d overlay): a bridge network\'s traffic never leaves this host');
  }
  const bridgeName = network.options[BRIDGE_NAME_OPTION] ?? `br-${network.id.slice(0, 12)}`;
  if (!IFNAME_PATTERN.test(bridgeName)) {
    throw new InvalidArgument(`invalid bridge name "${bridgeName}": 1 to 15 of [a-zA-Z0-9_.:-]`);
  }
  const mtuText = network.options[MTU_OPTION];
  const mtu = mtuText === undefined ? 1500 : Number(mtuText);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535 || (mtuText !== undefined && !/^\d+$/.test(mtuText))) {
    throw new InvalidArgument(`invalid MTU "${mtuText}" for option ${MTU_OPTION}: an integer from 68 to 65535`);
  }
  const icc = network.options[ENABLE_ICC_OPTION];
  const masquerade = network.options[ENABLE_MASQUERADE_OPTION];
  const defaultBridge = network.options[DEFAULT_BRIDGE_OPTION];
  if (defaultBridge !== undefined) parseBool(DEFAULT_BRIDGE_OPTION, defaultBridge);
  return {
    bridgeName,
    enableIcc: icc === undefined ? true : parseBool(ENABLE_ICC_OPTION, icc),
    enableMasquerade: masquerade === undefined ? true : parseBool(ENABLE_MASQUERADE_OPTION, masquerade),
    mtu,
  };
}

function prefixLength(cidr: string): string {
  return cidr.split('/')[1] ?? '';
}

/** nftables table of one network: the bridge only forwards its own traffic and replies to it, and guards the protected endpoints. */
function nftTable(network: NetworkRecord, config: BridgeConfig, protectedEndpoints: ProtectedEndpoints): string {
  const table = nftTableName(network);
  const bridge = JSON.stringify(config.bridgeName);
  const guard = guardRules(bridge, protectedEndpoints);
  const forward = network.internal
    ? [`iifname ${bridge} oifname != ${bridge} drop`, `oifname ${bridge} iifname != ${bridge} drop`]
    : [
        `oifname ${bridge} iifname != ${bridge} ct state established,related accept`,
        // A port the host forwards to a sandbox by DNAT (CNI's portmap, an admin's rule) is open, as Docker's published ports are.
        `oifname ${bridge} iifname != ${bridge} ct status dnat accept`,
        `oifname ${bridge} iifname != ${bridge} drop`,
      ];
  const masquerade: string[] = [];
  if (config.enableMasquerade && !network.internal) {
    for (const pool of network.ipam.config) {
      const family = pool.subnet.includes(':') ? 'ip6' : 'ip';
      if (family === 'ip6') continue; // Docker masquerades IPv4 only by default
      masquerade.push(`${family} saddr ${pool.subnet} oifname != ${bridge} masquerade`);
    }
  }
  return [
    `table inet ${table} {`,
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...[...guard.forward, ...forward].map((rule) => `    ${rule}`),
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...guard.input.map((rule) => `    ${rule}`),
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...masquerade.map((rule) => `    ${rule}`),
    '  }',
    '}',
  ].join('\n');
}

function nftTableName(network: Pick<NetworkRecord, 'id'>): string {
  return `netctl_${network.id.slice(0, 12)}`;
}

export class BridgeDriver implements NetworkDriver {
  readonly name = 'bridge';
  readonly scope = 'local' as const;
  readonly usesIpam = true;
  readonly options = BRIDGE_OPTIONS;
  readonly providesDefaultRoute = true;
  private readonly hostNetnsPath: string;
  private readonly protectedEndpoints: ProtectedEndpoints;
  private readonly kernel: DriverKernel;
  private readonly configs = new NetworkConfigs(bridgeConfig);
  /** networkId → bridge name of the networks made on this host, to refuse two networks on one bridge. */
  private readonly bridges = new Map<string, string>();

  constructor(options: BridgeDriverOptions = {}) {
    this.hostNetnsPath = options.hostNetnsPath ?? currentNetnsPath();
    this.protectedEndpoints = options.protectedEndpoints ?? NO_PROTECTED_ENDPOINTS;
    this.kernel = options.kernel ?? systemKernel;
    checkProtectedEndpoints(this.protectedEndpoints);
  }

  validate(network: NetworkSpec): void {
    this.checkBridgeFree(network.id, this.configs.validate(network));
  }

  private checkBridgeFree(networkId: string, config: BridgeConfig): void {
    for (const [otherId, bridgeName] of this.bridges) {
      if (bridgeName === config.bridgeName && otherId !== networkId) {
        throw new Conflict(`bridge name ${config.bridgeName} is already used by another network`);
      }
    }
  }

  async createNetwork(network: NetworkRecord): Promise<void> {
    const config = this.configs.of(network);
    this.checkBridgeFree(network.id, config);
    await withLinks(this.kernel, this.hostNetnsPath, async (rtnl) => {
      const existing = await rtnl.getLink(config.bridgeName);
      if (existing === undefined) {
        await rtnl.createBridge(config.bridgeName, { mtu: config.mtu });
      } else if (existing.kind !== 'bridge') {
        throw new Conflict(`cannot use ${config.bridgeName} as the bridge: a ${existing.kind ?? 'non-bridge'} link has that name`);
      } else if (existing.mtu !== config.mtu) {
        await rtnl.setMtu(config.bridgeName, config.mtu);
      }
      this.bridges.set(network.id, config.bridgeName);
      const present = new Set((await rtnl.listAddresses(config.bridgeName)).map((a) => a.cidr));
      for (const pool of network.ipam.config) {
        if (pool.gateway === undefined) continue;
        const cidr = `${pool.gateway}/${prefixLength(pool.subnet)}`;
        if (!present.has(cidr)) await rtnl.addAddress(config.bridgeName, cidr);
      }
      await rtnl.setUp(config.bridgeName);
    });
    if (!network.internal) {
      await this.kernel.setSysctl(this.hostNetnsPath, 'net.ipv4.ip_forward', '1');
      if (network.enableIPv6) await this.kernel.setSysctl(this.hostNetnsPath, 'net.ipv6.conf.all.forwarding', '1');
    }
    // Replacing the table whole keeps restore idempotent and gives networks made by an older daemon today's guard;
    // in one transaction (add, delete, define), so the old rules hold until the new ones do.
    const table = `inet ${nftTableName(network)}`;
    await this.kernel.applyNft(this.hostNetnsPath, [`add table ${table}`, `delete table ${table}`, nftTable(network, config, this.protectedEndpoints)].join('\n'));
  }

  async deleteNetwork(network: NetworkRecord): Promise<void> {
    const config = this.configs.of(network);
    this.bridges.delete(network.id);
    this.configs.forget(network.id);
    await tearDown(`removing bridge network ${network.name}`, [
      { run: () => this.kernel.deleteNftTable(this.hostNetnsPath, nftTableName(network)) },
      {
        // Only a bridge: a create refused because another kind of link has the name is undone here too, and that link is not ours.
        run: () =>
          withLinks(this.kernel, this.hostNetnsPath, async (rtnl) => {
            if ((await rtnl.getLink(config.bridgeName))?.kind === 'bridge') await rtnl.deleteLink(config.bridgeName);
          }),
      },
    ]);
  }

  async join(request: JoinRequest): Promise<void> {
    const { network, sandbox, ifName } = request;
    const config = this.configs.of(network);
    if (sandbox.handoff === true) {
      const { hostNetnsPath } = this;
      await withLinks(this.kernel, hostNetnsPath, (host) =>
        plugHandoff({ bridgeSide: host, hostSide: host, hostNetnsPath, bridgeName: config.bridgeName, endpoint: request.endpoint, ifName, mtu: config.mtu, isolated: !config.enableIcc }),
      );
      return;
    }
    await withLinks(this.kernel, this.hostNetnsPath, (host) =>
      withLinks(this.kernel, sandbox.netnsPath, async (inside) => {
        await plugVeth({
          bridgeSide: host,
          sandboxSide: inside,
          sandboxNetnsPath: sandbox.netnsPath,
          bridgeName: config.bridgeName,
          endpoint: request.endpoint,
          ifName,
          mtu: config.mtu,
          isolated: !config.enableIcc,
        });
        if (request.setDefaultRoute) await this.setDefaultRoutes(inside, network, ifName);
      }),
    );
  }

  private async setDefaultRoutes(inside: Links, network: NetworkRecord, ifName: string): Promise<void> {
    for (const family of [4, 6] as const) {
      const pool = network.ipam.config.find((p) => p.subnet.includes(':') === (family === 6) && p.gateway !== undefined);
      if (pool?.gateway === undefined) continue;
      const routes = await inside.listRoutes(family);
      const current = routes.find((r) => r.dst === 'default');
      if (current?.gateway === pool.gateway && current.ifName === ifName) continue;
      if (current !== undefined) await inside.deleteRoute(current);
      await inside.addRoute({ dst: 'default', gateway: pool.gateway, ifName });
    }
  }

  async leave(request: LeaveRequest): Promise<void> {
    await withLinks(this.kernel, this.hostNetnsPath, (host) => unplugVeth(host, request.endpoint.id));
  }

  hostInterfaceName(endpoint: EndpointRecord): string {
    return hostVethName(endpoint.id);
  }
}
