/**
 * The services' load balancer on one host: every sandbox of this host that
 * is joined to a network carrying services gets nftables rules (see
 * vip-rules.ts) that send its connections to each virtual IP there to the
 * service's live tasks on that network, on any host.
 *
 * It follows the records as the embedded DNS does (the local store, and the
 * cluster store for global networks), and the controller tells it of each
 * change it makes (`reread`), so that a connect, disconnect or service
 * change returns only once this host's rules hold it. A task is live while
 * its endpoint is joined with no change under way (a leave or disconnect is
 * marked before the interface goes, so the task leaves the rotation first),
 * and, on another host, while the network's driver says its data path
 * carries traffic (`Reachability`: the overlay's peer table and probes).
 * When a task leaves a sandbox's rotation, the flows that sandbox had to it
 * are forgotten, so their next packet goes to a live task.
 */
import { followPrefix } from '../store/follow.js';
import { keys, recordId } from '../repository/keys.js';
import { decodeRecord, endpointRecord, sandboxRecord, serviceRecord } from '../repository/schema.js';
import { type EndpointRecord, type SandboxRecord, type Scope, type ServiceRecord, bareAddress } from '../records.js';
import type { Store, Watch, WatchEvent } from '../store/types.js';
import { ConcurrencyLimit } from '../limit.js';
import { type Logger, consoleWarnings } from '../log.js';
import { Freshness } from './freshness.js';
import { type VipTable, addedVips, changeScript, droppedTasks, replaceScript } from './vip-rules.js';

/** Sandboxes whose rules are being written at one time (each write runs nft once). */
const SANDBOX_WRITES_AT_ONCE = 8;

/** What the balancer does to a sandbox's namespace. */
export interface RulesPort {
  /** Runs an nft script atomically in the namespace. */
  apply(netnsPath: string, script: string): Promise<void>;
  /** Forgets the namespace's tracked flows to `virtualIp` that were sent to `task`. */
  forgetFlows(netnsPath: string, virtualIp: string, task: string): Promise<void>;
}

/** What a network's driver knows of other hosts' endpoints. */
export interface Reachability {
  /** Whether another host's endpoint on the network carries traffic now. */
  reachable(networkId: string, endpointId: string): boolean;
  /** Calls `listener` after any change of what `reachable` answers; returns the function that unsubscribes. */
  onChange(listener: () => void): () => void;
}

export interface BalancerOptions {
  readonly localStore: Store;
  readonly globalStore?: Store;
  readonly rules: RulesPort;
  /** For endpoints of other hosts; without it, only this host's tasks are live. */
  readonly reachability?: Reachability;
  readonly logger?: Logger;
}

/** A virtual IP of a service on one network, and the tasks this host balances it to. */
export interface Balancing {
  readonly networkId: string;
  readonly virtualIp: string;
  /** The live tasks' addresses, sorted. */
  readonly tasks: readonly string[];
}

interface Applied {
  readonly netnsPath: string;
  readonly table: VipTable;
  /** A write failed since: the namespace may hold this or something else, so the next write replaces the whole table. */
  readonly uncertain?: true;
}

/** A failed write is tried again after 1 s, then twice as long each time, up to 30 s. */
const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;

export class ServiceBalancer {
  private readonly options: BalancerOptions;
  private readonly logger: Logger;
  private readonly endpoints = new Map<string, EndpointRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  private readonly sandboxes = new Map<string, SandboxRecord>();
  private readonly endpointsOfNetwork = new Map<string, Set<string>>();
  private readonly endpointsOfSandbox = new Map<string, Set<string>>();
  /** Keeps a watch that lags behind a `reread` from undoing it. */
  private readonly freshness = new Freshness();
  /** Virtual IP → live tasks, per network; dropped when anything on the network changes. */
  private readonly networkTables = new Map<string, Map<string, readonly string[]>>();
  private readonly dirtyNetworks = new Set<string>();
  private readonly dirtySandboxes = new Set<string>();
  private everythingDirty = false;
  private flushScheduled = false;
  /** What each sandbox's namespace holds, as this balancer last wrote it. */
  private readonly applied = new Map<string, Applied>();
  /** Sandboxes marked in the local store: their namespace may hold a table, also one from before this start. */
  private readonly marked = new Set<string>();
  /** Each sandbox's write under way or queued; `queuedWrites` holds those not begun, which will read the newest state anyway. */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly queuedWrites = new Set<string>();
  private readonly writesAtOnce = new ConcurrencyLimit(SANDBOX_WRITES_AT_ONCE);
  /** Sandboxes whose last write failed: when the next try is, and how long the one after waits. */
  private readonly retries = new Map<string, { timer: NodeJS.Timeout; delayMs: number }>();
  private readonly watches: Watch[] = [];
  private unsubscribeReachability: (() => void) | undefined;
  private started = false;
  private stopped = false;

