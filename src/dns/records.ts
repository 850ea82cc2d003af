/**
 * The embedded DNS server's record table: which names each sandbox can
 * resolve, kept in memory and changed by the controller as endpoints join
 * and leave. Pure data, no I/O.
 *
 * Visibility follows libnetwork: a sandbox sees the names of the networks it
 * is joined to, nothing else. Every lookup is a map access per network the
 * asking sandbox is on (a handful), never a scan over all endpoints.
 */
import { InvalidArgument } from '../errors.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../wire/index.js';

export interface EndpointEntry {
  endpointId: string;
  networkId: string;
  networkName: string;
  sandboxId: string;
  /** The sandbox (container) name. */
  name: string;
  aliases: string[];
  ipv4?: string;
  ipv6?: string;
}

export interface ServiceEntry {
  name: string;
  networkId: string;
  /** IPv4 virtual IP; without one, the service name answers with its task addresses. */
  virtualIp?: string;
  tasks: { ipv4?: string; ipv6?: string }[];
}

export type AddressType = 'A' | 'AAAA';

export interface Resolution {
  /** The name is known on a network the sandbox shares (NODATA rather than NXDOMAIN when `addresses` is empty). */
  exists: boolean;
  addresses: string[];
}

interface StoredEndpoint {
  readonly endpointId: string;
  readonly networkId: string;
  readonly sandboxId: string;
  readonly name: string;
  /** Lowercase name and aliases, without duplicates. */
  readonly dnsNames: string[];
  readonly ipv4: string | undefined;
  readonly ipv6: string | undefined;
}

interface StoredService {
  readonly virtualIp: string | undefined;
  readonly tasks: { ipv4: string | undefined; ipv6: string | undefined }[];
}

interface NetworkRecords {
  /** As the endpoints gave it; '' until an endpoint on the network arrives. */
  name: string;
  lowerName: string;
  endpointCount: number;
  /** Lowercase DNS name (sandbox name or alias) → endpoint ids. */
  readonly names: Map<string, Set<string>>;
  /** Canonical address text → endpoint ids, for PTR. */
  readonly addresses: Map<string, Set<string>>;
  /** Lowercase service name → service. */
  readonly services: Map<string, StoredService>;
  /** Canonical virtual IP → the name of the service that has it, for PTR. */
  readonly virtualIps: Map<string, string>;
}

const NOTHING: Resolution = { exists: false, addresses: [] };
const TASKS_PREFIX = 'tasks.';
const IPV4_REVERSE = '.in-addr.arpa';
const IPV6_REVERSE = '.ip6.arpa';

/** Lowercase without one trailing dot: DNS names compare case-insensitively (RFC 4343). */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function canonicalIPv4(text: string, what: string): string {
  try {
    return formatIPv4(parseIPv4(text));
  } catch (cause) {
    throw new InvalidArgument(`${what}: invalid IPv4 address ${JSON.stringify(text)}`, { cause });
  }
}

function canonicalIPv6(text: string, what: string): string {
  try {
    return formatIPv6(parseIPv6(text));
  } catch (cause) {
    throw new InvalidArgument(`${what}: invalid IPv6 address ${JSON.stringify(text)}`, { cause });
  }
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set) set.add(value);
  else map.set(key, new Set([value]));
}

function deleteFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

/**
 * The address a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles of
 * `ip6.arpa`) stands for, in canonical text, or undefined when the name is
 * not a whole address (RFC 1035 §3.5, RFC 3596 §2.5).
 */
export function addressFromReverseName(ptrName: string): string | undefined {
  const name = normalizeName(ptrName);
  if (name.endsWith(IPV4_REVERSE)) {
    const octets = name.slice(0, -IPV4_REVERSE.length).split('.');
    if (octets.length !== 4) return undefined;
    try {
      return formatIPv4(parseIPv4(octets.reverse().join('.')));
    } catch {
      return undefined;
    }
  }
  if (name.endsWith(IPV6_REVERSE)) {
    const nibbles = name.slice(0, -IPV6_REVERSE.length).split('.');
    if (nibbles.length !== 32 || !nibbles.every((nibble) => /^[0-9a-f]$/.test(nibble))) return undefined;
    const hex = nibbles.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    return formatIPv6(parseIPv6(groups.join(':')));
  }
  return undefined;
}

/**
 * Names per network, and the networks each sandbox is joined to. Changes
 * take effect for the next lookup. Addresses are stored in canonical text,
 * so `fd00:0::5` and `fd00::5` are the same endpoint address.
 */
