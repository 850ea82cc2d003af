/**
 * The VTEP's receive path: one batch of underlay datagrams (RFC 7348)
 * judged datagram by datagram and handed to the networks' frame ports, one
 * write per network per batch. A datagram coalesced by UDP GRO is a run of
 * datagrams, each judged on its own; the ones that follow an accepted one
 * with the same VXLAN header and inner source MAC get the same verdict
 * without a second look.
 */
import {
  DATAGRAM_ADDRESS,
  DATAGRAM_BUFFER,
  DATAGRAM_FLAGS,
  DATAGRAM_LENGTH,
  DATAGRAM_OFFSET,
  DATAGRAM_PORT,
  DATAGRAM_SEALED,
  DATAGRAM_SEGMENT_SIZE,
  DATAGRAM_STRIDE,
} from '../sys/batch-layout.js';
import {
  ETHERNET_HEADER_LEN,
  TCP_CHECKSUM_OFFSET,
  UDP_CHECKSUM_OFFSET,
  VXLAN_HEADER_LEN,
  VXLAN_RCO_START_MASK,
  VXLAN_RCO_UDP,
  probeCheck,
  readMac,
  vxlanCheck,
  vxlanRemoteChecksum,
} from '../wire/index.js';
import type { ReceivedDatagrams } from './io.js';
import type { Liveness } from './liveness.js';
import { writeToPort } from './network.js';
import type { Network, VtepStats } from './network.js';
import { CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED } from './offload.js';
import type { RemoteVtep } from './peers.js';
import type { Logger } from '../log.js';

export interface UnderlayReceiverOptions {
  /** Our underlay IPv4: datagrams claiming it are dropped. */
  localAddress: string;
  /** Longer inner frames are dropped. */
  maxFrameLength: number;
  /** The networks served, by VNI: the VTEP adds and removes them, the receiver only reads. */
  networks: ReadonlyMap<number, Network>;
  /** The VTEP's counters, which the receiver adds to. */
  stats: VtepStats;
  /** Gets the liveness probes, which share the data path port. */
  liveness: Liveness;
  /** Told of each frame it took from the VTEP of the configured endpoint that sent it: the fast path may take such frames. */
  fromPeer: (network: Network, mac: number, vtep: string) => void;
  logger: Logger;
}

export class UnderlayReceiver {
  readonly #localAddress: string;
  readonly #maxFrameLength: number;
  readonly #networks: ReadonlyMap<number, Network>;
  readonly #stats: VtepStats;
  readonly #liveness: Liveness;
  readonly #fromPeer: (network: Network, mac: number, vtep: string) => void;
  readonly #logger: Logger;
  /** Networks with inbound frames in the current underlay batch. */
  readonly #touched: Network[] = [];
  /** The `FrameBatch.checksum` and the sender of the frame `#fromUnderlay` last accepted. */
  #acceptedChecksum = CHECKSUM_UNVERIFIED;
  #acceptedSender: RemoteVtep | undefined;
  /** A DataView on the ArrayBuffer of the last underlay buffer asked for (the same one batch after batch when borrowed). */
  #view: DataView | undefined;

  constructor(opts: UnderlayReceiverOptions) {
    this.#localAddress = opts.localAddress;
    this.#maxFrameLength = opts.maxFrameLength;
    this.#networks = opts.networks;
    this.#stats = opts.stats;
    this.#liveness = opts.liveness;
    this.#fromPeer = opts.fromPeer;
    this.#logger = opts.logger;
  }

  /**
   * Judges every datagram of `datagrams` (each of a coalesced run on its
   * own) and writes the frames accepted to their networks' ports, one write
   * per network; `now` ages the peer table.
   */
  receive(datagrams: ReceivedDatagrams, now: number): void {
    let received = 0;
    const { buffers, index, addresses, count } = datagrams;
    for (let i = 0; i < count; i++) {
      const at = DATAGRAM_STRIDE * i;
      const data = buffers[index[at + DATAGRAM_BUFFER]!]!;
      const start = index[at + DATAGRAM_OFFSET]!;
      const end = start + index[at + DATAGRAM_LENGTH]!;
      const size = index[at + DATAGRAM_SEGMENT_SIZE]!;
      const address = addresses[index[at + DATAGRAM_ADDRESS]!]!;
      const sealed = (index[at + DATAGRAM_FLAGS]! & DATAGRAM_SEALED) !== 0;
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
          accepted = this.#fromUnderlay(data, first, length, address, sealed, now);
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
    this.#stats.rxDatagrams += received;
    for (const network of this.#touched) {
      writeToPort(network, network.inbound, this.#stats, this.#logger);
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
   * `sealed`: it came out of ESP (the addon opened it; its VNI is the SA's).
   */
  #fromUnderlay(data: Uint8Array, offset: number, length: number, address: string, sealed: boolean, now: number): Network | undefined {
    if (address === this.#localAddress) {
      this.#stats.dropSelf++;
      return undefined;
    }
    if (length < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN) {
      this.#stats.dropTruncated++;
      return undefined;
    }
    if (length - VXLAN_HEADER_LEN > this.#maxFrameLength) {
      this.#stats.dropOversize++;
      return undefined;
    }
    const vni = vxlanCheck(data, offset, length);
    if (vni < 0) {
      // A probe lacks the I flag by design (netctl probe §2): looking for one only here costs VXLAN nothing.
      if (probeCheck(data, offset, length)) {
        this.#liveness.receive(data, offset, address);
        return undefined;
      }
      this.#stats.dropBadFlags++;
      return undefined;
    }
    const network = this.#networks.get(vni);
    if (network === undefined) {
      this.#stats.dropUnknownVni++;
      return undefined;
    }
    // An encrypted network takes only what its SAs opened; a plain one nothing sealed (another network's keys).
    if (sealed !== network.encrypted) {
      if (sealed) {
        this.#stats.dropUnexpectedSealed++;
        network.counters.dropUnexpectedSealed++;
      } else {
        this.#stats.dropCleartext++;
        network.counters.dropCleartext++;
      }
      return undefined;
    }
    const peers = network.peers;
    const sender = peers.sender(address);
    if (sender === undefined) {
      this.#stats.dropUnknownSender++;
      network.counters.dropUnknownSender++;
      return undefined;
    }
    const src = readMac(data, offset + VXLAN_HEADER_LEN + 6);
    const source = peers.lookup(src, now);
    if (source?.local === true) {
      this.#stats.dropSelf++;
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
        this.#stats.dropBadFlags++;
        network.counters.dropBadFlags++;
        sender.dropBadFlags++;
        return undefined;
      }
      checksum = rco;
    }
    if (external && peers.learn(src, address, now)) {
      this.#stats.learned++;
      network.counters.learned++;
    }
    if (network.flows !== undefined && !external && source !== undefined && !source.learned && source.vtep === address && !network.flows.has(src)) {
      this.#fromPeer(network, src, address);
    }
    if (network.inbound.count === 0) this.#touched.push(network);
    this.#acceptedChecksum = checksum;
    this.#acceptedSender = sender;
    sender.rxDatagrams++;
    sender.rxBytes += length - VXLAN_HEADER_LEN;
    network.inbound.push(data, offset + VXLAN_HEADER_LEN, length - VXLAN_HEADER_LEN, checksum);
    return network;
  }

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
