/**
 * Services: a name with a virtual IP per network (vip mode) or none (dnsrr
 * mode), whose tasks are the endpoints that name it. A service lives in the
 * store of its networks' scope, as they do, so a service on overlay networks
 * is made on one host and seen on all. Its record, its name, a mark on each
 * of its networks, its virtual IPs (address claims, so no endpoint can
 * get one) and its published ports (port claims, so no other service can
 * publish one; ports.ts) are written in one compare-and-swap; the embedded
 * DNS follows the records and answers the names.
 * The load balancer (ingress/balancer.ts) follows the same records and
 * forwards each virtual IP to the live tasks.
 */
import { type ControllerContext, newId, refuseConfigOnly, rulesCatchUp, timestamp } from './context.js';
import { type Filters, matchesLabel } from './filters.js';
import { ensureIngressNetwork } from './ingress-network.js';
import { checkPortsFree, ownPortClaims, portClaims, wantedPorts } from './ports.js';
import type { ServiceCreateRequest, ServiceView } from './types.js';
import { validateMetadata } from './validate.js';
import { Conflict, InvalidArgument, NetctlError, NetworkNotFound, ServiceNotFound } from '../errors.js';
import { type EndpointMode, type EndpointRecord, type NetworkRecord, type ServiceNetwork, type ServiceRecord, bareAddress, routedByMesh } from '../records.js';
import { keys } from '../repository/keys.js';
import { casLoop, put } from '../repository/repository.js';
import { decodeRecord, encodeRecord, endpointRecord } from '../repository/schema.js';
import type { KeyValue, Store, TxnRequest } from '../store/types.js';

/** Docker's service names: a DNS label of letters, digits, '-', '_' and '.', not starting with '-' or '.'. */
const SERVICE_NAME = /^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,62}$/;
/** Each network costs up to 3 keys in the create txn and each port one (ports.ts MAX_PORTS); together they stay within etcd's 128 operations. */
const MAX_NETWORKS = 32;
/** Operations a txn may hold (etcd's --max-txn-ops default is 128). */
const OPS_PER_TXN = 100;
const LIST_KEYS = new Set(['id', 'name', 'label']);

/** Refuses a name Docker would refuse for a service. */
export function validateServiceName(name: string): void {
  if (typeof name !== 'string' || name === '') throw new InvalidArgument('service name must not be empty');
  if (name.length > 63) throw new InvalidArgument(`service name "${name.slice(0, 20)}…" is longer than 63 characters`);
  if (!SERVICE_NAME.test(name)) {
    throw new InvalidArgument(
      `invalid service name "${name}": letters, digits, '-', '_' and '.' only, not starting with '-' or '.'`,
    );
  }
}

/**
 * Makes a service on its networks: checks everything first, then writes the
 * record, the name, the port claims, the networks' marks and the VIP claims
 * in one txn; a failure writes nothing.
 */
