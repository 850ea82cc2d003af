/**
 * The ingress routing mesh of one host. It follows the records, as the
 * load balancer does, and keeps three kinds of rules in step with them
 * (mesh-rules.ts says what each does):
 * - the host namespace's table, which opens the published ports;
 * - the ingress sandbox's table, which sends them on to live tasks;
 * - each local task's reply rules, which send replies back the way the
 *   connection came.
 * It also asks the controller (`MeshActions`) for what those rules stand on:
 * this host's ingress sandbox while any service publishes a port in
 * ingress mode, and an endpoint on the ingress network for every local
 * task of such a service.
 *
 * Each change recomputes everything from the records and writes the
 * namespaces whose rules differ from what was last written there: the
 * records of one host's published services are few.
 */
import { followPrefix } from '../store/follow.js';
import { keys, recordId } from '../repository/keys.js';
import { decodeRecord, endpointRecord, networkRecord, sandboxRecord, serviceRecord } from '../repository/schema.js';
import { type EndpointRecord, type NetworkRecord, type SandboxRecord, type Scope, type ServiceRecord, bareAddress, routedByMesh } from '../records.js';
import type { Store, Watch, WatchEvent } from '../store/types.js';
import { Freshness } from './freshness.js';
import { type Logger, consoleWarnings } from '../log.js';
import { type Reachability, byAddress, isLive, leaving } from './balancer.js';
import {
  type Entry,
  type PortTargets,
  type ReplyRules,
  type Target,
  MAX_REPLY_RULES,
  REPLY_RULE_PRIORITY,
  entryMark,
  entryScript,
  publishedScript,
  replyRouteBatch,
  replyScript,
  subnetOf,
} from './mesh-rules.js';

/**
 * The sandbox through which a host's published connections enter the
 * ingress network: Docker's name, then the host's id, as its namespace
 * (/var/run/netns/NAME) is too and hosts may share a machine (as in tests).
 */
export function ingressSandboxName(hostId: string): string {
  return `ingress-sbox-${hostId.slice(0, 12)}`;
}
/** The label that tells a host's ingress sandbox from others. */
export const INGRESS_SANDBOX_LABEL = 'com.netctl.ingress-sandbox';

export function isIngressSandbox(sandbox: SandboxRecord): boolean {
  return sandbox.labels[INGRESS_SANDBOX_LABEL] === 'true';
}

/** What the mesh does to the kernel; only sys/ touches it. */
export interface MeshKernel {
  applyNft(netnsPath: string, script: string): Promise<void>;
  ipBatch(netnsPath: string, lines: readonly string[]): Promise<void>;
  rulePriorities(netnsPath: string): Promise<number[]>;
  /** Lets the ingress sandbox forward, as a router between the host and the ingress network. */
  enableForwarding(netnsPath: string): Promise<void>;
  /** Forgets the namespace's tracked flows answered by `address`: their next packet meets the rules as they are now. */
  forgetFlows(netnsPath: string, address: string): Promise<void>;
}

/** What the mesh asks of the controller; each may fail, and is asked again at the next change or retry. */
export interface MeshActions {
  /** Makes this host's ingress sandbox and connects it to the ingress network. */
  openEntry(): Promise<void>;
  /** Removes this host's ingress sandbox. */
  closeEntry(): Promise<void>;
  /** Connects a local sandbox, a task of a service published in ingress mode, to the ingress network. */
  attach(sandboxId: string): Promise<void>;
  /** Takes a local sandbox that is no such task any more off the ingress network. */
  detach(sandboxId: string): Promise<void>;
}

export interface MeshOptions {
  readonly localStore: Store;
  readonly globalStore?: Store;
  /** The namespace whose addresses the ports open on, where the bridges are. */
  readonly hostNetnsPath: string;
  readonly kernel: MeshKernel;
  readonly actions: MeshActions;
  readonly reachability?: Reachability;
  readonly logger?: Logger;
}

interface Write {
  readonly netnsPath: string;
  /** What the namespace is to hold; an unchanged one is not written again. */
  readonly content: string;
  /** The addresses its DNATs send to: flows to one that is dropped are forgotten. */
  readonly targets: ReadonlySet<string>;
  readonly write: () => Promise<void>;
}

interface Desired {
  readonly writes: Map<string, Write>;
  readonly actions: Map<string, () => Promise<void>>;
}

type Scoped = { readonly record: EndpointRecord; readonly local: boolean };

