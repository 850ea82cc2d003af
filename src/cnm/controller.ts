/**
 * The Controller owns networks, endpoints and sandboxes (libnetwork's
 * Container Network Model): records and IPAM state live in the store,
 * kernel state is made by drivers. Every change reserves its records in
 * one store transaction first, then asks the driver; when the driver fails
 * the transaction is undone, so a failed call leaves store and kernel as
 * they were. On open, the kernel state of every stored network and joined
 * endpoint is made again (drivers are idempotent), which is how a
 * restarted daemon gets its wiring back.
 */
import { randomBytes } from 'node:crypto';
import type { NetworkDriver, NetworkPeer } from './driver.js';
import {
  Conflict,
  EndpointNotFound,
  Forbidden,
  InvalidArgument,
  NetctlError,
  NetworkNotFound,
  SandboxNotFound,
} from '../errors.js';
import {
  type Filters,
  matchesListFilters,
  matchesPruneFilters,
  validateListFilters,
  validatePruneFilters,
} from './filters.js';
import { type DockerNetwork, toDockerNetwork } from './inspect.js';
import { Allocator, type AllocatorState, type PoolRequest, resolvePools } from './ipam.js';
import type { NamespaceOps } from './namespaces.js';
import type { EndpointPending, EndpointRecord, NetworkRecord, SandboxRecord, Scope } from '../records.js';
import type { ReachabilityStatus } from '../store/last-known.js';
import type { KeyValue, Store, TxnRequest } from '../store/types.js';
import { type Logger, consoleWarnings } from '../log.js';

export interface ControllerOptions {
  /** Local store: sandboxes, and networks of local scope with their endpoints. */
  readonly store: Store;
  /**
   * Cluster store shared by every host (etcd): networks of global scope with
   * their endpoints and IPAM state. Without one, global networks cannot be made.
   */
  readonly globalStore?: Store;
  readonly drivers: readonly NetworkDriver[];
  readonly namespaces: NamespaceOps;
  /** Driver used when a create request names none. */
  readonly defaultDriver?: string;
  /** Reports problems found while restoring state; defaults to console.warn. */
  readonly logger?: Logger;
  readonly now?: () => Date;
  /** Close the store with the controller (when the controller's opener made it). */
  readonly ownsStore?: boolean;
  /** Where a sandbox's resolv.conf is, when something (the embedded DNS) writes one. */
  readonly resolvConfPath?: (sandbox: SandboxRecord) => string;
  /**
   * Namespaces no sandbox may take (the daemon's own, the host's root one):
   * joining endpoints there would rewire the host itself.
   */
  readonly reservedNamespaces?: readonly string[];
  /**
   * Whether the cluster store answers, and a way to hear when it is back (a
   * LastKnownStore gives both): listings say when global networks are shown
   * as last seen, and local names are claimed once the store is back.
   */
  readonly clusterReachability?: {
    status(): ReachabilityStatus;
    onReachable(callback: () => void): () => void;
  };
}

