/**
 * IP address management with Docker libnetwork's semantics, as pure logic:
 * choosing and validating a network's pools, and handing out addresses
 * inside them. Nothing here does I/O; the controller stores the state.
 */
import { IPv4, IPv4CidrRange, IPv4Prefix, IPv6, IPv6CidrRange, IPv6Prefix, collapseIPv6Number } from 'ip-num';
import { Conflict, InvalidArgument } from '../errors.js';
import type { IpamPoolConfig } from '../records.js';

export type Family = 4 | 6;

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

interface Address {
  readonly family: Family;
  readonly value: bigint;
}

interface Subnet {
  readonly family: Family;
  readonly prefix: number;
  readonly first: bigint;
  readonly last: bigint;
  readonly text: string;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
/** Characters an address may contain; rejects whitespace, signs and zone IDs before ip-num sees the text. */
const ADDRESS_CHARS = /^[0-9A-Fa-f:.]+$/;
const PREFIX_LENGTH = /^(0|[1-9][0-9]{0,2})$/;

function familyName(family: Family): string {
  return family === 4 ? 'IPv4' : 'IPv6';
}

function parseAddress(text: string): Address | undefined {
  if (!ADDRESS_CHARS.test(text)) return undefined;
  try {
    if (text.includes(':')) return { family: 6, value: IPv6.fromString(text).value };
    return { family: 4, value: IPv4.fromString(text).value };
  } catch {
    return undefined;
  }
}

function formatAddress(family: Family, value: bigint): string {
  if (family === 4) return IPv4.fromNumber(value).toString();
  return collapseIPv6Number(IPv6.fromBigInt(value).toString());
}

/** The CIDR as written (host bits possibly set), or undefined when malformed. */
function parseCidr(text: string): { address: Address; prefix: number } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseAddress(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!address || !PREFIX_LENGTH.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > BITS[address.family]) return undefined;
  return { address, prefix };
}

function subnetOf(family: Family, value: bigint, prefix: number): Subnet {
  const range =
    family === 4
      ? new IPv4CidrRange(IPv4.fromNumber(value), new IPv4Prefix(BigInt(prefix)))
      : new IPv6CidrRange(IPv6.fromBigInt(value), new IPv6Prefix(BigInt(prefix)));
  const first = range.getFirst().value;
  return { family, prefix, first, last: range.getLast().value, text: `${formatAddress(family, first)}/${prefix}` };
}

/** Parses a CIDR that must have no host bits set; `what` names it in errors ("subnet", "ip-range"). */
function parseBlock(text: string, what: string): Subnet {
  const cidr = parseCidr(text);
  if (!cidr) throw new InvalidArgument(`invalid ${what} ${JSON.stringify(text)}`);
  const block = subnetOf(cidr.address.family, cidr.address.value, cidr.prefix);
  if (block.first !== cidr.address.value) {
    throw new InvalidArgument(`invalid ${what} ${text}: it should be ${block.text}`);
  }
  return block;
}

function contains(subnet: Subnet, value: bigint): boolean {
  return subnet.first <= value && value <= subnet.last;
}

function overlaps(a: { first: bigint; last: bigint }, b: { first: bigint; last: bigint }): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/**
 * Addresses of a subnet that are never usable by anything: the IPv4 network
 * and broadcast addresses and the IPv6 subnet-router anycast address. Point-
 * to-point prefixes (IPv4 /31 and /32, RFC 3021; IPv6 /127 and /128, RFC 6164)
 * have none, so every address in them can be used.
 */
function unusableAddresses(subnet: Subnet): Map<bigint, string> {
  const unusable = new Map<bigint, string>();
  if (subnet.family === 4 && subnet.prefix <= 30) {
    unusable.set(subnet.first, 'the network address');
    unusable.set(subnet.last, 'the broadcast address');
  } else if (subnet.family === 6 && subnet.prefix <= 126) {
    unusable.set(subnet.first, 'the subnet-router anycast address');
  }
  return unusable;
}