  private constructor(options: BalancerOptions) {
    this.options = options;
    this.logger = options.logger ?? consoleWarnings;
  }

  /** Loads what the stores hold, follows them, and writes every sandbox's rules. */
  static async start(options: BalancerOptions): Promise<ServiceBalancer> {
    const balancer = new ServiceBalancer(options);
    try {
      for (const kv of await options.localStore.list(keys.balancedSandboxes)) balancer.marked.add(recordId(kv.key));
      for (const store of [options.localStore, options.globalStore]) {
        if (store === undefined) continue;
        for (const prefix of [keys.services, keys.endpoints]) {
          balancer.watches.push(await followPrefix(store, prefix, (event) => balancer.apply(store, prefix, event)));
        }
      }
      balancer.watches.push(
        await followPrefix(options.localStore, keys.sandboxes, (event) => balancer.apply(options.localStore, keys.sandboxes, event)),
      );
      balancer.unsubscribeReachability = options.reachability?.onChange(() => {
        balancer.everythingDirty = true;
        balancer.scheduleFlush();
      });
      balancer.started = true;
      // Sandboxes marked but no longer on any service's network still hold an old table: write them too.
      for (const sandboxId of balancer.marked) balancer.dirtySandboxes.add(sandboxId);
      balancer.everythingDirty = true;
      balancer.flush();
      await balancer.settled();
    } catch (err) {
      await balancer.stop();
      throw err;
    }
    return balancer;
  }

  /** Stops following; the rules stay in the sandboxes for the next start. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribeReachability?.();
    for (const { timer } of this.retries.values()) clearTimeout(timer);
    for (const watch of this.watches) await watch.cancel();
    await this.settled();
  }

  /**
   * Reads `keys` (services, endpoints, sandboxes) from the store of `scope`
   * as they are now and applies them, then resolves once every sandbox's
   * rules hold them: what the controller calls after a change, so that it
   * returns with this host's rules in step.
   */
  async reread(scope: Scope, recordKeys: readonly string[]): Promise<void> {
    const store = scope === 'local' ? this.options.localStore : this.options.globalStore;
    if (store === undefined || this.stopped) return;
    for (const key of recordKeys) {
      const prefix = [keys.services, keys.endpoints, keys.sandboxes].find((p) => key.startsWith(p));
      if (prefix === undefined || (prefix === keys.sandboxes && store !== this.options.localStore)) continue;
      // With no service known here no rule depends on endpoints: a join or leave costs no extra read.
      if (prefix === keys.endpoints && this.services.size === 0) continue;
      // Applied within the read: a deletion the watch reports meanwhile must still stand when it is.
      await this.freshness.whileReading(this.freshnessKey(store, key), async () => {
        const kv = await store.get(key);
        this.apply(store, prefix, kv === undefined ? { type: 'delete', key, modRevision: Number.POSITIVE_INFINITY } : { type: 'put', kv });
      });
    }
    this.flush();
    await this.settled();
  }

  /**
   * The service's virtual IPs with the tasks this host balances each to, once
   * every change it has been told of is in the sandboxes' rules: what it
   * shows is what the rules hold.
   */
  async balancing(serviceId: string): Promise<Balancing[]> {
    this.flush();
    await this.settled();
    const service = this.services.get(serviceId);
    if (service === undefined) return [];
    return service.networks.flatMap((on) => {
      const virtualIp = bareAddress(on.virtualIp);
      if (virtualIp === undefined) return [];
      return [{ networkId: on.networkId, virtualIp, tasks: this.networkTable(on.networkId).get(virtualIp) ?? [] }];
    });
  }