export interface NetworkCreateRequest {
  readonly name: string;
  readonly driver?: string;
  readonly internal?: boolean;
  readonly attachable?: boolean;
  readonly ingress?: boolean;
  readonly enableIPv4?: boolean;
  readonly enableIPv6?: boolean;
  readonly ipam?: {
    readonly driver?: string;
    readonly config?: readonly PoolRequest[];
    readonly options?: Readonly<Record<string, string>>;
  };
  readonly options?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface SandboxCreateRequest {
  readonly name: string;
  /** Register an existing namespace instead of making /var/run/netns/NAME. */
  readonly netnsPath?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface EndpointCreateRequest {
  /** Defaults to the sandbox name on connect; must be unique in the network. */
  readonly name: string;
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly aliases?: readonly string[];
}

export interface ConnectOptions {
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly aliases?: readonly string[];
}

export interface DisconnectOptions {
  /**
   * Remove the endpoint whatever state it is in, as `docker network
   * disconnect -f` does: the sandbox argument may also name the endpoint
   * (its sandbox may be gone), and a failing driver does not stop the
   * removal of the record and the release of its addresses.
   */
  readonly force?: boolean;
}

export interface SandboxInfo extends SandboxRecord {
  readonly endpoints: readonly EndpointRecord[];
  /** The resolv.conf pointing at the embedded DNS, for runtimes to mount. */
  readonly resolvConfPath?: string;
}

/** Per-network state that changes with every endpoint: addresses and endpoint names. */
interface NetworkState {
  readonly allocator: AllocatorState;
  /** endpointId → endpoint name */
  readonly endpoints: Record<string, string>;
}

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const MAX_CAS_RETRIES = 20;
/**
 * Bounds on what a request may store, so one client cannot fill the store
 * (Docker sets none; these are far above what real labels need).
 */
export const LIMITS = {
  metadataEntries: 64,
  metadataKeyBytes: 256,
  metadataValueBytes: 4096,
  aliases: 32,
} as const;
const ALIAS_LABEL = /^[A-Za-z0-9_-]{1,63}$/;

const key = {
  network: (id: string) => `networks/${id}`,
  networkState: (id: string) => `network-state/${id}`,
  networkName: (name: string) => `names/networks/${name}`,
  subnets: 'ipam/subnets',
  endpoint: (networkId: string, endpointId: string) => `endpoints/${networkId}/${endpointId}`,
  endpoints: (networkId: string) => `endpoints/${networkId}/`,
  sandbox: (id: string) => `sandboxes/${id}`,
  sandboxName: (name: string) => `names/sandboxes/${name}`,
  /** In the cluster store: the hosts that have a local network of this name. */
  localNames: (name: string) => `names/local/${name}/`,
  localName: (name: string, hostId: string) => `names/local/${name}/${hostId}`,
  /** In the local store: this host's id among the hosts sharing a cluster store. */
  hostId: 'host/id',
};

/** Subnets in use by all networks: subnet → owner. Checked on create so no two overlap. */
type SubnetTable = Record<string, { networkId: string; networkName: string }>;

function newId(): string {
  return randomBytes(32).toString('hex');
}

/** RFC 3339 with nanosecond digits, as Docker prints `Created`. */
function timestamp(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

function parse<T>(kv: KeyValue): T {
  return JSON.parse(kv.value) as T;
}

function validateName(kind: string, name: string): void {
  if (typeof name !== 'string' || name === '') throw new InvalidArgument(`${kind} name must not be empty`);
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgument(
      `invalid ${kind} name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
    );
  }
  if (name.length > 200) throw new InvalidArgument(`${kind} name "${name.slice(0, 20)}…" is too long`);
}

/** Labels and options: a bounded number of entries of bounded size. */
function validateMetadata(what: string, entries: Readonly<Record<string, string>> | undefined): void {
  if (entries === undefined) return;
  if (typeof entries !== 'object' || entries === null) throw new InvalidArgument(`${what} must be a map of strings`);
  const keys = Object.keys(entries);
  if (keys.length > LIMITS.metadataEntries) {
    throw new InvalidArgument(`too many ${what}: ${keys.length} (at most ${LIMITS.metadataEntries})`);
  }
  for (const name of keys) {
    const value = entries[name];
    if (name === '') throw new InvalidArgument(`${what}: a key must not be empty`);
    if (typeof value !== 'string') throw new InvalidArgument(`${what}: the value of ${JSON.stringify(name.slice(0, 40))} must be a string`);
    if (Buffer.byteLength(name) > LIMITS.metadataKeyBytes) {
      throw new InvalidArgument(`${what}: key "${name.slice(0, 20)}…" is longer than ${LIMITS.metadataKeyBytes} bytes`);
    }
    if (Buffer.byteLength(value) > LIMITS.metadataValueBytes) {
      throw new InvalidArgument(`${what}: the value of "${name.slice(0, 40)}" is longer than ${LIMITS.metadataValueBytes} bytes`);
    }
  }
}

/** Aliases are DNS names the embedded DNS answers: dot-separated labels of letters, digits, '-' and '_'. */
function validateAliases(aliases: readonly string[] | undefined): void {
  if (aliases === undefined) return;
  if (!Array.isArray(aliases)) throw new InvalidArgument('aliases must be a list of names');
  if (aliases.length > LIMITS.aliases) throw new InvalidArgument(`too many aliases: ${aliases.length} (at most ${LIMITS.aliases})`);
  for (const alias of aliases) {
    const valid =
      typeof alias === 'string' && alias.length <= 253 && alias.split('.').every((label) => ALIAS_LABEL.test(label));
    if (!valid) {
      throw new InvalidArgument(
        `invalid alias ${JSON.stringify(String(alias).slice(0, 64))}: a DNS name of labels of letters, digits, '-' and '_' (at most 63 each)`,
      );
    }
  }
}

function withoutPending<T extends { readonly pending?: unknown }>(record: T): Omit<T, 'pending'> {
  const { pending: _pending, ...rest } = record;
  return rest;
}

/** The endpoint as it is when joined to no sandbox. */
function detached(endpoint: EndpointRecord): EndpointRecord {
  const { sandboxId: _sandboxId, ifName: _ifName, defaultGateway: _defaultGateway, pending: _pending, ...rest } = endpoint;
  return rest;
}

/** One mutation at a time in this process: interface names and rollbacks stay simple. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

export class Controller {
  private readonly store: Store;
  private readonly globalStore: Store | undefined;
  private readonly drivers: Map<string, NetworkDriver>;
  private readonly namespaces: NamespaceOps;
  private readonly defaultDriver: string;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly mutex = new Mutex();
  private readonly ownsStore: boolean;
  private readonly resolvConfPathOf: ((sandbox: SandboxRecord) => string) | undefined;
  private readonly reservedNamespaces: readonly string[];
  private readonly clusterReachability: ControllerOptions['clusterReachability'];
  private stopFollowingReachability: (() => void) | undefined;
  private closed = false;

  private constructor(options: ControllerOptions) {
    this.store = options.store;
    this.globalStore = options.globalStore;
    this.drivers = new Map(options.drivers.map((driver) => [driver.name, driver]));
    this.namespaces = options.namespaces;
    this.defaultDriver = options.defaultDriver ?? 'bridge';
    this.logger = options.logger ?? consoleWarnings;
    this.now = options.now ?? (() => new Date());
    this.ownsStore = options.ownsStore ?? false;
    this.resolvConfPathOf = options.resolvConfPath;
    this.reservedNamespaces = options.reservedNamespaces ?? [];
    this.clusterReachability = options.clusterReachability;
  }

  private sandboxInfo(sandbox: SandboxRecord, endpoints: readonly EndpointRecord[]): SandboxInfo {
    const resolvConfPath = sandbox.netnsPath === '' ? undefined : this.resolvConfPathOf?.(sandbox);
    return { ...sandbox, endpoints, ...(resolvConfPath !== undefined ? { resolvConfPath } : {}) };
  }

  /** Opens a controller over the store and restores the kernel state of what the store holds. */
  static async open(options: ControllerOptions): Promise<Controller> {
    const controller = new Controller(options);
    await controller.restore();
    if (controller.globalStore !== undefined) {
      await controller.bestEffort('claim local network names in the cluster store', () => controller.reconcileLocalNames());
      controller.stopFollowingReachability = controller.clusterReachability?.onReachable(() => {
        void controller.bestEffort('claim local network names in the cluster store', () => controller.reconcileLocalNames());
      });
    }
    return controller;
  }

  /** Stops the controller; kernel state stays as it is (the daemon restores it when it starts again). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopFollowingReachability?.();
    await this.mutex.run(async () => {
      for (const driver of this.drivers.values()) await driver.close?.();
      if (this.ownsStore) {
        await this.store.close();
        await this.globalStore?.close();
      }
    });
  }

  /** Whether the cluster store answers; while it does not, global networks are listed as last seen. */
  clusterStatus(): ReachabilityStatus | undefined {
    if (this.globalStore === undefined) return undefined;
    return this.clusterReachability?.status() ?? { reachable: true };
  }

  driverNames(): string[] {
    return [...this.drivers.keys()];
  }

  /** Each loaded driver with its scope and counters. */
  driverInfo(): { name: string; scope: Scope; stats: Record<string, number> }[] {
    return [...this.drivers.values()].map((driver) => ({ name: driver.name, scope: driver.scope, stats: driver.stats?.() ?? {} }));
  }

  // ---------------------------------------------------------------- networks

  async createNetwork(request: NetworkCreateRequest): Promise<DockerNetwork> {
    return this.mutate(async () => {
      const network = await this.reserveNetwork(request);
      const driver = this.driverOf(network);
      try {
        await driver.createNetwork(network);
      } catch (err) {
        await this.bestEffort(`undo network ${network.name}`, () => driver.deleteNetwork(network));
        await this.releaseNetwork(network);
        throw err;
      }
      return toDockerNetwork(network, [], new Map());
    });
  }

  async listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    validateListFilters(filters);
    const networks = await this.allNetworks();
    const endpoints = await this.allEndpoints();
    const sandboxes = await this.sandboxMap();
    const result: DockerNetwork[] = [];
    for (const network of networks) {
      const own = endpoints.filter((e) => e.networkId === network.id);
      if (matchesListFilters(network, own.length, filters)) {
        result.push(toDockerNetwork(network, own, sandboxes, await this.peersOf(network)));
      }
    }
    return result;
  }

  async inspectNetwork(idOrName: string): Promise<DockerNetwork> {
    const network = await this.findNetwork(idOrName);
    const endpoints = await this.networkEndpoints(network);
    return toDockerNetwork(network, endpoints, await this.sandboxMap(), await this.peersOf(network));
  }

  private async peersOf(network: NetworkRecord): Promise<NetworkPeer[] | undefined> {
    return this.drivers.get(network.driver)?.peers?.(network);
  }

  /** Removes a network; refused while it has endpoints. */
  async removeNetwork(idOrName: string): Promise<void> {
    await this.mutate(async () => {
      const network = await this.findNetwork(idOrName);
      await this.removeNetworkLocked(network);
    });
  }

  /** Removes every network without endpoints that matches the filters; returns their names. */
  async pruneNetworks(filters: Filters = {}): Promise<string[]> {
    const now = this.now();
    validatePruneFilters(filters, now);
    return this.mutate(async () => {
      const removed: string[] = [];
      const failures: string[] = [];
      for (const network of await this.allNetworks()) {
        if (!matchesPruneFilters(network, filters, now)) continue;
        if ((await this.networkEndpoints(network)).length > 0) continue;
        try {
          await this.removeNetworkLocked(network);
          removed.push(network.name);
        } catch (err) {
          failures.push(`${network.name}: ${(err as Error).message}`);
        }
      }
      if (failures.length > 0) {
        throw new NetctlError('Internal', `prune removed ${removed.length} networks; failed: ${failures.join('; ')}`);
      }
      return removed;
    });
  }

  // ---------------------------------------------------------------- sandboxes

  /**
   * Makes a sandbox: its own named namespace, or an existing one (`netnsPath`).
   * The record is stored first, marked pending, so a crash before the
   * namespace exists is undone at the next start.
   */
  async createSandbox(request: SandboxCreateRequest): Promise<SandboxInfo> {
    return this.mutate(async () => {
      validateName('sandbox', request.name);
      validateMetadata('labels', request.labels);
      const ownsNetns = request.netnsPath === undefined;
      if (!ownsNetns) await this.checkForeignNamespace(request.netnsPath ?? '');
      const id = newId();
      const record: SandboxRecord = {
        id,
        name: request.name,
        netnsPath: request.netnsPath ?? '',
        ownsNetns,
        created: timestamp(this.now()),
        labels: { ...(request.labels ?? {}) },
        ...(ownsNetns ? { pending: 'create' as const } : {}),
      };
      const reserve = () =>
        this.store.txn({
          compare: [{ key: key.sandboxName(request.name), modRevision: 0 }],
          put: [
            { key: key.sandbox(id), value: JSON.stringify(record) },
            { key: key.sandboxName(request.name), value: id },
          ],
        });
      let reserved = await reserve();
      if (!reserved.succeeded) {
        // A creation left half-done by a failed write holds the name: undo it, then try again.
        const holder = await this.sandboxByName(request.name);
        if (holder?.pending !== 'create') throw new Conflict(`sandbox with name ${request.name} already exists`);
        await this.undoSandboxCreate(holder);
        reserved = await reserve();
        if (!reserved.succeeded) throw new Conflict(`sandbox with name ${request.name} already exists`);
      }
      if (!ownsNetns) return this.sandboxInfo(record, []);
      let final: SandboxRecord;
      try {
        final = { ...withoutPending(record), netnsPath: await this.namespaces.createNamed(request.name) };
        await this.store.txn({ put: [{ key: key.sandbox(id), value: JSON.stringify(final) }] });
      } catch (err) {
        await this.bestEffort(`undo creation of sandbox ${request.name}`, () => this.undoSandboxCreate(record));
        throw err;
      }
      return this.sandboxInfo(final, []);
    });
  }

  /** A namespace a runtime hands over must exist and must not be one the host itself lives in. */
  private async checkForeignNamespace(netnsPath: string): Promise<void> {
    if (!(await this.namespaces.exists(netnsPath))) throw new InvalidArgument(`${netnsPath} is not a network namespace`);
    for (const reserved of this.reservedNamespaces) {
      if (await this.namespaces.same(netnsPath, reserved)) {
        throw new InvalidArgument(
          `${netnsPath} is the host's own network namespace (${reserved}): a sandbox needs a namespace of its own`,
        );
      }
    }
  }

