/**
 * Networks: making one (name, driver options, IPAM pools and the driver's
 * reservations decided in one compare-and-swap), removing and pruning, and
 * the views that list and inspect return.
 */
import { allClaims } from './addresses.js';
import { type ControllerContext, bestEffort, driverOf, failedParts, isPredefined, newId, timestamp } from './context.js';
import type { NetworkDriver } from './driver.js';
import { type Filters, matchesListFilters, matchesPruneFilters } from './filters.js';
import { type PoolRequest, resolvePools } from './ipam.js';
import { claimLocalName, releaseLocalName } from './names.js';
import type { NetworkCreateRequest, NetworkView } from './types.js';
import { validateMetadata, validateName } from './validate.js';
import { Conflict, Forbidden, InvalidArgument } from '../errors.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, Scope } from '../records.js';
import { keys } from '../repository/keys.js';
import { MAX_CAS_RETRIES, casLoop, put } from '../repository/repository.js';
import type { SubnetOwner } from '../repository/schema.js';
import type { Store } from '../store/types.js';

/** Makes a network: its records first, then the driver's kernel state; a driver failure undoes both. */
export async function createNetwork(context: ControllerContext, request: NetworkCreateRequest): Promise<NetworkView> {
  if (request.ingress === true) {
    // As in Docker: the routing mesh runs over one overlay, made here or on demand (ingress-network.ts).
    if ((request.driver ?? context.defaultDriver) !== 'overlay') throw new InvalidArgument('an ingress network must use the overlay driver');
    const existing = await findIngressNetwork(context);
    if (existing !== undefined) throw new Conflict(`ingress network ${existing.name} already exists; there can be only one`);
  }
  const network = await reserveNetwork(context, request);
  const driver = driverOf(context, network);
  try {
    await driver.createNetwork(network);
  } catch (err) {
    await bestEffort(context, `undo network ${network.name}`, () => driver.deleteNetwork(network));
    await releaseNetwork(context, network);
    throw err;
  }
  context.emit({ type: 'network', action: 'create', network });
  return { network, endpoints: [], sandboxes: [] };
}

/**
 * Makes each predefined network no local network has the name of. A failure
 * is logged, not thrown: the host keeps serving without that network, as
 * it would if an operator had removed it.
 */
export async function createPredefinedNetworks(context: ControllerContext, requests: readonly NetworkCreateRequest[]): Promise<void> {
  const local = await context.records.localNetworks('skip');
  for (const request of requests) {
    const existing = local.find((network) => network.name === request.name);
    const driver = request.driver ?? context.defaultDriver;
    if (existing !== undefined) {
      if (existing.driver !== driver) {
        context.logger.warn(`network ${request.name} has driver ${existing.driver}, not ${driver}: it stands in for the predefined ${request.name} network`);
      }
      continue;
    }
    try {
      await createNetwork(context, request);
    } catch (err) {
      context.logger.error(`predefined network ${request.name} not made: ${(err as Error).message}`);
    }
  }
}

/** The ingress network (ingress-network.ts), if there is one. */
export async function findIngressNetwork(context: ControllerContext): Promise<NetworkRecord | undefined> {
  return (await context.records.networks('skip')).find((n) => n.ingress && n.scope !== 'local' && n.removing !== true);
}

/** The networks matching Docker's list filters, with their endpoints, sandboxes and peers. */
export async function listNetworks(context: ControllerContext, filters: Filters): Promise<NetworkView[]> {
  const networks = await context.records.networks('skip');
  const endpoints = await context.records.endpoints('skip');
  const sandboxes = await sandboxMap(context);
  const views: NetworkView[] = [];
  for (const network of networks) {
    const own = endpoints.filter((e) => e.networkId === network.id);
    if (matchesListFilters(network, { endpointCount: own.length, builtin: isPredefined(context, network) }, filters)) {
      views.push(await viewOf(context, network, own, sandboxes));
    }
  }
  return views;
}

