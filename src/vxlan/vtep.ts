/**
 * The user-space VXLAN tunnel endpoint (RFC 7348): one per host, one
 * underlay UDP port shared by every overlay network, one frame port (TAP)
 * per network. Frames from a TAP are answered locally (ARP, IPv6 ND from the
 * peer table, as libnetwork's overlay does), sent to the VTEP that holds the
 * destination MAC, or flooded to the network's VTEPs; datagrams from the
 * underlay are checked, attributed to a known VTEP and written to the TAP.
 * Work is done per batch: per TAP batch one `sendFrames` per destination
 * VTEP and one `sendBatch` for floods, per underlay batch one `writeFrames`
 * per network.
 *
 * With a frame port that has `vnetHdr` (a TAP with TSO offloads), frames
 * arrive as TCP super-frames of up to 64 KB: the VTEP decides once per
 * super-frame, and the underlay cuts it into MTU-sized inner frames (in C).
 * Received datagrams may come coalesced by UDP GRO; each is checked on its
 * own, and the frame port merges consecutive TCP segments again.
 *
 * This file keeps the VTEP's state and its control calls; the per-batch
 * work is in send.ts (TAP to underlay), receive.ts (underlay to TAP) and
 * proxy.ts (the ARP/ND answers, pure).
 *
 * The vxlan/ folder: this VTEP (state and control calls), send.ts (TAP
 * to underlay), receive.ts (underlay to TAP), proxy.ts (ARP/ND answers,
 * pure), peers.ts and network.ts (tables and counters), liveness.ts (the
 * data-path probes), mtu.ts, and the frame and datagram ports (io.ts;
 * native.ts over the addon, memory.ts for tests).
 */
import { Conflict, InvalidArgument, NetctlError } from '../errors.js';
import {
  DEFAULT_VXLAN_PORT,
  ETHERNET_HEADER_LEN,
  IPV4_MIN_MTU,
  MAX_VNI,
  formatIPv4,
  isMulticastMac,
  parseIPv4,
  parseIPv6,
  parseMac,
} from '../wire/index.js';
import type { DatagramPort, FastPath, FastPathSink, FrameBatch, FramePort, ReceivedDatagrams } from './io.js';
import { Liveness } from './liveness.js';
import type { LivenessOptions, PeerLiveness } from './liveness.js';
import { newNetwork, newVtepStats } from './network.js';
import type { Network, VtepNetworkStats, VtepStats } from './network.js';
import { PeerTable } from './peers.js';
import { UnderlayReceiver } from './receive.js';
import { FrameSender } from './send.js';
import { type Logger, silentLogger } from '../log.js';

/** The largest inner frame one UDP/IPv4 datagram can carry: 65535 − IPv4 20 − UDP 8 − VXLAN 8. */
export const MAX_FRAME_LENGTH = 65_499;
/** How often learned entries are swept (they also expire on lookup). */
const SWEEP_INTERVAL_MS = 10_000;

export type { VtepNetworkCounters, VtepNetworkStats, VtepStats } from './network.js';

export interface VtepOptions {
  underlay: DatagramPort;
  /** Our underlay IPv4: never sent to, and datagrams claiming it are dropped. */
  localAddress: string;
  /** The peers' data path port (default 4789). */
  port?: number;
  /** Clock in milliseconds, for ageing learned entries (default Date.now). */
  now?: () => number;
  /** Told about failures the data path survives (a port that throws). */
  logger?: Logger;
  /** How long a MAC learned from an external peer lives unseen (default 300 s). */
  learnedTtlMs?: number;
  /** Longer frames are dropped either way (default MAX_FRAME_LENGTH). */
  maxFrameLength?: number;
  /**
   * The largest IP packet this host's underlay carries inside VXLAN (its
   * MTU less `VXLAN_OVERHEAD`, see mtu.ts). A frame that would not fit the
   * path to its VTEP (this, or the VTEP's own, see `setVtepMtu`) is never
   * sent: it is answered or fragmented as a router would. Default: only
   * `maxFrameLength` applies.
   */
  mtu?: number;
  /** Timing and clock of the liveness probes to peer VTEPs (see liveness.ts). */
  probe?: LivenessOptions;
  /**
   * Hand the underlay's fast path (`DatagramPort.fastPath`, when it has one)
   * the unicast flows between configured endpoints, so that their frames
   * move without calling the VTEP (default true).
   */
  fastPath?: boolean;
}

