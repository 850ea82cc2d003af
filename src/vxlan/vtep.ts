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
 */
import { Conflict, InvalidArgument, NetctlError } from '../errors.js';
import {
  ARP_FRAME_LEN,
  ARP_REQUEST,
  DEFAULT_VXLAN_PORT,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  ICMPV6_NEIGHBOR_SOLICITATION,
  IPV4_MIN_MTU,
  IPPROTO_ICMPV6,
  IPV6_DST_OFFSET,
  IPV6_HEADER_LEN,
  IPV6_SRC_OFFSET,
  MAX_VNI,
  NEIGHBOR_ADVERTISEMENT_FRAME_LEN,
  TCP_CHECKSUM_OFFSET,
  UDP_CHECKSUM_OFFSET,
  VXLAN_HEADER_LEN,
  VXLAN_RCO_START_MASK,
  VXLAN_RCO_UDP,
  arpCheck,
  arpOperation,
  arpSenderIp,
  arpSenderMac,
  arpTargetIp,
  decodeArp,
  decodeNeighborSolicitation,
  ethernetDst,
  ethernetPayloadOffset,
  ethernetSrc,
  ethernetType,
  formatIPv4,
  icmpv6Checksum,
  ipv6HopLimit,
  ipv6NextHeader,
  ipv6PayloadLength,
  isMulticastMac,
  parseIPv4,
  parseIPv6,
  parseMac,
  probeCheck,
  readMac,
  vxlanCheck,
  vxlanRemoteChecksum,
  writeArpReply,
  writeNeighborAdvertisement,
  writeVxlanHeader,
} from '../wire/index.js';
import {
  DATAGRAM_ADDRESS,
  DATAGRAM_BUFFER,
  DATAGRAM_LENGTH,
  DATAGRAM_OFFSET,
  DATAGRAM_PORT,
  DATAGRAM_SEGMENT_SIZE,
  DATAGRAM_STRIDE,
  FRAME_BUFFER,
  FRAME_LENGTH,
  FRAME_OFFSET,
  FRAME_STRIDE,
} from '../sys/batch-layout.js';
import type { Datagram, DatagramPort, FrameBatch, FramePort, ReceivedDatagrams } from './io.js';
import { Liveness } from './liveness.js';
import type { LivenessOptions, PeerLiveness } from './liveness.js';
import { largestFrame, tooBig } from './mtu.js';
import { CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED, FrameList, VNET_HDR_LEN, segmentFrame } from './offload.js';
import { PeerTable } from './peers.js';
import type { RemoteVtep, RemoteVtepStats, VniPeers } from './peers.js';
import { type Logger, silentLogger } from '../log.js';

/** The largest inner frame one UDP/IPv4 datagram can carry: 65535 − IPv4 20 − UDP 8 − VXLAN 8. */
export const MAX_FRAME_LENGTH = 65_499;
/** How often learned entries are swept (they also expire on lookup). */
const SWEEP_INTERVAL_MS = 10_000;

/**
 * Counters since construction. "rx"/"tx" are per kind of port: frames read
 * from / written to the frame ports, datagrams received from / sent to the
 * underlay (each copy of a flooded frame is one datagram).
 */