/** The records the mesh follows; sandboxes in the local store only. */
const PREFIXES = [keys.services, keys.endpoints, keys.networks, keys.sandboxes];

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;

export class IngressMesh {
  private readonly options: MeshOptions;
  private readonly logger: Logger;
  private readonly endpoints = new Map<string, Scoped>();
  private readonly services = new Map<string, ServiceRecord>();
  private readonly sandboxes = new Map<string, SandboxRecord>();
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly watches: Watch[] = [];
  /** What each namespace holds as this mesh last wrote it, by key ('host' or a sandbox id). */
  private readonly applied = new Map<string, Omit<Write, 'write'>>();
  private readonly failures = new Map<string, { notBefore: number; delayMs: number }>();
  private readonly running = new Set<string>();
  /** Actions done since the records last changed: done again only once they have (the watch may lag behind them). */
  private readonly done = new Set<string>();
  /** Kernel writes and controller actions queue apart: a controller change waits for writes (`reread`), never for actions, which wait for it. */
  private writes: Promise<void> = Promise.resolve();
  private actionsWork: Promise<void> = Promise.resolve();
  /** Keeps a watch that lags behind a `reread` from undoing it. */
  private readonly freshness = new Freshness();
  private flushScheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private unsubscribeReachability: (() => void) | undefined;
  private started = false;
  private stopped = false;

  private constructor(options: MeshOptions) {
    this.options = options;
    this.logger = options.logger ?? consoleWarnings;
  }

  /** Loads what the stores hold, follows them, and writes the rules. */
  static async start(options: MeshOptions): Promise<IngressMesh> {
    const mesh = new IngressMesh(options);
    try {
      const follow = async (store: Store, prefix: string, local: boolean) =>
        mesh.watches.push(await followPrefix(store, prefix, (event) => mesh.apply(prefix, local, event)));
      for (const [store, local] of [[options.localStore, true], [options.globalStore, false]] as const) {
        if (store === undefined) continue;
        for (const prefix of PREFIXES) if (local || prefix !== keys.sandboxes) await follow(store, prefix, local);
      }
      mesh.unsubscribeReachability = options.reachability?.onChange(() => mesh.scheduleFlush());
      mesh.started = true;
      mesh.flush();
      await mesh.settled();
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    return mesh;
  }

  /** Stops following; the rules stay for the next start. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribeReachability?.();
    clearTimeout(this.retryTimer);
    for (const watch of this.watches) await watch.cancel();
    await this.settled();
  }

  /** Resolves once what the mesh knows now is in the kernel and asked of the controller (or failed and waits for a retry). */
  async settled(): Promise<void> {
    for (;;) {
      const { writes, actionsWork } = this;
      await Promise.all([writes, actionsWork]);
      if (writes === this.writes && actionsWork === this.actionsWork && !this.flushScheduled) return;
      if (this.flushScheduled) this.flush();
    }
  }

  /**
   * Reads `recordKeys` (services, endpoints, sandboxes, networks) from the
   * store of `scope` as they are now and applies them, then resolves once
   * the kernel holds what follows: what the controller calls after a
   * change, so that it returns with this host's ports in step. It waits
   * for no action it asks of the controller, which is busy with that change.
   */
  async reread(scope: Scope, recordKeys: readonly string[]): Promise<void> {
    const local = scope === 'local';
    const store = local ? this.options.localStore : this.options.globalStore;
    if (store === undefined || this.stopped) return;
    for (const key of recordKeys) {
      const prefix = PREFIXES.find((p) => key.startsWith(p));
      if (prefix === undefined || (prefix === keys.sandboxes && !local)) continue;
      await this.freshness.whileReading(freshnessKey(local, key), async () => {
        const kv = await store.get(key);
        this.apply(prefix, local, kv === undefined ? { type: 'delete', key, modRevision: Number.POSITIVE_INFINITY } : { type: 'put', kv });
      });
    }
    this.flush();
    for (;;) {
      const { writes } = this;
      await writes;
      // A write queued before the reread held older records: the flush its end scheduled writes the newest.
      if (this.flushScheduled) this.flush();
      if (writes === this.writes) return;
    }
  }

  private apply(prefix: string, local: boolean, event: WatchEvent): void {
    const key = event.type === 'put' ? event.kv.key : event.key;
    if (!this.freshness.accept(freshnessKey(local, key), event)) return;
    const id = recordId(key);
    try {
      if (prefix === keys.endpoints) {
        if (event.type === 'put') this.endpoints.set(id, { record: decodeRecord(event.kv, endpointRecord), local });
        else this.endpoints.delete(id);
      } else if (prefix === keys.services) {
        if (event.type === 'put') this.services.set(id, decodeRecord(event.kv, serviceRecord));
        else this.services.delete(id);
      } else if (prefix === keys.networks) {
        // Only network records: other keys under the prefix have more than one segment after it.
        if (key.slice(prefix.length).includes('/')) return;
        if (event.type === 'put') this.networks.set(id, decodeRecord(event.kv, networkRecord));
        else this.networks.delete(id);
      } else if (event.type === 'put') this.sandboxes.set(id, decodeRecord(event.kv, sandboxRecord));
      else this.sandboxes.delete(id);
    } catch (err) {
      this.logger.warn(`ingress mesh: ignoring bad record ${key}: ${(err as Error).message}`);
    }
    this.done.clear();
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.started || this.stopped) return;
    this.flushScheduled = true;
    // Events that arrive together (a listing, a txn's keys) are looked at once.
    setImmediate(() => this.flush());
  }

