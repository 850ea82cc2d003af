/**
 * The daemon's embedded DNS, wired the way Docker wires its own: every
 * sandbox gets a UDP and a TCP listener on 127.0.0.11:53 inside its own
 * namespace, and a resolv.conf naming that address. A listener knows which
 * sandbox it serves, so an answer only covers the networks that sandbox
 * shares. The record table follows the stores' watches (the local store and,
 * for overlay networks, the cluster store), so a join or a leave anywhere is
 * in the table as soon as the store reports it. Services are followed the
 * same way: per service and network, its virtual IP (vip mode) and the
 * addresses of its joined tasks (the endpoints that name it).
 *
 * The dns/ folder: this wiring, server.ts (UDP and TCP listeners),
 * records.ts (the name table and its answers), forwarder.ts (upstream
 * resolvers), message.ts (DNS messages) and tcp*.ts (connection limits).
 */
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';
import { type EndpointRecord, type NetworkRecord, type SandboxRecord, type ServiceRecord, bareAddress } from '../records.js';
import { followPrefix } from '../store/follow.js';
import { keys, recordId } from '../repository/keys.js';
import { decodeRecord, endpointRecord, networkRecord, sandboxRecord, serviceRecord } from '../repository/schema.js';
import type { Store, Watch, WatchEvent } from '../store/types.js';
import { netnsExists } from '../sys/netns.js';
import { namedNetnsResolvConf, removeResolvConf, sweepResolvConfs, writeResolvConf } from '../sys/resolvconf.js';
import { openFileLimit } from '../sys/rlimit.js';
import { DATAGRAM_ADDRESS, DATAGRAM_BUFFER, DATAGRAM_LENGTH, DATAGRAM_MAX, DATAGRAM_OFFSET, DATAGRAM_PORT, DATAGRAM_STRIDE } from '../sys/batch-layout.js';
import { type DatagramBatch, NativeUdpSocket, type ReceivedDatagrams, openTcpListener } from '../sys/udp.js';
import { Forwarder } from './forwarder.js';
import { UDP_MAX_SIZE } from './message.js';
import { RecordTable } from './records.js';
import { type DnsQueryObservation, DnsServer, type QueryContext } from './server.js';
import { type TcpLimits, TcpConnections } from './tcp-connections.js';
import { ConcurrencyLimit } from '../limit.js';
import { type Logger, consoleWarnings } from '../log.js';

/** Sandboxes whose listeners and resolv.conf are being made at one time. */
const SANDBOX_CHANGES_AT_ONCE = 8;
export const EMBEDDED_DNS_ADDRESS = '127.0.0.11';
const RESOLV_CONF = `nameserver ${EMBEDDED_DNS_ADDRESS}\noptions ndots:0\n`;

export interface EmbeddedDnsOptions {
  readonly localStore: Store;
  readonly globalStore?: Store;
  /** Resolvers for names netctl does not know; none means such names get SERVFAIL. */
  readonly upstreams: readonly string[];
  /** resolv.conf files of namespaces that are not named ones live here. */
  readonly stateDir: string;
  readonly ttl?: number;
  /** The DNS port inside sandboxes (53; tests of the listener itself may pick another). */
  readonly port?: number;
  readonly logger?: Logger;
  /** Limits of the TCP connections; see `TcpConnections` and `defaultTcpLimits`. */
  readonly tcpLimits?: Partial<TcpLimits>;
  /** Told how each query ended (for the metrics); replies the addon gave again arrive in bulk with `countReplays`. */
  readonly onQuery?: (query: DnsQueryObservation) => void;
  /**
   * Let the addon give a reply again, without JavaScript, to a later query
   * of the same bytes (default true): only replies of the common-question
   * fast path with one record or none, forgotten whenever the table changes.
   */
  readonly replayAnswers?: boolean;
}

interface Listener {
  readonly udp: NativeUdpSocket;
  readonly tcp: Server;
}

/**
 * 10 s idle, 32 connections per sandbox (a stub resolver uses one or two),
 * and 1024 in all, or half the open-file limit when that is lower, so DNS
 * connections alone never take the descriptors the API, the store, the
 * listeners and the forwards need.
 */
export function defaultTcpLimits(): TcpLimits {
  return { idleTimeoutMs: 10_000, maxPerSandbox: 32, maxTotal: Math.min(1024, Math.floor(openFileLimit().soft / 2)) };
}