export interface VtepStats {
  rxDatagrams: number;
  rxFrames: number;
  txDatagrams: number;
  txFrames: number;
  /** ARP requests answered from the peer table. */
  arpAnswered: number;
  /** IPv6 neighbour solicitations answered from the peer table. */
  ndAnswered: number;
  /** Frames replicated to the flood targets (broadcast, multicast, unknown unicast). */
  flooded: number;
  /** MACs newly learned from external peers' traffic. */
  learned: number;
  /** Datagram or frame too short for its headers. */
  dropTruncated: number;
  /** VXLAN header without the I flag (RFC 7348 §5), or with an RCO start outside the frame. */
  dropBadFlags: number;
  dropUnknownVni: number;
  /** Datagram from an address that is neither a VTEP of the VNI nor one of its external peers. */
  dropUnknownSender: number;
  /** Datagram from our own underlay address, or an inner frame from one of our local endpoints' MACs. */
  dropSelf: number;
  /** Nowhere to send: a unicast to a local endpoint, or no flood targets. */
  dropNoRoute: number;
  /** Frame longer than `maxFrameLength`. */
  dropOversize: number;
  /** Frames a frame port did not take (queue full or write error). */
  dropWriteFailed: number;
  /** Frames from a port whose virtio_net_hdr does not match the frame (e.g. a GSO type other than TCP). */
  dropBadOffload: number;
  /** Frames (or a super-frame's segments) longer than the MTU of the path to their VTEP, dropped (see `tooBigAnswered`). */
  dropTooBig: number;
  /** ICMP "fragmentation needed" / ICMPv6 "packet too big" answers to frames dropped as too big. */
  tooBigAnswered: number;
  /** IPv4 packets without DF too big for their path, cut into fragments that fit (the underlay never fragments). */
  fragmented: number;
}

/**
 * The counters of `VtepStats` that belong to one network, counted once the
 * datagram's network is known (drops before that are in `VtepStats` only).
 */
export interface VtepNetworkCounters {
  rxFrames: number;
  txFrames: number;
  arpAnswered: number;
  ndAnswered: number;
  flooded: number;
  learned: number;
  dropTruncated: number;
  dropBadFlags: number;
  dropUnknownSender: number;
  dropSelf: number;
  dropNoRoute: number;
  dropOversize: number;
  dropWriteFailed: number;
  dropBadOffload: number;
  dropTooBig: number;
  tooBigAnswered: number;
  fragmented: number;
}

/** A snapshot of one served network's counters and of the remote VTEPs it has known. */
export interface VtepNetworkStats {
  readonly vni: number;
  /** Datagrams and bytes are the sums over `peers`; received ones count only when accepted. */
  readonly counters: Readonly<VtepNetworkCounters & Omit<RemoteVtepStats, 'dropSelf' | 'dropBadFlags'>>;
  readonly peers: readonly Readonly<RemoteVtepStats & { address: string }>[];
}

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
}

export interface NetworkOptions {
  /**
   * Underlay IPv4s of VTEPs outside netctl (e.g. kernel vxlan) that get floods and whose MACs are
   * learned; when given, they replace the VNI's external peers (see `Vtep.setExternalPeers`).
   */
  externalPeers?: string[];
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

interface Network {
  readonly vni: number;
  readonly port: FramePort;
  readonly peers: VniPeers;
  /** This network's VXLAN header, copied in front of every frame it sends. */
  readonly header: Uint8Array;
  /** Inner frames from the current underlay batch, reused across batches. */
  readonly inbound: FrameList;
  /** ARP/ND answers for the current TAP batch, reused across batches. */
  readonly answers: FrameList;
  /** Unicast frames of the current TAP batch (as the port gave them) by destination VTEP, reused. */
  readonly unicast: Map<string, UnicastQueue>;
  readonly counters: VtepNetworkCounters;
  removed: boolean;
}

interface UnicastQueue {
  readonly frames: FrameList;
  readonly remote: RemoteVtep;
  /** The longest frame the path to this VTEP takes (see `Vtep.#frameLimit`), kept up to date by `setVtepMtu`. */
  frameLimit: number;
  /** Inner frame bytes queued (virtio headers not counted). */
  bytes: number;
}

export class Vtep {
  readonly stats: VtepStats = {
    rxDatagrams: 0,
    rxFrames: 0,
    txDatagrams: 0,
    txFrames: 0,
    arpAnswered: 0,
    ndAnswered: 0,
    flooded: 0,
    learned: 0,
    dropTruncated: 0,
    dropBadFlags: 0,
    dropUnknownVni: 0,
    dropUnknownSender: 0,
    dropSelf: 0,
    dropNoRoute: 0,
    dropOversize: 0,
    dropWriteFailed: 0,
    dropBadOffload: 0,
    dropTooBig: 0,
    tooBigAnswered: 0,
    fragmented: 0,
  };
  readonly #underlay: DatagramPort;
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
  /** Networks with inbound frames in the current underlay batch. */
  readonly #touched: Network[] = [];
  /** The `FrameBatch.checksum` and the sender of the frame `#fromUnderlay` last accepted. */
  #acceptedChecksum = CHECKSUM_UNVERIFIED;
  #acceptedSender: RemoteVtep | undefined;
  /** A DataView on the ArrayBuffer of the last underlay buffer asked for (the same one batch after batch when borrowed). */
  #view: DataView | undefined;
  #nextSweep: number;
  #state: 'new' | 'started' | 'stopped' = 'new';