export class RecordTable {
  readonly #endpoints = new Map<string, StoredEndpoint>();
  readonly #networks = new Map<string, NetworkRecords>();
  /** Sandbox → networks it is joined to (in join order) → its endpoints there. */
  readonly #sandboxes = new Map<string, Map<string, Set<string>>>();
  #generation = 0;

  /**
   * Changes with every change to the table, so whoever keeps answers derived
   * from it (the DNS server's encoded records) knows when they are stale.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Adds the endpoint, or replaces the one with the same `endpointId`. Throws InvalidArgument on a bad address. */
  upsertEndpoint(entry: EndpointEntry): void {
    const what = `endpoint ${entry.endpointId}`;
    const stored: StoredEndpoint = {
      endpointId: entry.endpointId,
      networkId: entry.networkId,
      sandboxId: entry.sandboxId,
      name: entry.name,
      dnsNames: [...new Set([entry.name, ...entry.aliases].map(normalizeName))].filter((name) => name !== ''),
      ipv4: entry.ipv4 === undefined ? undefined : canonicalIPv4(entry.ipv4, what),
      ipv6: entry.ipv6 === undefined ? undefined : canonicalIPv6(entry.ipv6, what),
    };
    this.removeEndpoint(entry.endpointId);
    this.#generation++;

    const network = this.#network(entry.networkId);
    network.name = entry.networkName;
    network.lowerName = normalizeName(entry.networkName);
    network.endpointCount++;
    for (const name of stored.dnsNames) addTo(network.names, name, stored.endpointId);
    if (stored.ipv4 !== undefined) addTo(network.addresses, stored.ipv4, stored.endpointId);
    if (stored.ipv6 !== undefined) addTo(network.addresses, stored.ipv6, stored.endpointId);

    let joined = this.#sandboxes.get(stored.sandboxId);
    if (!joined) {
      joined = new Map();
      this.#sandboxes.set(stored.sandboxId, joined);
    }
    addTo(joined, stored.networkId, stored.endpointId);
    this.#endpoints.set(stored.endpointId, stored);
  }

  /** Forgets the endpoint; unknown ids are ignored. */
  removeEndpoint(endpointId: string): void {
    const stored = this.#endpoints.get(endpointId);
    if (!stored) return;
    this.#generation++;
    this.#endpoints.delete(endpointId);
    const network = this.#networks.get(stored.networkId);
    if (network) {
      network.endpointCount--;
      for (const name of stored.dnsNames) deleteFrom(network.names, name, endpointId);
      if (stored.ipv4 !== undefined) deleteFrom(network.addresses, stored.ipv4, endpointId);
      if (stored.ipv6 !== undefined) deleteFrom(network.addresses, stored.ipv6, endpointId);
      this.#dropIfEmpty(stored.networkId, network);
    }
    const joined = this.#sandboxes.get(stored.sandboxId);
    if (joined) {
      deleteFrom(joined, stored.networkId, endpointId);
      if (joined.size === 0) this.#sandboxes.delete(stored.sandboxId);
    }
  }

  /** Adds the service on its network, or replaces the one with the same name there. Throws InvalidArgument on a bad address. */
  upsertService(entry: ServiceEntry): void {
    const what = `service ${entry.name}`;
    const name = normalizeName(entry.name);
    if (name === '') throw new InvalidArgument('service name is empty');
    const stored: StoredService = {
      virtualIp: entry.virtualIp === undefined ? undefined : canonicalIPv4(entry.virtualIp, what),
      tasks: entry.tasks.map((task) => ({
        ipv4: task.ipv4 === undefined ? undefined : canonicalIPv4(task.ipv4, what),
        ipv6: task.ipv6 === undefined ? undefined : canonicalIPv6(task.ipv6, what),
      })),
    };
    const network = this.#network(entry.networkId);
    this.#generation++;
    this.#forgetVirtualIp(network, name);
    network.services.set(name, stored);
    if (stored.virtualIp !== undefined) network.virtualIps.set(stored.virtualIp, entry.name);
  }

  /** Forgets the service on that network; unknown ones are ignored. */
  removeService(name: string, networkId: string): void {
    const network = this.#networks.get(networkId);
    if (!network) return;
    this.#generation++;
    this.#forgetVirtualIp(network, normalizeName(name));
    network.services.delete(normalizeName(name));
    this.#dropIfEmpty(networkId, network);
  }

