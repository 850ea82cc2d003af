/**
 * Typed access to the controller's records across its two stores (the local
 * one and, when there is one, the cluster store): lists, lookups by id, by
 * name and by unique id prefix in Docker's order, and the compare-and-swap
 * retry loop that read-modify-writes use.
 *
 * The repository/ folder sits between the controller and the stores:
 * keys.ts names every key, schema.ts checks what is read back (valibot),
 * and this file reads and writes typed records. The embedded DNS reads
 * through it too, so the key layout lives in one place.
 */
import { Conflict, EndpointNotFound, InvalidArgument, NetworkNotFound, SandboxNotFound, ServiceNotFound } from '../errors.js';
import type { Logger } from '../log.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, ServiceRecord } from '../records.js';
import type { Store, TxnRequest } from '../store/types.js';
import { keys, recordId } from './keys.js';
import {
  MalformedRecord,
  type NetworkState,
  type RecordSchema,
  type SubnetTable,
  decodeRecord,
  encodeRecord,
  endpointRecord,
  networkRecord,
  networkState,
  sandboxRecord,
  serviceRecord,
  subnetTable,
} from './schema.js';

/**
 * What a read does with a record that fails its schema. 'skip' logs it and
 * leaves it out: for reads that must go on when one record is bad (listings,
 * lookups by name, restoring what can be restored). 'throw' fails with
 * MalformedRecord: for changes that must account for every record (removing
 * a network or a sandbox, placing an endpoint), where leaving one out would
 * orphan it.
 */
export type OnMalformed = 'skip' | 'throw';

/** Lost races a read-modify-write retries before it gives up with Conflict. */
export const MAX_CAS_RETRIES = 20;
/** Ids are 64 hex digits, as Docker's. */
const FULL_ID = /^[0-9a-f]{64}$/;
/** Index entries a rebuild writes per txn. */
const INDEX_WRITES_PER_TXN = 100;

/** A record as decoded from one version of its key. */
interface Decoded {
  readonly modRevision: number;
  readonly schema: RecordSchema<unknown>;
  readonly record: unknown;
}

export interface RepositoryOptions {
  /** Sandboxes, the host id, and networks of local scope with their endpoints. */
  readonly local: Store;
  /** Networks of global scope with their endpoints, shared by every host. */
  readonly cluster?: Store;
  /** Where skipped records are reported. */
  readonly logger: Logger;
}

export class Repository {
  readonly local: Store;
  readonly cluster: Store | undefined;
  private readonly logger: Logger;
  /** Per store and listed prefix, the records the last listing decoded. */
  private readonly listed = new WeakMap<Store, Map<string, Map<string, Decoded>>>();

  constructor(options: RepositoryOptions) {
    this.local = options.local;
    this.cluster = options.cluster;
    this.logger = options.logger;
  }

  /** The store holding a network, its IPAM state and its endpoints. */
  storeOf(network: Pick<NetworkRecord, 'scope' | 'name'>): Store {
    if (network.scope === 'local') return this.local;
    if (this.cluster === undefined) {
      throw new InvalidArgument(
        `network ${network.name} has ${network.scope} scope and needs a cluster store: start the daemon with --store etcd://HOST:PORT`,
      );
    }
    return this.cluster;
  }

  /** The stores networks live in: the local one, then the cluster store. */
  networkStores(): Store[] {
    return this.cluster === undefined ? [this.local] : [this.local, this.cluster];
  }

  /** Every network of both stores, oldest first. */
  async networks(onMalformed: OnMalformed): Promise<NetworkRecord[]> {
    const networks: NetworkRecord[] = [];
    for (const store of this.networkStores()) networks.push(...(await this.list(store, keys.networks, networkRecord, onMalformed)));
    return networks.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
  }

  /** The networks of local scope only: they never wait on the cluster store. */
  async localNetworks(onMalformed: OnMalformed): Promise<NetworkRecord[]> {
    return this.list(this.local, keys.networks, networkRecord, onMalformed);
  }

  /** Endpoints of every network, those of other hosts on global networks included. */
  async endpoints(onMalformed: OnMalformed): Promise<EndpointRecord[]> {
    const endpoints: EndpointRecord[] = [];
    for (const store of this.networkStores()) endpoints.push(...(await this.list(store, keys.endpoints, endpointRecord, onMalformed)));
    return endpoints;
  }

  /** A network's endpoints live in its own store: a local network's never wait on the cluster store. */
  async networkEndpoints(network: NetworkRecord, onMalformed: OnMalformed): Promise<EndpointRecord[]> {
    return this.list(this.storeOf(network), keys.networkEndpoints(network.id), endpointRecord, onMalformed);
  }

