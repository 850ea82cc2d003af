/**
 * In-memory doubles of the VTEP's I/O parts, shipped (as wireguard-go ships
 * its in-memory TUN and bind) so that two or three VTEPs can be joined in a
 * unit test, or in a caller's own tests, without a kernel.
 */
import { InvalidArgument } from '../errors.js';
import {
  DATAGRAM_ADDRESS,
  DATAGRAM_BUFFER,
  DATAGRAM_FLAGS,
  DATAGRAM_LENGTH,
  DATAGRAM_PORT,
  DATAGRAM_SEALED,
  DATAGRAM_SEGMENT_SIZE,
  DATAGRAM_STRIDE,
  FRAME_BUFFER,
  FRAME_LENGTH,
  FRAME_OFFSET,
  FRAME_STRIDE,
} from '../sys/batch-layout.js';
import type { EspSaKeys } from '../sys/esp.js';
import { EspSendRefused } from '../sys/udp.js';
import { VXLAN_HEADER_LEN, writeVxlanHeader } from '../wire/index.js';
import { PortClosed } from './io.js';
import type { Datagram, DatagramPort, FrameBatch, FramePort, ReceivedDatagrams } from './io.js';
import { CHECKSUM_PARTIAL_MIN, CHECKSUM_UNVERIFIED, FrameList, completePartialChecksum, framesOf, segmentFrame } from './offload.js';

export interface MemoryFramePortOptions {
  /** Frames injected start with a virtio_net_hdr, as read from a TAP with IFF_VNET_HDR (default false). */
  vnetHdr?: boolean;
}

/** A frame port whose "kernel side" is the test: it injects frames and reads what was written. */
export class MemoryFramePort implements FramePort {
  readonly vnetHdr: boolean;
  /**
   * Copies of every frame taken by `writeFrames`, in order, as the kernel
   * would pass them on: plain, never merged, partial checksums completed.
   */
  readonly written: Buffer[] = [];
  /** `writeFrames` takes at most this many frames per call, like a full TAP queue. */
  capacity = Number.POSITIVE_INFINITY;
  #onBatch: ((frames: FrameBatch) => void) | undefined;
  #closed = false;

  constructor(opts: MemoryFramePortOptions = {}) {
    this.vnetHdr = opts.vnetHdr ?? false;
  }

  get started(): boolean {
    return this.#onBatch !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  start(onBatch: (frames: FrameBatch) => void): void {
    this.#check();
    this.#onBatch = onBatch;
  }

  writeFrames(batch: FrameBatch): number {
    this.#check();
    const taken = Math.min(batch.count, this.capacity);
    const { buffers, index, checksum } = batch;
    for (let i = 0; i < taken; i++) {
      const at = FRAME_STRIDE * i;
      const offset = index[at + FRAME_OFFSET]!;
      const copy = Buffer.from(buffers[index[at + FRAME_BUFFER]!]!.subarray(offset, offset + index[at + FRAME_LENGTH]!));
      const state = checksum?.[i] ?? CHECKSUM_UNVERIFIED;
      if (state >= CHECKSUM_PARTIAL_MIN) completePartialChecksum(copy, state);
      this.written.push(copy);
    }
    return taken;
  }

  stop(): void {
    this.#check();
    this.#onBatch = undefined;
  }

  close(): void {
    this.#check();
    this.#onBatch = undefined;
    this.#closed = true;
  }

  /**
   * Hands copies of `frames` to the started port's callback as one batch,
   * synchronously. Returns false, delivering nothing, when the port is
   * stopped or closed.
   */
  inject(frames: readonly Uint8Array[]): boolean {
    if (this.#onBatch === undefined) return false;
    const batch = new FrameList();
    for (const frame of frames) batch.push(Buffer.from(frame), 0, frame.length);
    this.#onBatch(batch);
    return true;
  }

  #check(): void {
    if (this.#closed) throw new PortClosed('memory frame port');
  }
}

/** One datagram on the in-memory underlay, as the network saw it. */
export interface UnderlayPacket {
  readonly from: { readonly address: string; readonly port: number };
  readonly to: { readonly address: string; readonly port: number };
  readonly data: Buffer;
}

export interface MemoryNetworkOptions {
  /** Return true to lose a packet (fault tests); it is still recorded. */
  drop?: (packet: UnderlayPacket) => boolean;
  /** Keep every sent packet in `packets` (default true; turn off for long runs). */
  record?: boolean;
}

/**
 * A shared in-memory underlay: ports bound at `address:port` exchange
 * datagrams. Delivery is asynchronous (on `setImmediate`), and everything
 * queued for one port by then arrives as one batch. Like UDP, datagrams to an
 * unbound address or a port that is not started are lost.
 */
export class MemoryNetwork {
  /** Every datagram sent, in order, whether or not it was delivered. */
  readonly packets: UnderlayPacket[] = [];
  readonly #ports = new Map<string, MemoryDatagramPort>();
  readonly #queues = new Map<MemoryDatagramPort, ArrivedDatagram[]>();
  readonly #drop: ((packet: UnderlayPacket) => boolean) | undefined;
  readonly #record: boolean;
  #flushScheduled = false;

