/**
 * One overlay network as a VTEP serves it, and the counters the VTEP keeps
 * for itself and per network: shared by the VTEP (vtep.ts), its send path (send.ts) and its
 * receive path (receive.ts).
 */
import type { FramePort } from './io.js';
import { FrameList } from './offload.js';
import type { RemoteVtep, RemoteVtepStats, VniPeers } from './peers.js';
import { VXLAN_HEADER_LEN, writeVxlanHeader } from '../wire/index.js';
import type { Logger } from '../log.js';

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
  /** Frames of an encrypted network to a VTEP it has no security association with yet: never sent in clear. */
  dropNoKey: number;
  /** Plain VXLAN datagrams for an encrypted network (only sealed ones are taken for it). */
  dropCleartext: number;
  /** Sealed datagrams for a network that is not encrypted. */
  dropUnexpectedSealed: number;
}

/**
 * The counters of `VtepStats` that belong to one network, counted once the
 * datagram's network is known (drops before that are in `VtepStats` only).
 */
export type VtepNetworkCounters = Omit<VtepStats, 'rxDatagrams' | 'txDatagrams' | 'dropUnknownVni'>;

/** A snapshot of one served network's counters and of the remote VTEPs it has known. */
export interface VtepNetworkStats {
  readonly vni: number;
  /** Datagrams and bytes are the sums over `peers`; received ones count only when accepted. */
  readonly counters: Readonly<VtepNetworkCounters & Omit<RemoteVtepStats, 'dropSelf' | 'dropBadFlags'>>;
  readonly peers: readonly Readonly<RemoteVtepStats & { address: string }>[];
}

/** One overlay network a VTEP serves, with the lists it refills batch after batch. */
export interface Network {
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
  /**
   * Every frame leaves sealed, with the outbound SPI `spis` holds for its
   * VTEP (none: dropped), and only sealed datagrams are taken in.
   */
  readonly encrypted: boolean;
  /** Outbound SPI by VTEP address, set by `Vtep.setOutboundSpi`; shared with the VTEP, read here. */
  readonly spis: ReadonlyMap<string, number>;
  /** The MACs the underlay's fast path holds a flow for; undefined when it does not serve this network. */
  flows: Set<number> | undefined;
  removed: boolean;
}

/** A network's unicast frames of one TAP batch for one remote VTEP. */
export interface UnicastQueue {
  readonly frames: FrameList;
  readonly remote: RemoteVtep;
  /** The longest frame the path to this VTEP takes (see `FrameSender.frameLimit`), kept up to date by `Vtep.setVtepMtu`. */
  frameLimit: number;
  /** Inner frame bytes queued (virtio headers not counted). */
  bytes: number;
}

export function newVtepStats(): VtepStats {
  return {
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
    dropNoKey: 0,
    dropCleartext: 0,
    dropUnexpectedSealed: 0,
  };
}

export function newNetwork(vni: number, port: FramePort, peers: VniPeers, encrypted: boolean, spis: ReadonlyMap<string, number>): Network {
  const header = new Uint8Array(VXLAN_HEADER_LEN);
  writeVxlanHeader(vni, header, 0);
  return {
    vni,
    port,
    peers,
    header,
    inbound: new FrameList(),
    answers: new FrameList(),
    unicast: new Map(),
    counters: newNetworkCounters(),
    encrypted,
    spis,
    flows: undefined,
    removed: false,
  };
}

function newNetworkCounters(): VtepNetworkCounters {
  // The same counters in the same order as the VTEP's, as the API lists them.
  const { rxDatagrams: _rxDatagrams, txDatagrams: _txDatagrams, dropUnknownVni: _dropUnknownVni, ...counters } = newVtepStats();
  return counters;
}

/** Writes frames to a network's port; what it does not take is counted, never thrown. */
export function writeToPort(network: Network, frames: FrameList, stats: VtepStats, logger: Logger): void {
  let written = 0;
  try {
    written = network.port.writeFrames(frames);
  } catch (err) {
    logger.warn(`VNI ${network.vni}: frame port write failed: ${String(err)}`);
  }
  stats.txFrames += written;
  stats.dropWriteFailed += frames.count - written;
  network.counters.txFrames += written;
  network.counters.dropWriteFailed += frames.count - written;
}