/**
 * The resolv.conf a sandbox uses: its named namespace's, which `ip netns
 * exec` mounts (see namedNetnsResolvConf), else a file under the state
 * directory for the runtime to mount.
 */
export function resolvConfPath(sandbox: Pick<SandboxRecord, 'id' | 'netnsPath'>, stateDir: string): string {
  return namedNetnsResolvConf(sandbox.netnsPath) ?? stateResolvConfPath(sandbox, stateDir);
}

/** In a sandbox with its join complete: neither half joined nor on its way out. */
function isJoined(endpoint: EndpointRecord): endpoint is EndpointRecord & { readonly sandboxId: string } {
  return endpoint.sandboxId !== undefined && endpoint.pending === undefined;
}

function stateResolvConfPath(sandbox: Pick<SandboxRecord, 'id'>, stateDir: string): string {
  return join(stateDir, 'resolv', `${sandbox.id}.conf`);
}

export class EmbeddedDns {
  private readonly table = new RecordTable();
  private readonly server: DnsServer;
  private readonly options: EmbeddedDnsOptions;
  private readonly logger: Logger;
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly endpoints = new Map<string, EndpointRecord>();
  private readonly sandboxes = new Map<string, SandboxRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  /** Service id → the endpoints naming it (joined or not, of any host). */
  private readonly tasksOf = new Map<string, Set<string>>();
  private readonly listeners = new Map<string, Listener>();
  /** Listeners whose sockets hold replies to give again; emptied whenever the table changes. */
  private readonly replaying = new Set<NativeUdpSocket>();
  /** The table generation the stored replies were made from. */
  private replayGeneration = 0;
  /** sandboxId → the resolv.conf written for it. */
  private readonly resolvConfs = new Map<string, string>();
  private readonly tcpConnections: TcpConnections;
  private readonly watches: Watch[] = [];
  /**
   * The changes of one sandbox are applied one after another (opening a
   * listener is asynchronous); different sandboxes' run side by side, so a
   * start with many sandboxes opens their listeners together.
   */
  private readonly sandboxQueues = new Map<string, Promise<void>>();
  private readonly changesAtOnce = new ConcurrencyLimit(SANDBOX_CHANGES_AT_ONCE);
  private stopped = false;

  private constructor(options: EmbeddedDnsOptions) {
    this.options = options;
    this.logger = options.logger ?? consoleWarnings;
    const forwarder =
      options.upstreams.length > 0 ? new Forwarder({ upstreams: [...options.upstreams], logger: this.logger }) : undefined;
    this.server = new DnsServer({
      table: this.table,
      ...(forwarder !== undefined ? { forwarder } : {}),
      ...(options.ttl !== undefined ? { ttl: options.ttl } : {}),
      ...(options.onQuery !== undefined ? { onQuery: options.onQuery } : {}),
      logger: this.logger,
    });
    this.tcpConnections = new TcpConnections({ ...defaultTcpLimits(), ...options.tcpLimits }, (sandboxId, query) =>
      this.server.handle(query, { sandboxId, transport: 'tcp', mayForward: this.mayForward(sandboxId) }),
    );
  }

  /** Loads what the stores hold, follows them, and opens a listener in every sandbox. */
  static async start(options: EmbeddedDnsOptions): Promise<EmbeddedDns> {
    const dns = new EmbeddedDns(options);
    try {
      for (const store of [options.localStore, options.globalStore]) {
        if (store === undefined) continue;
        await dns.follow(store, keys.networks);
        await dns.follow(store, keys.endpoints);
        await dns.follow(store, keys.services);
      }
      await dns.follow(options.localStore, keys.sandboxes);
      await dns.sandboxesSettled();
      // Files of sandboxes that went while no DNS ran (a crash mid-removal, a restore that released them).
      await sweepResolvConfs(dns.owner, new Set(dns.sandboxes.keys()), join(options.stateDir, 'resolv'), dns.journalDir);
    } catch (err) {
      await dns.stop();
      throw err;
    }
    return dns;
  }