export interface NetworkOptions {
  /**
   * Underlay IPv4s of VTEPs outside netctl (e.g. kernel vxlan) that get floods and whose MACs are
   * learned; when given, they replace the VNI's external peers (see `Vtep.setExternalPeers`).
   */
  externalPeers?: string[];
  /**
   * Seal every frame with ESP and take in only sealed datagrams (the port
   * must have an ESP table attached). A frame to a VTEP without an outbound
   * SPI (`setOutboundSpi`) is dropped and counted, never sent in clear.
   * External peers cannot take part.
   */
  encrypted?: boolean;
}

export interface PeerOptions {
  /** `02:42:0a:00:00:02` or its 48-bit value. */
  mac: string | number;
  ipv4?: string;
  ipv6?: string;
  /** Underlay IPv4 of the VTEP holding the endpoint; our own address marks a local endpoint. */
  vtep: string;
}

/** A call on a VTEP after `stop`. */
export class VtepStopped extends NetctlError {
  constructor() {
    super('Unavailable', 'the VTEP is stopped');
  }
}

export class Vtep {
  readonly #stats: VtepStats = newVtepStats();
  readonly #underlay: DatagramPort;
  readonly #fastPath: FastPath | undefined;
  readonly #localAddress: string;
  readonly #port: number;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #maxFrameLength: number;
  readonly #mtu: number;
  /** The MTUs other VTEPs announced for their own underlay (`setVtepMtu`). */
  readonly #vtepMtus = new Map<string, number>();
  readonly #peers: PeerTable;
  readonly #liveness: Liveness;
  readonly #networks = new Map<number, Network>();
  /** Outbound SPIs by VNI, then VTEP address: kept for VNIs not served yet, which get them when they are. */
  readonly #spis = new Map<number, Map<string, number>>();
  readonly #receiver: UnderlayReceiver;
  readonly #sender: FrameSender;
  #nextSweep: number;
  #state: 'new' | 'started' | 'stopped' = 'new';

