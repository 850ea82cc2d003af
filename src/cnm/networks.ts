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
import type { NetworkCreateRequest, NetworkCreated, NetworkView } from './types.js';
import { validateMetadata, validateName } from './validate.js';
import { Conflict, Forbidden, InvalidArgument } from '../errors.js';
import type { EndpointRecord, IpamPoolConfig, NetworkRecord, SandboxRecord, Scope } from '../records.js';
import { keys } from '../repository/keys.js';
import { MAX_CAS_RETRIES, casLoop, put } from '../repository/repository.js';
import type { SubnetOwner } from '../repository/schema.js';
import type { Store } from '../store/types.js';

/** Makes a network: its records first, then the driver's kernel state; a driver failure undoes both. */
export async function createNetwork(context: ControllerContext, asked: NetworkCreateRequest): Promise<NetworkCreated> {
  const request = asked.configFrom === undefined ? asked : await fromConfigNetwork(context, asked);
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
  return { network, endpoints: [], sandboxes: [], warnings: unusedOptions(driver, network) };
}

/** Options and IPAM options nothing acts on: kept, as Docker keeps them, and named so a typo does not pass unseen. */
function unusedOptions(driver: NetworkDriver, network: NetworkRecord): string[] {
  if (network.configOnly === true) return [];
  const warnings = Object.keys(network.options)
    .filter((option) => !driver.options.has(option))
    .map((option) => `option "${option}" is not one the ${driver.name} driver acts on: it is stored and shown, and changes nothing`);
  for (const option of Object.keys(network.ipam.options)) {
    warnings.push(`IPAM option "${option}" is not one the default IPAM driver acts on: it is stored and shown, and changes nothing`);
  }
  return warnings;
}

/**
 * The request as Docker's --config-from makes it: pools, options, IPv6 and
 * labels from the configuration-only network, none given with it.
 */
async function fromConfigNetwork(context: ControllerContext, request: NetworkCreateRequest): Promise<NetworkCreateRequest> {
  const from = request.configFrom ?? '';
  if (request.configOnly === true) throw new InvalidArgument('--config-only and --config-from do not go together: a configuration-only network takes its configuration from flags');
  const config = await context.records.findNetwork(from, 'skip');
  if (config.configOnly !== true) throw new InvalidArgument(`network ${config.name} is not a configuration-only network (--config-only), so no network can be made from it`);
  const ipam = request.ipam;
  const given = [
    ...((ipam?.config ?? []).length > 0 ? ['--subnet and its pool flags'] : []),
    ...(ipam?.driver !== undefined && ipam.driver !== 'default' ? ['--ipam-driver'] : []),
    ...(Object.keys(ipam?.options ?? {}).length > 0 ? ['--ipam-opt'] : []),
    ...(Object.keys(request.options ?? {}).length > 0 ? ['-o'] : []),
    ...(request.enableIPv6 === true ? ['--ipv6'] : []),
  ];
  if (given.length > 0) {
    throw new Forbidden(`network ${request.name} takes its configuration from ${config.name}: ${given.join(', ')} cannot be given with --config-from`);
  }
  return {
    ...request,
    enableIPv4: config.enableIPv4,
    enableIPv6: config.enableIPv6,
    ipam: { driver: config.ipam.driver, options: config.ipam.options, config: config.ipam.config.map((pool) => ({ ...pool })) },
    options: config.options,
    labels: { ...config.labels, ...request.labels },
    configFrom: config.name,
  };
}

/** A configuration-only network's pools: checked as any network's, but only those asked for (none picked) and none taken yet. */
function configPools(request: NetworkCreateRequest): IpamPoolConfig[] {
  const requested = request.ipam?.config ?? [];
  const family = (pool: PoolRequest): 4 | 6 => ((pool.subnet ?? pool.gateway ?? '').includes(':') ? 6 : 4);
  return resolvePools({
    scope: 'local',
    enableIPv4: (request.enableIPv4 ?? true) && requested.some((pool) => family(pool) === 4),
    enableIPv6: (request.enableIPv6 ?? false) && requested.some((pool) => family(pool) === 6),
    requested: [...requested],
    existing: [],
  });
}