  /** Closes every listener and the forwarder. resolv.conf files stay for the sandboxes that remain. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const watch of this.watches) await watch.cancel();
    await this.sandboxesSettled();
    for (const sandboxId of [...this.listeners.keys()]) await this.closeListener(sandboxId);
    this.tcpConnections.close();
    await this.server.stop();
  }

  private async follow(store: Store, prefix: string): Promise<void> {
    this.watches.push(await followPrefix(store, prefix, (event) => this.apply(prefix, event)));
  }

  /** Records other hosts wrote are checked against their schemas; one that does not fit is logged and left out. */
  private apply(prefix: string, event: WatchEvent): void {
    const key = event.type === 'put' ? event.kv.key : event.key;
    const id = recordId(key);
    try {
      if (prefix === keys.networks) {
        if (event.type === 'put') this.networks.set(id, decodeRecord(event.kv, networkRecord));
        else this.networks.delete(id);
        for (const endpoint of this.endpoints.values()) if (endpoint.networkId === id) this.refreshEndpoint(endpoint.id);
      } else if (prefix === keys.endpoints) {
        const previous = this.endpoints.get(id);
        if (event.type === 'put') this.endpoints.set(id, decodeRecord(event.kv, endpointRecord));
        else this.endpoints.delete(id);
        this.refreshEndpoint(id);
        this.refreshTask(id, previous?.service, this.endpoints.get(id)?.service);
      } else if (prefix === keys.services) {
        const previous = this.services.get(id);
        if (event.type === 'put') this.services.set(id, decodeRecord(event.kv, serviceRecord));
        else this.services.delete(id);
        this.refreshService(id, previous);
      } else {
        const sandbox = event.type === 'put' ? decodeRecord(event.kv, sandboxRecord) : undefined;
        this.enqueueSandboxChange(id, sandbox);
      }
    } catch (err) {
      this.logger.warn(`dns: ignoring bad record ${key}: ${(err as Error).message}`);
    }
    this.forgetStaleReplays();
  }

  /**
   * Every stored reply goes the moment the table changes, before any query
   * can see the change: the addon never gives an answer the table no longer
   * gives. The table changes only here, in `apply`.
   */
  private forgetStaleReplays(): void {
    if (this.table.generation === this.replayGeneration) return;
    this.replayGeneration = this.table.generation;
    for (const udp of this.replaying) udp.clearAnswers();
    this.replaying.clear();
  }

  /**
   * Tells `onQuery` how many queries the addon answered with stored replies
   * since the last call, as answered UDP queries of no measurable latency
   * (the metrics call this before they are read).
   */
  countReplays(): void {
    for (const { udp } of this.listeners.values()) this.countReplaysOf(udp);
  }

  private countReplaysOf(udp: NativeUdpSocket): void {
    const count = udp.answersTaken();
    if (count > 0) this.options.onQuery?.({ result: 'answered', transport: 'udp', seconds: 0, count });
  }

  private enqueueSandboxChange(sandboxId: string, sandbox: SandboxRecord | undefined): void {
    const next = (this.sandboxQueues.get(sandboxId) ?? Promise.resolve())
      .then(() => this.changesAtOnce.run(() => this.sandboxChanged(sandboxId, sandbox)))
      .catch((err: unknown) => this.logger.warn(`dns: sandbox ${sandbox?.name ?? sandboxId}: ${(err as Error).message}`))
      .finally(() => {
        if (this.sandboxQueues.get(sandboxId) === next) this.sandboxQueues.delete(sandboxId);
      });
    this.sandboxQueues.set(sandboxId, next);
  }

  /** Resolves once every sandbox change queued so far, and any queued meanwhile, is applied. */
  private async sandboxesSettled(): Promise<void> {
    while (this.sandboxQueues.size > 0) await Promise.all(this.sandboxQueues.values());
  }

  /**
   * Joined endpoints of known networks are names; anything else is not. An
   * endpoint marked pending is half joined or on its way out: its interface
   * may not be there, so its name waits for the join to complete, as in
   * Docker, where the name is added after the sandbox is wired.
   */
  private refreshEndpoint(endpointId: string): void {
    const endpoint = this.endpoints.get(endpointId);
    const network = endpoint === undefined ? undefined : this.networks.get(endpoint.networkId);
    if (endpoint === undefined || !isJoined(endpoint) || network === undefined) {
      this.table.removeEndpoint(endpointId);
      return;
    }
    const ipv4 = bareAddress(endpoint.ipv4Address);
    const ipv6 = bareAddress(endpoint.ipv6Address);
    this.table.upsertEndpoint({
      endpointId,
      networkId: network.id,
      networkName: network.name,
      sandboxId: endpoint.sandboxId,
      name: endpoint.name,
      aliases: [...endpoint.aliases],
      ...(ipv4 !== undefined ? { ipv4 } : {}),
      ...(ipv6 !== undefined ? { ipv6 } : {}),
    });
  }

