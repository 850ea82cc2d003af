/**
 * The way out of networks whose driver gives none (overlay): a bridge
 * network of this host, as Docker's docker_gwbridge. A sandbox on a
 * non-internal one of them, with no other default route, gets an endpoint on
 * it that carries its default route; the endpoint goes once no network the
 * sandbox is on needs it. The bridge network is made on first use.
 */
import type { ControllerContext } from './context.js';
import { connectEndpoint, disconnectEndpoint } from './endpoints.js';
import { createNetwork } from './networks.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';

/** Docker's docker_gwbridge, by netctl's name; also the Linux bridge's name (15 characters). */
const GATEWAY_BRIDGE = 'netctl_gwbridge';

function gatewayEndpointName(sandbox: SandboxRecord): string {
  return `gateway_${sandbox.id.slice(0, 12)}`;
}

/** Connects the sandbox to the gateway bridge when a network it is on needs a way out and it has none. */
export async function attachGatewayBridge(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  const endpoints = await context.records.sandboxEndpoints(sandbox, 'throw');
  if (endpoints.some((e) => e.defaultGateway === true)) return;
  if (!(await needsGatewayBridge(context, endpoints))) return;
  const bridge = await gatewayBridge(context);
  if (bridge === undefined || endpoints.some((e) => e.networkId === bridge.id)) return;
  await connectEndpoint(context, bridge, sandbox, { name: gatewayEndpointName(sandbox) });
}

/** Takes the sandbox off the gateway bridge once no network it is on needs it. */
export async function detachGatewayBridge(context: ControllerContext, sandbox: SandboxRecord): Promise<void> {
  const endpoints = await context.records.sandboxEndpoints(sandbox, 'throw');
  const onBridge = endpoints.find((e) => e.name === gatewayEndpointName(sandbox));
  if (onBridge === undefined || (await needsGatewayBridge(context, endpoints))) return;
  const bridge = await context.records.networkById(onBridge.networkId);
  if (bridge.name !== GATEWAY_BRIDGE) return;
  await disconnectEndpoint(context, bridge, onBridge, sandbox, { force: false, handOverDefaultRoute: true });
}

async function needsGatewayBridge(context: ControllerContext, endpoints: readonly EndpointRecord[]): Promise<boolean> {
  for (const endpoint of endpoints) {
    const network = await context.records.networkById(endpoint.networkId).catch(() => undefined);
    if (network !== undefined && !network.internal && context.drivers.get(network.driver)?.needsGatewayBridge === true) return true;
  }
  return false;
}

/** The gateway bridge network, made now if there is none. */
async function gatewayBridge(context: ControllerContext): Promise<NetworkRecord | undefined> {
  // A controller without the bridge driver (a library user's choice) has no way out to offer.
  if (!context.drivers.has('bridge')) return undefined;
  const existing = (await context.records.networks('skip')).find((n) => n.name === GATEWAY_BRIDGE && n.scope === 'local');
  if (existing !== undefined) return existing;
  const { network } = await createNetwork(context, {
    name: GATEWAY_BRIDGE,
    driver: 'bridge',
    // Sandboxes of different overlays meet here: they reach the outside, not each other.
    options: { 'com.docker.network.bridge.name': GATEWAY_BRIDGE, 'com.docker.network.bridge.enable_icc': 'false' },
  });
  return network;
}
