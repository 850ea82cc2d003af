/**
 * Endpoints: creating one (IPAM gives its addresses), joining it to a
 * sandbox and taking it out again. Every change is stored marked pending
 * before the kernel is touched, so a failure at any step leaves a state that
 * `settle` (on a retry, or at the next start) finishes or undoes.
 */
import { claimsOf, heldClaims } from './addresses.js';
import { type ControllerContext, bestEffort, driverOf, givesDefaultRoute, newId, refuseConfigOnly, rulesCatchUp, withoutPending } from './context.js';
import { macFor } from './mac.js';
import { taskServiceFor } from './services.js';
import type { EndpointCreateRequest } from './types.js';
import { validateAliases, validateIfName, validateName } from './validate.js';
import { Conflict, EndpointNotFound, Forbidden, InvalidArgument, NetctlError, NetworkNotFound, ServiceNotFound } from '../errors.js';
import type { EndpointPending, EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { keys } from '../repository/keys.js';
import { casLoop, put } from '../repository/repository.js';
import { decodeRecord, endpointRecord } from '../repository/schema.js';

/** Where an endpoint goes in its sandbox; stored with the endpoint while the join is under way. */
type Placement = Partial<Pick<EndpointRecord, 'sandboxId' | 'ifName' | 'defaultGateway' | 'pending'>>;

/** Allocates the endpoint's addresses and stores it, with `placement` (a sandbox to join, pending) when given. */
export async function createEndpoint(
  context: ControllerContext,
  network: NetworkRecord,
  request: EndpointCreateRequest,
  placement: Placement = {},
): Promise<EndpointRecord> {
  validateName('endpoint', request.name);
  validateAliases(request.aliases);
  refuseConfigOnly(network);
  const driver = driverOf(context, network);
  if (!driver.usesIpam && (request.ipv4Address !== undefined || request.ipv6Address !== undefined)) {
    throw new InvalidArgument(`network ${network.name} (driver ${network.driver}) assigns no addresses`);
  }
  if (request.ipv6Address !== undefined && !network.enableIPv6) {
    throw new InvalidArgument(`network ${network.name} does not have IPv6 enabled; cannot use IPv6 address ${request.ipv6Address}`);
  }
  if (request.id !== undefined && !/^[0-9a-f]{64}$/.test(request.id)) throw new InvalidArgument(`endpoint id ${request.id} is not 64 lowercase hex digits`);
  const macAddress = request.macAddress === undefined ? undefined : normalMac(request.macAddress);
  const service = request.service === undefined ? undefined : await taskServiceFor(context, network, request.service);
  const id = request.id ?? newId();
  const store = context.records.storeOf(network);
  let created: EndpointRecord | undefined;
  let attempts = 0;
  if (placement.sandboxId !== undefined) await context.records.indexSandboxEndpoint(placement.sandboxId, network.id, id);
  await casLoop(store, async () => {
    attempts += 1;
    const current = await context.records.networkState(network);
    if (current === undefined) throw new NetworkNotFound(network.name);
    if ((await store.get(keys.endpointName(network.id, request.name))) !== undefined) {
      throw new Conflict(`endpoint with name ${request.name} already exists in network ${network.name}`);
    }
    if (request.id !== undefined && (await store.get(keys.endpoint(network.id, id))) !== undefined) {
      throw new Conflict(`endpoint ${id} already exists in network ${network.name}`);
    }
    // The service is in the network's store (a service's networks share its scope): its revision guards the task.
    const serviceKv = service === undefined ? undefined : await store.get(keys.service(service.id));
    if (service !== undefined && serviceKv === undefined) throw new ServiceNotFound(service.name);
    const hasV4 = network.ipam.config.some((pool) => !pool.subnet.includes(':'));
    const hasV6 = network.ipam.config.some((pool) => pool.subnet.includes(':'));
    if (request.ipv4Address !== undefined && !hasV4) {
      throw new InvalidArgument(`network ${network.name} has no IPv4 subnet for address ${request.ipv4Address}`);
    }
    // A retry follows a failed compare: what this daemon knew of the addresses was out of date.
    const { ipv4Address, ipv6Address } = driver.usesIpam
      ? await context.addresses.allocate(
          store,
          network,
          {
            ipv4: hasV4,
            ipv6: hasV6 && network.enableIPv6,
            ...(request.ipv4Address !== undefined ? { ipv4Address: request.ipv4Address } : {}),
            ...(request.ipv6Address !== undefined ? { ipv6Address: request.ipv6Address } : {}),
          },
          attempts > 1,
        )
      : {};
    // A MAC derived from the IPv4 address is unique as the address is; only a random one needs the others.
    const macsInUse =
      ipv4Address === undefined || macAddress !== undefined
        ? new Set((await context.records.networkEndpoints(network, 'throw')).map((e) => e.macAddress))
        : new Set<string>();
    if (macAddress !== undefined && macsInUse.has(macAddress)) {
      throw new Conflict(`MAC address ${macAddress} is already in use in network ${network.name}`);
    }
    const endpoint: EndpointRecord = {
      id,
      name: request.name,
      networkId: network.id,
      macAddress: macAddress ?? macFor(ipv4Address, macsInUse),
      aliases: [...(request.aliases ?? [])],
      ...(ipv4Address !== undefined ? { ipv4Address } : {}),
      ...(ipv6Address !== undefined ? { ipv6Address } : {}),
      ...(service !== undefined ? { service: service.id } : {}),
      ...(request.ingressEntry === true ? { ingressEntry: true } : {}),
      ...placement,
    };
    const claims = claimsOf(network.id, endpoint);
    created = endpoint;
    return {
      // The network still takes endpoints, and the name and addresses are nobody's.
      compare: [
        { key: keys.networkState(network.id), modRevision: current.modRevision },
        { key: keys.endpoint(network.id, id), modRevision: 0 },
        ...claims.map(({ key }) => ({ key, modRevision: 0 })),
        ...(serviceKv !== undefined ? [{ key: serviceKv.key, modRevision: serviceKv.modRevision }] : []),
      ],
      put: [put.endpoint(network, endpoint), ...claims],
    };
  }).catch(async (err: unknown) => {
    context.addresses.forget(network.id);
    const sandboxId = placement.sandboxId;
    if (sandboxId !== undefined) await bestEffort(context, `unindex endpoint ${request.name}`, () => context.records.unindexSandboxEndpoint(sandboxId, id));
    throw err;
  });
  if (created === undefined) throw new NetctlError('Internal', 'endpoint was not created');
  // One that a connect makes is announced once it is joined.
  if (placement.sandboxId === undefined) context.emit({ type: 'endpoint', action: 'create', endpoint: created, network });
  return created;
}

/** Deletes the endpoint's record and releases its name and addresses; an endpoint already gone is no error. */
export async function deleteEndpoint(context: ControllerContext, network: NetworkRecord, endpointId: string): Promise<void> {
  const store = context.records.storeOf(network);
  const endpointKey = keys.endpoint(network.id, endpointId);
  let deleted: EndpointRecord | undefined;
  let released: string[] = [];
  await casLoop(store, async () => {
    const endpointKv = await store.get(endpointKey);
    if (endpointKv === undefined) return undefined;
    const endpoint = decodeRecord(endpointKv, endpointRecord);
    deleted = endpoint;
    const held = await heldClaims(store, network.id, endpoint);
    const addresses = keys.networkAddresses(network.id);
    released = held.filter((key) => key.startsWith(addresses)).map((key) => key.slice(addresses.length));
    return {
      compare: [{ key: endpointKey, modRevision: endpointKv.modRevision }],
      delete: [endpointKey, ...held],
    };
  }).catch((err: unknown) => {
    context.addresses.forget(network.id);
    throw err;
  });
  context.addresses.release(network.id, released);
  await unindex(context, deleted?.sandboxId, endpointId);
  // An endpoint whose connect is undone was never announced.
  if (deleted !== undefined && deleted.pending !== 'connect') {
    context.emit({ type: 'endpoint', action: 'remove', endpoint: detached(deleted), network });
  }
}

/**
 * `docker network connect` without the way out: an endpoint named after the
 * sandbox, made and joined, its interface named `ifName` when given.
 */
export async function connectEndpoint(
  context: ControllerContext,
  network: NetworkRecord,
  sandbox: SandboxRecord,
  request: EndpointCreateRequest,
  ifName?: string,
): Promise<EndpointRecord> {
  const placement = await placementIn(context, network, sandbox, ifName);
  // Address, sandbox and interface are stored in one write, marked pending, before the kernel is touched.
  const endpoint = await createEndpoint(context, network, request, { ...placement, pending: 'connect' });
  return completeJoin(context, network, endpoint, sandbox);
}

/** Joins an existing endpoint to a sandbox: the driver puts its interface into the namespace, named `ifName` when given. */
export async function joinEndpoint(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord,
  ifName?: string,
): Promise<EndpointRecord> {
  if (endpoint.sandboxId !== undefined) throw new Conflict(`endpoint ${endpoint.name} is already joined to a sandbox`);
  const placement = await placementIn(context, network, sandbox, ifName);
  const store = context.records.storeOf(network);
  const endpointKey = keys.endpoint(network.id, endpoint.id);
  const current = await store.get(endpointKey);
  if (current === undefined) throw new EndpointNotFound(endpoint.name);
  const marked: EndpointRecord = { ...endpoint, ...placement, pending: 'join' };
  await context.records.indexSandboxEndpoint(sandbox.id, network.id, endpoint.id);
  const written = await store.txn({
    compare: [{ key: endpointKey, modRevision: current.modRevision }],
    put: [put.endpoint(network, marked)],
  });
  if (!written.succeeded) throw new Conflict(`endpoint ${endpoint.name} changed meanwhile; try again`);
  return completeJoin(context, network, marked, sandbox);
}

/** Docker's words (runconfig.ErrConflictHostNetwork), a 400 there too. */
const HOST_NETWORK_CONFLICT = 'container cannot be disconnected from host network or connected to host network';

/** Refuses a sandbox on or off the host network: no sandbox can be in the host's own namespace. */
export function refuseHostNetwork(context: ControllerContext, network: NetworkRecord): void {
  if (driverOf(context, network).sharesHostNamespace === true) throw new InvalidArgument(HOST_NETWORK_CONFLICT);
}

/**
 * Where an endpoint of `network` goes in the sandbox: the interface name
 * asked for or the next free ethN (none when the driver makes no
 * interface), and the default route when no other endpoint gives one.
 * Refused on the host network, when the sandbox is already on the network,
 * is being made or removed, or has an endpoint with that interface name.
 */
async function placementIn(
  context: ControllerContext,
  network: NetworkRecord,
  sandbox: SandboxRecord,
  requestedIfName?: string,
): Promise<{ sandboxId: string; ifName?: string; defaultGateway?: true }> {
  refuseHostNetwork(context, network);
  const makesInterface = driverOf(context, network).makesInterfaces !== false;
  if (requestedIfName !== undefined && !makesInterface) {
    throw new InvalidArgument(`network ${network.name} (driver ${network.driver}) puts no interface in the sandbox: an interface name does not apply`);
  }
  if (requestedIfName !== undefined) validateIfName(requestedIfName);
  if (sandbox.pending !== undefined) {
    throw new Conflict(`sandbox ${sandbox.name} is being ${sandbox.pending === 'create' ? 'created' : 'removed'}`);
  }
  // Every endpoint of the sandbox counts, or two could get one interface name.
  let sandboxEndpoints = await context.records.sandboxEndpoints(sandbox, 'throw');
  const previous = sandboxEndpoints.find((e) => e.networkId === network.id);
  if (previous?.pending !== undefined) {
    // A connect or disconnect of this pair left half-done by a failed write: settle it first.
    await settle(context, network, previous, sandbox);
    sandboxEndpoints = await context.records.sandboxEndpoints(sandbox, 'throw');
  }
  const onNetwork = sandboxEndpoints.find((e) => e.networkId === network.id);
  if (onNetwork !== undefined) {
    // Docker refuses a second connect with libnetwork's ForbiddenError (403), naming the endpoint already there.
    throw new Forbidden(`endpoint with name ${onNetwork.name} already exists in network ${network.name}`);
  }
  const setDefaultRoute = givesDefaultRoute(context, network) && !sandboxEndpoints.some((e) => e.defaultGateway === true);
  const placement = { sandboxId: sandbox.id, ...(setDefaultRoute ? { defaultGateway: true as const } : {}) };
  if (!makesInterface) return placement;
  const usedNames = new Set(sandboxEndpoints.map((e) => e.ifName));
  let ifName = requestedIfName;
  if (ifName === undefined) {
    let index = 0;
    while (usedNames.has(`eth${index}`)) index++;
    ifName = `eth${index}`;
  } else if (usedNames.has(ifName)) {
    const holder = sandboxEndpoints.find((e) => e.ifName === ifName);
    throw new Conflict(`sandbox ${sandbox.name} already has an interface ${ifName} (endpoint ${holder?.name ?? '?'})`);
  }
  return { ...placement, ifName };
}

/**
 * Second half of connect and join: the endpoint is stored with its sandbox,
 * marked pending; the driver wires it, then the mark goes. A driver failure
 * undoes the join (and, for connect, the endpoint).
 */
async function completeJoin(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord,
): Promise<EndpointRecord> {
  const ifName = endpoint.ifName ?? '';
  const joined = withoutPending(endpoint);
  const driver = driverOf(context, network);
  try {
    await driver.join({ network, endpoint: joined, sandbox, ifName, setDefaultRoute: joined.defaultGateway === true });
    await context.records.writeEndpoint(network, joined);
  } catch (err) {
    await bestEffort(context, `undo ${endpoint.pending ?? 'join'} of ${endpoint.name}`, () => undoJoin(context, network, endpoint, sandbox));
    throw err;
  }
  // Its service too: this host's watch may not have brought a service made elsewhere yet.
  await rulesCatchUp(context, network.scope, [...(joined.service !== undefined ? [keys.service(joined.service)] : []), keys.endpoint(network.id, joined.id)]);
  if (endpoint.pending === 'connect') context.emit({ type: 'endpoint', action: 'create', endpoint: joined, network });
  context.emit({ type: 'endpoint', action: 'join', endpoint: joined, network });
  return joined;
}

/** Undoes a join or connect that did not complete: the interface goes, and the endpoint too for a connect. */
async function undoJoin(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord | undefined,
): Promise<void> {
  if (endpoint.ifName !== undefined) {
    await driverOf(context, network).leave({ network, endpoint, ...(sandbox !== undefined ? { sandbox } : {}), ifName: endpoint.ifName });
  }
  if (endpoint.pending === 'connect') {
    await deleteEndpoint(context, network, endpoint.id);
  } else {
    await writeDetached(context, network, endpoint);
  }
}

/** Stores the endpoint marked with the change about to start, before the kernel is touched. */
async function markPending(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  pending: EndpointPending,
): Promise<EndpointRecord> {
  if (endpoint.pending === pending) return endpoint;
  const marked: EndpointRecord = { ...endpoint, pending };
  await context.records.writeEndpoint(network, marked);
  return marked;
}

/**
 * Leaves the sandbox; the endpoint and its addresses remain. When the
 * endpoint gave the sandbox its default route, the next qualifying endpoint
 * (lowest ethN) takes it over, as Docker moves the gateway when a container
 * leaves its gateway network.
 */
export async function leaveEndpoint(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord,
): Promise<void> {
  const marked = await markPending(context, network, endpoint, 'leave');
  // Out of every rotation before its interface goes.
  await rulesCatchUp(context, network.scope, [keys.endpoint(network.id, endpoint.id)]);
  if (marked.ifName !== undefined) {
    await driverOf(context, network).leave({ network, endpoint: marked, sandbox, ifName: marked.ifName });
  }
  await writeDetached(context, network, marked);
  context.emit({ type: 'endpoint', action: 'leave', endpoint: detached(marked), network });
  if (marked.defaultGateway === true) await handOverDefaultRoute(context, sandbox);
}

/**
 * Leaves and deletes the endpoint, releasing its addresses. Marked first,
 * so a failure at any step leaves a state a retry or restart finishes.
 * Forced, a driver failure is logged and the record goes all the same.
 */
export async function disconnectEndpoint(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord | undefined,
  options: { force: boolean; handOverDefaultRoute: boolean },
): Promise<void> {
  const marked = await markPending(context, network, endpoint, 'disconnect');
  await rulesCatchUp(context, network.scope, [keys.endpoint(network.id, endpoint.id)]);
  if (marked.ifName !== undefined) {
    const request = { network, endpoint: marked, ...(sandbox !== undefined ? { sandbox } : {}), ifName: marked.ifName };
    if (options.force) await bestEffort(context, `forced disconnect of ${endpoint.name}`, () => driverOf(context, network).leave(request));
    else await driverOf(context, network).leave(request);
  }
  // A join or connect cut short was never announced, so neither is its end.
  const wasJoined = endpoint.sandboxId !== undefined && endpoint.pending !== 'join' && endpoint.pending !== 'connect';
  if (wasJoined) context.emit({ type: 'endpoint', action: 'leave', endpoint: detached(marked), network });
  await deleteEndpoint(context, network, endpoint.id);
  if (marked.defaultGateway === true && options.handOverDefaultRoute && sandbox !== undefined) {
    await handOverDefaultRoute(context, sandbox);
  }
}

/** Finishes ('leave', 'disconnect') or undoes ('join', 'connect') a change an endpoint was left in. */
export async function settle(
  context: ControllerContext,
  network: NetworkRecord,
  endpoint: EndpointRecord,
  sandbox: SandboxRecord | undefined,
): Promise<void> {
  switch (endpoint.pending) {
    case undefined:
      return;
    case 'connect':
    case 'join':
      await undoJoin(context, network, endpoint, sandbox);
      return;
    case 'leave':
      if (sandbox === undefined) await disconnectEndpoint(context, network, endpoint, undefined, { force: true, handOverDefaultRoute: false });
      else await leaveEndpoint(context, network, endpoint, sandbox);
      return;
    case 'disconnect':
      await disconnectEndpoint(context, network, endpoint, sandbox, { force: sandbox === undefined, handOverDefaultRoute: true });
      return;
  }
}

async function handOverDefaultRoute(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  const candidates = (await context.records.sandboxEndpoints(sandbox, 'throw'))
    .filter((e) => e.ifName !== undefined)
    .sort(byInterfaceOrder);
  for (const candidate of candidates) {
    const network = await context.records.networkById(candidate.networkId).catch(() => undefined);
    if (network === undefined || !givesDefaultRoute(context, network) || candidate.ifName === undefined) continue;
    const updated: EndpointRecord = { ...candidate, defaultGateway: true };
    await driverOf(context, network).join({ network, endpoint: updated, sandbox, ifName: candidate.ifName, setDefaultRoute: true });
    await context.records.writeEndpoint(network, updated);
    return;
  }
}

/** A MAC as six colon-separated bytes, lower case; InvalidArgument for anything else. */
function normalMac(text: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) throw new InvalidArgument(`invalid MAC address ${text}`);
  const mac = text.toLowerCase();
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new InvalidArgument(`MAC address ${text} is a multicast address, not one for an interface`);
  return mac;
}