export async function createService(context: ControllerContext, request: ServiceCreateRequest): Promise<ServiceView> {
  validateServiceName(request.name);
  validateMetadata('labels', request.labels);
  const endpointMode: EndpointMode = request.endpointMode ?? 'vip';
  if (endpointMode !== 'vip' && endpointMode !== 'dnsrr') {
    throw new InvalidArgument(`invalid endpoint mode "${String(endpointMode)}": vip or dnsrr`);
  }
  const requested = request.networks ?? [];
  if (!Array.isArray(requested)) throw new InvalidArgument('networks must be a list of network names or ids');
  if (requested.length > MAX_NETWORKS) throw new InvalidArgument(`service ${request.name}: too many networks (${requested.length}, at most ${MAX_NETWORKS})`);
  const networks: NetworkRecord[] = [];
  for (const idOrName of requested) {
    if (typeof idOrName !== 'string') throw new InvalidArgument('networks must be a list of network names or ids');
    const network = await context.records.findNetwork(idOrName, 'skip');
    if (network.removing === true) throw new NetworkNotFound(idOrName);
    refuseConfigOnly(network);
    if (networks.some((other) => other.id === network.id)) {
      throw new InvalidArgument(`service ${request.name}: network ${network.name} is given more than once`);
    }
    if (!driverUsesIpam(context, network)) {
      throw new InvalidArgument(`service ${request.name}: network ${network.name} (driver ${network.driver}) assigns no addresses, so it cannot carry a service`);
    }
    networks.push(network);
  }
  const wanted = wantedPorts(request.ports, endpointMode);
  if (wanted.length > 0 && networks.length === 0) {
    throw new InvalidArgument(`service ${request.name}: published ports need a network, which its tasks join to be reached`);
  }
  const first = networks[0];
  const mixed = first === undefined ? undefined : networks.find((network) => isLocal(network) !== isLocal(first));
  if (first !== undefined && mixed !== undefined) {
    throw new InvalidArgument(
      `service ${request.name}: its networks mix scopes (${first.name} is ${first.scope}, ${mixed.name} is ${mixed.scope}); give only local or only global networks`,
    );
  }
  const scope = first?.scope ?? 'local';
  const store = context.records.storeOf({ scope, name: request.name });
  // The other store's name is checked, not compared: two hosts could still make a local and a global
  // service of one name at once, and lookups by that name then report it as ambiguous (as for networks).
  for (const other of context.records.networkStores()) {
    if (other !== store && (await other.get(keys.serviceName(request.name))) !== undefined) {
      throw new Conflict(`service with name ${request.name} already exists`);
    }
  }
  await checkPortsFree(context, wanted);
  // The mesh across hosts runs over Docker's `ingress` network; made now, it stays, as Docker's does.
  if (wanted.some((port) => routedByMesh(scope, port))) await ensureIngressNetwork(context);
  const id = newId();
  let created: ServiceRecord | undefined;
  let attempts = 0;
  await casLoop(store, async () => {
    attempts += 1;
    if ((await store.get(keys.serviceName(request.name))) !== undefined) {
      throw new Conflict(`service with name ${request.name} already exists`);
    }
    const claims = await portClaims(context, store, wanted, id);
    const compare: NonNullable<TxnRequest['compare']>[number][] = [{ key: keys.serviceName(request.name), modRevision: 0 }, ...claims.compare];
    const puts = [{ key: keys.serviceName(request.name), value: id }, ...claims.put];
    const onNetworks: ServiceNetwork[] = [];
    for (const network of networks) {
      const state = await context.records.networkState(network);
      // Its removal began: it takes no more endpoints, nor services.
      if (state === undefined) throw new NetworkNotFound(network.name);
      compare.push({ key: keys.networkState(network.id), modRevision: state.modRevision });
      puts.push({ key: keys.networkService(network.id, id), value: id });
      if (endpointMode === 'dnsrr') {
        onNetworks.push({ networkId: network.id });
        continue;
      }
      const virtualIp = await allocateVirtualIp(context, store, network, request.name, attempts > 1);
      const claim = keys.address(network.id, bareAddress(virtualIp));
      compare.push({ key: claim, modRevision: 0 });
      puts.push({ key: claim, value: id });
      onNetworks.push({ networkId: network.id, virtualIp });
    }
    created = {
      id,
      name: request.name,
      endpointMode,
      labels: { ...(request.labels ?? {}) },
      created: timestamp(context.now()),
      scope,
      networks: onNetworks,
      ...(claims.ports.length > 0 ? { ports: claims.ports } : {}),
    };
    return { compare, put: [put.service(created), ...puts] };
  }).catch((err: unknown) => {
    // What this daemon believed allocated may include VIPs that were never claimed.
    for (const network of networks) context.addresses.forget(network.id);
    throw err;
  });
  if (created === undefined) throw new NetctlError('Internal', 'service was not created');
  await rulesCatchUp(context, scope, [keys.service(id)]);
  return { service: created, tasks: [], balancing: (await context.serviceRules()?.balancing(id)) ?? [] };
}

/** The services matching Docker's service list filters (id prefix, name prefix, label), with their tasks. */
export async function listServices(context: ControllerContext, filters: Filters): Promise<ServiceView[]> {
  for (const key of Object.keys(filters)) {
    if (!LIST_KEYS.has(key)) throw new InvalidArgument(`invalid filter '${key}'`);
  }
  const services = (await context.records.services('skip')).filter((service) => matchesFilters(service, filters));
  if (services.length === 0) return [];
  return viewsOf(context, services);
}

export async function inspectService(context: ControllerContext, idOrName: string): Promise<ServiceView> {
  const [view] = await viewsOf(context, [await context.records.findService(idOrName, 'skip')]);
  if (view === undefined) throw new ServiceNotFound(idOrName);
  return view;
}

/**
 * Removes a service: its record, name, port claims, marks and virtual IPs go
 * in one txn, and its ports and VIPs are free for others again. Its tasks
 * stay connected to their networks but are no longer tasks: their records
 * drop the service in that same txn when it stays within etcd's limit on
 * operations, else each right after. A task whose host rewrites its record
 * meanwhile may keep the id of a service that is gone; readers (DNS,
 * inspect) ignore such an id.
 */