  /** Moves an endpoint between services' task lists, and gives each service concerned its new addresses. */
  private refreshTask(endpointId: string, before: string | undefined, after: string | undefined): void {
    if (before !== undefined && before !== after) {
      const tasks = this.tasksOf.get(before);
      tasks?.delete(endpointId);
      if (tasks?.size === 0) this.tasksOf.delete(before);
    }
    if (after !== undefined) {
      let tasks = this.tasksOf.get(after);
      if (tasks === undefined) this.tasksOf.set(after, (tasks = new Set()));
      tasks.add(endpointId);
    }
    for (const serviceId of new Set([before, after])) if (serviceId !== undefined) this.refreshService(serviceId);
  }

  /**
   * Puts a service in the table on each of its networks with its VIP and the
   * addresses of its joined tasks there; `previous`, the record as it was, is
   * taken out first. A task naming a service that is gone is no task.
   */
  private refreshService(serviceId: string, previous?: ServiceRecord): void {
    if (previous !== undefined) for (const on of previous.networks) this.table.removeService(previous.name, on.networkId);
    const service = this.services.get(serviceId);
    if (service === undefined) return;
    const tasks = [...(this.tasksOf.get(serviceId) ?? [])].flatMap((id) => {
      const endpoint = this.endpoints.get(id);
      return endpoint !== undefined && isJoined(endpoint) ? [endpoint] : [];
    });
    for (const on of service.networks) {
      const virtualIp = bareAddress(on.virtualIp);
      this.table.upsertService({
        name: service.name,
        networkId: on.networkId,
        ...(virtualIp !== undefined ? { virtualIp } : {}),
        tasks: tasks
          .filter((endpoint) => endpoint.networkId === on.networkId)
          .map((endpoint) => {
            const ipv4 = bareAddress(endpoint.ipv4Address);
            const ipv6 = bareAddress(endpoint.ipv6Address);
            return { ...(ipv4 !== undefined ? { ipv4 } : {}), ...(ipv6 !== undefined ? { ipv6 } : {}) };
          }),
      });
    }
  }

  private async sandboxChanged(sandboxId: string, sandbox: SandboxRecord | undefined): Promise<void> {
    if (this.stopped) return;
    const previous = this.sandboxes.get(sandboxId);
    if (sandbox === undefined) {
      this.sandboxes.delete(sandboxId);
      await this.closeListener(sandboxId);
      if (previous !== undefined) await this.removeResolvConf(previous);
      return;
    }
    this.sandboxes.set(sandboxId, sandbox);
    // A sandbox whose namespace netctl makes is stored before the namespace exists.
    if (sandbox.netnsPath === '' || this.listeners.has(sandboxId)) return;
    if (!(await netnsExists(sandbox.netnsPath))) return;
    try {
      await this.openListener(sandbox);
      await this.writeResolvConf(sandbox);
    } catch (err) {
      this.logger.warn(`dns: no resolver for sandbox ${sandbox.name}: ${(err as Error).message}`);
    }
  }

  /** Sandboxes joined only to internal networks get no answers from outside, as in Docker. */
  private mayForward(sandboxId: string): boolean {
    for (const networkId of this.table.networksOf(sandboxId)) {
      if (this.networks.get(networkId)?.internal === false) return true;
    }
    return false;
  }

  private async openListener(sandbox: SandboxRecord): Promise<void> {
    const port = this.options.port ?? 53;
    // Borrowed: no fresh Buffer per wake-up; serveUdp copies only the queries it answers later.
    const udp = NativeUdpSocket.open({ netnsPath: sandbox.netnsPath, address: EMBEDDED_DNS_ADDRESS, port, borrowBuffers: true });
    let tcp: Server;
    try {
      tcp = await openTcpListener({ netnsPath: sandbox.netnsPath, address: EMBEDDED_DNS_ADDRESS, port }, (socket) =>
        this.tcpConnections.accept(sandbox.id, socket),
      );
    } catch (err) {
      udp.close();
      throw err;
    }
    // accept(2) failing (EMFILE under a flood) must not end the daemon; the listener keeps listening.
    tcp.on('error', (err) => this.logger.warn(`dns: TCP listener of sandbox ${sandbox.name}: ${err.message}`));
    const now = new UdpReplies(udp);
    udp.start((batch) => this.serveUdp(sandbox.id, udp, batch, now));
    this.listeners.set(sandbox.id, { udp, tcp });
  }