  /** Queues the writes and actions that bring the kernel and the records in step; they run one at a time. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.stopped) return;
    const desired = this.desired();
    const now = Date.now();
    for (const [key, target] of desired.writes) {
      const applied = this.applied.get(key);
      if (applied !== undefined && applied.netnsPath === target.netnsPath && applied.content === target.content) continue;
      this.run(`write:${key}`, now, async () => {
        await target.write();
        const { write: _write, ...written } = target;
        this.applied.set(key, written);
        if (applied?.netnsPath !== target.netnsPath) return;
        // A UDP flow pinned to a task that left would go on to it until conntrack forgot it.
        for (const address of applied.targets) {
          if (target.targets.has(address)) continue;
          await this.options.kernel.forgetFlows(target.netnsPath, address).catch((err: unknown) => {
            this.logger.warn(`ingress mesh: flows sent to ${address} stay tracked in ${target.netnsPath}: ${(err as Error).message}`);
          });
        }
      });
    }
    // Sandboxes gone took their namespace and its rules with them.
    for (const key of this.applied.keys()) if (key !== 'host' && !this.sandboxes.has(key)) this.applied.delete(key);
    for (const [key, action] of desired.actions) this.run(key, now, action, true);
  }

  /** Queues a job; an action (`once`) is not run again until the records change. */
  private run(key: string, now: number, job: () => Promise<void>, once = false): void {
    if (this.running.has(key) || (once && this.done.has(key))) return;
    const failure = this.failures.get(key);
    if (failure !== undefined && failure.notBefore > now) return;
    this.running.add(key);
    const queued = (once ? this.actionsWork : this.writes)
      .then(async () => {
        if (this.stopped) return;
        await job();
        this.failures.delete(key);
        if (once) this.done.add(key);
      })
      .catch((err: unknown) => {
        const delayMs = failure === undefined ? FIRST_RETRY_MS : Math.min(failure.delayMs * 2, LAST_RETRY_MS);
        this.failures.set(key, { notBefore: Date.now() + delayMs, delayMs });
        this.logger.warn(`ingress mesh: ${key}: ${(err as Error).message} (trying again in ${delayMs / 1000} s)`);
        this.retryLater(delayMs);
      })
      .finally(() => {
        this.running.delete(key);
        // What it did (or what changed meanwhile) may call for more.
        this.scheduleFlush();
      });
    if (once) this.actionsWork = queued;
    else this.writes = queued;
  }

