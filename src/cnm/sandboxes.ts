/**
 * Sandboxes: a network namespace netctl makes (/var/run/netns/NAME) or one a
 * runtime hands over, with its record. Creation and removal are marked in
 * the record first, so a crash in between is undone or finished at the next
 * start (restore.ts).
 */
import { type ControllerContext, bestEffort, failedParts, givesDefaultRoute, newId, timestamp, withoutPending } from './context.js';
import { disconnectEndpoint } from './endpoints.js';
import type { SandboxCreateRequest, SandboxInfo, SandboxNetwork } from './types.js';
import { validateMetadata, validateName } from './validate.js';
import { Conflict, InvalidArgument } from '../errors.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { keys } from '../repository/keys.js';
import { put } from '../repository/repository.js';

/**
 * Makes a sandbox: its own named namespace, or an existing one (`netnsPath`).
 * The record is stored first, marked pending, so a crash before the
 * namespace exists is undone at the next start.
 */
export async function createSandbox(context: ControllerContext, request: SandboxCreateRequest): Promise<SandboxInfo> {
  validateName('sandbox', request.name);
  validateMetadata('labels', request.labels);
  const handoff = request.handoff === true;
  if (handoff && request.netnsPath !== undefined) {
    throw new InvalidArgument('a handoff sandbox has no namespace path: its runtime moves the interfaces in');
  }
  const ownsNetns = request.netnsPath === undefined && !handoff;
  if (request.netnsPath !== undefined) await checkForeignNamespace(context, request.netnsPath);
  const id = newId();
  const record: SandboxRecord = {
    id,
    name: request.name,
    netnsPath: request.netnsPath ?? '',
    ownsNetns,
    created: timestamp(context.now()),
    labels: { ...(request.labels ?? {}) },
    ...(ownsNetns ? { pending: 'create' as const } : {}),
    ...(handoff ? { handoff: true } : {}),
  };
  const store = context.records.local;
  const reserve = () =>
    store.txn({
      compare: [{ key: keys.sandboxName(request.name), modRevision: 0 }],
      put: [put.sandbox(record), { key: keys.sandboxName(request.name), value: id }],
    });
  let reserved = await reserve();
  if (!reserved.succeeded) {
    // A creation left half-done by a failed write holds the name: undo it, then try again.
    const holder = await context.records.sandboxByName(request.name);
    if (holder?.pending !== 'create') throw new Conflict(`sandbox with name ${request.name} already exists`);
    await undoSandboxCreate(context, holder);
    reserved = await reserve();
    if (!reserved.succeeded) throw new Conflict(`sandbox with name ${request.name} already exists`);
  }
  if (!ownsNetns) {
    context.emit({ type: 'sandbox', action: 'create', sandbox: record });
    return sandboxInfo(context, record, []);
  }
  let final: SandboxRecord;
  try {
    final = { ...withoutPending(record), netnsPath: await context.namespaces.createNamed(request.name) };
    await context.records.writeSandbox(final);
  } catch (err) {
    await bestEffort(context, `undo creation of sandbox ${request.name}`, () => undoSandboxCreate(context, record));
    throw err;
  }
  context.emit({ type: 'sandbox', action: 'create', sandbox: final });
  return sandboxInfo(context, final, []);
}

/**
 * A namespace a runtime hands over must exist, must not be one the host
 * itself lives in, and must not be another sandbox's: as in libnetwork, a
 * namespace is one sandbox, and two would fight over its default route,
 * resolv.conf and service rules (containers sharing a namespace share its
 * sandbox).
 */
async function checkForeignNamespace(context: ControllerContext, netnsPath: string): Promise<void> {
  if (!(await context.namespaces.exists(netnsPath))) throw new InvalidArgument(`${netnsPath} is not a network namespace`);
  for (const reserved of context.reservedNamespaces) {
    if (await context.namespaces.same(netnsPath, reserved)) {
      throw new InvalidArgument(
        `${netnsPath} is the host's own network namespace (${reserved}): a sandbox needs a namespace of its own`,
      );
    }
  }
  for (const other of await context.records.sandboxes('skip')) {
    if (other.pending !== 'remove' && other.netnsPath !== '' && (await context.namespaces.same(netnsPath, other.netnsPath))) {
      throw new Conflict(`${netnsPath} is already the namespace of sandbox ${other.name}: connect that sandbox to more networks instead`);
    }
  }
}