  /**
   * The endpoints joined to a sandbox, on every network, through the
   * sandbox's index (keys.sandboxEndpoint): each entry's record is read and
   * kept only if it is joined to this sandbox. Local networks' first.
   */
  async sandboxEndpoints(sandbox: Pick<SandboxRecord, 'id'>, onMalformed: OnMalformed): Promise<EndpointRecord[]> {
    const found: { endpoint: EndpointRecord; order: string }[] = [];
    for (const entry of await this.local.list(keys.sandboxEndpoints(sandbox.id))) {
      for (const [rank, store] of this.networkStores().entries()) {
        const endpoint = await this.getOrSkip(store, keys.endpoint(entry.value, recordId(entry.key)), endpointRecord, onMalformed);
        if (endpoint?.sandboxId === sandbox.id) found.push({ endpoint, order: `${rank}/${entry.value}/${endpoint.id}` });
        if (endpoint !== undefined) break;
      }
    }
    return found.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0)).map(({ endpoint }) => endpoint);
  }

  /** Adds an endpoint to a sandbox's index; before the endpoint's record names the sandbox. */
  async indexSandboxEndpoint(sandboxId: string, networkId: string, endpointId: string): Promise<void> {
    await this.local.txn({ put: [{ key: keys.sandboxEndpoint(sandboxId, endpointId), value: networkId }] });
  }

  /** Takes an endpoint out of a sandbox's index; after the endpoint's record stopped naming the sandbox. */
  async unindexSandboxEndpoint(sandboxId: string, endpointId: string): Promise<void> {
    await this.local.txn({ delete: [keys.sandboxEndpoint(sandboxId, endpointId)] });
  }

  /**
   * Makes the sandboxes' index match `endpoints` (every endpoint of every
   * network, as restore reads them): entries added for joined endpoints of
   * these sandboxes, the others deleted. Stores that had no index get one.
   */
  async reindexSandboxEndpoints(sandboxIds: ReadonlySet<string>, endpoints: readonly EndpointRecord[]): Promise<void> {
    const wanted = new Map<string, string>();
    for (const endpoint of endpoints) {
      if (endpoint.sandboxId !== undefined && sandboxIds.has(endpoint.sandboxId)) {
        wanted.set(keys.sandboxEndpoint(endpoint.sandboxId, endpoint.id), endpoint.networkId);
      }
    }
    const existing = await this.local.list(keys.sandboxIndex);
    const stale = existing.filter((kv) => wanted.get(kv.key) !== kv.value).map((kv) => kv.key);
    const have = new Set(existing.map((kv) => kv.key));
    const missing = [...wanted].filter(([key]) => !have.has(key)).map(([key, value]) => ({ key, value }));
    for (let start = 0; start < Math.max(stale.length, missing.length); start += INDEX_WRITES_PER_TXN) {
      await this.local.txn({ delete: stale.slice(start, start + INDEX_WRITES_PER_TXN), put: missing.slice(start, start + INDEX_WRITES_PER_TXN) });
    }
  }

  /** Every service of both stores, oldest first. */
  async services(onMalformed: OnMalformed): Promise<ServiceRecord[]> {
    const services: ServiceRecord[] = [];
    for (const store of this.networkStores()) services.push(...(await this.list(store, keys.services, serviceRecord, onMalformed)));
    return services.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
  }

  /** The services on a network: those its store marks as on it (keys.networkService). */
  async networkServices(network: NetworkRecord): Promise<ServiceRecord[]> {
    const store = this.storeOf(network);
    const services: ServiceRecord[] = [];
    for (const kv of await store.list(keys.networkServices(network.id))) {
      const service = await this.getOrSkip(store, keys.service(kv.value), serviceRecord, 'skip');
      if (service !== undefined) services.push(service);
    }
    return services;
  }

  /** Services: by the record's key, then the name's key in either store, then Docker's order over a listing. */
  async findService(idOrName: string, onMalformed: OnMalformed): Promise<ServiceRecord> {
    if (FULL_ID.test(idOrName)) {
      for (const store of this.networkStores()) {
        const service = await this.getOrSkip(store, keys.service(idOrName), serviceRecord, onMalformed);
        if (service !== undefined) return service;
      }
    }
    return findByIdOrName('service', idOrName, await this.services(onMalformed), () => new ServiceNotFound(idOrName));
  }

  async sandboxes(onMalformed: OnMalformed): Promise<SandboxRecord[]> {
    return this.list(this.local, keys.sandboxes, sandboxRecord, onMalformed);
  }

  async networkById(networkId: string): Promise<NetworkRecord> {
    for (const store of this.networkStores()) {
      const network = await this.get(store, keys.network(networkId), networkRecord);
      if (network !== undefined) return network;
    }
    throw new NetworkNotFound(networkId);
  }

  async sandboxById(sandboxId: string): Promise<SandboxRecord> {
    const sandbox = await this.get(this.local, keys.sandbox(sandboxId), sandboxRecord);
    if (sandbox === undefined) throw new SandboxNotFound(sandboxId);
    return sandbox;
  }

  /** The sandbox holding a name, through the name's key; undefined when the name is free. */
  async sandboxByName(name: string): Promise<SandboxRecord | undefined> {
    const sandboxId = await this.local.get(keys.sandboxName(name));
    if (sandboxId === undefined) return undefined;
    return this.get(this.local, keys.sandbox(sandboxId.value), sandboxRecord);
  }

  /**
   * Docker's lookup: full id, exact name, then a unique id prefix. A full id
   * goes through the record's key; names list the networks, which are few,
   * because two of one name can exist (made on two hosts while the cluster
   * store was out of reach) and must be reported, not one picked.
   */
  async findNetwork(idOrName: string, onMalformed: OnMalformed): Promise<NetworkRecord> {
    if (FULL_ID.test(idOrName)) {
      for (const store of this.networkStores()) {
        const network = await this.getOrSkip(store, keys.network(idOrName), networkRecord, onMalformed);
        if (network !== undefined) return network;
      }
    }
    return findByIdOrName('network', idOrName, await this.networks(onMalformed), () => new NetworkNotFound(idOrName));
  }

  /** Sandboxes and endpoints: by the record's key, then the name's key (names are unique there), then a listing for a prefix. */
  async findSandbox(idOrName: string, onMalformed: OnMalformed): Promise<SandboxRecord> {
    const direct = FULL_ID.test(idOrName) ? await this.getOrSkip(this.local, keys.sandbox(idOrName), sandboxRecord, onMalformed) : undefined;
    if (direct !== undefined) return direct;
    const named = await this.local.get(keys.sandboxName(idOrName));
    const byName = named === undefined ? undefined : await this.getOrSkip(this.local, keys.sandbox(named.value), sandboxRecord, onMalformed);
    if (byName !== undefined) return byName;
    return findByIdOrName('sandbox', idOrName, await this.sandboxes(onMalformed), () => new SandboxNotFound(idOrName));
  }

  async findEndpoint(network: NetworkRecord, idOrName: string, onMalformed: OnMalformed): Promise<EndpointRecord> {
    const store = this.storeOf(network);
    const direct = FULL_ID.test(idOrName) ? await this.getOrSkip(store, keys.endpoint(network.id, idOrName), endpointRecord, onMalformed) : undefined;
    if (direct !== undefined) return direct;
    const named = await store.get(keys.endpointName(network.id, idOrName));
    const byName = named === undefined ? undefined : await this.getOrSkip(store, keys.endpoint(network.id, named.value), endpointRecord, onMalformed);
    if (byName !== undefined) return byName;
    return findByIdOrName('endpoint', idOrName, await this.networkEndpoints(network, onMalformed), () => new EndpointNotFound(idOrName));
  }

  /** A network's state with the revision to compare against; undefined once the network's removal began. */
  async networkState(network: NetworkRecord): Promise<{ state: NetworkState; modRevision: number } | undefined> {
    const kv = await this.storeOf(network).get(keys.networkState(network.id));
    return kv === undefined ? undefined : { state: decodeRecord(kv, networkState), modRevision: kv.modRevision };
  }

  /** A store's subnet table with the revision to compare against (0 while no subnet is in use). */
  async subnets(store: Store): Promise<{ table: SubnetTable; modRevision: number }> {
    const kv = await store.get(keys.subnets);
    return kv === undefined ? { table: {}, modRevision: 0 } : { table: decodeRecord(kv, subnetTable), modRevision: kv.modRevision };
  }

  /** Stores an endpoint as it is now, unconditionally. */
  async writeEndpoint(network: NetworkRecord, endpoint: EndpointRecord): Promise<void> {
    await this.storeOf(network).txn({ put: [put.endpoint(network, endpoint)] });
  }

  /** Stores a sandbox as it is now, unconditionally. */
  async writeSandbox(sandbox: SandboxRecord): Promise<void> {
    await this.local.txn({ put: [put.sandbox(sandbox)] });
  }

  /** Deletes a sandbox's record and frees its name. */
  async deleteSandbox(sandbox: SandboxRecord): Promise<void> {
    const index = (await this.local.list(keys.sandboxEndpoints(sandbox.id))).map((kv) => kv.key);
    await this.local.txn({ delete: [keys.sandbox(sandbox.id), keys.sandboxName(sandbox.name), ...index] });
  }

  private async get<T>(store: Store, key: string, schema: RecordSchema<T>): Promise<T | undefined> {
    const kv = await store.get(key);
    return kv === undefined ? undefined : decodeRecord(kv, schema);
  }

  /** `get`, where a malformed record is skipped (logged) or thrown as `onMalformed` says. */
  private async getOrSkip<T>(store: Store, key: string, schema: RecordSchema<T>, onMalformed: OnMalformed): Promise<T | undefined> {
    try {
      return await this.get(store, key, schema);
    } catch (err) {
      if (onMalformed === 'throw' || !(err instanceof MalformedRecord)) throw err;
      this.logger.warn(`ignoring ${err.message}`);
      return undefined;
    }
  }

  /**
   * Every record under `prefix`, each parsed and checked once per version:
   * a key listed again at the same modRevision gives the record decoded
   * the time before (records are never changed in place; their types are
   * readonly). What one listing decoded replaces the previous listing's, so
   * records gone from the store leave the cache with it.
   */
  private async list<T>(store: Store, prefix: string, schema: RecordSchema<T>, onMalformed: OnMalformed): Promise<T[]> {
    let listings = this.listed.get(store);
    if (listings === undefined) this.listed.set(store, (listings = new Map()));
    const previous = listings.get(prefix);
    const decoded = new Map<string, Decoded>();
    const records: T[] = [];
    for (const kv of await store.list(prefix)) {
      const hit = previous?.get(kv.key);
      try {
        const record = hit !== undefined && hit.modRevision === kv.modRevision && hit.schema === schema ? (hit.record as T) : decodeRecord(kv, schema);
        decoded.set(kv.key, { modRevision: kv.modRevision, schema, record });
        records.push(record);
      } catch (err) {
        if (onMalformed === 'throw' || !(err instanceof MalformedRecord)) throw err;
        this.logger.warn(`ignoring ${err.message}`);
      }
    }
    listings.set(prefix, decoded);
    return records;
  }
}

