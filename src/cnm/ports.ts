/**
 * A service's published ports (Docker's PortConfig): the checks a create
 * request's ports pass, and the claims (keys.publishedPort) that keep a
 * port and protocol to one service of a store. Opening the ports is the
 * ingress data plane's work; this is what it is told to open.
 */
import type { ControllerContext } from './context.js';
import type { PublishedPortRequest } from './types.js';
import { Conflict, InvalidArgument, isNotFound } from '../errors.js';
import type { EndpointMode, PortProtocol, PublishMode, PublishedPort, ServiceRecord } from '../records.js';
import { keys } from '../repository/keys.js';
import type { Compare, Store } from '../store/types.js';

const PROTOCOLS: readonly unknown[] = ['tcp', 'udp'] satisfies PortProtocol[];
const PUBLISH_MODES: readonly unknown[] = ['ingress', 'host'] satisfies PublishMode[];
/**
 * Each port costs one claim key in the create txn: with MAX_NETWORKS
 * networks of 3 keys each, the record and the name, 30 keep it within
 * etcd's 128 operations.
 */
export const MAX_PORTS = 30;

/** swarmkit's words: dnsrr gives no virtual IP for the routing mesh to balance a port over. */
const DNSRR_INGRESS = "EndpointSpec: port published with ingress mode can't be used with dnsrr mode";

/** "8080/tcp": how errors and Docker name a published port. */
export function portName(port: Pick<PublishedPort, 'protocol' | 'publishedPort'>): string {
  return `${port.publishedPort}/${port.protocol}`;
}

/** One requested port with Docker's defaults filled in (tcp, ingress), each field checked. */
export function publishedPort(request: PublishedPortRequest): PublishedPort {
  const protocol = request.protocol ?? 'tcp';
  if (!PROTOCOLS.includes(protocol)) throw new InvalidArgument(`invalid protocol ${JSON.stringify(protocol)}: tcp or udp`);
  const publishMode = request.publishMode ?? 'ingress';
  if (!PUBLISH_MODES.includes(publishMode)) throw new InvalidArgument(`invalid publish mode ${JSON.stringify(publishMode)}: ingress or host`);
  return {
    protocol,
    targetPort: portNumber('target', request.targetPort),
    publishedPort: portNumber('published', request.publishedPort),
    publishMode,
  };
}

/**
 * A create request's ports, each checked (publishedPort), and together:
 * no port and protocol twice, and none in ingress mode on a dnsrr service,
 * which swarmkit refuses too.
 */
export function publishedPorts(requested: unknown, endpointMode: EndpointMode): PublishedPort[] {
  if (requested === undefined) return [];
  if (!Array.isArray(requested)) throw new InvalidArgument('ports must be a list of published ports');
  if (requested.length > MAX_PORTS) throw new InvalidArgument(`too many published ports (${requested.length}, at most ${MAX_PORTS})`);
  const ports: PublishedPort[] = [];
  for (const entry of requested as unknown[]) {
    if (entry === null || typeof entry !== 'object') throw new InvalidArgument('ports must be a list of published ports');
    const port = publishedPort(entry as PublishedPortRequest);
    if (endpointMode === 'dnsrr' && port.publishMode === 'ingress') throw new InvalidArgument(DNSRR_INGRESS);
    if (ports.some((other) => portName(other) === portName(port))) {
      throw new InvalidArgument(`port ${portName(port)} is published more than once`);
    }
    ports.push(port);
  }
  return ports;
}

/**
 * Refuses a port that a service of either store publishes (a local and a
 * global service would both open it on this host), or that something on
 * this host holds. The service's own store is checked again in its txn
 * (portClaims), where the claims are compared.
 */
export async function checkPortsFree(context: ControllerContext, ports: readonly PublishedPort[]): Promise<void> {
  for (const port of ports) {
    for (const store of context.records.networkStores()) {
      const claim = await store.get(keys.publishedPort(port.protocol, port.publishedPort));
      if (claim !== undefined) throw await alreadyPublished(context, port, claim.value);
    }
  }
  const portInUse = context.portInUse;
  if (portInUse === undefined) return;
  for (const port of ports) {
    if (await portInUse(port.protocol, port.publishedPort)) throw new Conflict(`port ${portName(port)} is already in use on this host`);
  }
}

/** For the create txn in `store`: a claim per port, compared as absent; a port claimed meanwhile is refused by its holder's name. */
export async function portClaims(
  context: ControllerContext,
  store: Store,
  ports: readonly PublishedPort[],
  serviceId: string,
): Promise<{ compare: Compare[]; put: { key: string; value: string }[] }> {
  const compare: Compare[] = [];
  const put: { key: string; value: string }[] = [];
  for (const port of ports) {
    const key = keys.publishedPort(port.protocol, port.publishedPort);
    const claim = await store.get(key);
    if (claim !== undefined) throw await alreadyPublished(context, port, claim.value);
    compare.push({ key, modRevision: 0 });
    put.push({ key, value: serviceId });
  }
  return { compare, put };
}

/** The service's port claims in `store` that are still its own: what its removal deletes. */
export async function ownPortClaims(store: Store, service: ServiceRecord): Promise<string[]> {
  const own: string[] = [];
  for (const port of service.ports ?? []) {
    const claim = await store.get(keys.publishedPort(port.protocol, port.publishedPort));
    if (claim?.value === service.id) own.push(claim.key);
  }
  return own;
}

function portNumber(which: 'target' | 'published', value: unknown): number {
  if (value === undefined || value === null) throw new InvalidArgument(`a ${which} port is required`);
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new InvalidArgument(`invalid ${which} port ${JSON.stringify(value)}: not a whole number`);
  }
  if (value < 1 || value > 65535) throw new InvalidArgument(`invalid ${which} port ${value}: out of range (1-65535)`);
  return value;
}

async function alreadyPublished(context: ControllerContext, port: PublishedPort, holderId: string): Promise<Conflict> {
  let holder = holderId;
  try {
    holder = (await context.records.findService(holderId, 'skip')).name;
  } catch (err) {
    // A claim whose service record cannot be read is still a claim; the id names it.
    if (!isNotFound(err)) throw err;
  }
  return new Conflict(`port ${portName(port)} is already published by service ${holder}`);
}