  /** Resolves once no sandbox's rules are being written or waiting to be. */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.all(this.writes.values());
  }

  /** Records other hosts wrote are checked against their schemas (addresses must be addresses); one that does not fit is logged and left out. */
  private apply(store: Store, prefix: string, event: WatchEvent): void {
    const key = event.type === 'put' ? event.kv.key : event.key;
    if (!this.freshness.accept(this.freshnessKey(store, key), event)) return;
    const id = recordId(key);
    try {
      if (prefix === keys.endpoints) this.applyEndpoint(id, event.type === 'put' ? decodeRecord(event.kv, endpointRecord) : undefined);
      else if (prefix === keys.services) this.applyService(id, event.type === 'put' ? decodeRecord(event.kv, serviceRecord) : undefined);
      else this.applySandbox(id, event.type === 'put' ? decodeRecord(event.kv, sandboxRecord) : undefined);
    } catch (err) {
      this.logger.warn(`load balancer: ignoring bad record ${key}: ${(err as Error).message}`);
    }
    this.scheduleFlush();
  }

  private freshnessKey(store: Store, key: string): string {
    return `${store === this.options.localStore ? 'local' : 'cluster'}:${key}`;
  }

  private applyEndpoint(id: string, endpoint: EndpointRecord | undefined): void {
    const previous = this.endpoints.get(id);
    if (previous !== undefined) {
      this.dirtyNetworks.add(previous.networkId);
      indexRemove(this.endpointsOfNetwork, previous.networkId, id);
      if (previous.sandboxId !== undefined) {
        indexRemove(this.endpointsOfSandbox, previous.sandboxId, id);
        this.dirtySandboxes.add(previous.sandboxId);
      }
    }
    if (endpoint === undefined) {
      this.endpoints.delete(id);
      return;
    }
    this.endpoints.set(id, endpoint);
    this.dirtyNetworks.add(endpoint.networkId);
    indexAdd(this.endpointsOfNetwork, endpoint.networkId, id);
    if (endpoint.sandboxId !== undefined) {
      indexAdd(this.endpointsOfSandbox, endpoint.sandboxId, id);
      this.dirtySandboxes.add(endpoint.sandboxId);
    }
  }

  private applyService(id: string, service: ServiceRecord | undefined): void {
    for (const on of [...(this.services.get(id)?.networks ?? []), ...(service?.networks ?? [])]) this.dirtyNetworks.add(on.networkId);
    if (service === undefined) this.services.delete(id);
    else this.services.set(id, service);
  }

  /** A sandbox coming or going changes which endpoints are this host's, so every network it is on is looked at again. */
  private applySandbox(id: string, sandbox: SandboxRecord | undefined): void {
    if (sandbox === undefined) this.sandboxes.delete(id);
    else this.sandboxes.set(id, sandbox);
    this.dirtySandboxes.add(id);
    for (const endpointId of this.endpointsOfSandbox.get(id) ?? []) {
      const endpoint = this.endpoints.get(endpointId);
      if (endpoint !== undefined) this.dirtyNetworks.add(endpoint.networkId);
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.started) return;
    this.flushScheduled = true;
    // Events that arrive together (a listing, a txn's keys) are looked at once.
    setImmediate(() => this.flush());
  }

  /** Works out which sandboxes' rules may have changed and writes them. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.stopped) return;
    const networks = this.everythingDirty ? new Set([...this.endpointsOfNetwork.keys(), ...this.networkTables.keys()]) : this.dirtyNetworks;
    for (const networkId of networks) {
      this.networkTables.delete(networkId);
      for (const endpointId of this.endpointsOfNetwork.get(networkId) ?? []) {
        const sandboxId = this.endpoints.get(endpointId)?.sandboxId;
        if (sandboxId !== undefined && this.sandboxes.has(sandboxId)) this.dirtySandboxes.add(sandboxId);
      }
    }
    this.everythingDirty = false;
    this.dirtyNetworks.clear();
    for (const sandboxId of this.dirtySandboxes) this.write(sandboxId);
    this.dirtySandboxes.clear();
  }

  /** Queues a write of the sandbox's rules; writes of one sandbox run in turn, each with the newest state. */
  private write(sandboxId: string): void {
    const queued = this.writes.get(sandboxId);
    if (this.queuedWrites.has(sandboxId)) return;
    this.queuedWrites.add(sandboxId);
    const next = (queued ?? Promise.resolve())
      .then(() => this.writesAtOnce.run(() => this.writeNow(sandboxId)))
      .catch((err: unknown) => {
        // Whenever the namespace may hold a table, the sandbox is marked already (the mark is stored before
        // a first table and removed after the last): `marked` must say what the store holds.
        const applied = this.applied.get(sandboxId);
        if (applied !== undefined) this.applied.set(sandboxId, { ...applied, uncertain: true });
        const delayMs = this.retryLater(sandboxId);
        this.logger.warn(`load balancer: sandbox ${this.sandboxes.get(sandboxId)?.name ?? sandboxId}: ${(err as Error).message} (trying again in ${delayMs / 1000} s)`);
      })
      .finally(() => {
        if (this.writes.get(sandboxId) === next) this.writes.delete(sandboxId);
      });
    this.writes.set(sandboxId, next);
  }

  private async writeNow(sandboxId: string): Promise<void> {
    this.queuedWrites.delete(sandboxId);
    const sandbox = this.sandboxes.get(sandboxId);
    const previous = this.applied.get(sandboxId);
    if (sandbox === undefined) {
      // Gone: its endpoints left first and took its rules with them.
      this.applied.delete(sandboxId);
      if (this.marked.has(sandboxId)) await this.mark(sandboxId, false);
      return;
    }
    if (sandbox.pending === 'create' || sandbox.netnsPath === '') return;
    const table = this.desiredTable(sandboxId);
    const netnsPath = sandbox.netnsPath;
    const fresh = previous === undefined || previous.uncertain === true || previous.netnsPath !== netnsPath;
    const wasMarked = this.marked.has(sandboxId);
    let script: string | undefined;
    if (fresh) script = table.size > 0 || wasMarked ? replaceScript(table) : undefined;
    else script = changeScript(previous.table, table);
    if (script !== undefined) {
      if (table.size > 0 && !wasMarked) await this.mark(sandboxId, true);
      await this.options.rules.apply(netnsPath, script);
      if (table.size === 0 && wasMarked) await this.mark(sandboxId, false);
    }
    this.applied.set(sandboxId, { netnsPath, table });
    this.retryDone(sandboxId);
    if (previous === undefined || previous.netnsPath !== netnsPath) return;
    for (const { virtualIp, task } of droppedTasks(previous.table, table)) {
      await this.options.rules.forgetFlows(netnsPath, virtualIp, task).catch((err: unknown) => {
        this.logger.warn(`load balancer: sandbox ${sandbox.name}: flows to ${virtualIp} sent to ${task} stay tracked: ${(err as Error).message}`);
      });
    }
    // A flow answered by the VIP itself was tracked before the VIP was one here: it never meets the DNAT.
    for (const virtualIp of addedVips(previous.table, table)) {
      await this.options.rules.forgetFlows(netnsPath, virtualIp, virtualIp).catch((err: unknown) => {
        this.logger.warn(`load balancer: sandbox ${sandbox.name}: flows to ${virtualIp} from before it was a VIP stay tracked: ${(err as Error).message}`);
      });
    }
  }

  /** Writes the sandbox again later, while it exists; returns the delay. */
  private retryLater(sandboxId: string): number {
    const previous = this.retries.get(sandboxId);
    clearTimeout(previous?.timer);
    const delayMs = previous === undefined ? FIRST_RETRY_MS : Math.min(previous.delayMs * 2, LAST_RETRY_MS);
    const timer = setTimeout(() => {
      if (!this.stopped && this.sandboxes.has(sandboxId)) this.write(sandboxId);
    }, delayMs);
    timer.unref();
    this.retries.set(sandboxId, { timer, delayMs });
    return delayMs;
  }

  private retryDone(sandboxId: string): void {
    clearTimeout(this.retries.get(sandboxId)?.timer);
    this.retries.delete(sandboxId);
  }

  /**
   * Keeps, in the local store, which sandboxes hold a table: a start after
   * a service went while this daemon was down finds the tables to remove.
   */
  private async mark(sandboxId: string, holdsTable: boolean): Promise<void> {
    const key = keys.balancedSandbox(sandboxId);
    if (holdsTable) {
      await this.options.localStore.txn({ put: [{ key, value: sandboxId }] });
      this.marked.add(sandboxId);
    } else {
      await this.options.localStore.txn({ delete: [key] });
      this.marked.delete(sandboxId);
    }
  }

  /** The sandbox's virtual IPs: those of every service on each network it is joined to (a leave under way counts as gone). */
  private desiredTable(sandboxId: string): VipTable {
    const table = new Map<string, readonly string[]>();
    for (const endpointId of this.endpointsOfSandbox.get(sandboxId) ?? []) {
      const endpoint = this.endpoints.get(endpointId);
      if (endpoint === undefined || endpoint.sandboxId !== sandboxId || leaving(endpoint)) continue;
      for (const [virtualIp, tasks] of this.networkTable(endpoint.networkId)) table.set(virtualIp, tasks);
    }
    return new Map([...table].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Each virtual IP on the network with the addresses of its live tasks there. */
  private networkTable(networkId: string): Map<string, readonly string[]> {
    const cached = this.networkTables.get(networkId);
    if (cached !== undefined) return cached;
    const table = new Map<string, readonly string[]>();
    for (const service of this.services.values()) {
      const virtualIp = bareAddress(service.networks.find((on) => on.networkId === networkId)?.virtualIp);
      if (virtualIp !== undefined) table.set(virtualIp, []);
    }
    if (table.size > 0) {
      const tasksOf = new Map<string, string[]>();
      for (const endpointId of this.endpointsOfNetwork.get(networkId) ?? []) {
        const endpoint = this.endpoints.get(endpointId);
        const address = bareAddress(endpoint?.ipv4Address);
        if (endpoint?.service === undefined || address === undefined || !isLive(endpoint, this.sandboxes, this.options.reachability)) continue;
        const list = tasksOf.get(endpoint.service);
        if (list === undefined) tasksOf.set(endpoint.service, [address]);
        else list.push(address);
      }
      for (const [serviceId, addresses] of tasksOf) {
        const virtualIp = bareAddress(this.services.get(serviceId)?.networks.find((on) => on.networkId === networkId)?.virtualIp);
        if (virtualIp !== undefined) table.set(virtualIp, addresses.sort(byAddress));
      }
    }
    this.networkTables.set(networkId, table);
    return table;
  }

}

/** Joined, with no change under way, and on this host (its sandbox one of `localSandboxes`) or reachable on its own. */
export function isLive(endpoint: EndpointRecord, localSandboxes: ReadonlyMap<string, unknown>, reachability: Reachability | undefined): boolean {
  if (endpoint.sandboxId === undefined || endpoint.pending !== undefined) return false;
  if (localSandboxes.has(endpoint.sandboxId)) return true;
  return reachability?.reachable(endpoint.networkId, endpoint.id) ?? false;
}

/** Its leave or disconnect is under way: it takes no new connection. */
export function leaving(endpoint: EndpointRecord): boolean {
  return endpoint.pending === 'leave' || endpoint.pending === 'disconnect';
}

function indexAdd(index: Map<string, Set<string>>, key: string, id: string): void {
  const set = index.get(key);
  if (set === undefined) index.set(key, new Set([id]));
  else set.add(id);
}

/** Drops the key once its last id goes, so sandboxes and networks that are gone leave nothing behind. */
function indexRemove(index: Map<string, Set<string>>, key: string, id: string): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(id);
  if (set.size === 0) index.delete(key);
}

/** Numeric order of dotted IPv4 addresses. */
export function byAddress(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