  constructor(opts: VtepOptions) {
    this.#underlay = opts.underlay;
    this.#fastPath = opts.fastPath === false ? undefined : opts.underlay.fastPath;
    this.#localAddress = canonicalIPv4(opts.localAddress, 'localAddress');
    this.#port = opts.port ?? DEFAULT_VXLAN_PORT;
    if (!Number.isInteger(this.#port) || this.#port < 1 || this.#port > 65535) {
      throw new InvalidArgument(`invalid VXLAN port ${this.#port}`);
    }
    this.#now = opts.now ?? Date.now;
    this.#logger = opts.logger ?? silentLogger;
    this.#maxFrameLength = opts.maxFrameLength ?? MAX_FRAME_LENGTH;
    this.#mtu = opts.mtu ?? this.#maxFrameLength - ETHERNET_HEADER_LEN;
    checkMtu(this.#mtu);
    this.#peers = new PeerTable({
      localAddress: this.#localAddress,
      ...(opts.learnedTtlMs !== undefined && { learnedTtlMs: opts.learnedTtlMs }),
    });
    this.#nextSweep = this.#now() + SWEEP_INTERVAL_MS;
    this.#liveness = new Liveness({
      ...opts.probe,
      port: this.#port,
      targets: () => this.#probeTargets(),
      knows: (address) => this.#peers.isNetctlVtep(address),
      send: (datagrams) => {
        this.#underlay.sendBatch(datagrams);
        this.#stats.txDatagrams += datagrams.length;
      },
      logger: this.#logger,
    });
    this.#sender = new FrameSender({
      underlay: this.#underlay,
      port: this.#port,
      maxFrameLength: this.#maxFrameLength,
      mtu: this.#mtu,
      vtepMtus: this.#vtepMtus,
      stats: this.#stats,
      sentToPeer: (network, mac, vtep) => this.#cacheFlow(network, mac, vtep),
      logger: this.#logger,
    });
    this.#receiver = new UnderlayReceiver({
      localAddress: this.#localAddress,
      maxFrameLength: this.#maxFrameLength,
      networks: this.#networks,
      stats: this.#stats,
      liveness: this.#liveness,
      fromPeer: (network, mac, vtep) => this.#cacheFlow(network, mac, vtep),
      logger: this.#logger,
    });
  }

  /**
   * Counters since construction, those of the fast path included (read
   * here, they are exact; the object is the VTEP's own, updated in place).
   */
  get stats(): VtepStats {
    this.#drainFastPath();
    return this.#stats;
  }

  /** Starts receiving from the underlay; calling it again does nothing. */
  start(): void {
    this.#check();
    if (this.#state === 'started') return;
    this.#underlay.start((datagrams) => this.#onDatagrams(datagrams));
    this.#liveness.start();
    this.#state = 'started';
  }

  /**
   * Stops and closes every frame port and closes the underlay, trying all of
   * them and reporting every failure together. Every later call throws VtepStopped.
   */
  async stop(): Promise<void> {
    this.#check();
    this.#drainFastPath();
    this.#state = 'stopped';
    this.#liveness.stop();
    const failures: unknown[] = [];
    for (const network of this.#networks.values()) {
      network.removed = true;
      try {
        network.port.stop();
        network.port.close();
      } catch (err) {
        failures.push(err);
      }
    }
    this.#networks.clear();
    try {
      await this.#underlay.close();
    } catch (err) {
      failures.push(err);
    }
    if (failures.length > 0) {
      const messages = failures.map((err) => (err instanceof Error ? err.message : String(err)));
      throw new NetctlError('Internal', `stopping the VTEP: ${messages.join('; ')}`, {
        cause: new AggregateError(failures),
      });
    }
  }

  /**
   * Serves overlay network `vni` on `port`, which the VTEP now owns (it
   * starts it, and stops and closes it on removal). Throws Conflict if the
   * VNI is served already.
   */
  addNetwork(vni: number, port: FramePort, opts: NetworkOptions = {}): void {
    this.#check();
    checkVni(vni);
    if (this.#networks.has(vni)) throw new Conflict(`VNI ${vni} is already served by this VTEP`);
    const externalPeers = opts.externalPeers?.map((peer) => canonicalIPv4(peer, 'external peer'));
    const encrypted = opts.encrypted ?? false;
    if (encrypted && externalPeers !== undefined && externalPeers.length > 0) {
      throw new InvalidArgument(`VNI ${vni}: an encrypted network cannot have external peers (they could not open what it seals)`);
    }
    const network = newNetwork(vni, port, this.#peers.vni(vni), encrypted, this.#spisOf(vni));
    if (externalPeers !== undefined) network.peers.setExternalPeers(externalPeers);
    this.#networks.set(vni, network);
    try {
      port.start((frames) => this.#onFrames(network, frames));
    } catch (err) {
      this.#networks.delete(vni);
      throw err;
    }
    try {
      if (this.#fastPath?.attach(vni, port, network.header, encrypted, this.#maxFrameLength) === true) network.flows = new Set();
    } catch (err) {
      // The VTEP moves every frame itself then, as without a fast path.
      this.#logger.warn(`VNI ${vni}: the fast path refused the network: ${String(err)}`);
    }
  }

  /**
   * Stops serving `vni` and stops and closes its port (errors from the port
   * are thrown after the network is removed). Its peers stay in the table
   * until removed. Unknown VNIs are ignored.
   */
  removeNetwork(vni: number): void {
    this.#check();
    const network = this.#networks.get(vni);
    if (network === undefined) return;
    if (network.flows !== undefined) {
      this.#drainFastPath();
      this.#fastPath!.detach(vni);
    }
    network.removed = true;
    this.#networks.delete(vni);
    network.port.stop();
    network.port.close();
  }

  /**
   * Frames of encrypted network `vni` to the VTEP at `address` are sealed
   * with outbound SA `spi` of the underlay's ESP table from now on;
   * undefined: dropped (no SA yet, or any more). The VNI need not be served yet.
   */
  setOutboundSpi(vni: number, address: string, spi: number | undefined): void {
    this.#check();
    checkVni(vni);
    const vtep = canonicalIPv4(address, 'VTEP');
    if (spi === undefined) this.#spisOf(vni).delete(vtep);
    else if (!Number.isInteger(spi) || spi < 256 || spi > 0xffffffff) throw new InvalidArgument(`invalid SPI ${spi}`);
    else this.#spisOf(vni).set(vtep, spi);
    this.#forgetFlows(vni);
  }

  #spisOf(vni: number): Map<string, number> {
    let spis = this.#spis.get(vni);
    if (spis === undefined) {
      spis = new Map();
      this.#spis.set(vni, spis);
    }
    return spis;
  }

  /** Replaces the external peers of `vni`; MACs learned from peers no longer listed are forgotten. */
  setExternalPeers(vni: number, peers: string[]): void {
    this.#check();
    checkVni(vni);
    if (peers.length > 0 && this.#networks.get(vni)?.encrypted === true) {
      throw new InvalidArgument(`VNI ${vni}: an encrypted network cannot have external peers (they could not open what it seals)`);
    }
    this.#peers.vni(vni).setExternalPeers(peers.map((peer) => canonicalIPv4(peer, 'external peer')));
    // Which VTEPs are external decides checksums and learning: every flow is decided again.
    this.#forgetFlows(vni);
  }

  /**
   * Adds or replaces the endpoint with `peer.mac` on `vni`: frames to that MAC
   * go to `peer.vtep`, and ARP/ND for its addresses are answered locally.
   * The VNI need not be served yet.
   */
  setPeer(vni: number, peer: PeerOptions): void {
    this.#check();
    checkVni(vni);
    const mac = toMac(peer.mac);
    if (isMulticastMac(mac)) throw new InvalidArgument(`peer MAC ${String(peer.mac)} is a multicast address`);
    const vtep = canonicalIPv4(peer.vtep, 'peer VTEP');
    const ipv4 = peer.ipv4 === undefined ? undefined : parseWith(parseIPv4, peer.ipv4, 'peer IPv4');
    const ipv6 = peer.ipv6 === undefined ? undefined : parseWith(parseIPv6, peer.ipv6, 'peer IPv6');
    this.#peers.vni(vni).set({
      mac,
      vtep,
      ...(ipv4 !== undefined && { ipv4 }),
      ...(ipv6 !== undefined && { ipv6 }),
    });
    this.#forgetFlows(vni, mac);
  }

  /** Forgets the endpoint with `mac` on `vni`, configured or learned; unknown ones are ignored. */
  removePeer(vni: number, mac: string | number): void {
    this.#check();
    checkVni(vni);
    const value = toMac(mac);
    this.#peers.vni(vni).remove(value);
    this.#forgetFlows(vni, value);
  }

  /**
   * Sets the MTU the VTEP at `address` announced for its own underlay (as
   * `VtepOptions.mtu`): frames to it must fit the smaller of that and ours.
   */
  setVtepMtu(address: string, mtu: number): void {
    this.#check();
    checkMtu(mtu);
    const vtep = canonicalIPv4(address, 'VTEP');
    this.#vtepMtus.set(vtep, mtu);
    for (const network of this.#networks.values()) {
      const queue = network.unicast.get(vtep);
      if (queue !== undefined) queue.frameLimit = this.#sender.frameLimit(network, vtep);
      this.#forgetFlows(network.vni);
    }
  }

  /** A snapshot of every served network's counters (after `stop`, none). */
  networkStats(): VtepNetworkStats[] {
    this.#drainFastPath();
    return [...this.#networks.values()].map((network) => {
      const traffic = { rxDatagrams: 0, rxBytes: 0, txDatagrams: 0, txBytes: 0 };
      const peers = [...network.peers.remotes()].map((remote) => {
        traffic.rxDatagrams += remote.rxDatagrams;
        traffic.rxBytes += remote.rxBytes;
        traffic.txDatagrams += remote.txDatagrams;
        traffic.txBytes += remote.txBytes;
        const { known: _known, external: _external, ...counted } = remote;
        return counted;
      });
      return { vni: network.vni, counters: { ...network.counters, ...traffic }, peers };
    });
  }

  /**
   * The data-path state of the netctl VTEP at `address` as its probes tell
   * it; undefined when it is not probed: it holds no peer of a network this
   * VTEP serves, or it is external (not netctl, so it would not answer).
   */
  peerState(address: string): PeerLiveness | undefined {
    return this.#liveness.get(address);
  }

  /** Every probed peer VTEP's state (after `stop`, none). */
  peerStates(): PeerLiveness[] {
    return this.#liveness.all();
  }

  /**
   * Calls `listener` once per change of a probed peer's state (each change
   * is also logged), and with `unknown` when a peer stops being probed.
   * Returns the function that unsubscribes.
   */
  onPeerStateChange(listener: (peer: PeerLiveness) => void): () => void {
    return this.#liveness.onChange(listener);
  }

  #check(): void {
    if (this.#state === 'stopped') throw new VtepStopped();
  }

  /**
   * The decision the send and receive paths just made for frames of
   * `network` to and from configured endpoint `mac` behind `vtep`, handed to
   * the fast path: only for a netctl VTEP (external ones get whole checksums
   * and teach MACs) and, on an encrypted network, one with an outbound SA.
   * Whatever could change it forgets it (`#forgetFlows`).
   */
  #cacheFlow(network: Network, mac: number, vtep: string): void {
    const flows = network.flows;
    if (flows === undefined || network.peers.remote(vtep).external) return;
    const spi = network.encrypted ? network.spis.get(vtep) : 0;
    if (spi === undefined) return;
    this.#fastPath!.install(network.vni, mac, { address: vtep, port: this.#port, frameLimit: this.#sender.frameLimit(network, vtep), spi, remoteChecksum: true });
    flows.add(mac);
  }

  /** The fast path drops its flow for `mac` on `vni`, or every flow of `vni`: from the return on, the VTEP decides again. */
  #forgetFlows(vni: number, mac?: number): void {
    const flows = this.#networks.get(vni)?.flows;
    if (flows === undefined) return;
    if (mac === undefined) {
      if (flows.size === 0) return;
      flows.clear();
    } else if (!flows.delete(mac)) {
      return;
    }
    this.#fastPath!.forget(vni, mac);
  }

  /** Adds what the fast path moved since the last call to the counters. */
  #drainFastPath(): void {
    this.#fastPath?.drain(this.#fastPathSink);
  }

  readonly #fastPathSink: FastPathSink = {
    port: (vni, counts) => {
      const stats = this.#stats;
      stats.rxFrames += counts.rxFrames;
      stats.txFrames += counts.txFrames;
      stats.dropWriteFailed += counts.dropWriteFailed;
      const counters = this.#networks.get(vni)?.counters;
      if (counters === undefined) return;
      counters.rxFrames += counts.rxFrames;
      counters.txFrames += counts.txFrames;
      counters.dropWriteFailed += counts.dropWriteFailed;
    },
    remote: (vni, address, counts) => {
      this.#stats.txDatagrams += counts.txDatagrams;
      this.#stats.rxDatagrams += counts.rxDatagrams;
      const network = this.#networks.get(vni);
      if (network === undefined) return;
      const remote = network.peers.remote(address);
      remote.txDatagrams += counts.txDatagrams;
      remote.txBytes += counts.txBytes;
      remote.rxDatagrams += counts.rxDatagrams;
      remote.rxBytes += counts.rxBytes;
    },
  };

  /** Netctl VTEPs with peers on a network served here: only they carry traffic we send or expect. */
  *#probeTargets(): Generator<string> {
    for (const network of this.#networks.values()) yield* network.peers.configuredVteps();
  }

  #sweep(now: number): void {
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + SWEEP_INTERVAL_MS;
    this.#peers.sweep(now);
  }

  #onDatagrams(datagrams: ReceivedDatagrams): void {
    if (this.#state !== 'started') return;
    const now = this.#now();
    this.#sweep(now);
    this.#receiver.receive(datagrams, now);
  }

  #onFrames(network: Network, frames: FrameBatch): void {
    if (network.removed) return;
    const now = this.#now();
    this.#sweep(now);
    this.#sender.send(network, frames, now);
  }
}

/** An IP MTU: RFC 791 §3.2's 68 at least, and what an IPv4 total length can say. */
function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < IPV4_MIN_MTU || mtu > 0xffff) throw new InvalidArgument(`invalid MTU ${mtu}: an integer from ${IPV4_MIN_MTU} to 65535`);
}

function checkVni(vni: number): void {
  if (!Number.isInteger(vni) || vni < 0 || vni > MAX_VNI) throw new InvalidArgument(`invalid VNI ${vni}`);
}

function toMac(mac: string | number): number {
  if (typeof mac === 'string') return parseWith(parseMac, mac, 'MAC');
  if (!Number.isInteger(mac) || mac < 0 || mac > 0xffffffffffff) throw new InvalidArgument(`invalid MAC ${mac}`);
  return mac;
}

/** Canonical dotted quad, so addresses compare as strings with what the underlay reports. */
function canonicalIPv4(text: string, what: string): string {
  return formatIPv4(parseWith(parseIPv4, text, what));
}

function parseWith<T>(parse: (text: string) => T, text: string, what: string): T {
  try {
    return parse(text);
  } catch (err) {
    throw new InvalidArgument(`invalid ${what} ${JSON.stringify(text)}`, { cause: err });
  }
}
