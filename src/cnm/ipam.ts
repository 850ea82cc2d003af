/**
 * IP address management with Docker libnetwork's semantics, as pure logic:
 * choosing and validating a network's pools here, handing out addresses
 * inside them in ipam-allocator.ts, the address arithmetic both use in
 * ipam-address.ts. Nothing here does I/O; the controller stores the state.
 */
import { Conflict, InvalidArgument } from '../errors.js';
import type { IpamPoolConfig } from '../records.js';
import {
  BITS,
  type Family,
  type Subnet,
  contains,
  familyName,
  formatAddress,
  overlaps,
  parseBlock,
  parseCidr,
  parseMember,
  subnetOf,
  unusableAddresses,
} from './ipam-address.js';

export type { Family } from './ipam-address.js';
export { Allocator } from './ipam-allocator.js';

/** One `--subnet` with the `--ip-range`, `--gateway` and `--aux-address` flags that belong to it. */
export interface PoolRequest {
  subnet?: string;
  ipRange?: string;
  gateway?: string;
  auxAddresses?: Record<string, string>;
}

/** A subnet already used by another network; new pools must not overlap it. */
export interface ExistingPool {
  networkName: string;
  subnet: string;
}

/**
 * The fixed ULA /48s that default IPv6 pools are cut from (RFC 4193 prefix
 * fd00::/8 with "d0c" as a mnemonic global ID). Local and global scope get
 * different /48s so that a host's bridge networks, which other hosts do not
 * know about, cannot collide with an overlay chosen elsewhere.
 */
const LOCAL_IPV6_BASE = 'fd00:d0c::/48';
const GLOBAL_IPV6_BASE = 'fd00:d0c:1::/48';

/**
 * Docker's defaults: local → /16s from 172.17.0.0/16 … 172.31.0.0/16, then
 * /20s from 192.168.0.0/16; global → /24s from 10.0.0.0/8. IPv6 (used when
 * `--ipv6` is given without an IPv6 subnet): /64s from fd00:d0c::/48 (local)
 * or fd00:d0c:1::/48 (global). Each entry's family is its base's; IPv4
 * entries come first, in the order they are tried.
 */
export function defaultPools(scope: 'local' | 'global'): { base: string; size: number }[] {
  if (scope === 'global') {
    return [
      { base: '10.0.0.0/8', size: 24 },
      { base: GLOBAL_IPV6_BASE, size: 64 },
    ];
  }
  const pools: { base: string; size: number }[] = [];
  for (let second = 17; second <= 31; second++) pools.push({ base: `172.${second}.0.0/16`, size: 16 });
  pools.push({ base: '192.168.0.0/16', size: 20 }, { base: LOCAL_IPV6_BASE, size: 64 });
  return pools;
}
interface ValidatedPool {
  readonly subnet: Subnet;
  readonly ipRange?: Subnet;
  readonly gateway?: bigint;
  readonly auxAddresses: ReadonlyMap<string, bigint>;
}

