/**
 * netctl as dockerd's IPAM driver (`docker network create --ipam-driver
 * netctl`). Docker asks for a pool, then for addresses in it; netctl keeps
 * its answers in a ledger in the cluster store when there is one, so two
 * dockerd hosts on one overlay never hand out the same address (with
 * Docker's own IPAM each host counts alone), and in the local store
 * otherwise.
 *
 * Pools are held per host: a host may hold a subnet another host holds
 * (the same overlay seen from each), never two overlapping ones itself.
 * Addresses are claimed once across all hosts holding the subnet; the
 * gateway is shared and lasts until no host holds the subnet.
 */
import { Conflict, InvalidArgument, NotFound } from '../../errors.js';
import type { Controller } from '../../cnm/controller.js';
import { type ExistingPool, resolvePools } from '../../cnm/ipam.js';
import { type Subnet, contains, formatAddress, overlaps, parseBlock, parseMember, unusableAddresses } from '../../cnm/ipam-address.js';
import type { Store, TxnRequest } from '../../store/types.js';
import { SerialByKey } from '../../limit.js';
import {
  GATEWAY_ADDRESS_TYPE,
  REQUEST_ADDRESS_TYPE,
  type releaseAddressRequest,
  type releasePoolRequest,
  type requestAddressRequest,
  type requestPoolRequest,
} from './protocol.js';
import type * as v from 'valibot';

const POOLS = 'docker-plugin/ipam/pools/';
/** Tries of a claim that another host's claim beat; past them the caller is told to try again. */
const CLAIM_ATTEMPTS = 16;
const ADDRESSES = 'docker-plugin/ipam/addresses/';

/** A pool a host holds: its subnet and the part of it addresses are drawn from. */
interface HeldPool {
  readonly subnet: string;
  readonly subPool?: string;
}

interface AddressClaim {
  readonly kind: 'gateway' | 'endpoint';
  readonly host: string;
}

/** What the ledger needs of the host: its id, the networks netctl has, and the subnets routed here. */
export interface IpamHost {
  readonly controller: Controller;
  /** Where the ledger lives: the cluster store when there is one. */
  readonly store: Store;
  /** Subnets routed in the host's namespace, which automatic pools avoid as Docker does. */
  readonly routedSubnets?: () => Promise<string[]>;
}

/** PoolID is the subnet, with `|` and the sub-pool when `--ip-range` gave one: what dockerd stores is readable. */
function poolId(pool: HeldPool): string {
  return pool.subPool === undefined ? pool.subnet : `${pool.subnet}|${pool.subPool}`;
}

function parsePoolId(id: string): { pool: HeldPool; subnet: Subnet; range: Subnet } {
  const [subnetText = '', subPoolText] = id.split('|');
  const subnet = parseBlock(subnetText, 'pool');
  const range = subPoolText === undefined ? subnet : parseBlock(subPoolText, 'sub-pool');
  return { pool: { subnet: subnet.text, ...(subPoolText !== undefined ? { subPool: range.text } : {}) }, subnet, range };
}

const key = {
  pool: (hostId: string, id: string) => `${POOLS}${hostId}/${encodeURIComponent(id)}`,
  addresses: (subnet: string) => `${ADDRESSES}${encodeURIComponent(subnet)}/`,
  address: (subnet: string, address: string) => `${ADDRESSES}${encodeURIComponent(subnet)}/${address}`,
};

export class DockerIpam {
  /**
   * This host's pool requests and releases, one at a time: the overlap check
   * reads every held pool, and two requests checked side by side would each
   * miss the other.
   */
  private readonly pools = new SerialByKey();
  /** This host's address requests of one subnet, one at a time (see requestAddress). */
  private readonly addresses = new SerialByKey();

  constructor(private readonly host: IpamHost) {}

  /** Docker's address spaces mean nothing to netctl: one ledger serves both. */
  defaultAddressSpaces(): { LocalDefaultAddressSpace: string; GlobalDefaultAddressSpace: string } {
    return { LocalDefaultAddressSpace: 'local', GlobalDefaultAddressSpace: 'global' };
  }

  /**
   * Holds a pool for this host: the subnet asked for, or the first of
   * Docker's default pools that no network, no pool held anywhere and no
   * route of this host uses.
   */
  requestPool(request: v.InferOutput<typeof requestPoolRequest>): Promise<{ PoolID: string; Pool: string; Data: Record<string, string> }> {
    return this.pools.run('pools', () => this.holdPool(request));
  }