/** Lowest ethN first; names a caller chose (net1, cni0…) come after every ethN, in name order. */
function byInterfaceOrder(a: EndpointRecord, b: EndpointRecord): number {
  const indexA = ethIndex(a.ifName ?? '');
  const indexB = ethIndex(b.ifName ?? '');
  if (indexA !== indexB) return indexA - indexB;
  return (a.ifName ?? '') < (b.ifName ?? '') ? -1 : (a.ifName ?? '') > (b.ifName ?? '') ? 1 : 0;
}

function ethIndex(ifName: string): number {
  const match = /^eth(\d+)$/.exec(ifName);
  return match === null ? Number.MAX_SAFE_INTEGER : Number(match[1]);
}

/** Stores the endpoint as joined to no sandbox, then takes it out of the sandbox's index. */
async function writeDetached(context: ControllerContext, network: NetworkRecord, endpoint: EndpointRecord): Promise<void> {
  await context.records.writeEndpoint(network, detached(endpoint));
  await unindex(context, endpoint.sandboxId, endpoint.id);
}

/**
 * Takes a detached or deleted endpoint out of its sandbox's index. The
 * change is complete without it (readers check each entry, restore and the
 * sandbox's removal clear what is left), so a failure is only logged.
 */
async function unindex(context: ControllerContext, sandboxId: string | undefined, endpointId: string): Promise<void> {
  if (sandboxId === undefined) return;
  await bestEffort(context, `take endpoint ${endpointId.slice(0, 12)} out of its sandbox's index`, () =>
    context.records.unindexSandboxEndpoint(sandboxId, endpointId),
  );
}

/** The endpoint as it is when joined to no sandbox. */
function detached(endpoint: EndpointRecord): EndpointRecord {
  const { sandboxId: _sandboxId, ifName: _ifName, defaultGateway: _defaultGateway, pending: _pending, ...rest } = endpoint;
  return rest;
}