/** The puts that store each kind of value under its key. */
export const put = {
  network: (network: NetworkRecord) => ({ key: keys.network(network.id), value: encodeRecord(network) }),
  /** Under the network it was found in, which is the one its record names. */
  endpoint: (network: Pick<NetworkRecord, 'id'>, endpoint: EndpointRecord) => ({
    key: keys.endpoint(network.id, endpoint.id),
    value: encodeRecord(endpoint),
  }),
  sandbox: (sandbox: SandboxRecord) => ({ key: keys.sandbox(sandbox.id), value: encodeRecord(sandbox) }),
  service: (service: ServiceRecord) => ({ key: keys.service(service.id), value: encodeRecord(service) }),
  networkState: (networkId: string, state: NetworkState) => ({ key: keys.networkState(networkId), value: encodeRecord(state) }),
  subnets: (table: SubnetTable) => ({ key: keys.subnets, value: encodeRecord(table) }),
};

/**
 * Retries a read-modify-write until its compares hold; `build` reads afresh
 * each time and returns the transaction, or undefined when there is nothing
 * left to do. Conflict after MAX_CAS_RETRIES lost races.
 */
export async function casLoop(store: Store, build: () => Promise<TxnRequest | undefined>): Promise<void> {
  for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
    const request = await build();
    if (request === undefined) return;
    if ((await store.txn(request)).succeeded) return;
  }
  throw new Conflict('too many concurrent changes, try again');
}