  /** Removes what a half-done creation made: its namespace (netctl's, by the reserved name) and its records. */
  private async undoSandboxCreate(sandbox: SandboxRecord): Promise<void> {
    if (sandbox.ownsNetns) await this.namespaces.removeNamed(sandbox.name);
    await this.store.txn({ delete: [key.sandbox(sandbox.id), key.sandboxName(sandbox.name)] });
  }

  async listSandboxes(): Promise<SandboxInfo[]> {
    const endpoints = await this.allEndpoints();
    return (await this.allSandboxes()).map((sandbox) =>
      this.sandboxInfo(
        sandbox,
        endpoints.filter((e) => e.sandboxId === sandbox.id),
      ),
    );
  }

  async inspectSandbox(idOrName: string): Promise<SandboxInfo> {
    const sandbox = await this.findSandbox(idOrName);
    const endpoints = (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id);
    return this.sandboxInfo(sandbox, endpoints);
  }

  /**
   * Leaves every network, deletes the endpoints, and removes the namespace if
   * netctl made it. The sandbox is marked first: when a step fails or the
   * daemon dies, a retry or the next start finishes the removal.
   */
  async removeSandbox(idOrName: string): Promise<void> {
    await this.mutate(async () => {
      const sandbox = await this.findSandbox(idOrName);
      await this.removeSandboxLocked(sandbox);
    });
  }