function validateRequest(request: PoolRequest, seenAuxNames: Set<string>): ValidatedPool | undefined {
  if (request.subnet === undefined) {
    if (request.ipRange !== undefined) throw new InvalidArgument(`ip-range ${request.ipRange} given without a subnet`);
    if (request.gateway !== undefined) throw new InvalidArgument(`gateway ${request.gateway} given without a subnet`);
    if (request.auxAddresses && Object.keys(request.auxAddresses).length > 0) {
      throw new InvalidArgument('auxiliary addresses given without a subnet');
    }
    return undefined;
  }
  const subnet = parseBlock(request.subnet, 'subnet');

  let ipRange: Subnet | undefined;
  if (request.ipRange !== undefined) {
    ipRange = parseBlock(request.ipRange, 'ip-range');
    if (ipRange.family !== subnet.family) {
      throw new InvalidArgument(
        `ip-range ${ipRange.text} is ${familyName(ipRange.family)} but subnet ${subnet.text} is ${familyName(subnet.family)}`,
      );
    }
    if (ipRange.prefix < subnet.prefix) {
      throw new InvalidArgument(`ip-range ${ipRange.text} is wider than subnet ${subnet.text}`);
    }
    if (!contains(subnet, ipRange.first)) {
      throw new InvalidArgument(`ip-range ${ipRange.text} is not in subnet ${subnet.text}`);
    }
  }

  const gateway = request.gateway === undefined ? undefined : parseMember(request.gateway, subnet, 'gateway');

  const auxAddresses = new Map<string, bigint>();
  const auxByValue = new Map<bigint, string>();
  for (const [name, text] of Object.entries(request.auxAddresses ?? {})) {
    if (name === '') throw new InvalidArgument(`auxiliary address ${text} has an empty name`);
    if (seenAuxNames.has(name)) throw new InvalidArgument(`duplicate auxiliary address name ${JSON.stringify(name)}`);
    seenAuxNames.add(name);
    const value = parseMember(text, subnet, `auxiliary address ${JSON.stringify(name)}`);
    if (value === gateway) {
      throw new InvalidArgument(`auxiliary address ${JSON.stringify(name)} (${text}) is the gateway`);
    }
    const other = auxByValue.get(value);
    if (other !== undefined) {
      throw new InvalidArgument(
        `auxiliary addresses ${JSON.stringify(other)} and ${JSON.stringify(name)} are both ${formatAddress(subnet.family, value)}`,
      );
    }
    auxByValue.set(value, name);
    auxAddresses.set(name, value);
  }

  return {
    subnet,
    ...(ipRange && { ipRange }),
    ...(gateway !== undefined && { gateway }),
    auxAddresses,
  };
}

/** Lowest default block of `family` that overlaps none of `taken`. */
function pickDefaultSubnet(scope: 'local' | 'global', family: Family, taken: readonly Subnet[]): Subnet {
  for (const { base, size } of defaultPools(scope)) {
    const baseBlock = parseBlock(base, 'default pool');
    if (baseBlock.family !== family) continue;
    const step = 1n << BigInt(BITS[family] - size);
    let first = baseBlock.first;
    while (first + step - 1n <= baseBlock.last) {
      const candidate = { first, last: first + step - 1n };
      const blocker = taken.find((subnet) => overlaps(subnet, candidate));
      if (!blocker) return subnetOf(family, first, size);
      // Jump past the blocker in one step, so a big existing network costs one iteration, not thousands.
      const afterBlocker = ((blocker.last + step) / step) * step;
      first = afterBlocker > first + step ? afterBlocker : first + step;
    }
  }
  throw new Conflict('all predefined address pools have been fully subnetted');
}

/** The block a route or an address of the host covers: `172.17.0.1/16` covers 172.17.0.0/16. */
function routedBlock(text: string): Subnet {
  const cidr = parseCidr(text);
  if (cidr === undefined) throw new InvalidArgument(`invalid routed subnet ${JSON.stringify(text)}`);
  return subnetOf(cidr.address.family, cidr.address.value, cidr.prefix);
}

/** Default gateway: the lowest address that is neither unusable nor an auxiliary address. */
function defaultGateway(pool: ValidatedPool): bigint {
  const unusable = unusableAddresses(pool.subnet);
  const aux = new Set(pool.auxAddresses.values());
  for (let value = pool.subnet.first; value <= pool.subnet.last; value++) {
    if (!unusable.has(value) && !aux.has(value)) return value;
  }
  throw new InvalidArgument(`no address left for the gateway in subnet ${pool.subnet.text}`);
}

