/**
 * Hands out addresses inside a network's resolved pools, lowest free first,
 * as Docker libnetwork does. Pure logic; the controller stores the state.
 */
import { Conflict, InvalidArgument } from '../errors.js';
import type { IpamPoolConfig } from '../records.js';
import {
  type Family,
  type Subnet,
  contains,
  familyName,
  formatAddress,
  parseAddress,
  parseBlock,
  parseCidr,
  parseMember,
  unusableAddresses,
} from './ipam-address.js';

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

  /** Throws InvalidArgument when a pool is malformed. */
  constructor(pools: readonly IpamPoolConfig[]) {
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
  }

  /**
   * An allocator with `taken` (plain or CIDR form) handed out already, as
   * the network's address keys list them. Throws InvalidArgument for an
   * address outside the pools or a reserved one.
   */
  static withTaken(pools: readonly IpamPoolConfig[], taken: Iterable<string>): Allocator {
    const allocator = new Allocator(pools);
    for (const text of taken) {
      const found = allocator.#find(text);
      if (found === undefined) throw new InvalidArgument(`address ${text} in use is not in any pool of the network`);
      if (found.pool.reserved.has(found.value)) throw new InvalidArgument(`reserved address ${text} is recorded as in use`);
      const index = lowerBound(found.pool.taken, found.value);
      if (found.pool.taken[index] !== found.value) found.pool.taken.splice(index, 0, found.value);
    }
    return allocator;
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

  #find(text: string): { pool: AllocatorPool; value: bigint } | undefined {
    const address = text.includes('/') ? parseCidr(text)?.address : parseAddress(text);
    if (!address) throw new InvalidArgument(`invalid address ${JSON.stringify(text)}`);
    const pool = this.#pools.find((p) => p.subnet.family === address.family && contains(p.subnet, address.value));
    return pool && { pool, value: address.value };
  }
}
