/**
 * The VTEP's send path: one batch of frames from a network's port answered
 * (ARP/ND from the peer table), queued per destination VTEP, or flooded,
 * and sent with one `sendFrames` per VTEP and one `sendBatch` for the rest.
 * A frame that would not fit the path to its VTEP is fragmented or answered
 * as a router would (mtu.ts); a super-frame from a port with `vnetHdr` is
 * decided once and cut by the underlay.
 */
import {
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  VXLAN_HEADER_LEN,
  ethernetDst,
  ethernetPayloadOffset,
  ethernetType,
  isMulticastMac,
} from '../wire/index.js';
import { FRAME_BUFFER, FRAME_LENGTH, FRAME_OFFSET, FRAME_STRIDE } from '../sys/batch-layout.js';
import type { Datagram, DatagramPort, FrameBatch } from './io.js';
import { EspSendRefused } from '../sys/udp.js';
import { encryptedMtu, largestFrame, tooBig } from './mtu.js';
import { writeToPort } from './network.js';
import type { Network, VtepStats } from './network.js';
import { FrameList, VNET_HDR_LEN, segmentFrame } from './offload.js';
import { answerArp, answerNeighborSolicitation, mayBeAnswered } from './proxy.js';
import type { Logger } from '../log.js';

export interface FrameSenderOptions {
  underlay: DatagramPort;
  /** The peers' data path port. */
  port: number;
  /** Longer frames are dropped. */
  maxFrameLength: number;
  /** Our path MTU (see `VtepOptions.mtu`). */
  mtu: number;
  /** The MTUs other VTEPs announced: the VTEP sets them, the sender only reads. */
  vtepMtus: ReadonlyMap<string, number>;
  /** The VTEP's counters, which the sender adds to. */
  stats: VtepStats;
  /** Told of each frame it sent whole to the VTEP of a configured endpoint: the fast path may take such frames. */
  sentToPeer: (network: Network, mac: number, vtep: string) => void;
  logger: Logger;
}

export class FrameSender {
  readonly #underlay: DatagramPort;
  readonly #port: number;
  readonly #maxFrameLength: number;
  readonly #mtu: number;
  readonly #vtepMtus: ReadonlyMap<string, number>;
  readonly #stats: VtepStats;
  readonly #sentToPeer: (network: Network, mac: number, vtep: string) => void;
  readonly #logger: Logger;

  constructor(opts: FrameSenderOptions) {
    this.#underlay = opts.underlay;
    this.#port = opts.port;
    this.#maxFrameLength = opts.maxFrameLength;
    this.#mtu = opts.mtu;
    this.#vtepMtus = opts.vtepMtus;
    this.#stats = opts.stats;
    this.#sentToPeer = opts.sentToPeer;
    this.#logger = opts.logger;
  }

  /**
   * Handles a batch of frames from `network`'s port: answers, then one
   * `sendFrames` per destination VTEP and one `sendBatch` for the rest;
   * `now` ages the peer table.
   */
  send(network: Network, frames: FrameBatch, now: number): void {
    const outbound: Datagram[] = [];
    const vnetHdr = network.port.vnetHdr;
    const { buffers, index, count } = frames;
    this.#stats.rxFrames += count;
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
      writeToPort(network, network.answers, this.#stats, this.#logger);
      network.answers.clear();
    }
    for (const [address, queue] of network.unicast) {
      const queued = queue.frames;
      if (queued.count === 0) continue;
      const remote = queue.remote;
      // Fail closed: without an SA for that VTEP the frames go nowhere.
      const spi = network.encrypted ? (network.spis.get(address) ?? 0) : 0;
      if (network.encrypted && spi === 0) {
        this.#noKey(network, queued.count);
      } else {
        try {
          // Another netctl VTEP completes what it receives: checksums can be left to it (RCO); others get them whole.
          const sent = this.#underlay.sendFrames(network.header, queued, vnetHdr, address, this.#port, !remote.external, spi);
          this.#stats.txDatagrams += sent;
          remote.txDatagrams += sent;
          remote.txBytes += queue.bytes;
        } catch (err) {
          if (err instanceof EspSendRefused) this.#noKey(network, queued.count);
          else this.#logger.warn(`underlay send failed: ${String(err)}`);
        }
      }
      queued.clear();
      queue.bytes = 0;
    }
    if (outbound.length > 0) {
      let refusedSpi = 0;
      try {
        this.#underlay.sendBatch(outbound);
      } catch (err) {
        if (!(err instanceof EspSendRefused)) {
          this.#logger.warn(`underlay send failed: ${String(err)}`);
          return;
        }
        // The table lacks an SA the VTEP was told of: a bug of the key ring's, never a frame in clear.
        this.#logger.warn(`VNI ${network.vni}: ${err.message}`);
        refusedSpi = err.spi;
      }
      // Floods and plain frames from an offload port only: a lookup per datagram is cheap here.
      for (const datagram of outbound) {
        if (refusedSpi !== 0 && datagram.spi === refusedSpi) {
          this.#noKey(network, 1);
          continue;
        }
        this.#stats.txDatagrams++;
        const remote = network.peers.remote(datagram.address);
        remote.txDatagrams++;
        remote.txBytes += datagram.data.length - VXLAN_HEADER_LEN;
      }
    }
  }