/**
 * Docker's lookup order: full id, exact name, then a unique id prefix. Two
 * items of one name (networks made on two hosts while the cluster store was
 * out of reach) or several of one prefix are ambiguous: none is picked.
 */
export function findByIdOrName<T extends { readonly id: string; readonly name: string }>(
  kind: string,
  idOrName: string,
  items: readonly T[],
  notFound: () => Error,
): T {
  const found = findByIdOrNameOptional(kind, idOrName, items);
  if (found === undefined) throw notFound();
  return found;
}

/** Like findByIdOrName, undefined when nothing matches; ambiguity is still an error. */
export function findByIdOrNameOptional<T extends { readonly id: string; readonly name: string }>(
  kind: string,
  idOrName: string,
  items: readonly T[],
): T | undefined {
  if (idOrName === '') return undefined;
  const byId = items.find((item) => item.id === idOrName);
  if (byId !== undefined) return byId;
  const byName = items.filter((item) => item.name === idOrName);
  if (byName.length > 1) {
    throw new InvalidArgument(`${kind} ${idOrName} is ambiguous (${byName.length} matches found based on name)`);
  }
  if (byName[0] !== undefined) return byName[0];
  const byPrefix = items.filter((item) => item.id.startsWith(idOrName));
  if (byPrefix.length > 1) {
    throw new InvalidArgument(`${kind} ${idOrName} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
  }
  return byPrefix[0];
}