  private async holdPool(request: v.InferOutput<typeof requestPoolRequest>): Promise<{ PoolID: string; Pool: string; Data: Record<string, string> }> {
    const option = Object.keys(request.Options)[0];
    if (option !== undefined) throw new InvalidArgument(`unknown IPAM option "${option}" for the netctl IPAM driver`);
    const hostId = await this.host.controller.hostId();
    const held = await this.heldPools();
    let pool: HeldPool;
    if (request.Pool === '') {
      if (request.SubPool !== '') throw new InvalidArgument(`sub-pool ${request.SubPool} given without a pool`);
      pool = { subnet: await this.pickSubnet(request.V6, held.map((entry) => entry.pool.subnet)) };
    } else {
      const subnet = parseBlock(request.Pool, 'pool');
      if ((subnet.family === 6) !== request.V6) {
        throw new InvalidArgument(`pool ${request.Pool} is ${subnet.family === 6 ? 'IPv6' : 'IPv4'} but an ${request.V6 ? 'IPv6' : 'IPv4'} pool was asked for`);
      }
      let subPool: string | undefined;
      if (request.SubPool !== '') {
        const range = parseBlock(request.SubPool, 'sub-pool');
        if (range.family !== subnet.family || !contains(subnet, range.first) || !contains(subnet, range.last)) {
          throw new InvalidArgument(`sub-pool ${request.SubPool} is not inside pool ${subnet.text}`);
        }
        subPool = range.text;
      }
      for (const other of held) {
        const otherSubnet = parseBlock(other.pool.subnet, 'pool');
        if (!overlaps(otherSubnet, subnet)) continue;
        // The same subnet on another host is the same network seen from there (an overlay).
        if (other.hostId !== hostId && otherSubnet.text === subnet.text) continue;
        throw new Conflict(`pool ${subnet.text} overlaps with pool ${other.pool.subnet} already in use${other.hostId === hostId ? ' on this host' : ''}`);
      }
      pool = { subnet: subnet.text, ...(subPool !== undefined ? { subPool } : {}) };
    }
    const id = poolId(pool);
    const written = await this.host.store.txn({
      compare: [{ key: key.pool(hostId, id), modRevision: 0 }],
      put: [{ key: key.pool(hostId, id), value: JSON.stringify(pool) }],
    });
    if (!written.succeeded) throw new Conflict(`pool ${id} is already held on this host`);
    return { PoolID: id, Pool: pool.subnet, Data: {} };
  }

  /** Lets go of this host's pool; once no host holds the subnet, its addresses go too. */
  releasePool(request: v.InferOutput<typeof releasePoolRequest>): Promise<void> {
    return this.pools.run('pools', () => this.letGoOfPool(request));
  }

  private async letGoOfPool(request: v.InferOutput<typeof releasePoolRequest>): Promise<void> {
    const { pool } = parsePoolId(request.PoolID);
    const hostId = await this.host.controller.hostId();
    await this.host.store.txn({ delete: [key.pool(hostId, request.PoolID)] });
    const stillHeld = (await this.heldPools()).some((entry) => entry.pool.subnet === pool.subnet);
    if (stillHeld) return;
    const claims = await this.host.store.list(key.addresses(pool.subnet));
    if (claims.length > 0) await this.host.store.txn({ delete: claims.map((claim) => claim.key) });
  }

  /**
   * An address in a pool this host holds: the one asked for, else the
   * lowest free one of its range. The gateway may be asked for by every
   * host holding the subnet; any other address is given once.
   */
  async requestAddress(request: v.InferOutput<typeof requestAddressRequest>): Promise<{ Address: string; Data: Record<string, string> }> {
    // One at a time per subnet on this host: side by side they would all pick the same lowest free address and
    // retry until they gave up; other hosts' claims still race through the store's compare.
    return this.addresses.run(parsePoolId(request.PoolID).pool.subnet, () => this.claimAddress(request));
  }

