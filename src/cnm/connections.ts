/**
 * `docker network connect` and `disconnect`: an endpoint named after the
 * sandbox, made and joined or left and deleted in one call, and the way out
 * through the gateway bridge given or taken away as the sandbox's networks
 * now need it.
 */
import { type ControllerContext, bestEffort } from './context.js';
import { connectEndpoint, disconnectEndpoint, refuseHostNetwork } from './endpoints.js';
import { attachGatewayBridge, detachGatewayBridge } from './gateway-bridge.js';
import type { EndpointCreateRequest } from './types.js';
import { Forbidden, SandboxNotFound } from '../errors.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { findByIdOrNameOptional } from '../repository/repository.js';

/**
 * Connects the sandbox to the network, its interface named `ifName` when
 * given; when it then needs the gateway bridge and that fails, the connect
 * is undone.
 */
export async function connect(
  context: ControllerContext,
  network: NetworkRecord,
  sandbox: SandboxRecord,
  request: EndpointCreateRequest,
  ifName?: string,
): Promise<EndpointRecord> {
  const joined = await connectEndpoint(context, network, sandbox, request, ifName);
  try {
    await attachGatewayBridge(context, sandbox);
  } catch (err) {
    await bestEffort(context, `undo connect of ${joined.name}`, () =>
      disconnectEndpoint(context, network, joined, sandbox, { force: true, handOverDefaultRoute: false }),
    );
    throw err;
  }
  return joined;
}

/**
 * Leaves and deletes the sandbox's endpoint on the network. Forced, the
 * sandbox may be gone and `sandboxIdOrName` may name the endpoint itself,
 * as with docker.
 */
export async function disconnect(
  context: ControllerContext,
  network: NetworkRecord,
  sandboxIdOrName: string,
  force: boolean,
): Promise<void> {
  refuseHostNetwork(context, network);
  const sandbox = await context.records.findSandbox(sandboxIdOrName, 'skip').catch((err: unknown) => {
    if (force && err instanceof SandboxNotFound) return undefined;
    throw err;
  });
  let endpoint =
    sandbox === undefined ? undefined : (await context.records.sandboxEndpoints(sandbox, 'skip')).find((e) => e.networkId === network.id);
  if (endpoint === undefined && force) {
    endpoint = findByIdOrNameOptional('endpoint', sandboxIdOrName, await context.records.networkEndpoints(network, 'skip'));
  }
  if (endpoint === undefined) {
    throw new Forbidden(`sandbox ${sandbox?.name ?? sandboxIdOrName} is not connected to network ${network.name}`);
  }
  const owner = endpoint.sandboxId === undefined ? undefined : await context.records.sandboxById(endpoint.sandboxId).catch(() => undefined);
  await disconnectEndpoint(context, network, endpoint, owner, { force, handOverDefaultRoute: true });
  if (owner !== undefined) {
    await detachGatewayBridge(context, owner);
    // The network that gave the default route may have gone while an overlay still needs a way out.
    await attachGatewayBridge(context, owner);
  }
}