  private async removeSandboxLocked(sandbox: SandboxRecord): Promise<void> {
    if (sandbox.pending === 'create') {
      await this.undoSandboxCreate(sandbox);
      return;
    }
    if (sandbox.pending !== 'remove') {
      await this.store.txn({ put: [{ key: key.sandbox(sandbox.id), value: JSON.stringify({ ...sandbox, pending: 'remove' }) }] });
    }
    const failures: string[] = [];
    for (const endpoint of (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id)) {
      try {
        const network = await this.networkById(endpoint.networkId);
        await this.disconnectLocked(network, endpoint, sandbox, { force: false, handOverDefaultRoute: false });
      } catch (err) {
        failures.push(`endpoint ${endpoint.name}: ${(err as Error).message}`);
      }
    }
    if (sandbox.ownsNetns) {
      try {
        await this.namespaces.removeNamed(sandbox.name);
      } catch (err) {
        failures.push(`namespace ${sandbox.netnsPath}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) {
      throw new NetctlError('Internal', `removing sandbox ${sandbox.name} failed: ${failures.join('; ')}`);
    }
    await this.store.txn({ delete: [key.sandbox(sandbox.id), key.sandboxName(sandbox.name)] });
  }

  // ---------------------------------------------------------------- endpoints

  /** Creates an endpoint on a network: IPAM picks (or checks) its addresses. */
  async createEndpoint(networkIdOrName: string, request: EndpointCreateRequest): Promise<EndpointRecord> {
    return this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      return this.createEndpointLocked(network, request);
    });
  }

  /** Deletes an endpoint that is not joined to a sandbox, releasing its addresses. */
  async deleteEndpoint(networkIdOrName: string, endpointIdOrName: string): Promise<void> {
    await this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      const endpoint = await this.findEndpoint(network, endpointIdOrName);
      if (endpoint.sandboxId !== undefined) {
        throw new Forbidden(`endpoint ${endpoint.name} is joined to a sandbox; leave it first`);
      }
      await this.deleteEndpointLocked(network, endpoint.id);
    });
  }

  /** Joins an endpoint to a sandbox: the driver puts its interface into the namespace. */
  async join(networkIdOrName: string, endpointIdOrName: string, sandboxIdOrName: string): Promise<EndpointRecord> {
    return this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      const endpoint = await this.findEndpoint(network, endpointIdOrName);
      const sandbox = await this.findSandbox(sandboxIdOrName);
      if (endpoint.sandboxId !== undefined) throw new Conflict(`endpoint ${endpoint.name} is already joined to a sandbox`);
      const placement = await this.placement(network, sandbox);
      const store = this.storeOf(network);
      const endpointKey = key.endpoint(network.id, endpoint.id);
      const current = await store.get(endpointKey);
      if (current === undefined) throw new EndpointNotFound(endpoint.name);
      const marked: EndpointRecord = { ...endpoint, ...placement, pending: 'join' };
      const written = await store.txn({
        compare: [{ key: endpointKey, modRevision: current.modRevision }],
        put: [{ key: endpointKey, value: JSON.stringify(marked) }],
      });
      if (!written.succeeded) throw new Conflict(`endpoint ${endpoint.name} changed meanwhile; try again`);
      return this.completeJoin(network, marked, sandbox);
    });
  }

  /** Takes an endpoint out of its sandbox; the endpoint and its addresses remain. */
  async leave(networkIdOrName: string, endpointIdOrName: string): Promise<void> {
    await this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      const endpoint = await this.findEndpoint(network, endpointIdOrName);
      if (endpoint.sandboxId === undefined) throw new Conflict(`endpoint ${endpoint.name} is not joined to a sandbox`);
      const sandbox = await this.sandboxById(endpoint.sandboxId);
      await this.leaveLocked(network, endpoint, sandbox);
    });
  }

  /** `docker network connect`: create an endpoint named after the sandbox and join it. */
  async connect(networkIdOrName: string, sandboxIdOrName: string, options: ConnectOptions = {}): Promise<EndpointRecord> {
    return this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      const sandbox = await this.findSandbox(sandboxIdOrName);
      validateAliases(options.aliases);
      return this.connectLocked(network, sandbox, { name: sandbox.name, ...options });
    });
  }

  private async connectLocked(network: NetworkRecord, sandbox: SandboxRecord, request: EndpointCreateRequest): Promise<EndpointRecord> {
    const placement = await this.placement(network, sandbox);
    // Address, sandbox and interface are stored in one write, marked pending, before the kernel is touched.
    const endpoint = await this.createEndpointLocked(network, request, { ...placement, pending: 'connect' });
    const joined = await this.completeJoin(network, endpoint, sandbox);
    try {
      await this.attachGatewayBridge(sandbox);
    } catch (err) {
      await this.bestEffort(`undo connect of ${endpoint.name}`, () =>
        this.disconnectLocked(network, joined, sandbox, { force: true, handOverDefaultRoute: false }),
      );
      throw err;
    }
    return joined;
  }

  /**
   * Networks whose driver gives no way out (overlay) reach outside through a
   * bridge network of this host, as Docker's docker_gwbridge: a sandbox on a
   * non-internal one of them, with no other default route, gets an endpoint
   * on it that carries its default route. Made on first use.
   */
  private async attachGatewayBridge(sandbox: SandboxRecord): Promise<void> {
    const endpoints = (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id);
    if (endpoints.some((e) => e.defaultGateway === true)) return;
    if (!(await this.needsGatewayBridge(endpoints))) return;
    const bridge = await this.gatewayBridge();
    if (bridge === undefined || endpoints.some((e) => e.networkId === bridge.id)) return;
    await this.connectLocked(bridge, sandbox, { name: gatewayEndpointName(sandbox) });
  }

  /** Takes the sandbox off the gateway bridge once no network it is on needs it. */
  private async detachGatewayBridge(sandbox: SandboxRecord): Promise<void> {
    const endpoints = (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id);
    const onBridge = endpoints.find((e) => e.name === gatewayEndpointName(sandbox));
    if (onBridge === undefined || (await this.needsGatewayBridge(endpoints))) return;
    const bridge = await this.networkById(onBridge.networkId);
    if (bridge.name !== GATEWAY_BRIDGE) return;
    await this.disconnectLocked(bridge, onBridge, sandbox, { force: false, handOverDefaultRoute: true });
  }

  private async needsGatewayBridge(endpoints: readonly EndpointRecord[]): Promise<boolean> {
    for (const endpoint of endpoints) {
      const network = await this.networkById(endpoint.networkId).catch(() => undefined);
      if (network !== undefined && !network.internal && this.drivers.get(network.driver)?.needsGatewayBridge === true) return true;
    }
    return false;
  }

  private async gatewayBridge(): Promise<NetworkRecord | undefined> {
    // A controller without the bridge driver (a library user's choice) has no way out to offer.
    if (!this.drivers.has('bridge')) return undefined;
    const existing = (await this.allNetworks()).find((n) => n.name === GATEWAY_BRIDGE && n.scope === 'local');
    if (existing !== undefined) return existing;
    const network = await this.reserveNetwork({
      name: GATEWAY_BRIDGE,
      driver: 'bridge',
      // Sandboxes of different overlays meet here: they reach the outside, not each other.
      options: { 'com.docker.network.bridge.name': GATEWAY_BRIDGE, 'com.docker.network.bridge.enable_icc': 'false' },
    });
    try {
      await this.driverOf(network).createNetwork(network);
    } catch (err) {
      await this.releaseNetwork(network);
      throw err;
    }
    return network;
  }

  /** `docker network disconnect`: leave and delete the sandbox's endpoint on the network. */
  async disconnect(networkIdOrName: string, sandboxIdOrName: string, options: DisconnectOptions = {}): Promise<void> {
    await this.mutate(async () => {
      const network = await this.findNetwork(networkIdOrName);
      const force = options.force === true;
      const sandbox = await this.findSandbox(sandboxIdOrName).catch((err: unknown) => {
        if (force && err instanceof SandboxNotFound) return undefined;
        throw err;
      });
      const endpoints = await this.networkEndpoints(network);
      let endpoint = sandbox === undefined ? undefined : endpoints.find((e) => e.sandboxId === sandbox.id);
      // Forced, the argument may name an endpoint whose sandbox is gone, as with docker.
      if (endpoint === undefined && force) endpoint = findOptional(sandboxIdOrName, endpoints);
      if (endpoint === undefined) {
        throw new Forbidden(`sandbox ${sandbox?.name ?? sandboxIdOrName} is not connected to network ${network.name}`);
      }
      const owner = endpoint.sandboxId === undefined ? undefined : await this.sandboxById(endpoint.sandboxId).catch(() => undefined);
      await this.disconnectLocked(network, endpoint, owner, { force, handOverDefaultRoute: true });
      if (owner !== undefined) {
        await this.detachGatewayBridge(owner);
        // The network that gave the default route may have gone while an overlay still needs a way out.
        await this.attachGatewayBridge(owner);
      }
    });
  }

  // ---------------------------------------------------------------- internals

  private async mutate<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new NetctlError('Unavailable', 'controller is closed');
    return this.mutex.run(fn);
  }

  /** The store holding a network, its IPAM state and its endpoints. */
  private storeOf(network: Pick<NetworkRecord, 'scope' | 'name'>): Store {
    if (network.scope === 'local') return this.store;
    if (this.globalStore === undefined) {
      throw new InvalidArgument(
        `network ${network.name} has ${network.scope} scope and needs a cluster store: start the daemon with --store etcd://HOST:PORT`,
      );
    }
    return this.globalStore;
  }

  private networkStores(): Store[] {
    return this.globalStore === undefined ? [this.store] : [this.store, this.globalStore];
  }

  /** Internal networks, networks without addresses and drivers without a gateway never give a default route. */
  private givesDefaultRoute(network: NetworkRecord): boolean {
    return !network.internal && network.ipam.config.length > 0 && this.driverOf(network).providesDefaultRoute;
  }

  private driverOf(network: NetworkRecord): NetworkDriver {
    const driver = this.drivers.get(network.driver);
    if (driver === undefined) throw new NetctlError('Internal', `driver ${network.driver} of network ${network.name} is not loaded`);
    return driver;
  }

  private async reserveNetwork(request: NetworkCreateRequest): Promise<NetworkRecord> {
    validateName('network', request.name);
    validateMetadata('labels', request.labels);
    validateMetadata('driver options', request.options);
    validateMetadata('IPAM options', request.ipam?.options);
    const driverName = request.driver ?? this.defaultDriver;
    const driver = this.drivers.get(driverName);
    if (driver === undefined) {
      throw new InvalidArgument(`unknown network driver "${driverName}" (available: ${this.driverNames().join(', ')})`);
    }
    const ipamDriver = request.ipam?.driver ?? 'default';
    if (ipamDriver !== 'default') throw new InvalidArgument(`unknown IPAM driver "${ipamDriver}" (available: default)`);
    if (request.ipam?.options !== undefined && Object.keys(request.ipam.options).length > 0) {
      throw new InvalidArgument(`unknown IPAM option "${Object.keys(request.ipam.options)[0]}"`);
    }
    const requestedPools = request.ipam?.config ?? [];
    const enableIPv6 = request.enableIPv6 ?? false;
    const enableIPv4 = request.enableIPv4 ?? true;
    if (!driver.usesIpam && (requestedPools.length > 0 || enableIPv6)) {
      throw new InvalidArgument(`the ${driver.name} driver assigns no addresses: --subnet, --ipv6 and other IPAM flags do not apply`);
    }
    const id = newId();
    const store = this.storeOf({ scope: driver.scope, name: request.name });
    const claimed = store === this.store ? await this.claimLocalName(request.name, id) : false;
    try {
      return await this.storeNetwork(request, driver, store, id, { ipamDriver, requestedPools, enableIPv4, enableIPv6 });
    } catch (err) {
      if (claimed) await this.bestEffort(`release the name ${request.name} in the cluster store`, () => this.releaseLocalName(request.name));
      throw err;
    }
  }

  private async storeNetwork(
    request: NetworkCreateRequest,
    driver: NetworkDriver,
    store: Store,
    id: string,
    ipam: { ipamDriver: string; requestedPools: readonly PoolRequest[]; enableIPv4: boolean; enableIPv6: boolean },
  ): Promise<NetworkRecord> {
    const { ipamDriver, requestedPools, enableIPv4, enableIPv6 } = ipam;
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      for (const other of this.networkStores()) {
        if ((await other.get(key.networkName(request.name))) !== undefined) {
          throw new Conflict(`network with name ${request.name} already exists`);
        }
      }
      if (store === this.globalStore && (await store.list(key.localNames(request.name))).length > 0) {
        throw new Conflict(`network with name ${request.name} already exists`);
      }
      const subnetsKv = await store.get(key.subnets);
      const subnets: SubnetTable = subnetsKv === undefined ? {} : parse(subnetsKv);
      // Subnets of the other store count too: a local bridge and an overlay must not overlap on this host.
      const existing: { subnet: string; networkName: string }[] = [];
      for (const other of this.networkStores()) {
        const kv = other === store ? subnetsKv : await other.get(key.subnets);
        const table: SubnetTable = kv === undefined ? {} : parse(kv);
        for (const [subnet, owner] of Object.entries(table)) existing.push({ subnet, networkName: owner.networkName });
      }
      const pools = driver.usesIpam
        ? resolvePools({ scope: driver.scope === 'local' ? 'local' : 'global', enableIPv4, enableIPv6, requested: [...requestedPools], existing })
        : [];
      const spec = {
        id,
        name: request.name,
        driver: driver.name,
        scope: driver.scope as Scope,
        internal: request.internal ?? false,
        attachable: request.attachable ?? false,
        ingress: request.ingress ?? false,
        enableIPv4: driver.usesIpam && enableIPv4,
        enableIPv6: driver.usesIpam && enableIPv6,
        ipam: { driver: ipamDriver, options: {}, config: pools },
        options: { ...(request.options ?? {}) },
        labels: { ...(request.labels ?? {}) },
      };
      driver.validate(spec);
      const reserved = (await driver.reserve?.(spec, store)) ?? {};
      const reservedKeys = reserved.keys ?? [];
      const network: NetworkRecord = {
        ...spec,
        options: { ...spec.options, ...(reserved.options ?? {}) },
        created: timestamp(this.now()),
        ...(reservedKeys.length > 0 ? { reservedKeys } : {}),
      };
      const nextSubnets: SubnetTable = { ...subnets };
      for (const pool of pools) nextSubnets[pool.subnet] = { networkId: id, networkName: request.name };
      const state: NetworkState = { allocator: new Allocator(pools).toJSON(), endpoints: {} };
      const result = await store.txn({
        compare: [
          { key: key.networkName(request.name), modRevision: 0 },
          // A cluster-wide name must not be any host's local network's name (see claimLocalName).
          ...(store === this.globalStore ? [{ key: key.localNames(request.name), modRevision: 0, prefix: true }] : []),
          { key: key.subnets, modRevision: subnetsKv?.modRevision ?? 0 },
          ...reservedKeys.map((reservedKey) => ({ key: reservedKey, modRevision: 0 })),
        ],
        put: [
          { key: key.network(id), value: JSON.stringify(network) },
          { key: key.networkState(id), value: JSON.stringify(state) },
          { key: key.networkName(request.name), value: id },
          { key: key.subnets, value: JSON.stringify(nextSubnets) },
          ...reservedKeys.map((reservedKey) => ({ key: reservedKey, value: id })),
        ],
      });
      if (result.succeeded) return network;
    }
    throw new Conflict(`network ${request.name}: too many concurrent changes, try again`);
  }