export async function inspectNetwork(context: ControllerContext, idOrName: string): Promise<NetworkView> {
  const network = await context.records.findNetwork(idOrName, 'skip');
  const endpoints = await context.records.networkEndpoints(network, 'skip');
  return viewOf(context, network, endpoints, await sandboxMap(context));
}

async function sandboxMap(context: ControllerContext): Promise<Map<string, SandboxRecord>> {
  return new Map((await context.records.sandboxes('skip')).map((sandbox) => [sandbox.id, sandbox]));
}

async function viewOf(
  context: ControllerContext,
  network: NetworkRecord,
  endpoints: readonly EndpointRecord[],
  sandboxes: ReadonlyMap<string, SandboxRecord>,
): Promise<NetworkView> {
  const joined = new Map<string, SandboxRecord>();
  for (const endpoint of endpoints) {
    const sandbox = endpoint.sandboxId === undefined ? undefined : sandboxes.get(endpoint.sandboxId);
    if (sandbox !== undefined) joined.set(sandbox.id, sandbox);
  }
  const peers = await context.drivers.get(network.driver)?.peers?.(network);
  return { network, endpoints, sandboxes: [...joined.values()], ...(peers !== undefined ? { peers } : {}) };
}

/** Removes every network without endpoints that matches the filters, predefined ones aside, as Docker does; returns their names. */
export async function pruneNetworks(context: ControllerContext, filters: Filters, now: Date): Promise<string[]> {
  const removed: string[] = [];
  const failures: { what: string; error: unknown }[] = [];
  for (const network of await context.records.networks('skip')) {
    if (isPredefined(context, network) || !matchesPruneFilters(network, filters, now)) continue;
    if ((await context.records.networkEndpoints(network, 'throw')).length > 0) continue;
    if ((await servicesOn(context, network)).length > 0) continue;
    try {
      await removeNetwork(context, network);
      removed.push(network.name);
    } catch (error) {
      failures.push({ what: network.name, error });
    }
  }
  if (failures.length > 0) throw failedParts(`prune removed ${removed.length} networks; failed`, failures);
  return removed;
}

/** Removes a network; refused for a predefined one and while it has endpoints. */
export async function removeNetwork(context: ControllerContext, network: NetworkRecord): Promise<void> {
  if (isPredefined(context, network)) throw new Forbidden(`${network.name} is a pre-defined network and cannot be removed`);
  const store = context.records.storeOf(network);
  const stateKv = await store.get(keys.networkState(network.id));
  const endpoints = await context.records.networkEndpoints(network, 'throw');
  if (endpoints.length > 0) {
    const names = endpoints.map((e) => `name:"${e.name}" id:"${e.id.slice(0, 12)}"`).join(', ');
    throw new Forbidden(`error while removing network: network ${network.name} has active endpoints (${names})`);
  }
  const services = await servicesOn(context, network);
  if (services.length > 0) {
    throw new Forbidden(`error while removing network: network ${network.name} is in use by service ${services.join(', ')}`);
  }
  // Deleting the state key under compares refuses removal if an endpoint appeared meanwhile, and
  // makes later endpoint creation on this network fail. The record says the removal began, so a
  // restart finishes it.
  const guard = await store.txn({
    compare: [
      { key: keys.networkState(network.id), modRevision: stateKv?.modRevision ?? 0 },
      { key: keys.networkEndpoints(network.id), modRevision: 0, prefix: true },
      { key: keys.networkServices(network.id), modRevision: 0, prefix: true },
    ],
    put: [put.network({ ...network, removing: true })],
    delete: [keys.networkState(network.id)],
  });
  if (!guard.succeeded) throw new Conflict(`network ${network.name} changed while it was being removed; try again`);
  try {
    await driverOf(context, network).deleteNetwork(network);
  } catch (err) {
    await store.txn({
      put: [put.network(withoutRemoving(network)), ...(stateKv !== undefined ? [{ key: stateKv.key, value: stateKv.value }] : [])],
    });
    throw err;
  }
  await releaseNetwork(context, network);
  context.emit({ type: 'network', action: 'remove', network });
}