  constructor(opts: MemoryNetworkOptions = {}) {
    this.#drop = opts.drop;
    this.#record = opts.record ?? true;
  }

  /** Binds a port at `address:port`; throws InvalidArgument if that is taken. */
  open(address: string, port = 4789): MemoryDatagramPort {
    const key = `${address}:${port}`;
    if (this.#ports.has(key)) throw new InvalidArgument(`${key} is already bound on the memory network`);
    const bound = new MemoryDatagramPort(this, address, port);
    this.#ports.set(key, bound);
    return bound;
  }

  /** Resolves once nothing is in flight, including datagrams sent in reaction to deliveries. */
  async idle(): Promise<void> {
    while (this.#queues.size > 0 || this.#flushScheduled) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** @internal Called by MemoryDatagramPort. */
  send(from: MemoryDatagramPort, datagram: Datagram): void {
    const packet: UnderlayPacket = {
      from: { address: from.address, port: from.port },
      to: { address: datagram.address, port: datagram.port },
      // Copied, as the kernel copies: the sender may reuse its buffer.
      data: Buffer.from(datagram.data),
    };
    if (this.#record) this.packets.push(packet);
    if (this.#drop?.(packet) === true) return;
    const target = this.#ports.get(`${datagram.address}:${datagram.port}`);
    if (target === undefined) return;
    let queue = this.#queues.get(target);
    if (queue === undefined) {
      queue = [];
      this.#queues.set(target, queue);
    }
    queue.push({ data: packet.data, address: from.address, port: from.port });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** @internal Called by MemoryDatagramPort. */
  unbind(port: MemoryDatagramPort): void {
    this.#ports.delete(`${port.address}:${port.port}`);
    this.#queues.delete(port);
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const queues = [...this.#queues];
    this.#queues.clear();
    for (const [port, batch] of queues) port.deliver(batch);
  };
}

/** A datagram as a port receives it: from `address`:`port`; `segmentSize` as in ReceivedDatagrams. */
export interface ArrivedDatagram {
  data: Uint8Array;
  address: string;
  port: number;
  segmentSize?: number;
}

/**
 * Stands in for the addon's ESP table (src/sys/esp.ts) on a memory port:
 * it keeps which SPIs exist and their tags, no keys. "Sealing" puts the SPI
 * where a VXLAN header would be, so a capture shows no VXLAN header, and
 * only a port whose table has that inbound SPI takes the datagram in (as
 * the VNI of the SA's tag, marked sealed); others count it as unknown.
 * Enough to test the VTEP's policy; the cryptography is tested against the addon.
 */
export class MemoryEspTable {
  /** SPI → the SA's tag and the sender it is bound to, if any. */
  readonly inbound = new Map<number, { tag: number; sender: string | undefined }>();
  readonly outbound = new Map<number, number>();
  /** Sealed datagrams received for an SPI the table does not have, or from another address than its sender. */
  unknownSpi = 0;
  wrongSender = 0;

  addInbound(sa: EspSaKeys): void {
    this.inbound.set(sa.spi, { tag: sa.tag, sender: sa.sender });
  }

  addOutbound(sa: EspSaKeys): void {
    this.outbound.set(sa.spi, sa.tag);
  }

  remove(direction: 'inbound' | 'outbound', spi: number): boolean {
    return this[direction].delete(spi);
  }
}

/** A UDP port on a MemoryNetwork. */
export class MemoryDatagramPort implements DatagramPort {
  readonly #network: MemoryNetwork;
  #onBatch: ((datagrams: ReceivedDatagrams) => void) | undefined;
  #closed = false;
  #esp: MemoryEspTable | null = null;

  constructor(
    network: MemoryNetwork,
    readonly address: string,
    readonly port: number,
  ) {
    this.#network = network;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Datagrams that arrive before `start` are lost. */
  start(onBatch: (datagrams: ReceivedDatagrams) => void): void {
    this.#check();
    this.#onBatch = onBatch;
  }

  /** As the native port's: sends may name its outbound SPIs, and it opens what its inbound ones sealed. */
  setEspTable(table: MemoryEspTable | null): void {
    this.#check();
    this.#esp = table;
  }

  sendBatch(datagrams: Datagram[]): void {
    this.#check();
    let refused: EspSendRefused | undefined;
    for (const datagram of datagrams) {
      if (datagram.spi === undefined) this.#network.send(this, datagram);
      else if (this.#esp?.outbound.has(datagram.spi) !== true) refused = new EspSendRefused('unknownSpi', datagram.spi);
      else this.#network.send(this, { ...datagram, data: sealed(datagram.spi, datagram.data.subarray(VXLAN_HEADER_LEN)) });
    }
    if (refused !== undefined) throw refused;
  }

  /**
   * Segments with the same native code as the real port, then sends datagram
   * by datagram; checksums are always completed (RCO is the real port's).
   */
  sendFrames(header: Uint8Array, frames: FrameBatch, vnetHdr: boolean, address: string, port: number, _remoteChecksum = false, spi = 0): number {
    this.#check();
    if (spi !== 0 && this.#esp?.outbound.has(spi) !== true) throw new EspSendRefused('unknownSpi', spi);
    let datagrams = 0;
    for (const frame of framesOf(frames)) {
      const pieces = vnetHdr ? segmentFrame(frame, header) : [Buffer.concat([header, frame])];
      for (const data of pieces ?? []) {
        this.#network.send(this, { data: spi === 0 ? data : sealed(spi, data.subarray(VXLAN_HEADER_LEN)), address, port });
      }
      datagrams += pieces?.length ?? 0;
    }
    return datagrams;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#onBatch = undefined;
    this.#network.unbind(this);
  }

  /** Hands `arrived` to the started port's callback as one batch (called by MemoryNetwork, or a test). */
  deliver(delivered: readonly ArrivedDatagram[]): void {
    if (this.#onBatch === undefined) return;
    const flags: number[] = [];
    const arrived = delivered.flatMap((datagram) => {
      const opened = this.#open(datagram.data, datagram.address);
      if (opened === null) return [];
      flags.push(opened === datagram.data ? 0 : DATAGRAM_SEALED);
      return [{ ...datagram, data: opened }];
    });
    const index = new Uint32Array(DATAGRAM_STRIDE * arrived.length);
    const addresses: string[] = [];
    arrived.forEach((datagram, i) => {
      let slot = addresses.indexOf(datagram.address);
      if (slot < 0) slot = addresses.push(datagram.address) - 1;
      // Each datagram in a buffer of its own, at offset 0 (the array is zeroed).
      const at = DATAGRAM_STRIDE * i;
      index[at + DATAGRAM_BUFFER] = i;
      index[at + DATAGRAM_LENGTH] = datagram.data.length;
      index[at + DATAGRAM_SEGMENT_SIZE] = datagram.segmentSize ?? 0;
      index[at + DATAGRAM_PORT] = datagram.port;
      index[at + DATAGRAM_ADDRESS] = slot;
      index[at + DATAGRAM_FLAGS] = flags[i]!;
    });
    this.#onBatch({ buffers: arrived.map((datagram) => datagram.data), index, addresses, count: arrived.length });
  }

  /** `data` itself when it is not sealed (or no table is attached), a synthetic VXLAN datagram when it opens, null when it does not. */
  #open(data: Uint8Array, source: string): Uint8Array | null {
    if (this.#esp === null || data.length < 4) return data;
    const spi = ((data[0]! << 24) | (data[1]! << 16) | (data[2]! << 8) | data[3]!) >>> 0;
    if (spi < 256 || spi === 0x08000000 || spi === 0x08200000) return data;
    const sa = this.#esp.inbound.get(spi);
    if (sa === undefined) {
      this.#esp.unknownSpi++;
      return null;
    }
    if (sa.sender !== undefined && sa.sender !== source) {
      this.#esp.wrongSender++;
      return null;
    }
    const opened = Buffer.alloc(VXLAN_HEADER_LEN + data.length - 4);
    writeVxlanHeader(sa.tag & 0xffffff, opened, 0);
    opened.set(data.subarray(4), VXLAN_HEADER_LEN);
    return opened;
  }

  #check(): void {
    if (this.#closed) throw new PortClosed(`memory datagram port ${this.address}:${this.port}`);
  }
}

/** The memory table's stand-in for ESP: the SPI, then the frame. */
function sealed(spi: number, frame: Uint8Array): Buffer {
  const data = Buffer.alloc(4 + frame.length);
  data.writeUInt32BE(spi, 0);
  data.set(frame, 4);
  return data;
}