/** Parses an address that must belong to `subnet`; `what` names it in errors ("gateway", 'auxiliary address "db"'). */
function parseMember(text: string, subnet: Subnet, what: string): bigint {
  const address = parseAddress(text);
  if (!address) throw new InvalidArgument(`invalid ${what} ${JSON.stringify(text)}`);
  if (address.family !== subnet.family) {
    throw new InvalidArgument(
      `${what} ${text} is ${familyName(address.family)} but subnet ${subnet.text} is ${familyName(subnet.family)}`,
    );
  }
  if (!contains(subnet, address.value)) throw new InvalidArgument(`${what} ${text} is not in subnet ${subnet.text}`);
  const reason = unusableAddresses(subnet).get(address.value);
  if (reason !== undefined) throw new InvalidArgument(`${what} ${text} is ${reason} of subnet ${subnet.text}`);
  return address.value;
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
 * (see `defaultPools`) that overlaps no existing network; a pool without a
 * gateway gets its first usable address that is not an auxiliary address.
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

  const takenSubnets = existing.map((entry) => entry.subnet);
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

/** Address allocation state of one network, serialisable to JSON for the store. */
export interface AllocatorState {
  allocated: Record<string /* subnet */, string[] /* addresses */>;
}

interface AllocatorPool {
  readonly subnet: Subnet;
  /** Where dynamic allocation draws from: the ip-range, or the whole subnet. */
  readonly dynamic: { readonly first: bigint; readonly last: bigint };
  /** Addresses never handed out, with why, for error messages. */
  readonly reserved: ReadonlyMap<bigint, { readonly reason: string; readonly error: 'InvalidArgument' | 'Conflict' }>;
  /** Reserved and allocated addresses together, sorted ascending, so the first gap is found by binary search. */
  readonly taken: bigint[];
}

/** Index of the first element of `sorted` that is ≥ value. */
function lowerBound(sorted: readonly bigint[], value: bigint): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as bigint) < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * Lowest value in [first, last] missing from `sorted` (distinct, ascending).
 * From the first element ≥ first on, element j equals first + (j − start)
 * exactly until the first gap, so the gap is found by binary search.
 */
function lowestFree(sorted: readonly bigint[], first: bigint, last: bigint): bigint | undefined {
  const start = lowerBound(sorted, first);
  let low = start;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid] === first + BigInt(mid - start)) low = mid + 1;
    else high = mid;
  }
  const candidate = first + BigInt(low - start);
  return candidate <= last ? candidate : undefined;
}

function insertSorted(sorted: bigint[], value: bigint): void {
  sorted.splice(lowerBound(sorted, value), 0, value);
}

/**
 * Hands out addresses in one network's pools. Dynamic allocation takes the
 * lowest free address; the network, broadcast (IPv4) and subnet-router
 * anycast (IPv6) addresses, the gateway and auxiliary addresses are never
 * handed out.
 */
export class Allocator {
  readonly #pools: AllocatorPool[];