  /**
   * Names are unique across scopes: a local network's name is claimed in the
   * cluster store (one key per host, so hosts may share local names), under a
   * compare that no global network has it, and a global network is made only
   * while no host claims its name. Both sides decide under one compare-and-swap.
   * While the cluster store is out of reach the local network is made all the
   * same (local work must not wait on the cluster) and claimed when the store
   * is back; should a global network have taken the name meanwhile, a warning
   * says so and lookups by that name report it as ambiguous. Returns whether
   * the name was claimed now.
   */
  private async claimLocalName(name: string, networkId: string): Promise<boolean> {
    const cluster = this.globalStore;
    if (cluster === undefined) return false;
    let claim;
    try {
      claim = await cluster.txn({
        compare: [{ key: key.networkName(name), modRevision: 0 }],
        put: [{ key: key.localName(name, await this.hostId()), value: networkId }],
      });
    } catch (err) {
      if (!(err instanceof NetctlError) || err.code !== 'Unavailable') throw err;
      this.logger.warn(`network ${name}: the cluster store is out of reach; the name is claimed there when it is back`);
      return false;
    }
    if (!claim.succeeded) throw new Conflict(`network with name ${name} already exists`);
    return true;
  }

  private async releaseLocalName(name: string): Promise<void> {
    await this.globalStore?.txn({ delete: [key.localName(name, await this.hostId())] });
  }

  /**
   * Brings this host's claims in the cluster store in line with its local
   * networks: claims what was made while the store was away, drops claims a
   * crash or an outage left behind. Run at start and whenever the store is back.
   */
  async reconcileLocalNames(): Promise<void> {
    const cluster = this.globalStore;
    if (cluster === undefined) return;
    await this.mutate(async () => {
      const hostId = await this.hostId();
      const local = new Map((await this.store.list('networks/')).map((kv) => parse<NetworkRecord>(kv)).map((n) => [n.name, n.id]));
      const claimed = new Set<string>();
      for (const kv of await cluster.list('names/local/')) {
        const [name, owner] = kv.key.slice('names/local/'.length).split('/');
        if (owner !== hostId || name === undefined) continue;
        if (local.get(name) === kv.value) claimed.add(name);
        else await cluster.txn({ delete: [kv.key] });
      }
      for (const [name, networkId] of local) {
        if (claimed.has(name)) continue;
        const claim = await cluster.txn({
          compare: [{ key: key.networkName(name), modRevision: 0 }],
          put: [{ key: key.localName(name, hostId), value: networkId }],
        });
        if (!claim.succeeded) {
          this.logger.warn(`network ${name} exists on this host and across the cluster (made while the cluster store was out of reach); refer to them by ID`);
        }
      }
    });
  }

  /** This host's id among those sharing the cluster store, made on first use. */
  private async hostId(): Promise<string> {
    const existing = await this.store.get(key.hostId);
    if (existing !== undefined) return existing.value;
    const id = newId();
    const made = await this.store.txn({ compare: [{ key: key.hostId, modRevision: 0 }], put: [{ key: key.hostId, value: id }] });
    if (made.succeeded) return id;
    return (await this.store.get(key.hostId))?.value ?? id;
  }

  /** Deletes a network's records; endpoints must already be gone. */
  private async releaseNetwork(network: NetworkRecord): Promise<void> {
    if (network.scope === 'local' && this.globalStore !== undefined) {
      await this.bestEffort(`release the name ${network.name} in the cluster store`, () => this.releaseLocalName(network.name));
    }
    const store = this.storeOf(network);
    await this.casLoop(store, async () => {
      const subnetsKv = await store.get(key.subnets);
      const subnets: SubnetTable = subnetsKv === undefined ? {} : parse(subnetsKv);
      const next: SubnetTable = {};
      for (const [subnet, owner] of Object.entries(subnets)) {
        if (owner.networkId !== network.id) next[subnet] = owner;
      }
      const empty = Object.keys(next).length === 0;
      return {
        compare: [{ key: key.subnets, modRevision: subnetsKv?.modRevision ?? 0 }],
        put: empty ? [] : [{ key: key.subnets, value: JSON.stringify(next) }],
        delete: [
          key.network(network.id),
          key.networkState(network.id),
          key.networkName(network.name),
          ...(network.reservedKeys ?? []),
          ...(empty ? [key.subnets] : []),
        ],
      };
    });
  }