  private retryLater(delayMs: number): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.scheduleFlush();
    }, delayMs);
    this.retryTimer.unref();
  }

  private desired(): Desired {
    const writes: Desired['writes'] = new Map();
    const actions: Desired['actions'] = new Map();
    const { kernel } = this.options;
    const ingress = [...this.networks.values()].find((n) => n.ingress && n.scope !== 'local' && n.removing !== true);
    const onIngress = ingress === undefined ? [] : [...this.endpoints.values()].filter((e) => e.record.networkId === ingress.id);
    const entrySandbox = [...this.sandboxes.values()].find((s) => isIngressSandbox(s) && s.pending === undefined && s.netnsPath !== '');
    const entryEndpoint = onIngress.find((e) => e.record.ingressEntry === true && e.record.sandboxId !== undefined && e.record.sandboxId === entrySandbox?.id);
    const entries: Entry[] = onIngress
      .filter((e) => e.record.ingressEntry === true && e.record.sandboxId !== undefined && e.record.ipv4Address !== undefined)
      .map((e) => ({ macAddress: e.record.macAddress, mark: entryMark(bareAddress(e.record.ipv4Address ?? '')) }))
      .sort((a, b) => a.mark - b.mark);
    /** Each sandbox's endpoint on the ingress network, other than ingress sandboxes'. */
    const ingressOf = new Map<string, EndpointRecord>();
    for (const { record } of onIngress) {
      if (record.ingressEntry !== true && record.sandboxId !== undefined && !leaving(record)) ingressOf.set(record.sandboxId, record);
    }

    // A host's own (bridge) service first: should a cluster service claim its port from another host, which
    // cannot see this host's claims, the port stays with the service already here.
    const published = [...this.services.values()]
      .filter((s) => (s.ports ?? []).length > 0)
      .sort((a, b) => Number(b.scope === 'local') - Number(a.scope === 'local') || (a.id < b.id ? -1 : 1));
    const hostPorts = new Map<string, PortTargets>();
    const entryPorts = new Map<string, PortTargets>();
    /** Local sandboxes that must be on the ingress network, with the UDP target ports their replies leave from. */
    const needIngress = new Map<string, Set<number>>();
    let wantEntry = false;
    // One pass over the endpoints: each service's tasks, and where the host's namespace reaches each sandbox
    // (the address and subnet of its default route's endpoint on a local, bridge, network).
    const tasksOf = new Map<string, EndpointRecord[]>();
    const hostAddresses = new Map<string, { address: string; subnet: string }>();
    for (const { record, local } of this.endpoints.values()) {
      if (record.sandboxId === undefined) continue;
      if (record.service !== undefined && !leaving(record)) {
        const list = tasksOf.get(record.service);
        if (list === undefined) tasksOf.set(record.service, [record]);
        else list.push(record);
      }
      if (local && record.defaultGateway === true && record.pending === undefined && record.ipv4Address !== undefined) {
        hostAddresses.set(record.sandboxId, { address: bareAddress(record.ipv4Address), subnet: subnetOf(record.ipv4Address) });
      }
    }
    const entryAddress = entrySandbox === undefined || entryEndpoint === undefined ? undefined : hostAddresses.get(entrySandbox.id);
    for (const service of published) {
      const networkIds = new Set(service.networks.map((on) => on.networkId));
      const tasks = (tasksOf.get(service.id) ?? []).filter((task) => networkIds.has(task.networkId));
      for (const port of service.ports ?? []) {
        const portKey = `${port.protocol}/${port.publishedPort}`;
        const mesh = routedByMesh(service.scope, port);
        let hostTargets: Target[] = [];
        let taskTargets: Target[] = [];
        if (mesh) {
          wantEntry = true;
          for (const task of tasks) {
            const sandboxId = task.sandboxId ?? '';
            if (this.isLocalSandbox(sandboxId)) {
              const udp = needIngress.get(sandboxId) ?? new Set<number>();
              if (port.protocol === 'udp') udp.add(port.targetPort);
              needIngress.set(sandboxId, udp);
            }
            const onIngressNet = ingressOf.get(sandboxId);
            const address = bareAddress(onIngressNet?.ipv4Address);
            if (onIngressNet !== undefined && address !== undefined && isLive(onIngressNet, this.sandboxes, this.options.reachability)) taskTargets.push({ address, port: port.targetPort });
          }
          taskTargets = unique(taskTargets);
          if (entryAddress !== undefined) hostTargets = [{ ...entryAddress, port: port.publishedPort }];
        } else {
          for (const task of tasks) {
            const sandboxId = task.sandboxId ?? '';
            if (!this.isLocalSandbox(sandboxId) || task.pending !== undefined) continue;
            const reached = hostAddresses.get(sandboxId);
            if (reached !== undefined) hostTargets.push({ ...reached, port: port.targetPort });
          }
          hostTargets = unique(hostTargets);
        }
        // Claims keep a port to one service of a store; two of different stores meeting here: the first (see above) keeps it.
        if (!hostPorts.has(portKey)) hostPorts.set(portKey, { protocol: port.protocol, port: port.publishedPort, targets: hostTargets });
        if (mesh && !entryPorts.has(portKey)) entryPorts.set(portKey, { protocol: port.protocol, port: port.publishedPort, targets: taskTargets });
      }
    }

    const hostScript = publishedScript([...hostPorts.values()]);
    const hostNetns = this.options.hostNetnsPath;
    writes.set('host', {
      netnsPath: hostNetns,
      content: hostScript,
      targets: addressesOf(hostPorts.values()),
      write: () => kernel.applyNft(hostNetns, hostScript),
    });
    if (entrySandbox !== undefined) {
      const script = entryAddress === undefined ? entryScript('0.0.0.0', []) : entryScript(entryAddress.address, [...entryPorts.values()]);
      const netnsPath = entrySandbox.netnsPath;
      writes.set(entrySandbox.id, {
        netnsPath,
        content: script,
        targets: addressesOf(entryAddress === undefined ? [] : entryPorts.values()),
        write: async () => {
          await kernel.enableForwarding(netnsPath);
          await kernel.applyNft(netnsPath, script);
        },
      });
    }
    const gateway = ingress?.ipam.config.find((pool) => !pool.subnet.includes(':'))?.gateway;
    for (const sandbox of this.sandboxes.values()) {
      if (sandbox.id === entrySandbox?.id || sandbox.pending !== undefined || sandbox.netnsPath === '') continue;
      const onIngressNet = ingressOf.get(sandbox.id);
      const udpPorts = needIngress.get(sandbox.id);
      const rules: ReplyRules | undefined =
        onIngressNet?.ifName === undefined || gateway === undefined || udpPorts === undefined || onIngressNet.pending !== undefined
          ? undefined
          : { ifName: onIngressNet.ifName, gateway, entries, udpPorts: [...udpPorts].sort((a, b) => a - b) };
      // A sandbox never on the ingress network holds no reply rules: only those that are, or were, are written.
      if (rules === undefined && onIngressNet === undefined && !this.applied.has(sandbox.id)) continue;
      const script = replyScript(rules);
      const netnsPath = sandbox.netnsPath;
      writes.set(sandbox.id, {
        netnsPath,
        content: `${script}\n${JSON.stringify(rules ?? null)}`,
        targets: new Set(),
        write: async () => {
          const present = (await kernel.rulePriorities(netnsPath)).filter(
            (p) => p >= REPLY_RULE_PRIORITY && p < REPLY_RULE_PRIORITY + MAX_REPLY_RULES,
          );
          await kernel.applyNft(netnsPath, script);
          await kernel.ipBatch(netnsPath, replyRouteBatch(rules, present));
        },
      });
    }

    // What the rules stand on, asked of the controller.
    if (ingress !== undefined && wantEntry && entryEndpoint === undefined) actions.set('open ingress sandbox', () => this.options.actions.openEntry());
    if (!wantEntry && [...this.sandboxes.values()].some(isIngressSandbox)) actions.set('remove ingress sandbox', () => this.options.actions.closeEntry());
    if (ingress !== undefined) {
      for (const sandboxId of needIngress.keys()) {
        if (!ingressOf.has(sandboxId)) actions.set(`attach ${sandboxId}`, () => this.options.actions.attach(sandboxId));
      }
      for (const [sandboxId, endpoint] of ingressOf) {
        if (this.isLocalSandbox(sandboxId) && !needIngress.has(sandboxId) && endpoint.pending === undefined) {
          actions.set(`detach ${sandboxId}`, () => this.options.actions.detach(sandboxId));
        }
      }
    }
    return { writes, actions };
  }

  private isLocalSandbox(sandboxId: string): boolean {
    const sandbox = this.sandboxes.get(sandboxId);
    return sandbox !== undefined && sandbox.pending === undefined && sandbox.netnsPath !== '';
  }

}

/** Revisions count per store. */
function freshnessKey(local: boolean, key: string): string {
  return `${local ? 'local' : 'cluster'}:${key}`;
}

function show(target: Target): string {
  return `${target.address}:${target.port}`;
}

function addressesOf(ports: Iterable<PortTargets>): Set<string> {
  return new Set([...ports].flatMap((p) => p.targets.map((t) => t.address)));
}

/** Targets without repeats (a task on two of the service's networks is one sandbox), in address order. */
function unique(targets: readonly Target[]): Target[] {
  const seen = new Map(targets.map((t) => [show(t), t]));
  return [...seen.values()].sort((a, b) => byAddress(a.address, b.address) || a.port - b.port);
}