function toPoolConfig(pool: ValidatedPool, gateway: bigint): IpamPoolConfig {
  const family = pool.subnet.family;
  const auxAddresses: Record<string, string> = {};
  for (const [name, value] of pool.auxAddresses) auxAddresses[name] = formatAddress(family, value);
  return {
    subnet: pool.subnet.text,
    ...(pool.ipRange && { ipRange: pool.ipRange.text }),
    gateway: formatAddress(family, gateway),
    ...(pool.auxAddresses.size > 0 && { auxAddresses }),
  };
}

/**
 * Resolves the pools for a new network (`docker network create --subnet
 * --ip-range --gateway --aux-address --ipv6`). Every request is validated:
 * well-formed CIDRs with no host bits ("invalid subnet 10.0.0.1/24: it should
 * be 10.0.0.0/24"), ip-range, gateway and auxiliary addresses of the subnet's
 * family and inside it, gateway and aux not the network/broadcast (IPv4) or
 * subnet-router anycast (IPv6) address, aux names and addresses unique, no
 * overlap between requested subnets nor with existing networks. Several
 * subnets per family are allowed, as in Docker; a subnet of a family that is
 * not enabled is refused rather than dropped.
 *
 * An enabled family without a requested subnet gets the lowest default block
 * (see `defaultPools`) that overlaps no existing network and no subnet the
 * host routes (`routed`, host bits allowed); requested subnets may overlap
 * the host's routes, as in Docker. A pool without a gateway gets its first
 * usable address that is not an auxiliary address.
 * Returns the pools IPv4 first, in request order, with canonical strings
 * (lowercase, compressed IPv6). Throws InvalidArgument for a bad request and
 * Conflict for an overlap with an existing network or exhausted defaults
 * ("all predefined address pools have been fully subnetted").
 */
export function resolvePools(input: {
  scope: 'local' | 'global';
  enableIPv4: boolean;
  enableIPv6: boolean;
  requested: PoolRequest[];
  existing: ExistingPool[];
  routed?: readonly string[];
}): IpamPoolConfig[] {
  const seenAuxNames = new Set<string>();
  const pools: ValidatedPool[] = [];
  for (const request of input.requested) {
    const pool = validateRequest(request, seenAuxNames);
    if (!pool) continue;
    const family = pool.subnet.family;
    if (family === 4 && !input.enableIPv4) {
      throw new InvalidArgument(`IPv4 subnet ${pool.subnet.text} given but IPv4 is disabled`);
    }
    if (family === 6 && !input.enableIPv6) {
      throw new InvalidArgument(`IPv6 subnet ${pool.subnet.text} given but IPv6 is not enabled`);
    }
    const clash = pools.find((other) => overlaps(other.subnet, pool.subnet));
    if (clash) throw new InvalidArgument(`subnet ${pool.subnet.text} overlaps with subnet ${clash.subnet.text}`);
    pools.push(pool);
  }

  const existing = input.existing.map((entry) => ({
    networkName: entry.networkName,
    subnet: parseBlock(entry.subnet, `subnet of network ${JSON.stringify(entry.networkName)}`),
  }));
  for (const pool of pools) {
    const clash = existing.find((entry) => overlaps(entry.subnet, pool.subnet));
    if (clash) {
      throw new Conflict(
        `subnet ${pool.subnet.text} overlaps with network ${JSON.stringify(clash.networkName)} (${clash.subnet.text})`,
      );
    }
  }

  const takenSubnets = [...existing.map((entry) => entry.subnet), ...(input.routed ?? []).map(routedBlock)];
  for (const [family, enabled] of [
    [4, input.enableIPv4],
    [6, input.enableIPv6],
  ] as const) {
    if (enabled && !pools.some((pool) => pool.subnet.family === family)) {
      pools.push({ subnet: pickDefaultSubnet(input.scope, family, takenSubnets), auxAddresses: new Map() });
    }
  }

  const byFamily = [...pools.filter((p) => p.subnet.family === 4), ...pools.filter((p) => p.subnet.family === 6)];
  return byFamily.map((pool) => toPoolConfig(pool, pool.gateway ?? defaultGateway(pool)));
}