  private async removeNetworkLocked(network: NetworkRecord): Promise<void> {
    const store = this.storeOf(network);
    const stateKv = await store.get(key.networkState(network.id));
    const endpoints = await this.networkEndpoints(network);
    if (endpoints.length > 0) {
      const names = endpoints.map((e) => `name:"${e.name}" id:"${e.id.slice(0, 12)}"`).join(', ');
      throw new Forbidden(`error while removing network: network ${network.name} has active endpoints (${names})`);
    }
    // The state key changes with every endpoint: deleting it under a compare refuses removal if one
    // appeared meanwhile, and makes later endpoint creation on this network fail. The record says
    // the removal began, so a restart finishes it.
    const guard = await store.txn({
      compare: [{ key: key.networkState(network.id), modRevision: stateKv?.modRevision ?? 0 }],
      put: [{ key: key.network(network.id), value: JSON.stringify({ ...network, removing: true }) }],
      delete: [key.networkState(network.id)],
    });
    if (!guard.succeeded) throw new Conflict(`network ${network.name} changed while it was being removed; try again`);
    try {
      await this.driverOf(network).deleteNetwork(network);
    } catch (err) {
      await store.txn({
        put: [
          { key: key.network(network.id), value: JSON.stringify(withoutRemoving(network)) },
          ...(stateKv !== undefined ? [{ key: stateKv.key, value: stateKv.value }] : []),
        ],
      });
      throw err;
    }
    await this.releaseNetwork(network);
  }

  /** Allocates the endpoint's addresses and stores it, with `placement` (a sandbox to join, pending) when given. */
  private async createEndpointLocked(
    network: NetworkRecord,
    request: EndpointCreateRequest,
    placement: Partial<Pick<EndpointRecord, 'sandboxId' | 'ifName' | 'defaultGateway' | 'pending'>> = {},
  ): Promise<EndpointRecord> {
    validateName('endpoint', request.name);
    validateAliases(request.aliases);
    const driver = this.driverOf(network);
    if (!driver.usesIpam && (request.ipv4Address !== undefined || request.ipv6Address !== undefined)) {
      throw new InvalidArgument(`network ${network.name} (driver ${network.driver}) assigns no addresses`);
    }
    if (request.ipv6Address !== undefined && !network.enableIPv6) {
      throw new InvalidArgument(`network ${network.name} does not have IPv6 enabled; cannot use IPv6 address ${request.ipv6Address}`);
    }
    const id = newId();
    const store = this.storeOf(network);
    let created: EndpointRecord | undefined;
    await this.casLoop(store, async () => {
      const stateKv = await store.get(key.networkState(network.id));
      if (stateKv === undefined) throw new NetworkNotFound(network.name);
      const state = parse<NetworkState>(stateKv);
      if (Object.values(state.endpoints).includes(request.name)) {
        throw new Conflict(`endpoint with name ${request.name} already exists in network ${network.name}`);
      }
      const allocator = new Allocator(network.ipam.config, state.allocator);
      const hasV4 = network.ipam.config.some((pool) => !pool.subnet.includes(':'));
      const hasV6 = network.ipam.config.some((pool) => pool.subnet.includes(':'));
      if (request.ipv4Address !== undefined && !hasV4) {
        throw new InvalidArgument(`network ${network.name} has no IPv4 subnet for address ${request.ipv4Address}`);
      }
      const ipv4Address = driver.usesIpam && hasV4 ? allocator.allocate(4, request.ipv4Address) : undefined;
      const ipv6Address = driver.usesIpam && hasV6 && network.enableIPv6 ? allocator.allocate(6, request.ipv6Address) : undefined;
      const macsInUse = new Set((await this.networkEndpoints(network)).map((e) => e.macAddress));
      const endpoint: EndpointRecord = {
        id,
        name: request.name,
        networkId: network.id,
        macAddress: macFor(ipv4Address, macsInUse),
        aliases: [...(request.aliases ?? [])],
        ...(ipv4Address !== undefined ? { ipv4Address } : {}),
        ...(ipv6Address !== undefined ? { ipv6Address } : {}),
        ...placement,
      };
      const next: NetworkState = { allocator: allocator.toJSON(), endpoints: { ...state.endpoints, [id]: request.name } };
      created = endpoint;
      return {
        compare: [{ key: key.networkState(network.id), modRevision: stateKv.modRevision }],
        put: [
          { key: key.networkState(network.id), value: JSON.stringify(next) },
          { key: key.endpoint(network.id, id), value: JSON.stringify(endpoint) },
        ],
      };
    });
    if (created === undefined) throw new NetctlError('Internal', 'endpoint was not created');
    return created;
  }

  private async deleteEndpointLocked(network: NetworkRecord, endpointId: string): Promise<void> {
    const store = this.storeOf(network);
    await this.casLoop(store, async () => {
      const stateKv = await store.get(key.networkState(network.id));
      const endpointKv = await store.get(key.endpoint(network.id, endpointId));
      if (stateKv === undefined || endpointKv === undefined) return undefined;
      const state = parse<NetworkState>(stateKv);
      const endpoint = parse<EndpointRecord>(endpointKv);
      const allocator = new Allocator(network.ipam.config, state.allocator);
      if (endpoint.ipv4Address !== undefined) allocator.release(endpoint.ipv4Address);
      if (endpoint.ipv6Address !== undefined) allocator.release(endpoint.ipv6Address);
      const endpoints = { ...state.endpoints };
      delete endpoints[endpointId];
      const next: NetworkState = { allocator: allocator.toJSON(), endpoints };
      return {
        compare: [{ key: key.networkState(network.id), modRevision: stateKv.modRevision }],
        put: [{ key: key.networkState(network.id), value: JSON.stringify(next) }],
        delete: [key.endpoint(network.id, endpointId)],
      };
    });
  }

  /**
   * Where an endpoint of `network` goes in the sandbox: the next free ethN,
   * and the default route when no other endpoint gives one. Refused when the
   * sandbox is already on the network or is being made or removed.
   */
  private async placement(
    network: NetworkRecord,
    sandbox: SandboxRecord,
  ): Promise<{ sandboxId: string; ifName: string; defaultGateway?: true }> {
    if (sandbox.pending !== undefined) {
      throw new Conflict(`sandbox ${sandbox.name} is being ${sandbox.pending === 'create' ? 'created' : 'removed'}`);
    }
    let sandboxEndpoints = (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id);
    const previous = sandboxEndpoints.find((e) => e.networkId === network.id);
    if (previous?.pending !== undefined) {
      // A connect or disconnect of this pair left half-done by a failed write: settle it first.
      await this.settle(network, previous, sandbox);
      sandboxEndpoints = (await this.allEndpoints()).filter((e) => e.sandboxId === sandbox.id);
    }
    if (sandboxEndpoints.some((e) => e.networkId === network.id)) {
      throw new Conflict(`sandbox ${sandbox.name} is already connected to network ${network.name}`);
    }
    const usedNames = new Set(sandboxEndpoints.map((e) => e.ifName));
    let index = 0;
    while (usedNames.has(`eth${index}`)) index++;
    const setDefaultRoute = this.givesDefaultRoute(network) && !sandboxEndpoints.some((e) => e.defaultGateway === true);
    return { sandboxId: sandbox.id, ifName: `eth${index}`, ...(setDefaultRoute ? { defaultGateway: true as const } : {}) };
  }

