/**
 * What the controller does when it opens: re-makes the kernel state of
 * everything stored (drivers are idempotent), which is how a restarted
 * daemon gets its wiring back, and finishes or undoes every change a crash
 * cut short (the records' `pending` and `removing` marks say which).
 * Problems are logged, not fatal.
 */
import { migrateNetworkState } from './addresses.js';
import { type ControllerContext, bestEffort, driverOf } from './context.js';
import { deleteEndpoint, disconnectEndpoint, settle } from './endpoints.js';
import { releaseNetwork } from './networks.js';
import { removeSandbox, undoSandboxCreate } from './sandboxes.js';
import type { NetworkRecord, SandboxRecord } from '../records.js';

/** `sandboxesRestored` is called once every sandbox that stays has its namespace, before the endpoints are re-checked. */
export async function restore(context: ControllerContext, sandboxesRestored: () => void = () => undefined): Promise<void> {
  const sandboxes = await restoreSandboxes(context);
  sandboxesRestored();
  const local = new Map(sandboxes.map((sandbox) => [sandbox.id, sandbox]));
  const live = new Map<string, SandboxRecord>();
  for (const sandbox of sandboxes) {
    // A handoff sandbox's namespace is the runtime's to watch: it takes the endpoints out when the sandbox goes.
    if (sandbox.handoff === true || (await context.namespaces.exists(sandbox.netnsPath))) live.set(sandbox.id, sandbox);
  }
  const networks = await restoreNetworks(context);
  // Before anything reads a sandbox's endpoints through the index: a store written before it had none.
  await bestEffort(context, 'index the endpoints of the sandboxes', async () =>
    context.records.reindexSandboxEndpoints(new Set(local.keys()), await context.records.endpoints('skip')),
  );
  // Endpoints after every network: settling one may hand the default route to another network's.
  for (const network of networks) await restoreEndpoints(context, network, local, live);
  for (const sandbox of sandboxes) {
    if (sandbox.pending === 'remove') {
      await bestEffort(context, `finish removing sandbox ${sandbox.name}`, () => removeSandbox(context, sandbox));
    } else if (!live.has(sandbox.id) && !sandbox.ownsNetns) {
      await context.records.deleteSandbox(sandbox);
      context.emit({ type: 'sandbox', action: 'remove', sandbox });
    }
  }
}

/**
 * Undoes half-made sandboxes and gives netctl's own sandboxes their
 * namespace again when it is gone (after a reboot). Returns the sandboxes
 * that remain, as stored now.
 */
async function restoreSandboxes(context: ControllerContext): Promise<SandboxRecord[]> {
  // This host's own records, every one: a sandbox left out would have its endpoints released as orphans.
  const stored = await context.records.sandboxes('throw');
  for (const sandbox of stored) {
    if (sandbox.pending === 'create') {
      await bestEffort(context, `undo creation of sandbox ${sandbox.name}`, () => undoSandboxCreate(context, sandbox));
    }
  }
  const sandboxes = stored.filter((sandbox) => sandbox.pending !== 'create');
  for (const [index, sandbox] of sandboxes.entries()) {
    if (sandbox.handoff === true || (await context.namespaces.exists(sandbox.netnsPath))) continue;
    if (sandbox.ownsNetns && sandbox.pending !== 'remove') {
      // Gone after a reboot: the sandbox gets a namespace again and its endpoints are wired into it.
      await bestEffort(context, `recreate namespace of sandbox ${sandbox.name}`, async () => {
        const netnsPath = await context.namespaces.createNamed(sandbox.name);
        if (netnsPath === sandbox.netnsPath) return;
        const moved = { ...sandbox, netnsPath };
        sandboxes[index] = moved;
        await context.records.writeSandbox(moved);
      });
    } else if (!sandbox.ownsNetns) {
      context.logger.warn(`sandbox ${sandbox.name}: namespace ${sandbox.netnsPath} is gone; its endpoints are released`);
    }
  }
  return sandboxes;
}

/** Finishes removals that were under way and makes every other network again; returns the networks kept. */
async function restoreNetworks(context: ControllerContext): Promise<NetworkRecord[]> {
  const networks: NetworkRecord[] = [];
  for (const network of await context.records.networks('skip')) {
    const driver = context.drivers.get(network.driver);
    if (driver === undefined) {
      context.logger.warn(`network ${network.name}: driver ${network.driver} is not available; left as stored`);
    } else if (network.removing === true) {
      await bestEffort(context, `finish removing network ${network.name}`, async () => {
        await driver.deleteNetwork(network);
        await releaseNetwork(context, network);
        context.emit({ type: 'network', action: 'remove', network });
      });
    } else {
      await bestEffort(context, `move the IPAM state of network ${network.name} to its own keys`, () => migrateNetworkState(context, network));
      await bestEffort(context, `restore network ${network.name}`, () => driver.createNetwork(network));
      networks.push(network);
    }
  }
  return networks;
}

/**
 * Wires the network's endpoints that are joined to a live sandbox of this
 * host again, settles those a change was cut short in, and releases those
 * whose sandbox is gone.
 */
async function restoreEndpoints(
  context: ControllerContext,
  network: NetworkRecord,
  local: ReadonlyMap<string, SandboxRecord>,
  live: ReadonlyMap<string, SandboxRecord>,
): Promise<void> {
  for (const endpoint of await context.records.networkEndpoints(network, 'skip')) {
    if (endpoint.sandboxId === undefined) continue;
    const sandbox = live.get(endpoint.sandboxId);
    if (!local.has(endpoint.sandboxId)) {
      // On a global network, another host's; on a local one, an endpoint whose sandbox record is gone.
      if (network.scope === 'local') {
        await bestEffort(context, `release orphan endpoint ${endpoint.name}`, () =>
          disconnectEndpoint(context, network, endpoint, undefined, { force: true, handOverDefaultRoute: false }),
        );
      }
    } else if (sandbox === undefined) {
      await bestEffort(context, `release endpoint ${endpoint.name}`, () => deleteEndpoint(context, network, endpoint.id));
    } else if (endpoint.pending !== undefined) {
      await bestEffort(context, `finish ${endpoint.pending} of endpoint ${endpoint.name}`, () => settle(context, network, endpoint, sandbox));
    } else if (endpoint.ifName !== undefined) {
      const ifName = endpoint.ifName;
      await bestEffort(context, `restore endpoint ${endpoint.name}`, () =>
        driverOf(context, network).join({ network, endpoint, sandbox, ifName, setDefaultRoute: endpoint.defaultGateway === true }),
      );
    }
  }
}
