/**
 * Wiring shared by the drivers that put an endpoint on a Linux bridge: a
 * veth pair whose one end is a port of the bridge and whose other end is
 * the sandbox's ethN, with the endpoint's MAC, MTU and addresses.
 */
import type { EndpointRecord } from '../records.js';
import type { Links } from './kernel.js';

/** Bridge-side end of an endpoint's veth pair, named after the endpoint as Docker's are. */
export function hostVethName(endpointId: string): string {
  return `veth${endpointId.slice(0, 7)}`;
}

/** The sandbox end's name until it is renamed (it must not clash with the eth0… already there). */
function tempPeerName(endpointId: string): string {
  return `vtmp${endpointId.slice(0, 7)}`;
}

export interface PlugRequest {
  /** rtnetlink in the namespace holding the bridge. */
  readonly bridgeSide: Links;
  /** rtnetlink in the sandbox. */
  readonly sandboxSide: Links;
  readonly sandboxNetnsPath: string;
  readonly bridgeName: string;
  readonly endpoint: EndpointRecord;
  readonly ifName: string;
  readonly mtu: number;
  /** Bridge port isolation (enable_icc=false). */
  readonly isolated?: boolean;
}

/**
 * Plugs the endpoint into the bridge. Idempotent: when both ends already
 * exist (a restarted daemon) it only makes sure of their settings. On
 * failure the pair is removed again.
 */
export async function plugVeth(request: PlugRequest): Promise<void> {
  const { bridgeSide, sandboxSide, endpoint, ifName } = request;
  const hostName = hostVethName(endpoint.id);
  try {
    const present = (await bridgeSide.getLink(hostName)) !== undefined && (await sandboxSide.getLink(ifName)) !== undefined;
    if (!present) {
      await bridgeSide.deleteLink(hostName);
      await sandboxSide.deleteLink(ifName);
      await bridgeSide.createVeth(hostName, tempPeerName(endpoint.id), { mtu: request.mtu, peerNetnsPath: request.sandboxNetnsPath });
      await sandboxSide.rename(tempPeerName(endpoint.id), ifName);
      await sandboxSide.setMac(ifName, endpoint.macAddress);
    }
    await bridgeSide.setMaster(hostName, request.bridgeName);
    if (request.isolated !== undefined) await bridgeSide.setBridgePortIsolated(hostName, request.isolated);
    await bridgeSide.setUp(hostName);
    await sandboxSide.setMtu(ifName, request.mtu);
    const addresses = new Set((await sandboxSide.listAddresses(ifName)).map((a) => a.cidr));
    for (const cidr of [endpoint.ipv4Address, endpoint.ipv6Address]) {
      if (cidr !== undefined && !addresses.has(cidr)) await sandboxSide.addAddress(ifName, cidr);
    }
    await sandboxSide.setUp(ifName);
  } catch (err) {
    await bridgeSide.deleteLink(hostName).catch(() => undefined);
    throw err;
  }
}

export interface HandoffRequest {
  /** rtnetlink in the namespace holding the bridge. */
  readonly bridgeSide: Links;
  /** rtnetlink in the namespace the runtime takes the interface from: the host's, where the daemon runs (may be `bridgeSide`). */
  readonly hostSide: Links;
  readonly hostNetnsPath: string;
  readonly bridgeName: string;
  readonly endpoint: EndpointRecord;
  /** The name the runtime looks for (Docker's SrcName). */
  readonly ifName: string;
  readonly mtu: number;
  readonly isolated?: boolean;
}

/**
 * Plugs the endpoint into the bridge and leaves the other end in the host's
 * namespace, with the endpoint's MAC and MTU but no address and down, for
 * a runtime that moves it into its sandbox and configures it there
 * (Docker's remote driver Join). Idempotent: when the bridge end exists the
 * other end may already be in the sandbox, so it is left alone.
 */
export async function plugHandoff(request: HandoffRequest): Promise<void> {
  const { bridgeSide, endpoint, ifName } = request;
  const hostName = hostVethName(endpoint.id);
  try {
    if ((await bridgeSide.getLink(hostName)) === undefined) {
      await bridgeSide.createVeth(hostName, ifName, { mtu: request.mtu, peerNetnsPath: request.hostNetnsPath });
      await request.hostSide.setMac(ifName, endpoint.macAddress);
    }
    await bridgeSide.setMaster(hostName, request.bridgeName);
    if (request.isolated !== undefined) await bridgeSide.setBridgePortIsolated(hostName, request.isolated);
    await bridgeSide.setUp(hostName);
  } catch (err) {
    await bridgeSide.deleteLink(hostName).catch(() => undefined);
    throw err;
  }
}

/** Removes the endpoint's pair; deleting one end deletes the other with its addresses and routes. */
export async function unplugVeth(bridgeSide: Links, endpointId: string): Promise<void> {
  await bridgeSide.deleteLink(hostVethName(endpointId));
}