  /**
   * Second half of connect and join: the endpoint is stored with its sandbox,
   * marked pending; the driver wires it, then the mark goes. A driver failure
   * undoes the join (and, for connect, the endpoint).
   */
  private async completeJoin(network: NetworkRecord, endpoint: EndpointRecord, sandbox: SandboxRecord): Promise<EndpointRecord> {
    const ifName = endpoint.ifName ?? '';
    const joined = withoutPending(endpoint);
    const driver = this.driverOf(network);
    try {
      await driver.join({ network, endpoint: joined, sandbox, ifName, setDefaultRoute: joined.defaultGateway === true });
      await this.storeOf(network).txn({ put: [{ key: key.endpoint(network.id, endpoint.id), value: JSON.stringify(joined) }] });
    } catch (err) {
      await this.bestEffort(`undo ${endpoint.pending ?? 'join'} of ${endpoint.name}`, () => this.undoJoin(network, endpoint, sandbox));
      throw err;
    }
    return joined;
  }

  /** Undoes a join or connect that did not complete: the interface goes, and the endpoint too for a connect. */
  private async undoJoin(network: NetworkRecord, endpoint: EndpointRecord, sandbox: SandboxRecord | undefined): Promise<void> {
    if (endpoint.ifName !== undefined) {
      await this.driverOf(network).leave({ network, endpoint, ...(sandbox !== undefined ? { sandbox } : {}), ifName: endpoint.ifName });
    }
    if (endpoint.pending === 'connect') {
      await this.deleteEndpointLocked(network, endpoint.id);
    } else {
      await this.storeOf(network).txn({ put: [{ key: key.endpoint(network.id, endpoint.id), value: JSON.stringify(detached(endpoint)) }] });
    }
  }

  /** Stores the endpoint marked with the change about to start, before the kernel is touched. */
  private async markPending(network: NetworkRecord, endpoint: EndpointRecord, pending: EndpointPending): Promise<EndpointRecord> {
    if (endpoint.pending === pending) return endpoint;
    const marked: EndpointRecord = { ...endpoint, pending };
    await this.storeOf(network).txn({ put: [{ key: key.endpoint(network.id, endpoint.id), value: JSON.stringify(marked) }] });
    return marked;
  }

  /**
   * Leaves the sandbox. When the endpoint gave the sandbox its default route,
   * the next qualifying endpoint (lowest ethN) takes it over, as Docker moves
   * the gateway when a container leaves its gateway network.
   */
  private async leaveLocked(network: NetworkRecord, endpoint: EndpointRecord, sandbox: SandboxRecord): Promise<void> {
    const marked = await this.markPending(network, endpoint, 'leave');
    if (marked.ifName !== undefined) {
      await this.driverOf(network).leave({ network, endpoint: marked, sandbox, ifName: marked.ifName });
    }
    await this.storeOf(network).txn({ put: [{ key: key.endpoint(network.id, endpoint.id), value: JSON.stringify(detached(marked)) }] });
    if (marked.defaultGateway === true) await this.handOverDefaultRoute(sandbox);
  }

  /**
   * Leaves and deletes the endpoint, releasing its addresses. Marked first,
   * so a failure at any step leaves a state a retry or restart finishes.
   * Forced, a driver failure is logged and the record goes all the same.
   */
  private async disconnectLocked(
    network: NetworkRecord,
    endpoint: EndpointRecord,
    sandbox: SandboxRecord | undefined,
    options: { force: boolean; handOverDefaultRoute: boolean },
  ): Promise<void> {
    const marked = await this.markPending(network, endpoint, 'disconnect');
    if (marked.ifName !== undefined) {
      const request = { network, endpoint: marked, ...(sandbox !== undefined ? { sandbox } : {}), ifName: marked.ifName };
      if (options.force) await this.bestEffort(`forced disconnect of ${endpoint.name}`, () => this.driverOf(network).leave(request));
      else await this.driverOf(network).leave(request);
    }
    await this.deleteEndpointLocked(network, endpoint.id);
    if (marked.defaultGateway === true && options.handOverDefaultRoute && sandbox !== undefined) {
      await this.handOverDefaultRoute(sandbox);
    }
  }

  /** Finishes ('leave', 'disconnect') or undoes ('join', 'connect') a change an endpoint was left in. */
  private async settle(network: NetworkRecord, endpoint: EndpointRecord, sandbox: SandboxRecord | undefined): Promise<void> {
    switch (endpoint.pending) {
      case undefined:
        return;
      case 'connect':
      case 'join':
        await this.undoJoin(network, endpoint, sandbox);
        return;
      case 'leave':
        if (sandbox === undefined) await this.disconnectLocked(network, endpoint, undefined, { force: true, handOverDefaultRoute: false });
        else await this.leaveLocked(network, endpoint, sandbox);
        return;
      case 'disconnect':
        await this.disconnectLocked(network, endpoint, sandbox, { force: sandbox === undefined, handOverDefaultRoute: true });
        return;
    }
  }

  private async handOverDefaultRoute(sandbox: SandboxRecord): Promise<void> {
    const candidates = (await this.allEndpoints())
      .filter((e) => e.sandboxId === sandbox.id && e.ifName !== undefined)
      .sort((a, b) => ifIndex(a) - ifIndex(b));
    for (const candidate of candidates) {
      const network = await this.networkById(candidate.networkId).catch(() => undefined);
      if (network === undefined || !this.givesDefaultRoute(network) || candidate.ifName === undefined) continue;
      const updated: EndpointRecord = { ...candidate, defaultGateway: true };
      await this.driverOf(network).join({ network, endpoint: updated, sandbox, ifName: candidate.ifName, setDefaultRoute: true });
      await this.storeOf(network).txn({ put: [{ key: key.endpoint(network.id, candidate.id), value: JSON.stringify(updated) }] });
      return;
    }
  }

  /**
   * Re-makes kernel state for everything stored, and finishes or undoes
   * every change a crash cut short (the records say which); problems are
   * logged, not fatal.
   */
  private async restore(): Promise<void> {
    const stored = await this.allSandboxes();
    for (const sandbox of stored) {
      if (sandbox.pending === 'create') await this.bestEffort(`undo creation of sandbox ${sandbox.name}`, () => this.undoSandboxCreate(sandbox));
    }
    const sandboxes = stored.filter((sandbox) => sandbox.pending !== 'create');
    for (const [index, sandbox] of sandboxes.entries()) {
      if (await this.namespaces.exists(sandbox.netnsPath)) continue;
      if (sandbox.ownsNetns && sandbox.pending !== 'remove') {
        // Gone after a reboot: the sandbox gets a namespace again and its endpoints are wired into it.
        await this.bestEffort(`recreate namespace of sandbox ${sandbox.name}`, async () => {
          const netnsPath = await this.namespaces.createNamed(sandbox.name);
          if (netnsPath === sandbox.netnsPath) return;
          sandboxes[index] = { ...sandbox, netnsPath };
          await this.store.txn({ put: [{ key: key.sandbox(sandbox.id), value: JSON.stringify(sandboxes[index]) }] });
        });
      } else if (!sandbox.ownsNetns) {
        this.logger.warn(`sandbox ${sandbox.name}: namespace ${sandbox.netnsPath} is gone; its endpoints are released`);
      }
    }
    const local = new Map(sandboxes.map((sandbox) => [sandbox.id, sandbox]));
    const live = new Map<string, SandboxRecord>();
    for (const sandbox of sandboxes) {
      if (await this.namespaces.exists(sandbox.netnsPath)) live.set(sandbox.id, sandbox);
    }

    const networks: NetworkRecord[] = [];
    for (const network of await this.allNetworks()) {
      const driver = this.drivers.get(network.driver);
      if (driver === undefined) {
        this.logger.warn(`network ${network.name}: driver ${network.driver} is not available; left as stored`);
      } else if (network.removing === true) {
        await this.bestEffort(`finish removing network ${network.name}`, async () => {
          await driver.deleteNetwork(network);
          await this.releaseNetwork(network);
        });
      } else {
        await this.bestEffort(`restore network ${network.name}`, () => driver.createNetwork(network));
        networks.push(network);
      }
    }
    // Endpoints after every network: settling one may hand the default route to another network's.
    for (const network of networks) {
      for (const endpoint of await this.networkEndpoints(network)) {
        if (endpoint.sandboxId === undefined) continue;
        const sandbox = live.get(endpoint.sandboxId);
        if (!local.has(endpoint.sandboxId)) {
          // On a global network, another host's; on a local one, an endpoint whose sandbox record is gone.
          if (network.scope === 'local') {
            await this.bestEffort(`release orphan endpoint ${endpoint.name}`, () =>
              this.disconnectLocked(network, endpoint, undefined, { force: true, handOverDefaultRoute: false }),
            );
          }
        } else if (sandbox === undefined) {
          await this.bestEffort(`release endpoint ${endpoint.name}`, () => this.deleteEndpointLocked(network, endpoint.id));
        } else if (endpoint.pending !== undefined) {
          await this.bestEffort(`finish ${endpoint.pending} of endpoint ${endpoint.name}`, () => this.settle(network, endpoint, sandbox));
        } else if (endpoint.ifName !== undefined) {
          const ifName = endpoint.ifName;
          await this.bestEffort(`restore endpoint ${endpoint.name}`, () =>
            this.driverOf(network).join({ network, endpoint, sandbox, ifName, setDefaultRoute: endpoint.defaultGateway === true }),
          );
        }
      }
    }
    for (const sandbox of sandboxes) {
      if (sandbox.pending === 'remove') {
        await this.bestEffort(`finish removing sandbox ${sandbox.name}`, () => this.removeSandboxLocked(sandbox));
      } else if (!live.has(sandbox.id) && !sandbox.ownsNetns) {
        await this.store.txn({ delete: [key.sandbox(sandbox.id), key.sandboxName(sandbox.name)] });
      }
    }
  }