  #noKey(network: Network, frames: number): void {
    this.#stats.dropNoKey += frames;
    network.counters.dropNoKey += frames;
  }

  /** Queues `data` (a VXLAN datagram) for `address`: on an encrypted network sealed with its SA, or not at all. */
  #push(network: Network, outbound: Datagram[], data: Uint8Array, address: string): void {
    if (!network.encrypted) {
      outbound.push({ data, address, port: this.#port });
      return;
    }
    const spi = network.spis.get(address);
    if (spi === undefined) this.#noKey(network, 1);
    else outbound.push({ data, address, port: this.#port, spi });
  }

  /**
   * A frame with a virtio_net_hdr: unicast to a remote VTEP is queued whole
   * (a super-frame is segmented by the underlay); anything else, which may
   * need an answer, a flood or a drop, is cut into plain frames first.
   */
  #fromOffloadPort(network: Network, buffer: Uint8Array, offset: number, length: number, outbound: Datagram[], now: number): void {
    if (length < VNET_HDR_LEN + ETHERNET_HEADER_LEN) {
      this.#stats.dropTruncated++;
      network.counters.dropTruncated++;
      return;
    }
    // A super-frame's segments are checked against the path's limit below, each frame against this one here.
    const gso = buffer[offset + 1] !== 0;
    if (!gso && length - VNET_HDR_LEN > this.#maxFrameLength) {
      this.#stats.dropOversize++;
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
        else if (network.flows !== undefined && !entry.learned && !network.flows.has(dst)) this.#sentToPeer(network, dst, entry.vtep);
        return;
      }
    }
    const plain = segmentFrame(buffer.subarray(offset, offset + length));
    if (plain === undefined) {
      this.#stats.dropBadOffload++;
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
      queue = { frames: new FrameList(), remote: network.peers.remote(vtep), frameLimit: this.frameLimit(network, vtep), bytes: 0 };
      network.unicast.set(vtep, queue);
    }
    if (largest > queue.frameLimit) return queue.frameLimit;
    queue.frames.push(buffer, offset, length);
    queue.bytes += frameBytes;
    return 0;
  }

  /**
   * The longest frame the path to `vtep` takes: the smaller of our MTU and
   * the one it announced (less what sealing adds, on an encrypted network),
   * plus the Ethernet header.
   */
  frameLimit(network: Network, vtep: string): number {
    return this.#pathMtu(network, Math.min(this.#mtu, this.#vtepMtus.get(vtep) ?? this.#mtu)) + ETHERNET_HEADER_LEN;
  }

  #pathMtu(network: Network, mtu: number): number {
    return network.encrypted ? encryptedMtu(mtu) : mtu;
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
        for (const address of targets) this.#push(network, outbound, data, address);
      }
      this.#stats.fragmented++;
      network.counters.fragmented++;
      return;
    }
    this.#stats.dropTooBig++;
    network.counters.dropTooBig++;
    if (verdict.kind === 'answered') {
      network.answers.push(verdict.answer, 0, verdict.answer.length);
      this.#stats.tooBigAnswered++;
      network.counters.tooBigAnswered++;
    }
  }

  /** A plain frame: from a port without virtio headers, or cut from one that has them. */
  #fromPort(network: Network, frame: Uint8Array, outbound: Datagram[], now: number): void {
    if (frame.length < ETHERNET_HEADER_LEN) {
      this.#stats.dropTruncated++;
      network.counters.dropTruncated++;
      return;
    }
    if (frame.length > this.#maxFrameLength) {
      this.#stats.dropOversize++;
      network.counters.dropOversize++;
      return;
    }
    // Answers are untagged frames, so only untagged requests get one.
    if (ethernetPayloadOffset(frame) === ETHERNET_HEADER_LEN) {
      const type = ethernetType(frame);
      const arp = type === ETHERTYPE_ARP;
      const answer = arp ? answerArp(frame, network.peers) : type === ETHERTYPE_IPV6 ? answerNeighborSolicitation(frame, network.peers) : undefined;
      if (answer !== undefined) {
        network.answers.push(answer, 0, answer.length);
        if (arp) {
          this.#stats.arpAnswered++;
          network.counters.arpAnswered++;
        } else {
          this.#stats.ndAnswered++;
          network.counters.ndAnswered++;
        }
        return;
      }
    }

    const dst = ethernetDst(frame);
    if (!isMulticastMac(dst)) {
      const entry = network.peers.lookup(dst, now);
      if (entry !== undefined) {
        if (entry.local) {
          this.#stats.dropNoRoute++;
          network.counters.dropNoRoute++;
        } else if (network.port.vnetHdr) {
          // Unicast queues hold frames with virtio headers on such a port: this plain one goes on its own.
          const limit = this.frameLimit(network, entry.vtep);
          if (frame.length > limit) this.#oversize(network, frame, false, [entry.vtep], limit, outbound);
          else this.#push(network, outbound, encapsulate(network.header, frame), entry.vtep);
        } else {
          const limit = this.#queueUnicast(network, entry.vtep, frame, 0, frame.length, frame.length, frame.length);
          if (limit > 0) this.#oversize(network, frame, false, [entry.vtep], limit, outbound);
        }
        return;
      }
    }
    const targets = network.peers.floodTargets;
    if (targets.length === 0) {
      this.#stats.dropNoRoute++;
      network.counters.dropNoRoute++;
      return;
    }
    let limit = this.#mtu;
    for (const address of targets) limit = Math.min(limit, this.#vtepMtus.get(address) ?? limit);
    limit = this.#pathMtu(network, limit);
    if (frame.length > limit + ETHERNET_HEADER_LEN) {
      this.#oversize(network, frame, false, targets, limit + ETHERNET_HEADER_LEN, outbound);
      return;
    }
    // One buffer for every copy: nobody writes to a datagram once it is queued.
    const data = encapsulate(network.header, frame);
    for (const address of targets) this.#push(network, outbound, data, address);
    this.#stats.flooded++;
    network.counters.flooded++;
  }
}

function encapsulate(header: Uint8Array, frame: Uint8Array): Uint8Array {
  const data = new Uint8Array(VXLAN_HEADER_LEN + frame.length);
  data.set(header, 0);
  data.set(frame, VXLAN_HEADER_LEN);
  return data;
}
