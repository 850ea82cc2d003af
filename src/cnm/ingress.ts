/**
 * What the routing mesh (ingress/mesh.ts) stands on, as Docker has it,
 * besides the `ingress` overlay network (ingress-network.ts): on each host,
 * the ingress sandbox
 * (`ingress-sbox`), whose endpoint on that network is where the host's
 * published connections enter it; and an endpoint on it for every task of
 * such a service. The mesh asks for these through the controller as the
 * records call for them.
 */
import type { ControllerContext } from './context.js';
import { connect, disconnect } from './connections.js';
import { hostId } from './names.js';
import { findIngressNetwork } from './networks.js';
import { createSandbox, removeSandbox } from './sandboxes.js';
import { INGRESS_SANDBOX_LABEL, ingressSandboxName, isIngressSandbox } from '../ingress/mesh.js';
import { type NetworkRecord, type SandboxRecord, routedByMesh } from '../records.js';

/** Makes this host's ingress sandbox if it is missing, and connects it to the ingress network. */
export async function openIngressEntry(context: ControllerContext): Promise<void> {
  const network = await findIngressNetwork(context);
  if (network === undefined) return;
  const name = ingressSandboxName(await hostId(context));
  let sandbox = await ingressSandbox(context);
  if (sandbox === undefined) await createSandbox(context, { name, labels: { [INGRESS_SANDBOX_LABEL]: 'true' } });
  sandbox = await ingressSandbox(context);
  if (sandbox === undefined || sandbox.pending !== undefined) return;
  if (await isOn(context, sandbox, network)) return;
  await connect(context, network, sandbox, { name, ingressEntry: true });
}

/** Removes this host's ingress sandbox, and so its endpoint on the ingress network. */
export async function closeIngressEntry(context: ControllerContext): Promise<void> {
  const sandbox = await ingressSandbox(context);
  if (sandbox !== undefined) await removeSandbox(context, sandbox);
}

async function ingressSandbox(context: ControllerContext): Promise<SandboxRecord | undefined> {
  return (await context.records.sandboxes('skip')).find(isIngressSandbox);
}

/** Connects a task's sandbox to the ingress network. */
export async function attachIngress(context: ControllerContext, sandboxId: string): Promise<void> {
  const network = await findIngressNetwork(context);
  const sandbox = await localSandbox(context, sandboxId);
  if (network === undefined || sandbox === undefined) return;
  if (await isOn(context, sandbox, network)) return;
  // Sandbox names are unique on one host only.
  await connect(context, network, sandbox, { name: `ingress-${sandbox.id.slice(0, 12)}` });
}

/** Takes a sandbox off the ingress network. */
export async function detachIngress(context: ControllerContext, sandboxId: string): Promise<void> {
  const network = await findIngressNetwork(context);
  const sandbox = await localSandbox(context, sandboxId);
  if (network === undefined || sandbox === undefined) return;
  if (!(await isOn(context, sandbox, network))) return;
  await disconnect(context, network, sandbox.id, false);
}

async function isOn(context: ControllerContext, sandbox: SandboxRecord, network: NetworkRecord): Promise<boolean> {
  return (await context.records.sandboxEndpoints(sandbox, 'skip')).some((e) => e.networkId === network.id);
}

async function localSandbox(context: ControllerContext, sandboxId: string): Promise<SandboxRecord | undefined> {
  const sandbox = await context.records.sandboxById(sandboxId).catch(() => undefined);
  return sandbox?.pending === undefined ? sandbox : undefined;
}

/**
 * After a task joined: its sandbox goes on the ingress network at once
 * when its service publishes a port in ingress mode, so that the connect
 * returns with it in this host's rotation (the mesh would ask for it too,
 * a moment later).
 */
export async function attachWhenPublished(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  if (await needsIngress(context, sandbox)) await attachIngress(context, sandbox.id);
}

/** After a task left: its sandbox leaves the ingress network once no service it is a task of needs it there. */
export async function detachWhenUnpublished(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  if (!(await needsIngress(context, sandbox))) await detachIngress(context, sandbox.id);
}

async function needsIngress(context: ControllerContext, sandbox: SandboxRecord): Promise<boolean> {
  for (const endpoint of await context.records.sandboxEndpoints(sandbox, 'skip')) {
    if (endpoint.service === undefined || endpoint.pending !== undefined) continue;
    const service = await context.records.findService(endpoint.service, 'skip').catch(() => undefined);
    if (service !== undefined && (service.ports ?? []).some((port) => routedByMesh(service.scope, port))) return true;
  }
  return false;
}