export async function removeService(context: ControllerContext, service: ServiceRecord): Promise<void> {
  const store = context.records.storeOf({ scope: service.scope, name: service.name });
  const released: { networkId: string; address: string }[] = [];
  let leftTasks: string[] = [];
  await casLoop(store, async () => {
    const current = await store.get(keys.service(service.id));
    if (current === undefined) return undefined;
    released.length = 0;
    const deletes = [keys.service(service.id), ...service.networks.map((on) => keys.networkService(on.networkId, service.id))];
    // The name, each port claim and each VIP claim go only while they are still this service's.
    const nameKv = await store.get(keys.serviceName(service.name));
    if (nameKv?.value === service.id) deletes.push(nameKv.key);
    deletes.push(...(await ownPortClaims(store, service)));
    for (const on of service.networks) {
      if (on.virtualIp === undefined) continue;
      const claim = await store.get(keys.address(on.networkId, bareAddress(on.virtualIp)));
      if (claim?.value !== service.id) continue;
      deletes.push(claim.key);
      released.push({ networkId: on.networkId, address: bareAddress(on.virtualIp) });
    }
    const tasks = await taskKvs(store, service);
    const inOneTxn = deletes.length + 2 * tasks.length + 1 <= OPS_PER_TXN;
    leftTasks = inOneTxn ? [] : tasks.map((kv) => kv.key);
    return {
      compare: [
        { key: current.key, modRevision: current.modRevision },
        ...(inOneTxn ? tasks.map((kv) => ({ key: kv.key, modRevision: kv.modRevision })) : []),
      ],
      put: inOneTxn ? tasks.map((kv) => ({ key: kv.key, value: encodeRecord(withoutService(decodeRecord(kv, endpointRecord))) })) : [],
      delete: deletes,
    };
  });
  for (const { networkId, address } of released) context.addresses.release(networkId, [address]);
  // The rules go with the service; its tasks' records are rewritten below, but tasks of no service are no tasks.
  await rulesCatchUp(context, service.scope, [keys.service(service.id)]);
  for (const key of leftTasks) {
    await casLoop(store, async () => {
      const kv = await store.get(key);
      if (kv === undefined) return undefined;
      const endpoint = decodeRecord(kv, endpointRecord);
      if (endpoint.service !== service.id) return undefined;
      return { compare: [{ key, modRevision: kv.modRevision }], put: [{ key, value: encodeRecord(withoutService(endpoint)) }] };
    });
  }
}

/**
 * The service an endpoint of `network` becomes a task of, checked: it
 * exists and is on that network. The caller compares the returned key's
 * revision in the endpoint's txn, so a service removed meanwhile gets no task.
 */
export async function taskServiceFor(
  context: ControllerContext,
  network: NetworkRecord,
  idOrName: string,
): Promise<ServiceRecord> {
  const service = await context.records.findService(idOrName, 'skip');
  if (!service.networks.some((on) => on.networkId === network.id)) {
    throw new InvalidArgument(`service ${service.name} is not on network ${network.name}; a task must join one of its networks`);
  }
  return service;
}

async function viewsOf(context: ControllerContext, services: readonly ServiceRecord[]): Promise<ServiceView[]> {
  const endpoints = await context.records.endpoints('skip');
  const sandboxes = new Map((await context.records.sandboxes('skip')).map((sandbox) => [sandbox.id, sandbox.name]));
  return Promise.all(
    services.map(async (service) => {
      const networkIds = new Set(service.networks.map((on) => on.networkId));
      const tasks = endpoints
        .filter((endpoint) => endpoint.service === service.id && networkIds.has(endpoint.networkId))
        .map((endpoint) => {
          const sandboxName = endpoint.sandboxId === undefined ? undefined : sandboxes.get(endpoint.sandboxId);
          return { endpoint, ...(sandboxName !== undefined ? { sandboxName } : {}) };
        });
      return { service, tasks, balancing: (await context.serviceRules()?.balancing(service.id)) ?? [] };
    }),
  );
}

/** The endpoint records, on the service's networks, that name it. */
async function taskKvs(store: Store, service: ServiceRecord): Promise<KeyValue[]> {
  const found: KeyValue[] = [];
  for (const on of service.networks) {
    for (const kv of await store.list(keys.networkEndpoints(on.networkId))) {
      try {
        if (decodeRecord(kv, endpointRecord).service === service.id) found.push(kv);
      } catch {
        // A malformed endpoint is left as it is; readers skip it anyway.
      }
    }
  }
  return found;
}

async function allocateVirtualIp(
  context: ControllerContext,
  store: Store,
  network: NetworkRecord,
  serviceName: string,
  reread: boolean,
): Promise<string> {
  if (!network.ipam.config.some((pool) => !pool.subnet.includes(':'))) {
    throw new InvalidArgument(`service ${serviceName}: network ${network.name} has no IPv4 subnet to take a virtual IP from (use --endpoint-mode dnsrr)`);
  }
  try {
    const { ipv4Address } = await context.addresses.allocate(store, network, { ipv4: true }, reread);
    if (ipv4Address === undefined) throw new NetctlError('Internal', `no virtual IP allocated on network ${network.name}`);
    return ipv4Address;
  } catch (err) {
    if (err instanceof Conflict) {
      throw new Conflict(`service ${serviceName}: no virtual IP left on network ${network.name} (${err.message})`);
    }
    throw err;
  }
}

function matchesFilters(service: ServiceRecord, filters: Filters): boolean {
  const any = (key: string, test: (value: string) => boolean): boolean => {
    const values = filters[key];
    return values === undefined || values.length === 0 || values.some(test);
  };
  return (
    any('id', (v) => service.id.startsWith(v)) &&
    any('name', (v) => service.name.startsWith(v)) &&
    (filters['label'] ?? []).every((spec) => matchesLabel(service.labels, spec))
  );
}

function driverUsesIpam(context: ControllerContext, network: NetworkRecord): boolean {
  return context.drivers.get(network.driver)?.usesIpam ?? network.ipam.config.length > 0;
}

function isLocal(network: NetworkRecord): boolean {
  return network.scope === 'local';
}

function withoutService(endpoint: EndpointRecord): EndpointRecord {
  const { service: _service, ...rest } = endpoint;
  return rest;
}