/** The names (or ids, for a record that cannot be read) of the services marked as on the network. */
async function servicesOn(context: ControllerContext, network: NetworkRecord): Promise<string[]> {
  const marks = await context.records.storeOf(network).list(keys.networkServices(network.id));
  if (marks.length === 0) return [];
  const names = new Map((await context.records.networkServices(network)).map((service) => [service.id, service.name]));
  return marks.map((mark) => names.get(mark.value) ?? mark.value.slice(0, 12));
}

function withoutRemoving(network: NetworkRecord): NetworkRecord {
  const { removing: _removing, ...rest } = network;
  return rest;
}

/** Checks the request and stores the network's records, its name and its subnets. */
async function reserveNetwork(context: ControllerContext, request: NetworkCreateRequest): Promise<NetworkRecord> {
  validateName('network', request.name);
  validateMetadata('labels', request.labels);
  validateMetadata('driver options', request.options);
  validateMetadata('IPAM options', request.ipam?.options);
  const driverName = request.driver ?? context.defaultDriver;
  const driver = context.drivers.get(driverName);
  if (driver === undefined) {
    throw new InvalidArgument(`unknown network driver "${driverName}" (available: ${[...context.drivers.keys()].join(', ')})`);
  }
  const ipamDriver = request.ipam?.driver ?? 'default';
  if (ipamDriver !== 'default') throw new InvalidArgument(`unknown IPAM driver "${ipamDriver}" (available: default)`);
  if (request.ipam?.options !== undefined && Object.keys(request.ipam.options).length > 0) {
    throw new InvalidArgument(`unknown IPAM option "${Object.keys(request.ipam.options)[0]}"`);
  }
  const requestedPools = request.ipam?.config ?? [];
  const enableIPv6 = request.enableIPv6 ?? false;
  const enableIPv4 = request.enableIPv4 ?? true;
  if (!driver.usesIpam && (requestedPools.length > 0 || enableIPv6)) {
    throw new InvalidArgument(`the ${driver.name} driver assigns no addresses: --subnet, --ipv6 and other IPAM flags do not apply`);
  }
  if (driver.singleNetwork === true && (await context.records.networks('skip')).some((network) => network.driver === driver.name)) {
    throw new Forbidden(`only one instance of "${driver.name}" network is allowed`);
  }
  const id = newId();
  const store = context.records.storeOf({ scope: driver.scope, name: request.name });
  const claimed = store === context.records.local ? await claimLocalName(context, request.name, id) : false;
  try {
    return await storeNetwork(context, request, driver, store, id, { ipamDriver, requestedPools, enableIPv4, enableIPv6 });
  } catch (err) {
    if (claimed) await bestEffort(context, `release the name ${request.name} in the cluster store`, () => releaseLocalName(context, request.name));
    throw err;
  }
}

