/**
 * A service's published ports (Docker's PortConfig): the checks a create
 * request's ports pass, the ports picked for those that name none, and the
 * claims (keys.publishedPort) that keep a port and protocol to one service
 * of a store. Opening the ports is the ingress data plane's work; this is
 * what it is told to open.
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

/** swarmkit's dynamic range: where a port published in ingress mode without a number gets one, the lowest free. */
export const DYNAMIC_PORTS = { first: 30000, last: 32767 } as const;

/** swarmkit's words: dnsrr gives no virtual IP for the routing mesh to balance a port over. */
const DNSRR_INGRESS = "EndpointSpec: port published with ingress mode can't be used with dnsrr mode";

/** A requested port, checked, whose published port may be left to pick. */
export type WantedPort = Omit<PublishedPort, 'publishedPort'> & { readonly publishedPort?: number };

/** "8080/tcp": how errors and Docker name a published port. */
export function portName(port: Pick<PublishedPort, 'protocol' | 'publishedPort'>): string {
  return `${port.publishedPort}/${port.protocol}`;
}

/**
 * One requested port with Docker's defaults filled in (tcp, ingress), each
 * field checked. Only an ingress port may leave its published port to pick:
 * Docker has each host-mode task's host pick its own, which needs a
 * scheduler netctl does not have.
 */
export function wantedPort(request: PublishedPortRequest): WantedPort {
  const protocol = request.protocol ?? 'tcp';
  if (!PROTOCOLS.includes(protocol)) throw new InvalidArgument(`invalid protocol ${JSON.stringify(protocol)}: tcp or udp`);
  const publishMode = request.publishMode ?? 'ingress';
  if (!PUBLISH_MODES.includes(publishMode)) throw new InvalidArgument(`invalid publish mode ${JSON.stringify(publishMode)}: ingress or host`);
  const targetPort = portNumber('target', request.targetPort);
  if (request.publishedPort === undefined) {
    if (publishMode === 'host') throw new InvalidArgument(`target port ${targetPort}: a published port is required in host mode`);
    return { protocol, targetPort, publishMode };
  }
  return { protocol, targetPort, publishedPort: portNumber('published', request.publishedPort), publishMode };
}

/**
 * A create request's ports, each checked (wantedPort), and together: no
 * port and protocol twice, and none in ingress mode on a dnsrr service,
 * which swarmkit refuses too.
 */
export function wantedPorts(requested: unknown, endpointMode: EndpointMode): WantedPort[] {
  if (requested === undefined) return [];
  if (!Array.isArray(requested)) throw new InvalidArgument('ports must be a list of published ports');
  if (requested.length > MAX_PORTS) throw new InvalidArgument(`too many published ports (${requested.length}, at most ${MAX_PORTS})`);
  const ports: WantedPort[] = [];
  for (const entry of requested as unknown[]) {
    if (entry === null || typeof entry !== 'object') throw new InvalidArgument('ports must be a list of published ports');
    const port = wantedPort(entry as PublishedPortRequest);
    if (endpointMode === 'dnsrr' && port.publishMode === 'ingress') throw new InvalidArgument(DNSRR_INGRESS);
    const fixed = numbered(port);
    if (fixed !== undefined && ports.some((other) => other.protocol === fixed.protocol && other.publishedPort === fixed.publishedPort)) {
      throw new InvalidArgument(`port ${portName(fixed)} is published more than once`);
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
export async function checkPortsFree(context: ControllerContext, wanted: readonly WantedPort[]): Promise<void> {
  const ports = wanted.flatMap((port) => numbered(port) ?? []);
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

/**
 * For the create txn in `store`: the ports, each left open given the lowest
 * free one of DYNAMIC_PORTS (claimed by no service of either store, nor by
 * another port of the request, nor held on this host), and a claim per
 * port, compared as absent. A numbered port claimed meanwhile is refused by
 * its holder's name; a picked one lost to a race is picked again on the
 * txn's retry.
 */
export async function portClaims(
  context: ControllerContext,
  store: Store,
  wanted: readonly WantedPort[],
  serviceId: string,
): Promise<{ ports: PublishedPort[]; compare: Compare[]; put: { key: string; value: string }[] }> {
  const taken = new Set(wanted.flatMap((port) => numbered(port) ?? []).map(portName));
  const ports: PublishedPort[] = [];
  const compare: Compare[] = [];
  const put: { key: string; value: string }[] = [];
  for (const port of wanted) {
    const given = numbered(port);
    if (given !== undefined) {
      const claim = await store.get(keys.publishedPort(given.protocol, given.publishedPort));
      if (claim !== undefined) throw await alreadyPublished(context, given, claim.value);
    }
    const published = given ?? withPublishedPort(port, await freePort(context, port.protocol, taken));
    const key = keys.publishedPort(published.protocol, published.publishedPort);
    ports.push(published);
    compare.push({ key, modRevision: 0 });
    put.push({ key, value: serviceId });
  }
  return { ports, compare, put };
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

/** The port as a PublishedPort when its published port is given. */
function numbered(port: WantedPort): PublishedPort | undefined {
  return port.publishedPort === undefined ? undefined : withPublishedPort(port, port.publishedPort);
}

function withPublishedPort(port: WantedPort, publishedPort: number): PublishedPort {
  return { protocol: port.protocol, targetPort: port.targetPort, publishedPort, publishMode: port.publishMode };
}

/** The lowest port of DYNAMIC_PORTS free for `protocol`; it joins `taken`. */
async function freePort(context: ControllerContext, protocol: PortProtocol, taken: Set<string>): Promise<number> {
  const claimed = new Set<string>();
  for (const store of context.records.networkStores()) {
    for (const kv of await store.list(keys.protocolPorts(protocol))) claimed.add(kv.key);
  }
  for (let port = DYNAMIC_PORTS.first; port <= DYNAMIC_PORTS.last; port++) {
    const name = portName({ protocol, publishedPort: port });
    if (taken.has(name) || claimed.has(keys.publishedPort(protocol, port))) continue;
    if ((await context.portInUse?.(protocol, port)) === true) continue;
    taken.add(name);
    return port;
  }
  throw new Conflict(`no ${protocol} port left to publish in ${DYNAMIC_PORTS.first}-${DYNAMIC_PORTS.last}`);
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