  private async bestEffort(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logger.warn(`${what}: ${(err as Error).message}`);
    }
  }

  /** Retries a read-modify-write until its compare holds; `build` returning undefined means nothing to do. */
  private async casLoop(store: Store, build: () => Promise<TxnRequest | undefined>): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      const request = await build();
      if (request === undefined) return;
      if ((await store.txn(request)).succeeded) return;
    }
    throw new Conflict('too many concurrent changes, try again');
  }

  private async allNetworks(): Promise<NetworkRecord[]> {
    const networks: NetworkRecord[] = [];
    for (const store of this.networkStores()) {
      networks.push(...(await store.list('networks/')).map((kv) => parse<NetworkRecord>(kv)));
    }
    return networks.sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
  }

  /** Endpoints of every network, those of other hosts on global networks included. */
  private async allEndpoints(): Promise<EndpointRecord[]> {
    const endpoints: EndpointRecord[] = [];
    for (const store of this.networkStores()) {
      endpoints.push(...(await store.list('endpoints/')).map((kv) => parse<EndpointRecord>(kv)));
    }
    return endpoints;
  }

  /** A network's endpoints live in its own store: a local network's never wait on the cluster store. */
  private async networkEndpoints(network: NetworkRecord): Promise<EndpointRecord[]> {
    return (await this.storeOf(network).list(key.endpoints(network.id))).map((kv) => parse<EndpointRecord>(kv));
  }

  private async allSandboxes(): Promise<SandboxRecord[]> {
    return (await this.store.list('sandboxes/')).map((kv) => parse<SandboxRecord>(kv));
  }

  private async sandboxMap(): Promise<Map<string, SandboxRecord>> {
    return new Map((await this.allSandboxes()).map((s) => [s.id, s]));
  }

  private async networkById(id: string): Promise<NetworkRecord> {
    for (const store of this.networkStores()) {
      const kv = await store.get(key.network(id));
      if (kv !== undefined) return parse(kv);
    }
    throw new NetworkNotFound(id);
  }

  private async sandboxByName(name: string): Promise<SandboxRecord | undefined> {
    const idKv = await this.store.get(key.sandboxName(name));
    if (idKv === undefined) return undefined;
    const kv = await this.store.get(key.sandbox(idKv.value));
    return kv === undefined ? undefined : parse(kv);
  }

  private async sandboxById(id: string): Promise<SandboxRecord> {
    const kv = await this.store.get(key.sandbox(id));
    if (kv === undefined) throw new SandboxNotFound(id);
    return parse(kv);
  }

  /** Docker's lookup order: full id, exact name, then a unique id prefix. */
  private async findNetwork(idOrName: string): Promise<NetworkRecord> {
    return findByIdOrName('network', idOrName, await this.allNetworks(), () => new NetworkNotFound(idOrName));
  }

  private async findSandbox(idOrName: string): Promise<SandboxRecord> {
    return findByIdOrName('sandbox', idOrName, await this.allSandboxes(), () => new SandboxNotFound(idOrName));
  }

  private async findEndpoint(network: NetworkRecord, idOrName: string): Promise<EndpointRecord> {
    return findByIdOrName('endpoint', idOrName, await this.networkEndpoints(network), () => new EndpointNotFound(idOrName));
  }
}


/** Docker's docker_gwbridge, by netctl's name; also the Linux bridge's name (15 characters). */
export const GATEWAY_BRIDGE = 'netctl_gwbridge';

function gatewayEndpointName(sandbox: SandboxRecord): string {
  return `gateway_${sandbox.id.slice(0, 12)}`;
}

function ifIndex(endpoint: EndpointRecord): number {
  return Number((endpoint.ifName ?? '').replace(/^eth/, ''));
}

function withoutRemoving(network: NetworkRecord): NetworkRecord {
  const { removing: _removing, ...rest } = network;
  return rest;
}

/** Like findByIdOrName, undefined when nothing matches. */
function findOptional<T extends { id: string; name: string }>(idOrName: string, items: readonly T[]): T | undefined {
  try {
    return findByIdOrName('endpoint', idOrName, items, () => new NotFoundMarker());
  } catch (err) {
    if (err instanceof NotFoundMarker) return undefined;
    throw err;
  }
}

class NotFoundMarker extends Error {}

function findByIdOrName<T extends { id: string; name: string }>(
  kind: string,
  idOrName: string,
  items: readonly T[],
  notFound: () => Error,
): T {
  if (idOrName === '') throw notFound();
  const byId = items.find((item) => item.id === idOrName);
  if (byId !== undefined) return byId;
  const byName = items.filter((item) => item.name === idOrName);
  // Two networks can share a name only if they were made while the cluster store was out of reach: pick neither.
  if (byName.length > 1) {
    throw new InvalidArgument(`${kind} ${idOrName} is ambiguous (${byName.length} matches found based on name)`);
  }
  if (byName[0] !== undefined) return byName[0];
  const byPrefix = items.filter((item) => item.id.startsWith(idOrName));
  if (byPrefix.length === 1 && byPrefix[0] !== undefined) return byPrefix[0];
  if (byPrefix.length > 1) {
    throw new InvalidArgument(`${kind} ${idOrName} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
  }
  throw notFound();
}

/**
 * libnetwork's scheme: 02:42 followed by the IPv4 address, unique because the
 * address is. Without one, a random locally administered MAC that avoids the
 * 02:42 range (so it never equals a derived one) and the MACs already in use.
 */
function macFor(ipv4Cidr: string | undefined, inUse: ReadonlySet<string>): string {
  const text = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
  if (ipv4Cidr !== undefined) return text(Uint8Array.from([0x02, 0x42, ...ipv4Cidr.split('/')[0]!.split('.').map(Number)]));
  for (;;) {
    const bytes = Buffer.concat([Buffer.from([0x02]), randomBytes(5)]);
    if (bytes[1] === 0x42) continue;
    const mac = text(bytes);
    if (!inUse.has(mac)) return mac;
  }
}