  private async claimAddress(request: v.InferOutput<typeof requestAddressRequest>): Promise<{ Address: string; Data: Record<string, string> }> {
    const { pool, subnet, range } = parsePoolId(request.PoolID);
    const hostId = await this.host.controller.hostId();
    if ((await this.host.store.get(key.pool(hostId, request.PoolID))) === undefined) {
      throw new NotFound(`pool ${request.PoolID} is not held on this host: request the pool first`);
    }
    const gateway = request.Options[REQUEST_ADDRESS_TYPE] === GATEWAY_ADDRESS_TYPE;
    const asked = request.Address === '' ? undefined : parseMember(request.Address, subnet, 'address');
    let given: bigint | undefined;
    await claimLoop(this.host.store, async () => {
      const claims = new Map<string, { claim: AddressClaim; modRevision: number }>();
      for (const kv of await this.host.store.list(key.addresses(pool.subnet))) {
        claims.set(kv.key.slice(key.addresses(pool.subnet).length), { claim: JSON.parse(kv.value) as AddressClaim, modRevision: kv.modRevision });
      }
      const candidate = asked ?? (gateway ? firstUsable(subnet) : lowestFree(subnet, range, new Set(claims.keys())));
      if (candidate === undefined) throw new Conflict(`no available addresses in pool ${request.PoolID}`);
      const text = formatAddress(subnet.family, candidate);
      const existing = claims.get(text);
      if (existing !== undefined) {
        if (gateway && existing.claim.kind === 'gateway') {
          given = candidate;
          return undefined;
        }
        throw new Conflict(`address ${text} is already in use in pool ${pool.subnet}`);
      }
      given = candidate;
      const claim: AddressClaim = { kind: gateway ? 'gateway' : 'endpoint', host: hostId };
      return {
        compare: [{ key: key.address(pool.subnet, text), modRevision: 0 }],
        put: [{ key: key.address(pool.subnet, text), value: JSON.stringify(claim) }],
      };
    });
    if (given === undefined) throw new Conflict(`no available addresses in pool ${request.PoolID}`);
    return { Address: `${formatAddress(subnet.family, given)}/${subnet.prefix}`, Data: {} };
  }

  /** Gives an endpoint's address back; the gateway stays while any host holds the subnet. */
  async releaseAddress(request: v.InferOutput<typeof releaseAddressRequest>): Promise<void> {
    const { pool, subnet } = parsePoolId(request.PoolID);
    const address = formatAddress(subnet.family, parseMember(request.Address.split('/')[0] ?? '', subnet, 'address'));
    const kv = await this.host.store.get(key.address(pool.subnet, address));
    if (kv === undefined) return;
    const claim = JSON.parse(kv.value) as AddressClaim;
    // The gateway is every host's; an address given to another host is that host's to release.
    if (claim.kind === 'gateway' || claim.host !== (await this.host.controller.hostId())) return;
    await this.host.store.txn({ compare: [{ key: kv.key, modRevision: kv.modRevision }], delete: [kv.key] });
  }

  private async heldPools(): Promise<{ hostId: string; pool: HeldPool }[]> {
    return (await this.host.store.list(POOLS)).map((kv) => ({
      hostId: kv.key.slice(POOLS.length).split('/')[0] ?? '',
      pool: JSON.parse(kv.value) as HeldPool,
    }));
  }

  private async pickSubnet(v6: boolean, heldSubnets: readonly string[]): Promise<string> {
    const existing: ExistingPool[] = [
      ...heldSubnets.map((subnet) => ({ networkName: `(pool held for Docker) ${subnet}`, subnet })),
      ...(await this.host.controller.listNetworks()).flatMap((view) =>
        view.network.ipam.config.map((pool) => ({ networkName: view.network.name, subnet: pool.subnet })),
      ),
    ];
    const routed = (await this.host.routedSubnets?.()) ?? [];
    const [picked] = resolvePools({ scope: 'local', enableIPv4: !v6, enableIPv6: v6, requested: [], existing, routed });
    if (picked === undefined) throw new Conflict('all predefined address pools have been fully subnetted');
    return picked.subnet;
  }
}

/** Builds a transaction from what the store holds and runs it until no one changed that meanwhile. */
async function claimLoop(store: Store, build: () => Promise<TxnRequest | undefined>): Promise<void> {
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    const request = await build();
    if (request === undefined || (await store.txn(request)).succeeded) return;
  }
  throw new Conflict('too many concurrent address requests, try again');
}

/** The gateway Docker's own IPAM picks when none is given: the first usable address. */
function firstUsable(subnet: Subnet): bigint | undefined {
  const unusable = unusableAddresses(subnet);
  for (let address = subnet.first; address <= subnet.last; address++) if (!unusable.has(address)) return address;
  return undefined;
}

function lowestFree(subnet: Subnet, range: Subnet, taken: ReadonlySet<string>): bigint | undefined {
  const unusable = unusableAddresses(subnet);
  for (let address = range.first; address <= range.last; address++) {
    if (!unusable.has(address) && !taken.has(formatAddress(subnet.family, address))) return address;
  }
  return undefined;
}