  /** Throws InvalidArgument when a pool is malformed or `state` does not fit the pools. */
  constructor(pools: readonly IpamPoolConfig[], state?: AllocatorState) {
    this.#pools = pools.map((config) => {
      const subnet = parseBlock(config.subnet, 'subnet');
      const dynamic = config.ipRange === undefined ? subnet : parseBlock(config.ipRange, 'ip-range');
      const reserved = new Map<bigint, { reason: string; error: 'InvalidArgument' | 'Conflict' }>();
      for (const [value, reason] of unusableAddresses(subnet)) {
        reserved.set(value, { reason: `is ${reason} of ${subnet.text}`, error: 'InvalidArgument' });
      }
      if (config.gateway !== undefined) {
        const gateway = parseMember(config.gateway, subnet, 'gateway');
        reserved.set(gateway, { reason: 'is reserved for the gateway', error: 'Conflict' });
      }
      for (const [name, text] of Object.entries(config.auxAddresses ?? {})) {
        const value = parseMember(text, subnet, `auxiliary address ${JSON.stringify(name)}`);
        reserved.set(value, { reason: `is reserved as auxiliary address ${JSON.stringify(name)}`, error: 'Conflict' });
      }
      const taken = [...reserved.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return { subnet, dynamic, reserved, taken };
    });
    if (state) this.#load(state);
  }

  #load(state: AllocatorState): void {
    for (const [subnetText, addresses] of Object.entries(state.allocated)) {
      const subnet = parseBlock(subnetText, 'subnet in allocator state');
      const pool = this.#pools.find((p) => p.subnet.text === subnet.text);
      if (!pool) {
        throw new InvalidArgument(`allocator state names subnet ${subnetText}, which is not a pool of this network`);
      }
      for (const text of addresses) {
        const value = parseMember(text, pool.subnet, 'address in allocator state');
        if (pool.reserved.has(value)) throw new InvalidArgument(`allocator state allocates reserved address ${text}`);
        const index = lowerBound(pool.taken, value);
        if (pool.taken[index] !== value) pool.taken.splice(index, 0, value);
      }
    }
  }

  /**
   * Dynamic: lowest free address in the pool's ipRange (or subnet) of that family, pools tried in order;
   * static: the requested address, which must be in one of the network's subnets (not necessarily the
   * ip-range, as docker), not network/broadcast (IPv4), not the gateway, not an aux address, not taken.
   * Returns the address with the subnet's prefix length, e.g. "172.18.0.2/16".
   * Throws InvalidArgument for a malformed, misplaced or unusable address and Conflict when it is taken
   * or reserved, or when no address is left ("no available IPv4 addresses in 172.18.0.0/30").
   */
  allocate(family: Family, requested?: string): string {
    const pools = this.#pools.filter((pool) => pool.subnet.family === family);
    if (pools.length === 0) throw new InvalidArgument(`network has no ${familyName(family)} subnet`);
    if (requested !== undefined) return this.#allocateStatic(family, pools, requested);
    for (const pool of pools) {
      const value = lowestFree(pool.taken, pool.dynamic.first, pool.dynamic.last);
      if (value !== undefined) {
        insertSorted(pool.taken, value);
        return `${formatAddress(family, value)}/${pool.subnet.prefix}`;
      }
    }
    throw new Conflict(
      `no available ${familyName(family)} addresses in ${pools.map((pool) => pool.subnet.text).join(', ')}`,
    );
  }

  #allocateStatic(family: Family, pools: readonly AllocatorPool[], requested: string): string {
    const address = parseAddress(requested);
    if (!address) throw new InvalidArgument(`invalid ${familyName(family)} address ${JSON.stringify(requested)}`);
    if (address.family !== family) {
      throw new InvalidArgument(`address ${requested} is not an ${familyName(family)} address`);
    }
    const text = formatAddress(family, address.value);
    const pool = pools.find((p) => contains(p.subnet, address.value));
    if (!pool) {
      throw new InvalidArgument(
        `address ${text} is not in any subnet of the network (${pools.map((p) => p.subnet.text).join(', ')})`,
      );
    }
    const reserved = pool.reserved.get(address.value);
    if (reserved) {
      const message = `address ${text} ${reserved.reason}`;
      throw reserved.error === 'Conflict' ? new Conflict(message) : new InvalidArgument(message);
    }
    const index = lowerBound(pool.taken, address.value);
    if (pool.taken[index] === address.value) throw new Conflict(`address ${text} is already in use`);
    pool.taken.splice(index, 0, address.value);
    return `${text}/${pool.subnet.prefix}`;
  }

  /**
   * Releases an address (plain or CIDR form). Releasing a free or reserved
   * address, or one outside the pools, is a no-op; a malformed one throws InvalidArgument.
   */
  release(address: string): void {
    const found = this.#find(address);
    if (found && !found.pool.reserved.has(found.value)) {
      const index = lowerBound(found.pool.taken, found.value);
      if (found.pool.taken[index] === found.value) found.pool.taken.splice(index, 1);
    }
  }

  /**
   * True when the address (plain or CIDR form) was handed out by `allocate`
   * and not released; reserved addresses (gateway, aux) are not "allocated".
   */
  isAllocated(address: string): boolean {
    const found = this.#find(address);
    if (!found || found.pool.reserved.has(found.value)) return false;
    return found.pool.taken[lowerBound(found.pool.taken, found.value)] === found.value;
  }

  /** The addresses handed out, per subnet (every pool listed), ascending. */
  toJSON(): AllocatorState {
    const allocated: Record<string, string[]> = {};
    for (const pool of this.#pools) {
      allocated[pool.subnet.text] = pool.taken
        .filter((value) => !pool.reserved.has(value))
        .map((value) => formatAddress(pool.subnet.family, value));
    }
    return { allocated };
  }

  #find(text: string): { pool: AllocatorPool; value: bigint } | undefined {
    const address = text.includes('/') ? parseCidr(text)?.address : parseAddress(text);
    if (!address) throw new InvalidArgument(`invalid address ${JSON.stringify(text)}`);
    const pool = this.#pools.find((p) => p.subnet.family === address.family && contains(p.subnet, address.value));
    return pool && { pool, value: address.value };
  }
}