  constructor(opts: VtepOptions) {
    this.#underlay = opts.underlay;
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
        this.stats.txDatagrams += datagrams.length;
      },
      logger: this.#logger,
    });
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
    const header = new Uint8Array(VXLAN_HEADER_LEN);
    writeVxlanHeader(vni, header, 0);
    const network: Network = {
      vni,
      port,
      peers: this.#peers.vni(vni),
      header,
      inbound: new FrameList(),
      answers: new FrameList(),
      unicast: new Map(),
      counters: {
        rxFrames: 0,
        txFrames: 0,
        arpAnswered: 0,
        ndAnswered: 0,
        flooded: 0,
        learned: 0,
        dropTruncated: 0,
        dropBadFlags: 0,
        dropUnknownSender: 0,
        dropSelf: 0,
        dropNoRoute: 0,
        dropOversize: 0,
        dropWriteFailed: 0,
        dropBadOffload: 0,
        dropTooBig: 0,
        tooBigAnswered: 0,
        fragmented: 0,
      },
      removed: false,
    };
    if (externalPeers !== undefined) network.peers.setExternalPeers(externalPeers);
    this.#networks.set(vni, network);
    try {
      port.start((frames) => this.#onFrames(network, frames));
    } catch (err) {
      this.#networks.delete(vni);
      throw err;
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
    network.removed = true;
    this.#networks.delete(vni);
    network.port.stop();
    network.port.close();
  }

  /** Replaces the external peers of `vni`; MACs learned from peers no longer listed are forgotten. */
  setExternalPeers(vni: number, peers: string[]): void {
    this.#check();
    checkVni(vni);
    this.#peers.vni(vni).setExternalPeers(peers.map((peer) => canonicalIPv4(peer, 'external peer')));
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
  }

  /** Forgets the endpoint with `mac` on `vni`, configured or learned; unknown ones are ignored. */
  removePeer(vni: number, mac: string | number): void {
    this.#check();
    checkVni(vni);
    this.#peers.vni(vni).remove(toMac(mac));
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
    const limit = this.#frameLimit(vtep);
    for (const network of this.#networks.values()) {
      const queue = network.unicast.get(vtep);
      if (queue !== undefined) queue.frameLimit = limit;
    }
  }

  /** A snapshot of every served network's counters (after `stop`, none). */
  networkStats(): VtepNetworkStats[] {
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

  /** Netctl VTEPs with peers on a network served here: only they carry traffic we send or expect. */
  *#probeTargets(): Generator<string> {
    for (const network of this.#networks.values()) yield* network.peers.configuredVteps();
  }

  #sweep(now: number): void {
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + SWEEP_INTERVAL_MS;
    this.#peers.sweep(now);
  }

  #onFrames(network: Network, frames: FrameBatch): void {
    if (network.removed) return;
    const now = this.#now();
    this.#sweep(now);
    const outbound: Datagram[] = [];
    const vnetHdr = network.port.vnetHdr;
    const { buffers, index, count } = frames;
    this.stats.rxFrames += count;
    network.counters.rxFrames += count;
    for (let i = 0; i < count; i++) {
      const at = FRAME_STRIDE * i;
      const buffer = buffers[index[at + FRAME_BUFFER]!]!;
      const offset = index[at + FRAME_OFFSET]!;
      const length = index[at + FRAME_LENGTH]!;
      try {
        if (vnetHdr) this.#fromOffloadPort(network, buffer, offset, length, outbound, now);
        else this.#fromPort(network, buffer.subarray(offset, offset + length), outbound, now);
      } catch (err) {
        this.#logger.warn(`VNI ${network.vni}: frame from port dropped: ${String(err)}`);
      }
    }
    if (network.answers.count > 0) {
      this.#write(network, network.answers);
      network.answers.clear();
    }
    for (const [address, queue] of network.unicast) {
      const queued = queue.frames;
      if (queued.count === 0) continue;
      const remote = queue.remote;
      try {
        // Another netctl VTEP completes what it receives: checksums can be left to it (RCO); others get them whole.
        const sent = this.#underlay.sendFrames(network.header, queued, vnetHdr, address, this.#port, !remote.external);
        this.stats.txDatagrams += sent;
        remote.txDatagrams += sent;
        remote.txBytes += queue.bytes;
      } catch (err) {
        this.#logger.warn(`underlay send failed: ${String(err)}`);
      }
      queued.clear();
      queue.bytes = 0;
    }
    if (outbound.length > 0) {
      try {
        this.#underlay.sendBatch(outbound);
        this.stats.txDatagrams += outbound.length;
        // Floods and plain frames from an offload port only: a lookup per datagram is cheap here.
        for (const datagram of outbound) {
          const remote = network.peers.remote(datagram.address);
          remote.txDatagrams++;
          remote.txBytes += datagram.data.length - VXLAN_HEADER_LEN;
        }
      } catch (err) {
        this.#logger.warn(`underlay send failed: ${String(err)}`);
      }
    }
  }

  /**
   * A frame with a virtio_net_hdr: unicast to a remote VTEP is queued whole
   * (a super-frame is segmented by the underlay); anything else, which may
   * need an answer, a flood or a drop, is cut into plain frames first.
   */
  #fromOffloadPort(network: Network, buffer: Uint8Array, offset: number, length: number, outbound: Datagram[], now: number): void {
    if (length < VNET_HDR_LEN + ETHERNET_HEADER_LEN) {
      this.stats.dropTruncated++;
      network.counters.dropTruncated++;
      return;
    }
    // A super-frame's segments are checked against the path's limit below, each frame against this one here.
    const gso = buffer[offset + 1] !== 0;
    if (!gso && length - VNET_HDR_LEN > this.#maxFrameLength) {
      this.stats.dropOversize++;
      network.counters.dropOversize++;
      return;
    }
    const ethernet = offset + VNET_HDR_LEN;
    const dst = ethernetDst(buffer, ethernet);
    if (!isMulticastMac(dst) && !mayBeAnswered(buffer, ethernet, offset + length)) {
      const entry = network.peers.lookup(dst, now);
      if (entry !== undefined && !entry.local) {
        const limit = this.#queueUnicast(network, entry.vtep, buffer, offset, length, largestFrame(buffer, offset, length), length - VNET_HDR_LEN);
        if (limit > 0) this.#oversize(network, buffer.subarray(offset, offset + length), true, [entry.vtep], limit, outbound);
        return;
      }
    }
    const plain = segmentFrame(buffer.subarray(offset, offset + length));
    if (plain === undefined) {
      this.stats.dropBadOffload++;
      network.counters.dropBadOffload++;
      return;
    }
    for (const piece of plain) this.#fromPort(network, piece, outbound, now);
  }

  /**
   * Queues `length` bytes at `offset` for `vtep`, unless `largest` (the
   * longest frame they make on the wire) is beyond the path's limit: then
   * it returns that limit and queues nothing, else 0. `frameBytes` is what
   * they count as (without a virtio header).
   */
  #queueUnicast(network: Network, vtep: string, buffer: Uint8Array, offset: number, length: number, largest: number, frameBytes: number): number {
    let queue = network.unicast.get(vtep);
    if (queue === undefined) {
      queue = { frames: new FrameList(), remote: network.peers.remote(vtep), frameLimit: this.#frameLimit(vtep), bytes: 0 };
      network.unicast.set(vtep, queue);
    }
    if (largest > queue.frameLimit) return queue.frameLimit;
    queue.frames.push(buffer, offset, length);
    queue.bytes += frameBytes;
    return 0;
  }

  /** The longest frame the path to `vtep` takes: the smaller of our MTU and the one it announced, plus the Ethernet header. */
  #frameLimit(vtep: string): number {
    return Math.min(this.#mtu, this.#vtepMtus.get(vtep) ?? this.#mtu) + ETHERNET_HEADER_LEN;
  }

  /**
   * A frame longer than `frameLimit`, the path's limit to `targets`, which
   * it must not be sent to as it is: cut into fragments that fit, or
   * dropped and perhaps answered, as `tooBig` decides. With `vnetHdr` it
   * starts with a virtio_net_hdr.
   */
  #oversize(network: Network, frame: Uint8Array, vnetHdr: boolean, targets: readonly string[], frameLimit: number, outbound: Datagram[]): void {
    const verdict = tooBig(frame, frameLimit - ETHERNET_HEADER_LEN, vnetHdr);
    if (verdict.kind === 'fragmented') {
      for (const fragment of verdict.frames) {
        const data = encapsulate(network.header, fragment);
        for (const address of targets) outbound.push({ data, address, port: this.#port });
      }
      this.stats.fragmented++;
      network.counters.fragmented++;
      return;
    }
    this.stats.dropTooBig++;
    network.counters.dropTooBig++;
    if (verdict.kind === 'answered') {
      network.answers.push(verdict.answer, 0, verdict.answer.length);
      this.stats.tooBigAnswered++;
      network.counters.tooBigAnswered++;
    }
  }

  /** A plain frame: from a port without virtio headers, or cut from one that has them. */
  #fromPort(network: Network, frame: Uint8Array, outbound: Datagram[], now: number): void {
    if (frame.length < ETHERNET_HEADER_LEN) {
      this.stats.dropTruncated++;
      network.counters.dropTruncated++;
      return;
    }
    if (frame.length > this.#maxFrameLength) {
      this.stats.dropOversize++;
      network.counters.dropOversize++;
      return;
    }
    // Answers are untagged frames, so only untagged requests get one.
    if (ethernetPayloadOffset(frame) === ETHERNET_HEADER_LEN) {
      const type = ethernetType(frame);
      if (type === ETHERTYPE_ARP && this.#answerArp(network, frame)) return;
      if (type === ETHERTYPE_IPV6 && this.#answerNeighborSolicitation(network, frame)) return;
    }

    const dst = ethernetDst(frame);
    if (!isMulticastMac(dst)) {
      const entry = network.peers.lookup(dst, now);
      if (entry !== undefined) {
        if (entry.local) {
          this.stats.dropNoRoute++;
          network.counters.dropNoRoute++;
        } else if (network.port.vnetHdr) {
          // Unicast queues hold frames with virtio headers on such a port: this plain one goes on its own.
          const limit = this.#frameLimit(entry.vtep);
          if (frame.length > limit) this.#oversize(network, frame, false, [entry.vtep], limit, outbound);
          else outbound.push({ data: encapsulate(network.header, frame), address: entry.vtep, port: this.#port });
        } else {
          const limit = this.#queueUnicast(network, entry.vtep, frame, 0, frame.length, frame.length, frame.length);
          if (limit > 0) this.#oversize(network, frame, false, [entry.vtep], limit, outbound);
        }
        return;
      }
    }
    const targets = network.peers.floodTargets;
    if (targets.length === 0) {
      this.stats.dropNoRoute++;
      network.counters.dropNoRoute++;
      return;
    }
    let limit = this.#mtu;
    for (const address of targets) limit = Math.min(limit, this.#vtepMtus.get(address) ?? limit);
    if (frame.length > limit + ETHERNET_HEADER_LEN) {
      this.#oversize(network, frame, false, targets, limit + ETHERNET_HEADER_LEN, outbound);
      return;
    }
    // One buffer for every copy: nobody writes to a datagram once it is queued.
    const data = encapsulate(network.header, frame);
    for (const address of targets) outbound.push({ data, address, port: this.#port });
    this.stats.flooded++;
    network.counters.flooded++;
  }

  /** Answers an ARP request for another endpoint's address in the peer table (not a gratuitous one); true if answered. */
  #answerArp(network: Network, frame: Uint8Array): boolean {
    const arp = ETHERNET_HEADER_LEN;
    if (!arpCheck(frame, arp, frame.length - arp) || arpOperation(frame, arp) !== ARP_REQUEST) return false;
    const targetIp = arpTargetIp(frame, arp);
    if (targetIp === arpSenderIp(frame, arp)) return false;
    const mac = network.peers.macForIPv4(targetIp);
    // Telling an endpoint that its own address is taken by itself would fail its conflict detection.
    if (mac === undefined || mac === arpSenderMac(frame, arp)) return false;
    const reply = new Uint8Array(ARP_FRAME_LEN);
    writeArpReply(decodeArp(frame, arp), mac, reply, 0);
    network.answers.push(reply, 0, ARP_FRAME_LEN);
    this.stats.arpAnswered++;
    network.counters.arpAnswered++;
    return true;
  }

  /**
   * Answers a neighbour solicitation (RFC 4861 §7.2.4) for an address in the
   * peer table; true if answered. Duplicate address detection (unspecified
   * source) is left to the real owner, as is anything with extension headers.
   */
  #answerNeighborSolicitation(network: Network, frame: Uint8Array): boolean {
    const ip = ETHERNET_HEADER_LEN;
    const icmp = ip + IPV6_HEADER_LEN;
    if (frame.length <= icmp || ipv6NextHeader(frame, ip) !== IPPROTO_ICMPV6 || frame[icmp] !== ICMPV6_NEIGHBOR_SOLICITATION) {
      return false;
    }
    // RFC 4861 §7.1.1: hop limit 255, a valid checksum, a length within the frame.
    const length = ipv6PayloadLength(frame, ip);
    if (ipv6HopLimit(frame, ip) !== 255 || length > frame.length - icmp) return false;
    const src = ip + IPV6_SRC_OFFSET;
    const checksum = icmpv6Checksum(frame, icmp, length, frame, src, frame, ip + IPV6_DST_OFFSET);
    if (checksum !== ((frame[icmp + 2]! << 8) | frame[icmp + 3]!)) return false;
    const source = frame.subarray(src, src + 16);
    if (source.every((byte) => byte === 0)) return false;
    let solicitation: ReturnType<typeof decodeNeighborSolicitation>;
    try {
      solicitation = decodeNeighborSolicitation(frame, icmp, length);
    } catch {
      return false;
    }
    const mac = network.peers.macForIPv6(solicitation.target);
    if (mac === undefined) return false;
    const advert = new Uint8Array(NEIGHBOR_ADVERTISEMENT_FRAME_LEN);
    writeNeighborAdvertisement(
      {
        dstMac: solicitation.sourceLinkLayer ?? ethernetSrc(frame),
        srcMac: mac,
        srcIp: solicitation.target,
        dstIp: source,
        target: solicitation.target,
        targetMac: mac,
        solicited: true,
      },
      advert,
      0,
    );
    network.answers.push(advert, 0, NEIGHBOR_ADVERTISEMENT_FRAME_LEN);
    this.stats.ndAnswered++;
    network.counters.ndAnswered++;
    return true;
  }

  #onDatagrams(datagrams: ReceivedDatagrams): void {
    if (this.#state !== 'started') return;
    const now = this.#now();
    this.#sweep(now);
    let received = 0;
    const { buffers, index, addresses, count } = datagrams;
    for (let i = 0; i < count; i++) {
      const at = DATAGRAM_STRIDE * i;
      const data = buffers[index[at + DATAGRAM_BUFFER]!]!;
      const start = index[at + DATAGRAM_OFFSET]!;
      const end = start + index[at + DATAGRAM_LENGTH]!;
      const size = index[at + DATAGRAM_SEGMENT_SIZE]!;
      const address = addresses[index[at + DATAGRAM_ADDRESS]!]!;
      // A coalesced receive is a run of datagrams, each judged on its own; the ones that follow an
      // accepted one with its VXLAN header and inner source MAC get the same verdict.
      const step = size > 0 ? size : end - start;
      let offset = start;
      do {
        const first = offset;
        const length = Math.min(step, end - offset);
        offset += length;
        received++;
        let accepted: Network | undefined;
        try {
          accepted = this.#fromUnderlay(data, first, length, address, now);
        } catch (err) {
          this.#logger.warn(`datagram from ${address}:${index[at + DATAGRAM_PORT]!} dropped: ${String(err)}`);
        }
        if (accepted === undefined || offset >= end) continue;
        const view = this.#viewOf(data);
        const inbound = accepted.inbound;
        const checksum = this.#acceptedChecksum;
        let runDatagrams = 0;
        let runBytes = 0;
        while (offset < end) {
          const next = Math.min(step, end - offset);
          if (next < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN || !sameSource(view, data.byteOffset + first, data.byteOffset + offset)) break;
          inbound.push(data, offset + VXLAN_HEADER_LEN, next - VXLAN_HEADER_LEN, checksum);
          offset += next;
          runDatagrams++;
          runBytes += next - VXLAN_HEADER_LEN;
        }
        received += runDatagrams;
        const sender = this.#acceptedSender!;
        sender.rxDatagrams += runDatagrams;
        sender.rxBytes += runBytes;
      } while (offset < end);
    }
    this.stats.rxDatagrams += received;
    for (const network of this.#touched) {
      this.#write(network, network.inbound);
      network.inbound.clear();
    }
    this.#touched.length = 0;
  }

  /** A DataView on `data`'s whole ArrayBuffer, kept while the underlay hands over the same one. */
  #viewOf(data: Uint8Array): DataView {
    const view = this.#view;
    if (view !== undefined && view.buffer === data.buffer) return view;
    return (this.#view = new DataView(data.buffer));
  }

  /**
   * Queues an underlay datagram's frame for its network's port; returns the
   * network, with `#acceptedChecksum` set, or undefined if it was dropped.
   */
  #fromUnderlay(data: Uint8Array, offset: number, length: number, address: string, now: number): Network | undefined {
    if (address === this.#localAddress) {
      this.stats.dropSelf++;
      return undefined;
    }
    if (length < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN) {
      this.stats.dropTruncated++;
      return undefined;
    }
    if (length - VXLAN_HEADER_LEN > this.#maxFrameLength) {
      this.stats.dropOversize++;
      return undefined;
    }
    const vni = vxlanCheck(data, offset, length);
    if (vni < 0) {
      // A probe lacks the I flag by design (netctl probe §2): looking for one only here costs VXLAN nothing.
      if (probeCheck(data, offset, length)) {
        this.#liveness.receive(data, offset, address);
        return undefined;
      }
      this.stats.dropBadFlags++;
      return undefined;
    }
    const network = this.#networks.get(vni);
    if (network === undefined) {
      this.stats.dropUnknownVni++;
      return undefined;
    }
    const peers = network.peers;
    const sender = peers.sender(address);
    if (sender === undefined) {
      this.stats.dropUnknownSender++;
      network.counters.dropUnknownSender++;
      return undefined;
    }
    const src = readMac(data, offset + VXLAN_HEADER_LEN + 6);
    if (peers.lookup(src, now)?.local === true) {
      this.stats.dropSelf++;
      network.counters.dropSelf++;
      sender.dropSelf++;
      return undefined;
    }
    const external = sender.external;
    // netctl VTEPs compute every inner checksum they do not leave partial, and the outer UDP checksum covered the trip.
    let checksum = external ? CHECKSUM_UNVERIFIED : CHECKSUM_TRUSTED;
    const rco = vxlanRemoteChecksum(data, offset);
    if (rco >= 0) {
      // Partial: the kernel completes it behind the TAP, trusting the outer UDP checksum as Linux's remcsumrx does.
      const start = 2 * (rco & VXLAN_RCO_START_MASK);
      const field = start + ((rco & VXLAN_RCO_UDP) === 0 ? TCP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET);
      if (start < ETHERNET_HEADER_LEN || field + 2 > length - VXLAN_HEADER_LEN) {
        this.stats.dropBadFlags++;
        network.counters.dropBadFlags++;
        sender.dropBadFlags++;
        return undefined;
      }
      checksum = rco;
    }
    if (external && peers.learn(src, address, now)) {
      this.stats.learned++;
      network.counters.learned++;
    }
    if (network.inbound.count === 0) this.#touched.push(network);
    this.#acceptedChecksum = checksum;
    this.#acceptedSender = sender;
    sender.rxDatagrams++;
    sender.rxBytes += length - VXLAN_HEADER_LEN;
    network.inbound.push(data, offset + VXLAN_HEADER_LEN, length - VXLAN_HEADER_LEN, checksum);
    return network;
  }

  /** Writes frames to a network's port; what it does not take is counted, never thrown. */
  #write(network: Network, frames: FrameList): void {
    let written = 0;
    try {
      written = network.port.writeFrames(frames);
    } catch (err) {
      this.#logger.warn(`VNI ${network.vni}: frame port write failed: ${String(err)}`);
    }
    this.stats.txFrames += written;
    this.stats.dropWriteFailed += frames.count - written;
    network.counters.txFrames += written;
    network.counters.dropWriteFailed += frames.count - written;
  }
}

function encapsulate(header: Uint8Array, frame: Uint8Array): Uint8Array {
  const data = new Uint8Array(VXLAN_HEADER_LEN + frame.length);
  data.set(header, 0);
  data.set(frame, VXLAN_HEADER_LEN);
  return data;
}

/** True when the datagrams at `a` and `b` have the same VXLAN header and inner source MAC (bytes 0–7 and 14–19). */
function sameSource(view: DataView, a: number, b: number): boolean {
  return (
    view.getUint32(a) === view.getUint32(b) &&
    view.getUint32(a + 4) === view.getUint32(b + 4) &&
    view.getUint32(a + VXLAN_HEADER_LEN + 6) === view.getUint32(b + VXLAN_HEADER_LEN + 6) &&
    view.getUint16(a + VXLAN_HEADER_LEN + 10) === view.getUint16(b + VXLAN_HEADER_LEN + 10)
  );
}

/** True for the frame at offset (ending at `end`) if the VTEP may answer it itself: ARP, and IPv6 ICMP (neighbour solicitations). */
function mayBeAnswered(buffer: Uint8Array, offset: number, end: number): boolean {
  const type = ethernetType(buffer, offset);
  if (type === ETHERTYPE_ARP) return true;
  const ip = offset + ethernetPayloadOffset(buffer, offset);
  return type === ETHERTYPE_IPV6 && end > ip + IPV6_HEADER_LEN && ipv6NextHeader(buffer, ip) === IPPROTO_ICMPV6;
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
