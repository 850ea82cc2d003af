/**
 * The bridge driver: one Linux bridge per network in the host namespace,
 * the gateway addresses on the bridge, one veth pair per endpoint whose
 * sandbox end becomes eth0, eth1… Isolation, --internal and masquerade are
 * one nftables table per network, so removing a network removes exactly its
 * rules. enable_icc=false uses bridge port isolation: isolated ports reach
 * the gateway but not each other.
 */
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../../cnm/driver.js';
import { Conflict, InvalidArgument, NetctlError } from '../../cnm/errors.js';
import type { NetworkRecord } from '../../cnm/types.js';
import { applyNft, deleteNftTable } from '../../sys/nft.js';
import { currentNetnsPath } from '../../sys/netns.js';
import { Rtnl } from '../../sys/rtnl.js';
import { setSysctl } from '../../sys/sysctl.js';
import { plugVeth, unplugVeth } from '../veth.js';

export const BRIDGE_NAME_OPTION = 'com.docker.network.bridge.name';
export const ENABLE_ICC_OPTION = 'com.docker.network.bridge.enable_icc';
export const ENABLE_MASQUERADE_OPTION = 'com.docker.network.bridge.enable_ip_masquerade';
export const MTU_OPTION = 'com.docker.network.driver.mtu';

const KNOWN_OPTIONS = new Set([BRIDGE_NAME_OPTION, ENABLE_ICC_OPTION, ENABLE_MASQUERADE_OPTION, MTU_OPTION]);
const IFNAME_PATTERN = /^[a-zA-Z0-9_.:-]{1,15}$/;

export interface BridgeConfig {
  readonly bridgeName: string;
  readonly enableIcc: boolean;
  readonly enableMasquerade: boolean;
  readonly mtu: number;
}

export interface BridgeDriverOptions {
  /** Namespace the bridges live in; defaults to the process's own. */
  readonly hostNetnsPath?: string;
}

function parseBool(option: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgument(`invalid value "${value}" for option ${option}: expected true or false`);
}

/** Turns the untyped `-o` options into a typed config, rejecting what it does not know. */
export function bridgeConfig(network: Pick<NetworkRecord, 'id' | 'options'>): BridgeConfig {
  for (const option of Object.keys(network.options)) {
    if (!KNOWN_OPTIONS.has(option)) throw new InvalidArgument(`unknown bridge driver option "${option}"`);
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

/** nftables table of one network: the bridge only forwards its own traffic and replies to it. */
function nftTable(network: NetworkRecord, config: BridgeConfig): string {
  const table = nftTableName(network);
  const bridge = JSON.stringify(config.bridgeName);
  const forward = network.internal
    ? [`iifname ${bridge} oifname != ${bridge} drop`, `oifname ${bridge} iifname != ${bridge} drop`]
    : [`oifname ${bridge} iifname != ${bridge} ct state established,related accept`, `oifname ${bridge} iifname != ${bridge} drop`];
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
    ...forward.map((rule) => `    ${rule}`),
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
  readonly providesDefaultRoute = true;
  private readonly hostNetnsPath: string;
  /** networkId → bridge name, to refuse two networks on one bridge. */
  private readonly bridges = new Map<string, string>();

  constructor(options: BridgeDriverOptions = {}) {
    this.hostNetnsPath = options.hostNetnsPath ?? currentNetnsPath();
  }

  validate(network: NetworkSpec): void {
    const config = bridgeConfig(network);
    for (const [networkId, bridgeName] of this.bridges) {
      if (bridgeName === config.bridgeName && networkId !== network.id) {
        throw new Conflict(`bridge name ${config.bridgeName} is already used by another network`);
      }
    }
  }

  async createNetwork(network: NetworkRecord): Promise<void> {
    const config = bridgeConfig(network);
    this.validate(network);
    const rtnl = await Rtnl.open(this.hostNetnsPath);
    try {
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
    } finally {
      rtnl.close();
    }
    if (!network.internal) {
      await setSysctl(this.hostNetnsPath, 'net.ipv4.ip_forward', '1');
      if (network.enableIPv6) await setSysctl(this.hostNetnsPath, 'net.ipv6.conf.all.forwarding', '1');
    }
    // Replacing the table whole keeps restore idempotent.
    await deleteNftTable(this.hostNetnsPath, 'inet', nftTableName(network));
    await applyNft(this.hostNetnsPath, nftTable(network, config));
  }

  async deleteNetwork(network: NetworkRecord): Promise<void> {
    const config = bridgeConfig(network);
    const failures: string[] = [];
    try {
      await deleteNftTable(this.hostNetnsPath, 'inet', nftTableName(network));
    } catch (err) {
      failures.push((err as Error).message);
    }
    try {
      const rtnl = await Rtnl.open(this.hostNetnsPath);
      try {
        await rtnl.deleteLink(config.bridgeName);
      } finally {
        rtnl.close();
      }
    } catch (err) {
      failures.push((err as Error).message);
    }
    this.bridges.delete(network.id);
    if (failures.length > 0) {
      throw new NetctlError('Internal', `removing bridge network ${network.name}: ${failures.join('; ')}`);
    }
  }

  async join(request: JoinRequest): Promise<void> {
    const { network, sandbox, ifName } = request;
    const config = bridgeConfig(network);
    const host = await Rtnl.open(this.hostNetnsPath);
    const inside = await Rtnl.open(sandbox.netnsPath);
    try {
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
    } finally {
      host.close();
      inside.close();
    }
  }

  private async setDefaultRoutes(inside: Rtnl, network: NetworkRecord, ifName: string): Promise<void> {
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
    const host = await Rtnl.open(this.hostNetnsPath);
    try {
      await unplugVeth(host, request.endpoint.id);
    } finally {
      host.close();
    }
  }
}