  /** The networks a sandbox is joined to, in the order it joined them (a copy). */
  networksOf(sandboxId: string): Set<string> {
    return new Set(this.#sandboxes.get(sandboxId)?.keys());
  }

  /**
   * A/AAAA for `name` as seen from the sandbox. Forms: `name`, `alias`,
   * `name.network`, `alias.network`, `service` (its virtual IP if it has
   * one, else every task address), `tasks.service` (every task address),
   * each optionally followed by `.network`; case-insensitive, trailing dot
   * optional. A name found on several shared networks answers from the
   * first of them that has addresses of the type, in the sandbox's join
   * order: libnetwork too answers from one network, so every address given
   * is reachable through one interface.
   */
  resolve(sandboxId: string, name: string, type: AddressType): Resolution {
    const wanted = normalizeName(name);
    const joined = this.#sandboxes.get(sandboxId);
    if (wanted === '' || !joined) return NOTHING;
    let exists = false;
    for (const networkId of joined.keys()) {
      const network = this.#networks.get(networkId);
      if (!network) continue;
      const addresses = new Set<string>();
      exists = this.#lookup(network, wanted, type, addresses) || exists;
      const suffix = `.${network.lowerName}`;
      if (network.lowerName !== '' && wanted.length > suffix.length && wanted.endsWith(suffix)) {
        exists = this.#lookup(network, wanted.slice(0, -suffix.length), type, addresses) || exists;
      }
      if (addresses.size > 0) return { exists: true, addresses: [...addresses] };
    }
    return exists ? { exists, addresses: [] } : NOTHING;
  }

  /**
   * PTR for an endpoint address on a network the sandbox shares: `name.network`,
   * as Docker answers (the sandbox name plus network name); for a service's
   * virtual IP there, the service name. Empty when the name is not a reverse
   * name of such an address.
   */
  reverse(sandboxId: string, ptrName: string): string[] {
    const address = addressFromReverseName(ptrName);
    const joined = this.#sandboxes.get(sandboxId);
    if (address === undefined || !joined) return [];
    for (const networkId of joined.keys()) {
      const network = this.#networks.get(networkId);
      const endpointIds = network?.addresses.get(address);
      if (!network || !endpointIds) continue;
      const names = new Set<string>();
      for (const endpointId of endpointIds) {
        const endpoint = this.#endpoints.get(endpointId);
        if (endpoint && endpoint.name !== '') names.add(`${endpoint.name}.${network.name}`);
      }
      if (names.size > 0) return [...names];
    }
    for (const networkId of joined.keys()) {
      const service = this.#networks.get(networkId)?.virtualIps.get(address);
      if (service !== undefined) return [service];
    }
    return [];
  }

  /** Adds the addresses `name` has on one network to `into`; true when the name exists there. */
  #lookup(network: NetworkRecords, name: string, type: AddressType, into: Set<string>): boolean {
    let exists = false;
    const endpointIds = network.names.get(name);
    if (endpointIds) {
      exists = true;
      for (const endpointId of endpointIds) {
        const endpoint = this.#endpoints.get(endpointId);
        const address = type === 'A' ? endpoint?.ipv4 : endpoint?.ipv6;
        if (address !== undefined) into.add(address);
      }
    }
    const service = network.services.get(name);
    if (service) {
      exists = true;
      if (service.virtualIp !== undefined) {
        if (type === 'A') into.add(service.virtualIp);
      } else {
        addTaskAddresses(service, type, into);
      }
    }
    if (name.startsWith(TASKS_PREFIX)) {
      const tasksOf = network.services.get(name.slice(TASKS_PREFIX.length));
      if (tasksOf) {
        exists = true;
        addTaskAddresses(tasksOf, type, into);
      }
    }
    return exists;
  }

  #network(networkId: string): NetworkRecords {
    let network = this.#networks.get(networkId);
    if (!network) {
      network = {
        name: '',
        lowerName: '',
        endpointCount: 0,
        names: new Map(),
        addresses: new Map(),
        services: new Map(),
        virtualIps: new Map(),
      };
      this.#networks.set(networkId, network);
    }
    return network;
  }

  /** Drops the PTR of the virtual IP the service (lowercase name) had on the network. */
  #forgetVirtualIp(network: NetworkRecords, lowerName: string): void {
    const virtualIp = network.services.get(lowerName)?.virtualIp;
    if (virtualIp !== undefined && normalizeName(network.virtualIps.get(virtualIp) ?? '') === lowerName) network.virtualIps.delete(virtualIp);
  }

  #dropIfEmpty(networkId: string, network: NetworkRecords): void {
    if (network.endpointCount === 0 && network.services.size === 0) this.#networks.delete(networkId);
  }
}

function addTaskAddresses(service: StoredService, type: AddressType, into: Set<string>): void {
  for (const task of service.tasks) {
    const address = type === 'A' ? task.ipv4 : task.ipv6;
    if (address !== undefined) into.add(address);
  }
}