/** The names of the networks made --config-from this one. */
async function madeFrom(context: ControllerContext, network: NetworkRecord): Promise<string[]> {
  if (network.configOnly !== true) return [];
  return (await context.records.networks('skip')).filter((other) => other.configFrom === network.name).map((other) => other.name);
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
  const networks = await context.records.networks('skip');
  // Decided before anything goes, so one prune never removes a configuration together with the network using it.
  const configsInUse = new Set(networks.flatMap((network) => (network.configFrom === undefined ? [] : [network.configFrom])));
  for (const network of networks) {
    if (isPredefined(context, network) || !matchesPruneFilters(network, filters, now)) continue;
    if (network.configOnly === true && configsInUse.has(network.name)) continue;
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
  const users = await madeFrom(context, network);
  if (users.length > 0) {
    throw new Forbidden(`error while removing network: configuration network ${network.name} is in use by network ${users.join(', ')}`);
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

/** Docker's --scope names the kind of network the driver makes; netctl has no swarm, and a driver makes one kind. */
function checkScope(request: NetworkCreateRequest, driver: NetworkDriver): void {
  const { scope } = request;
  if (scope === undefined || request.configOnly === true) return;
  if (scope === 'swarm') {
    throw new InvalidArgument('scope "swarm" is not served: netctl runs no swarm; overlay networks are of scope global, shared through the cluster store (netctl daemon --store)');
  }
  if (scope !== 'local' && scope !== 'global') throw new InvalidArgument(`invalid scope "${scope}": local, global or swarm`);
  if (scope !== driver.scope) throw new InvalidArgument(`the ${driver.name} driver makes networks of scope ${driver.scope}, not ${scope}`);
}

/** Checks the request and stores the network's records, its name and its subnets. */
async function reserveNetwork(context: ControllerContext, request: NetworkCreateRequest): Promise<NetworkRecord> {
  validateName('network', request.name);
  validateMetadata('labels', request.labels);
  validateMetadata('driver options', request.options);
  validateMetadata('IPAM options', request.ipam?.options);
  // As Docker: a configuration-only network is of the null driver whatever -d said (the docker CLI always sends one).
  const driverName = request.configOnly === true ? 'null' : (request.driver ?? context.defaultDriver);
  const driver = context.drivers.get(driverName);
  if (driver === undefined) {
    throw new InvalidArgument(`unknown network driver "${driverName}" (available: ${[...context.drivers.keys()].join(', ')})`);
  }
  checkScope(request, driver);
  const ipamDriver = request.ipam?.driver ?? 'default';
  if (ipamDriver !== 'default') throw new InvalidArgument(`unknown IPAM driver "${ipamDriver}" (available: default)`);
  if (request.configOnly === true && request.ingress === true) throw new InvalidArgument('an ingress network cannot be configuration-only');
  const requestedPools = request.ipam?.config ?? [];
  const enableIPv6 = request.enableIPv6 ?? false;
  const enableIPv4 = request.enableIPv4 ?? true;
  if (!driver.usesIpam && request.configOnly !== true && (requestedPools.length > 0 || enableIPv6)) {
    throw new InvalidArgument(`the ${driver.name} driver assigns no addresses: --subnet, --ipv6 and other IPAM flags do not apply`);
  }
  // A configuration-only network is of the null driver in name only: it counts neither way.
  const single = driver.singleNetwork === true && request.configOnly !== true;
  if (single && (await context.records.networks('skip')).some((network) => network.driver === driver.name && network.configOnly !== true)) {
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
    const configOnly = request.configOnly === true;
    const pools = configOnly
      ? configPools(request)
      : driver.usesIpam
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
      enableIPv4: (driver.usesIpam || configOnly) && enableIPv4,
      enableIPv6: (driver.usesIpam || configOnly) && enableIPv6,
      ipam: { driver: ipamDriver, options: { ...(request.ipam?.options ?? {}) }, config: pools },
      options: { ...(request.options ?? {}) },
      labels: { ...(request.labels ?? {}) },
      ...(configOnly ? { configOnly } : {}),
      ...(request.configFrom !== undefined ? { configFrom: request.configFrom } : {}),
    };
    // A configuration-only network's options are checked by the driver of each network made from it.
    if (!configOnly) driver.validate(spec);
    const reserved = configOnly ? {} : ((await driver.reserve?.(spec, store)) ?? {});
    const reservedKeys = reserved.keys ?? [];
    const network: NetworkRecord = {
      ...spec,
      options: { ...spec.options, ...(reserved.options ?? {}) },
      created: timestamp(context.now()),
      ...(reservedKeys.length > 0 ? { reservedKeys } : {}),
    };
    const nextSubnets: Record<string, SubnetOwner> = { ...subnets.table };
    if (!configOnly) for (const pool of pools) nextSubnets[pool.subnet] = { networkId: id, networkName: request.name };
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
        // Without this mark no endpoint can be made on it (endpoints.ts); a configuration-only network never takes one.
        ...(configOnly ? [] : [put.networkState(id, {})]),
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