  /**
   * Answers a batch: common questions at once, read where the socket
   * received them and written into `now`, the listener's own reply memory,
   * sent together before this returns (the kernel copies them, so the
   * memory serves every wake-up); the others as they are answered, those
   * ready in the same turn in one sendBatch.
   */
  private serveUdp(sandboxId: string, udp: NativeUdpSocket, batch: ReceivedDatagrams, now: UdpReplies): void {
    const { index } = batch;
    const replay = this.options.replayAnswers !== false;
    let ctx: QueryContext | undefined;
    let later: ((reply: Buffer, address: string, port: number) => void) | undefined;
    for (let i = 0; i < batch.count; i++) {
      const at = DATAGRAM_STRIDE * i;
      // The socket's own memory, valid until this returns: the fast path keeps nothing of it.
      const received = now.received(batch.buffers[index[at + DATAGRAM_BUFFER]!]!);
      const start = index[at + DATAGRAM_OFFSET]!;
      const end = start + index[at + DATAGRAM_LENGTH]!;
      const address = index[at + DATAGRAM_ADDRESS]!;
      const port = index[at + DATAGRAM_PORT]!;
      if (now.full) now.send(batch.addresses);
      const length = this.server.answerInto(received, start, end, sandboxId, now.memory, now.used);
      if (length > 0) {
        // One record or none: nothing shuffled, so the same query bytes get the same reply until the table changes.
        if (replay && now.memory.readUInt16BE(now.used + ANCOUNT) <= 1) {
          udp.storeAnswer(received, start, end, now.memory, now.used, now.used + length);
          this.replaying.add(udp);
        }
        now.add(length, address, port);
        continue;
      }
      ctx ??= { sandboxId, transport: 'udp', mayForward: this.mayForward(sandboxId) };
      const send = (later ??= repliesInOneTurn(udp));
      // Answered after this returns (forwarded, say): a copy of its own.
      const addressText = batch.addresses[address]!;
      void this.server.handle(Buffer.from(received.subarray(start, end)), ctx).then((reply) => {
        if (reply !== undefined) send(reply, addressText, port);
      });
    }
    now.send(batch.addresses);
  }

  private async closeListener(sandboxId: string): Promise<void> {
    const listener = this.listeners.get(sandboxId);
    if (listener === undefined) return;
    this.listeners.delete(sandboxId);
    this.replaying.delete(listener.udp);
    this.countReplaysOf(listener.udp);
    listener.udp.close();
    this.tcpConnections.closeSandbox(sandboxId);
    await new Promise<void>((resolve) => listener.tcp.close(() => resolve()));
  }

  /** The resolv.conf written for the sandbox, once it is. */
  resolvConfPathOf(sandbox: Pick<SandboxRecord, 'id'>): string | undefined {
    return this.resolvConfs.get(sandbox.id);
  }

  /** Identifies this daemon's files among those of others sharing /etc/netns. */
  private get owner(): string {
    return resolve(this.options.stateDir);
  }

  private get journalDir(): string {
    return join(this.options.stateDir, 'resolv-dirs');
  }

  private resolvConfTarget(sandbox: Pick<SandboxRecord, 'id'>, path: string) {
    return { path, sandboxId: sandbox.id, owner: this.owner, journalDir: this.journalDir };
  }

  /**
   * /etc/netns/NAME/resolv.conf for a named namespace, unless the user has a
   * file of their own there: then it stays untouched and the sandbox's file
   * goes under the state directory.
   */
  private async writeResolvConf(sandbox: SandboxRecord): Promise<void> {
    const preferred = resolvConfPath(sandbox, this.options.stateDir);
    const fallback = stateResolvConfPath(sandbox, this.options.stateDir);
    for (const path of preferred === fallback ? [preferred] : [preferred, fallback]) {
      if (await writeResolvConf(this.resolvConfTarget(sandbox, path), RESOLV_CONF)) {
        if (path !== preferred) this.logger.info(`dns: ${preferred} is not netctl's and stays as it is; sandbox ${sandbox.name} uses ${path}`);
        this.resolvConfs.set(sandbox.id, path);
        return;
      }
    }
  }

