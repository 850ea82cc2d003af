/**
 * The VTEP's injected I/O parts (wireguard-go's tun.Device and conn.Bind):
 * both move batches, and both state what happens after they are closed.
 * `native.ts` has the real underlay (the addon's batched UDP socket); `memory.ts` has the doubles.
 */
import { NetctlError } from '../errors.js';
import type { FrameBatch } from '../sys/tap.js';
import type { ReceivedDatagrams } from '../sys/udp.js';

export type { FrameBatch } from '../sys/tap.js';
export { receivedDatagram, receivedDatagrams } from '../sys/udp.js';
export type { ReceivedDatagram, ReceivedDatagrams } from '../sys/udp.js';

/**
 * One overlay network's frame port (the TAP on the network's bridge);
 * `src/sys/tap.ts` `TapDevice` is the real one.
 */
export interface FramePort {
  /**
   * True when the frames it delivers start with a virtio_net_hdr
   * (`VNET_HDR_LEN` bytes, as a TAP with IFF_VNET_HDR and TSO offloads):
   * such a frame may be a TCP super-frame of up to 64 KB or carry a partial
   * checksum, and the VTEP segments it before encapsulation.
   */
  readonly vnetHdr: boolean;
  /**
   * Delivers received Ethernet frames in batches; calling it again replaces
   * the callback. The batch object and the frames' bytes may be reused once
   * the callback returns.
   */
  start(onBatch: (frames: FrameBatch) => void): void;
  /**
   * Writes plain Ethernet frames (never with a virtio header; a port with
   * `vnetHdr` adds it, and may merge TCP segments); returns how many were
   * taken (fewer: the queue is full). Throws once closed.
   */
  writeFrames(batch: FrameBatch): number;
  /** Stops delivery. */
  stop(): void;
  /** Stops and releases the port; every later call throws. */
  close(): void;
}

/** A datagram to send. */
export interface Datagram {
  data: Uint8Array;
  /** IPv4 dotted quad of the destination. */
  address: string;
  port: number;
  /**
   * Seal with this outbound SA of the port's ESP table instead of sending
   * in clear: `data` is then a VXLAN header and a frame, and the frame
   * alone leaves sealed (src/sys/udp.ts).
   */
  spi?: number;
}

/** Where the fast path sends frames to one MAC, and how (see `FastPath.install`). */
export interface Flow {
  /** The VTEP's underlay IPv4 and data path port. */
  address: string;
  port: number;
  /** Frames (and a super-frame's segments) longer than this, Ethernet header included, stay with the VTEP. */
  frameLimit: number;
  /** The outbound SPI that seals them (an encrypted network), else 0. */
  spi: number;
  /** Leave TCP checksums partial and mark them with VXLAN RCO: the VTEP is netctl's. */
  remoteChecksum: boolean;
}

/** Frames the fast path moved for one network's port. */
export interface FastPathPortCounts {
  /** Read from the port and sent. */
  rxFrames: number;
  /** Written to the port. */
  txFrames: number;
  /** Not taken by the port. */
  dropWriteFailed: number;
}

/** Datagrams the fast path moved between one network and one remote VTEP; bytes are inner frames', as `RemoteVtepStats`. */
export interface FastPathRemoteCounts {
  txDatagrams: number;
  txBytes: number;
  rxDatagrams: number;
  rxBytes: number;
}

/** Where `FastPath.drain` hands its counts. */
export interface FastPathSink {
  port(vni: number, counts: FastPathPortCounts): void;
  remote(vni: number, address: string, counts: FastPathRemoteCounts): void;
}

/**
 * An underlay's fast path (shared/DESIGN.md, "Rules for the hot path"): per
 * network a flow cache, keyed by MAC, that the VTEP fills with decisions it
 * made and empties whenever they may no longer hold. A unicast IPv4/IPv6
 * frame from the network's port to a cached MAC, within the flow's frame
 * limit, is sent as the VTEP would send it; a datagram from the flow's
 * address whose inner source is a cached MAC is written to the port as the
 * VTEP would write it; neither reaches the VTEP's callbacks. Everything else
 * reaches them as before. Calls take effect before they return.
 */
export interface FastPath {
  /**
   * Serves network `vni` on `port` with an empty cache (`header`: its VXLAN
   * header; frames longer than `maxFrameLength` stay with the VTEP); false,
   * nothing done, when it cannot drive that port.
   */
  attach(vni: number, port: FramePort, header: Uint8Array, encrypted: boolean, maxFrameLength: number): boolean;
  /** Stops serving `vni`; counts not drained yet are dropped. Unknown VNIs are ignored. */
  detach(vni: number): void;
  /** Frames of `vni` to `mac` go to `flow`, and datagrams from `flow.address` with source `mac` to the port. */
  install(vni: number, mac: number, flow: Flow): void;
  /** Drops the entry of `mac`, or without `mac` every entry of `vni`. */
  forget(vni: number, mac?: number): void;
  /** Hands `sink` what was moved since the last call, per port and per remote VTEP (only what is not zero). */
  drain(sink: FastPathSink): void;
}

/** The underlay UDP socket shared by every overlay network of the host. */
export interface DatagramPort {
  /** Its fast path, when it has one. */
  readonly fastPath?: FastPath | undefined;
  /**
   * Delivers received datagrams in batches (a datagram coalesced by UDP GRO
   * stands for several, each a datagram of its own to the VTEP); calling it
   * again replaces the callback. The batch object and the datagrams' bytes
   * may be reused once the callback returns.
   */
  start(onBatch: (datagrams: ReceivedDatagrams) => void): void;
  /**
   * Sends without blocking. Delivery is best effort, as with UDP: a datagram
   * that cannot be sent is dropped, never reported by a throw, except that
   * datagrams with an SPI the port cannot seal with are not sent and
   * EspSendRefused is thrown (after the others went). Throws once closed.
   */
  sendBatch(datagrams: Datagram[]): void;
  /**
   * Sends the frames of `frames` to one destination, each as `header` (the
   * VXLAN header) then the frame. With `vnetHdr` each frame starts with a
   * virtio_net_hdr: a TCP super-frame leaves as gso_size segments and a
   * partial checksum is completed first; with `remoteChecksum` (the
   * receiver is a netctl VTEP) a port may instead leave TCP checksums
   * partial and mark the datagram with VXLAN RCO. With `spi` (not 0) each
   * frame leaves sealed with that outbound SA of the port's ESP table
   * instead of after `header`; if the port cannot seal with it, nothing is
   * sent and EspSendRefused is thrown. Best effort as `sendBatch`; returns
   * how many datagrams the frames made. Throws once closed.
   */
  sendFrames(
    header: Uint8Array,
    frames: FrameBatch,
    vnetHdr: boolean,
    address: string,
    port: number,
    remoteChecksum: boolean,
    spi?: number,
  ): number;
  /** Stops delivery and releases the socket; `sendBatch` and `start` throw afterwards, `close` again resolves. */
  close(): Promise<void>;
}

/** A call on a port (or on the VTEP) after it was closed or stopped. */
export class PortClosed extends NetctlError {
  constructor(what: string) {
    super('Unavailable', `${what} is closed`);
  }
}
