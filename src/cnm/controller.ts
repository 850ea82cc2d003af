/**
 * The Controller owns networks, endpoints and sandboxes (libnetwork's
 * Container Network Model): records and IPAM state live in the store,
 * kernel state is made by drivers. Every change reserves its records in
 * one store transaction first, then asks the driver; when the driver fails
 * the transaction is undone, so a failed call leaves store and kernel as
 * they were. On open, the kernel state of every stored network and joined
 * endpoint is made again (drivers are idempotent), which is how a
 * restarted daemon gets its wiring back.
 *
 * This class holds what the parts share (ControllerContext) and runs one
 * change at a time; the work itself is in networks.ts, endpoints.ts,
 * connections.ts, sandboxes.ts, services.ts, names.ts and restore.ts. Results are typed
 * records and views; api/docker.ts renders them as Docker's JSON.
 *
 * The cnm/ folder also holds the driver contract (driver.ts), IPAM
 * (ipam*.ts resolve pools and hand out addresses; addresses.ts keeps one key
 * per claim), list filters, name checks and the namespace port.
 */
import { AddressHints } from './address-hints.js';
import { connect, disconnect } from './connections.js';
import { type ControllerContext, type PortInUse, type ServiceRules, bestEffort, failedParts } from './context.js';
import type { NetworkDriver } from './driver.js';
import { createEndpoint, deleteEndpoint, joinEndpoint, leaveEndpoint } from './endpoints.js';
import { type Filters, matchesSandboxFilters, validateListFilters, validatePruneFilters, validateSandboxFilters } from './filters.js';
import { attachIngress, attachWhenPublished, closeIngressEntry, detachIngress, detachWhenUnpublished, openIngressEntry } from './ingress.js';
import { hostId, reconcileLocalNames } from './names.js';
import type { NamespaceOps } from './namespaces.js';
import { createNetwork, createPredefinedNetworks, inspectNetwork, listNetworks, pruneNetworks, removeNetwork } from './networks.js';
import { restore } from './restore.js';
import { createSandbox, inspectSandbox, listSandboxes, removeSandbox } from './sandboxes.js';
import { createService, inspectService, listServices, removeService } from './services.js';
import type {
  ControllerEvent,
  ConnectOptions,
  DisconnectOptions,
  EndpointCreateRequest,
  NetworkCreateRequest,
  NetworkCreated,
  NetworkView,
  SandboxCreateRequest,
  SandboxInfo,
  ServiceCreateRequest,
  ServiceView,
} from './types.js';
import { validateAliases } from './validate.js';
import { Conflict, Forbidden, InvalidArgument, NetctlError } from '../errors.js';
import type { MeshActions } from '../ingress/mesh.js';
import { type Logger, consoleWarnings } from '../log.js';
import type { EndpointRecord, SandboxRecord, Scope } from '../records.js';
import { Repository } from '../repository/repository.js';
import type { ReachabilityStatus } from '../store/last-known.js';
import type { Store } from '../store/types.js';

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
  /**
   * Networks made at open when no local network has their name, as dockerd
   * makes its predefined `bridge`, `host` and `none`: they cannot be removed,
   * prune skips them and the list filter `type=builtin` shows them. Without
   * it a controller starts with no network.
   */
  readonly predefinedNetworks?: readonly NetworkCreateRequest[];
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
  /**
   * Let `open` return before the restore is done: changes wait for it (they
   * queue behind it), reads answer from the store at once, and `restored`
   * says when the kernel state is back. A daemon answers its API as soon as
   * it has started, however many endpoints it has to re-check.
   */
  readonly restoreInBackground?: boolean;
  /** The services' load balancer, once it runs (it starts after the restore): changes wait for its rules. */
  readonly serviceRules?: () => ServiceRules | undefined;
  /**
   * Whether a port of this host is already taken: a service is refused a
   * published port that something here holds (sys/ports.ts tries to bind it).
   * Without it, only other services' claims are checked.
   */
  readonly portInUse?: PortInUse;
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
  private readonly context: ControllerContext;
  private readonly mutex = new Mutex();
  private readonly listeners = new Set<(event: ControllerEvent) => void>();
  private readonly ownsStore: boolean;
  private readonly clusterReachability: ControllerOptions['clusterReachability'];
  private stopFollowingReachability: (() => void) | undefined;
  private closed = false;
  /** Resolves once the restore `open` began is done, missing predefined networks made (at once, unless it runs in the background). */
  restored: Promise<void> = Promise.resolve();
  /**
   * Resolves once the restore has given every sandbox its namespace again,
   * before it re-checks the endpoints (or once it failed): what the embedded
   * DNS waits for to open its listeners.
   */
  sandboxesRestored: Promise<void> = Promise.resolve();

  private constructor(options: ControllerOptions) {
    const logger = options.logger ?? consoleWarnings;
    this.context = {
      records: new Repository({
        local: options.store,
        ...(options.globalStore !== undefined ? { cluster: options.globalStore } : {}),
        logger,
      }),
      addresses: new AddressHints(),
      drivers: new Map(options.drivers.map((driver) => [driver.name, driver])),
      namespaces: options.namespaces,
      defaultDriver: options.defaultDriver ?? 'bridge',
      predefinedNetworks: new Set((options.predefinedNetworks ?? []).map((request) => request.name)),
      reservedNamespaces: options.reservedNamespaces ?? [],
      resolvConfPath: options.resolvConfPath,
      logger,
      now: options.now ?? (() => new Date()),
      serviceRules: options.serviceRules ?? (() => undefined),
      ...(options.portInUse !== undefined ? { portInUse: options.portInUse } : {}),
      emit: (event) => this.emit(event),
    };
    this.ownsStore = options.ownsStore ?? false;
    this.clusterReachability = options.clusterReachability;
  }

  /** Opens a controller over the store and restores the kernel state of what the store holds. */
  static async open(options: ControllerOptions): Promise<Controller> {
    const controller = new Controller(options);
    const context = controller.context;
    const started = performance.now();
    // Under the mutex, so that in the background every change waits for it.
    let sandboxesRestored = (): void => undefined;
    controller.sandboxesRestored = new Promise<void>((resolve) => (sandboxesRestored = resolve));
    controller.restored = controller.mutex.run(async () => {
      try {
        await restore(context, sandboxesRestored);
      } finally {
        sandboxesRestored();
      }
      context.logger.info(`restored the stored networks, sandboxes and endpoints in ${Math.round(performance.now() - started)} ms`);
      await createPredefinedNetworks(context, options.predefinedNetworks ?? []);
    });
    const background = options.restoreInBackground === true;
    if (background) {
      controller.restored = controller.restored.catch((err: unknown) => context.logger.error(`restore failed: ${(err as Error).message}`));
    } else {
      await controller.restored;
    }
    if (context.records.cluster !== undefined) {
      const claim = () => bestEffort(context, 'claim local network names in the cluster store', () => controller.reconcileLocalNames());
      // A change: in the background it waits for the restore, and so must not hold up open.
      if (background) void claim();
      else await claim();
      controller.stopFollowingReachability = controller.clusterReachability?.onReachable(() => void claim());
    }
    return controller;
  }

  /**
   * Stops the controller; kernel state stays as it is (the daemon restores
   * it when it starts again). Every driver and owned store is closed even
   * when one fails; the failures are reported together. Calls after the
   * first do nothing.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopFollowingReachability?.();
    await this.mutex.run(async () => {
      const failures: { what: string; error: unknown }[] = [];
      const step = async (what: string, fn: () => Promise<void> | void) => {
        try {
          await fn();
        } catch (error) {
          failures.push({ what, error });
        }
      };
      for (const driver of this.context.drivers.values()) await step(`driver ${driver.name}`, () => driver.close?.());
      if (this.ownsStore) {
        const { local, cluster } = this.context.records;
        await step('local store', () => local.close());
        if (cluster !== undefined) await step('cluster store', () => cluster.close());
      }
      if (failures.length > 0) throw failedParts('closing the controller failed', failures);
    });
  }

  /** Whether the cluster store answers; while it does not, global networks are listed as last seen. */
  /** This host's id: made once and kept in the local store, so it outlives restarts and names this host in the cluster store. */
  async hostId(): Promise<string> {
    return hostId(this.context);
  }

  clusterStatus(): ReachabilityStatus | undefined {
    if (this.context.records.cluster === undefined) return undefined;
    return this.clusterReachability?.status() ?? { reachable: true };
  }

  driverNames(): string[] {
    return [...this.context.drivers.keys()];
  }

  /** Each loaded driver with its scope and counters. */
  driverInfo(): { name: string; scope: Scope; stats: Record<string, number> }[] {
    return [...this.context.drivers.values()].map((driver) => ({ name: driver.name, scope: driver.scope, stats: driver.stats?.() ?? {} }));
  }

  // ---------------------------------------------------------------- networks

  async createNetwork(request: NetworkCreateRequest): Promise<NetworkCreated> {
    return this.mutate(() => createNetwork(this.context, request));
  }

  async listNetworks(filters: Filters = {}): Promise<NetworkView[]> {
    validateListFilters(filters);
    return listNetworks(this.context, filters);
  }

  async inspectNetwork(idOrName: string): Promise<NetworkView> {
    return inspectNetwork(this.context, idOrName);
  }

  /** Removes a network; refused while it has endpoints. */
  async removeNetwork(idOrName: string): Promise<void> {
    await this.mutate(async () => removeNetwork(this.context, await this.context.records.findNetwork(idOrName, 'skip')));
  }

  /**
   * Renews this host's keys of encrypted networks now, in every driver that
   * has them (the overlay); InvalidArgument when none does.
   */
  async rotateKeys(): Promise<{ driver: string; epoch: number; rotatedAt: string }[]> {
    const rotating = [...this.context.drivers.values()].filter((driver) => driver.rotateKeys !== undefined);
    if (rotating.length === 0) {
      throw new InvalidArgument('no driver on this host has keys to renew: encrypted networks are overlay networks, which need a cluster store (--store)');
    }
    const rotated = [];
    for (const driver of rotating) rotated.push({ driver: driver.name, ...(await driver.rotateKeys!()) });
    return rotated;
  }

  /** Removes every network without endpoints that matches the filters; returns their names. */
  async pruneNetworks(filters: Filters = {}): Promise<string[]> {
    const now = this.context.now();
    validatePruneFilters(filters, now);
    return this.mutate(() => pruneNetworks(this.context, filters, now));
  }

  /**
   * Brings this host's claims on local network names in the cluster store in
   * line with its local networks. Run at open and whenever the store is back.
   */
  async reconcileLocalNames(): Promise<void> {
    if (this.context.records.cluster === undefined) return;
    await this.mutate(() => reconcileLocalNames(this.context));
  }

  // ---------------------------------------------------------------- sandboxes

  /**
   * Makes a sandbox: its own named namespace, or an existing one (`netnsPath`).
   * The record is stored first, marked pending, so a crash before the
   * namespace exists is undone at the next start.
   */
  async createSandbox(request: SandboxCreateRequest): Promise<SandboxInfo> {
    return this.mutate(() => createSandbox(this.context, request));
  }

  /** The sandboxes, those matching Docker's container list filters (`docker ps -f`) when given. */
  async listSandboxes(filters: Filters = {}): Promise<SandboxInfo[]> {
    validateSandboxFilters(filters);
    return (await listSandboxes(this.context)).filter((sandbox) => matchesSandboxFilters(sandbox, filters));
  }

  async inspectSandbox(idOrName: string): Promise<SandboxInfo> {
    return inspectSandbox(this.context, idOrName);
  }

  /**
   * Leaves every network, deletes the endpoints, and removes the namespace if
   * netctl made it. The sandbox is marked first: when a step fails or the
   * daemon dies, a retry or the next start finishes the removal.
   */
  async removeSandbox(idOrName: string): Promise<void> {
    await this.mutate(async () => removeSandbox(this.context, await this.context.records.findSandbox(idOrName, 'skip')));
  }

  // ---------------------------------------------------------------- endpoints

  /** Creates an endpoint on a network: IPAM picks (or checks) its addresses. */
  async createEndpoint(networkIdOrName: string, request: EndpointCreateRequest): Promise<EndpointRecord> {
    return this.mutate(async () => createEndpoint(this.context, await this.context.records.findNetwork(networkIdOrName, 'skip'), request));
  }

  /** Deletes an endpoint that is not joined to a sandbox, releasing its addresses. */
  async deleteEndpoint(networkIdOrName: string, endpointIdOrName: string): Promise<void> {
    await this.mutate(async () => {
      const network = await this.context.records.findNetwork(networkIdOrName, 'skip');
      const endpoint = await this.context.records.findEndpoint(network, endpointIdOrName, 'skip');
      if (endpoint.sandboxId !== undefined) {
        throw new Forbidden(`endpoint ${endpoint.name} is joined to a sandbox; leave it first`);
      }
      await deleteEndpoint(this.context, network, endpoint.id);
    });
  }

  /** Joins an endpoint to a sandbox: the driver puts its interface into the namespace, named `options.ifName` when given. */
  async join(networkIdOrName: string, endpointIdOrName: string, sandboxIdOrName: string, options: { ifName?: string } = {}): Promise<EndpointRecord> {
    return this.mutate(async () => {
      const network = await this.context.records.findNetwork(networkIdOrName, 'skip');
      const endpoint = await this.context.records.findEndpoint(network, endpointIdOrName, 'skip');
      const sandbox = await this.context.records.findSandbox(sandboxIdOrName, 'skip');
      return joinEndpoint(this.context, network, endpoint, sandbox, options.ifName);
    });
  }

  /** Takes an endpoint out of its sandbox; the endpoint and its addresses remain. */
  async leave(networkIdOrName: string, endpointIdOrName: string): Promise<void> {
    await this.mutate(async () => {
      const network = await this.context.records.findNetwork(networkIdOrName, 'skip');
      const endpoint = await this.context.records.findEndpoint(network, endpointIdOrName, 'skip');
      if (endpoint.sandboxId === undefined) throw new Conflict(`endpoint ${endpoint.name} is not joined to a sandbox`);
      const sandbox = await this.context.records.sandboxById(endpoint.sandboxId);
      await leaveEndpoint(this.context, network, endpoint, sandbox);
    });
  }

  /**
   * `docker network connect`: create an endpoint named after the sandbox and
   * join it. With `service`, the endpoint is a task of that service (which
   * must be on this network) until it is disconnected.
   */
  async connect(networkIdOrName: string, sandboxIdOrName: string, options: ConnectOptions = {}): Promise<EndpointRecord> {
    return this.mutate(async () => {
      const network = await this.context.records.findNetwork(networkIdOrName, 'skip');
      const sandbox = await this.context.records.findSandbox(sandboxIdOrName, 'skip');
      validateAliases(options.aliases);
      const { ifName, ...request } = options;
      const joined = await connect(this.context, network, sandbox, { name: sandbox.name, ...request }, ifName);
      if (joined.service !== undefined) await bestEffort(this.context, 'ingress network', () => attachWhenPublished(this.context, sandbox));
      return joined;
    });
  }

  /** `docker network disconnect`: leave and delete the sandbox's endpoint on the network. */
  async disconnect(networkIdOrName: string, sandboxIdOrName: string, options: DisconnectOptions = {}): Promise<void> {
    await this.mutate(async () => {
      const network = await this.context.records.findNetwork(networkIdOrName, 'skip');
      await disconnect(this.context, network, sandboxIdOrName, options.force === true);
      if (network.ingress) return;
      const sandbox = await this.context.records.findSandbox(sandboxIdOrName, 'skip').catch(() => undefined);
      if (sandbox !== undefined) await bestEffort(this.context, 'ingress network', () => detachWhenUnpublished(this.context, sandbox));
    });
  }

  // ---------------------------------------------------------------- ingress mesh

  /** What the routing mesh asks for as the records call for it (cnm/ingress.ts), each as one change. */
  meshActions(): MeshActions {
    return {
      openEntry: () => this.mutate(() => openIngressEntry(this.context)),
      closeEntry: () => this.mutate(() => closeIngressEntry(this.context)),
      attach: (sandboxId) => this.mutate(() => attachIngress(this.context, sandboxId)),
      detach: (sandboxId) => this.mutate(() => detachIngress(this.context, sandboxId)),
    };
  }

  // ---------------------------------------------------------------- services

  /**
   * Makes a service on its networks (all local or all global): in vip mode
   * a virtual IP on each, claimed from the network's IPAM so no endpoint
   * gets it; a claim on each published port (one left open in ingress
   * mode gets the lowest free of 30000-32767). Refused, with nothing stored,
   * for a taken name, an unknown network, networks of mixed scopes, a
   * network that assigns no addresses or has none left, a published port
   * that is invalid, that another service publishes or that something on
   * this host holds.
   */
  async createService(request: ServiceCreateRequest): Promise<ServiceView> {
    return this.mutate(() => createService(this.context, request));
  }

  /** Services matching the filters (`id`, `name` prefixes; `label`), with their tasks. */
  async listServices(filters: Filters = {}): Promise<ServiceView[]> {
    return listServices(this.context, filters);
  }

  async inspectService(idOrName: string): Promise<ServiceView> {
    return inspectService(this.context, idOrName);
  }

  /**
   * Removes a service and releases its virtual IPs and published ports. Its tasks stay
   * connected to their networks, as endpoints that are no longer tasks of
   * anything: their records drop the service.
   */
  async removeService(idOrName: string): Promise<void> {
    await this.mutate(async () => removeService(this.context, await this.context.records.findService(idOrName, 'skip')));
  }

  // ---------------------------------------------------------------- events

  /**
   * Calls `listener` after every change this controller makes: networks and
   * sandboxes created and removed, endpoints created, joined, left and
   * removed (those the restore at start releases included). A listener that
   * throws is logged and does not stop the change or the other listeners.
   * Returns the function that unsubscribes.
   */
  subscribe(listener: (event: ControllerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: Parameters<ControllerContext['emit']>[0]): void {
    const stamped = { ...event, time: this.context.now() } as ControllerEvent;
    for (const listener of this.listeners) {
      try {
        listener(stamped);
      } catch (err) {
        this.context.logger.warn(`event listener failed on ${event.type} ${event.action}: ${(err as Error).message}`);
      }
    }
  }

  private async mutate<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new NetctlError('Unavailable', 'controller is closed');
    return this.mutex.run(fn);
  }
}