  private async removeResolvConf(sandbox: SandboxRecord): Promise<void> {
    this.resolvConfs.delete(sandbox.id);
    for (const path of new Set([resolvConfPath(sandbox, this.options.stateDir), stateResolvConfPath(sandbox, this.options.stateDir)])) {
      await removeResolvConf(this.resolvConfTarget(sandbox, path));
    }
  }
}

/** Where a DNS header holds ANCOUNT (RFC 1035 section 4.1.1). */
const ANCOUNT = 6;

/** Reply memory of one listener: room for this many replies of the largest UDP size before a send. */
const REPLIES_PER_SEND = 16;

/**
 * The replies a listener answers at once, written back to back into memory
 * of its own and described in an index as received datagrams are, the
 * address being a slot of the batch they answer: sent with sendIndexed, no
 * object is made per reply, nor per wake-up.
 */
class UdpReplies {
  readonly memory = Buffer.allocUnsafe(REPLIES_PER_SEND * UDP_MAX_SIZE);
  /** Bytes of `memory` holding replies not yet sent. */
  used = 0;
  readonly #udp: NativeUdpSocket;
  readonly #replies: { buffers: Uint8Array[]; index: Uint32Array; addresses: readonly string[]; count: number };
  /** The socket's receive memory as a Buffer, made once per memory the socket hands over. */
  #receivedFrom: Uint8Array | undefined;
  #received: Buffer = Buffer.alloc(0);

  constructor(udp: NativeUdpSocket) {
    this.#udp = udp;
    this.#replies = { buffers: [this.memory], index: new Uint32Array(DATAGRAM_STRIDE * DATAGRAM_MAX), addresses: [], count: 0 };
  }

  /** `memory` as a Buffer (the fast path reads with Buffer's methods). */
  received(memory: Uint8Array): Buffer {
    if (memory !== this.#receivedFrom) {
      this.#receivedFrom = memory;
      this.#received = Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength);
    }
    return this.#received;
  }

  /** True when another reply might not fit: send first. */
  get full(): boolean {
    return this.memory.length - this.used < UDP_MAX_SIZE || this.#replies.count === DATAGRAM_MAX;
  }

  /** The reply of `length` bytes just written at `used`, to `port` at the batch's address slot `address`. */
  add(length: number, address: number, port: number): void {
    const { index } = this.#replies;
    const at = DATAGRAM_STRIDE * this.#replies.count++;
    index[at + DATAGRAM_BUFFER] = 0;
    index[at + DATAGRAM_OFFSET] = this.used;
    index[at + DATAGRAM_LENGTH] = length;
    index[at + DATAGRAM_ADDRESS] = address;
    index[at + DATAGRAM_PORT] = port;
    this.used += length;
  }

  /** Sends the replies added, their address slots read in `addresses` (the batch's). */
  send(addresses: readonly string[]): void {
    if (this.#replies.count === 0) return;
    this.#replies.addresses = addresses;
    try {
      this.#udp.sendIndexed(this.#replies);
    } catch {
      // The listener closed meanwhile: nobody is left to answer.
    }
    this.#replies.count = 0;
    this.used = 0;
  }
}

/** A sendBatch whose failure means only that the listener closed meanwhile: the sandbox is gone. */
function sendQuietly(udp: NativeUdpSocket, batch: DatagramBatch): void {
  try {
    udp.sendBatch(batch);
  } catch {
    // Nobody is left to answer.
  }
}

/** Collects replies that come later; those ready in one turn of the event loop leave in one sendBatch. */
function repliesInOneTurn(udp: NativeUdpSocket): (reply: Buffer, address: string, port: number) => void {
  const replies: DatagramBatch = { data: [], addresses: [], ports: [] };
  const flush = () => {
    sendQuietly(udp, replies);
    replies.data.length = 0;
    replies.addresses.length = 0;
    replies.ports.length = 0;
  };
  return (reply, address, port) => {
    if (replies.data.length === 0) setImmediate(flush);
    replies.data.push(reply);
    replies.addresses.push(address);
    replies.ports.push(port);
  };
}