/** Removes what a half-done creation made: its namespace (netctl's, by the reserved name) and its records. */
export async function undoSandboxCreate(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  if (sandbox.ownsNetns) await context.namespaces.removeNamed(sandbox.name);
  await context.records.deleteSandbox(sandbox);
}

export async function listSandboxes(context: ControllerContext): Promise<SandboxInfo[]> {
  const endpoints = await context.records.endpoints('skip');
  const networks = await networksById(context);
  return (await context.records.sandboxes('skip')).map((sandbox) =>
    sandboxInfo(
      context,
      sandbox,
      endpoints.filter((e) => e.sandboxId === sandbox.id),
      networks,
    ),
  );
}

export async function inspectSandbox(context: ControllerContext, idOrName: string): Promise<SandboxInfo> {
  const sandbox = await context.records.findSandbox(idOrName, 'skip');
  return sandboxInfo(context, sandbox, await context.records.sandboxEndpoints(sandbox, 'skip'), await networksById(context));
}

async function networksById(context: ControllerContext): Promise<ReadonlyMap<string, NetworkRecord>> {
  return new Map((await context.records.networks('skip')).map((network) => [network.id, network]));
}

function sandboxInfo(
  context: ControllerContext,
  sandbox: SandboxRecord,
  endpoints: readonly EndpointRecord[],
  networksById: ReadonlyMap<string, NetworkRecord> = new Map(),
): SandboxInfo {
  const resolvConfPath = sandbox.netnsPath === '' ? undefined : context.resolvConfPath?.(sandbox);
  const hostInterfaces: Record<string, string> = {};
  const networks: Record<string, SandboxNetwork> = {};
  for (const endpoint of endpoints) {
    const network = networksById.get(endpoint.networkId);
    if (network === undefined) continue;
    const driver = context.drivers.get(network.driver);
    const name = endpoint.ifName === undefined ? undefined : driver?.hostInterfaceName?.(endpoint);
    if (name !== undefined) hostInterfaces[endpoint.id] = name;
    networks[network.id] = { name: network.name, ...(driver === undefined ? {} : gatewaysOf(context, network)) };
  }
  return { ...sandbox, endpoints, hostInterfaces, networks, ...(resolvConfPath !== undefined ? { resolvConfPath } : {}) };
}

/** The pools' gateways, when the network routes its sandboxes through them (as Docker's bridge driver tells a joining endpoint). */
function gatewaysOf(context: ControllerContext, network: NetworkRecord): Pick<SandboxNetwork, 'ipv4Gateway' | 'ipv6Gateway'> {
  if (!givesDefaultRoute(context, network)) return {};
  const ipv4Gateway = network.ipam.config.find((pool) => !pool.subnet.includes(':'))?.gateway;
  const ipv6Gateway = network.ipam.config.find((pool) => pool.subnet.includes(':'))?.gateway;
  return { ...(ipv4Gateway !== undefined ? { ipv4Gateway } : {}), ...(ipv6Gateway !== undefined ? { ipv6Gateway } : {}) };
}

/**
 * Leaves every network, deletes the endpoints, and removes the namespace if
 * netctl made it. The sandbox is marked first: when a step fails or the
 * daemon dies, a retry or the next start finishes the removal. Every step
 * is tried; the failures are reported together.
 */
export async function removeSandbox(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  if (sandbox.pending === 'create') {
    await undoSandboxCreate(context, sandbox);
    return;
  }
  if (sandbox.pending !== 'remove') await context.records.writeSandbox({ ...sandbox, pending: 'remove' });
  const failures: { what: string; error: unknown }[] = [];
  // Every endpoint counts: one left out would keep a sandbox that no longer exists.
  for (const endpoint of await context.records.sandboxEndpoints(sandbox, 'throw')) {
    try {
      const network = await context.records.networkById(endpoint.networkId);
      await disconnectEndpoint(context, network, endpoint, sandbox, { force: false, handOverDefaultRoute: false });
    } catch (error) {
      failures.push({ what: `endpoint ${endpoint.name}`, error });
    }
  }
  if (sandbox.ownsNetns) {
    try {
      await context.namespaces.removeNamed(sandbox.name);
    } catch (error) {
      failures.push({ what: `namespace ${sandbox.netnsPath}`, error });
    }
  }
  if (failures.length > 0) throw failedParts(`removing sandbox ${sandbox.name} failed`, failures);
  await context.records.deleteSandbox(sandbox);
  context.emit({ type: 'sandbox', action: 'remove', sandbox: withoutPending(sandbox) });
}