async function storeNetwork(
  context: ControllerContext,
  request: NetworkCreateRequest,
  driver: NetworkDriver,
  store: Store,
  id: string,
  ipam: { ipamDriver: string; requestedPools: readonly PoolRequest[]; enableIPv4: boolean; enableIPv6: boolean },
): Promise<NetworkRecord> {
  const { ipamDriver, requestedPools, enableIPv4, enableIPv6 } = ipam;
  const cluster = context.records.cluster;
  // Only local networks skip this host's routes, as in Docker: a global network's subnet serves every host,
  // and this host's routes say nothing about the others'.
  const routed = driver.usesIpam && driver.scope === 'local' ? ((await context.namespaces.routedSubnets?.()) ?? []) : [];
  for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
    for (const other of context.records.networkStores()) {
      if ((await other.get(keys.networkName(request.name))) !== undefined) {
        throw new Conflict(`network with name ${request.name} already exists`);
      }
    }
    if (store === cluster && (await store.list(keys.localNameClaims(request.name))).length > 0) {
      throw new Conflict(`network with name ${request.name} already exists`);
    }
    const subnets = await context.records.subnets(store);
    // Subnets of the other store count too: a local bridge and an overlay must not overlap on this host.
    const existing: { subnet: string; networkName: string }[] = [];
    for (const other of context.records.networkStores()) {
      const { table } = other === store ? subnets : await context.records.subnets(other);
      for (const [subnet, owner] of Object.entries(table)) existing.push({ subnet, networkName: owner.networkName });
    }
    const pools = driver.usesIpam
      ? resolvePools({ scope: driver.scope === 'local' ? 'local' : 'global', enableIPv4, enableIPv6, requested: [...requestedPools], existing, routed })
      : [];
    const spec = {
      id,
      name: request.name,
      driver: driver.name,
      scope: driver.scope as Scope,
      internal: request.internal ?? false,
      attachable: request.attachable ?? false,
      ingress: request.ingress ?? false,
      enableIPv4: driver.usesIpam && enableIPv4,
      enableIPv6: driver.usesIpam && enableIPv6,
      ipam: { driver: ipamDriver, options: {}, config: pools },
      options: { ...(request.options ?? {}) },
      labels: { ...(request.labels ?? {}) },
    };
    driver.validate(spec);
    const reserved = (await driver.reserve?.(spec, store)) ?? {};
    const reservedKeys = reserved.keys ?? [];
    const network: NetworkRecord = {
      ...spec,
      options: { ...spec.options, ...(reserved.options ?? {}) },
      created: timestamp(context.now()),
      ...(reservedKeys.length > 0 ? { reservedKeys } : {}),
    };
    const nextSubnets: Record<string, SubnetOwner> = { ...subnets.table };
    for (const pool of pools) nextSubnets[pool.subnet] = { networkId: id, networkName: request.name };
    const result = await store.txn({
      compare: [
        { key: keys.networkName(request.name), modRevision: 0 },
        // A cluster-wide name must not be any host's local network's name (see names.ts).
        ...(store === cluster ? [{ key: keys.localNameClaims(request.name), modRevision: 0, prefix: true }] : []),
        { key: keys.subnets, modRevision: subnets.modRevision },
        ...reservedKeys.map((reservedKey) => ({ key: reservedKey, modRevision: 0 })),
      ],
      put: [
        put.network(network),
        put.networkState(id, {}),
        { key: keys.networkName(request.name), value: id },
        put.subnets(nextSubnets),
        ...reservedKeys.map((reservedKey) => ({ key: reservedKey, value: id })),
      ],
    });
    if (result.succeeded) return network;
  }
  throw new Conflict(`network ${request.name}: too many concurrent changes, try again`);
}

/** Deletes a network's records; endpoints must already be gone. */
export async function releaseNetwork(context: ControllerContext, network: NetworkRecord): Promise<void> {
  if (network.scope === 'local' && context.records.cluster !== undefined) {
    await bestEffort(context, `release the name ${network.name} in the cluster store`, () => releaseLocalName(context, network.name));
  }
  const store = context.records.storeOf(network);
  context.addresses.forget(network.id);
  // Claims no endpoint holds: none, unless an older netctl on another host removed an endpoint after its claims were moved.
  const leftovers = await allClaims(store, network.id);
  await casLoop(store, async () => {
    const subnets = await context.records.subnets(store);
    const next: Record<string, SubnetOwner> = {};
    for (const [subnet, owner] of Object.entries(subnets.table)) {
      if (owner.networkId !== network.id) next[subnet] = owner;
    }
    const empty = Object.keys(next).length === 0;
    return {
      compare: [{ key: keys.subnets, modRevision: subnets.modRevision }],
      put: empty ? [] : [put.subnets(next)],
      delete: [
        keys.network(network.id),
        keys.networkState(network.id),
        keys.networkName(network.name),
        ...(network.reservedKeys ?? []),
        ...leftovers,
        ...(empty ? [keys.subnets] : []),
      ],
    };
  });
}
