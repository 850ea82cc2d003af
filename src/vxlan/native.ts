/**
 * The underlay over the native addon's batched UDP socket (recvmmsg and
 * sendmmsg, one crossing into JavaScript per wake-up), optionally made
 * inside another network namespace. Same contract as the doubles in memory.ts.
 */
import {
  FLOW_FIELDS,
  FLOW_NET_DROP_WRITE_FAILED,
  FLOW_NET_RX_FRAMES,
  FLOW_NET_TX_FRAMES,
  FLOW_REMOTE_RX_BYTES,
  FLOW_REMOTE_RX_DATAGRAMS,
  FLOW_REMOTE_TX_BYTES,
  FLOW_REMOTE_TX_DATAGRAMS,
  FLOW_SEND_DROPPED,
} from '../sys/batch-layout.js';
import type { EspTable } from '../sys/esp.js';
import type { FlowTable } from '../sys/flow.js';
import { TapDevice } from '../sys/tap.js';
import { EspSendRefused, NativeUdpSocket } from '../sys/udp.js';
import type { DatagramBatch } from '../sys/udp.js';
import { PortClosed } from './io.js';
import type { Datagram, DatagramPort, FastPath, FastPathSink, Flow, FramePort, FrameBatch, ReceivedDatagrams } from './io.js';
import { type Logger, silentLogger } from '../log.js';

const DEFAULT_RECV_BUFFER = 8 << 20;
const DEFAULT_SEND_BUFFER = 4 << 20;

export interface NativeDatagramPortOptions {
  /** Local IPv4 address to bind ('0.0.0.0' for all). */
  address: string;
  /** Local UDP port; 0 picks a free one (see `NativeDatagramPort.port`). */
  port: number;
  /** Namespace to make the socket in (default: the caller's). */
  netnsPath?: string;
  /**
   * Receive buffer in bytes (default 8 MiB: at 10 Gbit/s the kernel's 208 KiB
   * fills in under a millisecond); bursts beyond it are lost.
   */
  recvBufferSize?: number;
  /** Send buffer in bytes (default 4 MiB). */
  sendBufferSize?: number;
  /** UDP_GRO: receive runs of equal-size datagrams from one sender as one (default true). */
  gro?: boolean;
  /** Told about socket errors, which are otherwise counted as drops, as UDP drops packets. */
  logger?: Logger;
  /** Offer the addon's fast path (`fastPath`) to the VTEP (default true). */
  fastPath?: boolean;
}

export class NativeDatagramPort implements DatagramPort {
  /** The bound local address. */
  readonly address: string;
  readonly fastPath: NativeFastPath | undefined;
  readonly #socket: NativeUdpSocket;
  readonly #logger: Logger;
  /** Reused for every send: the socket reads it synchronously. */
  readonly #outbound: DatagramBatch = { data: [], addresses: [], ports: [] };
  #dropped = 0;
  #closed = false;

  private constructor(socket: NativeUdpSocket, address: string, logger: Logger, fastPath: boolean) {
    this.#socket = socket;
    this.address = address;
    this.#logger = logger;
    this.fastPath = fastPath ? new NativeFastPath(socket.flows()) : undefined;
  }

  /** Binds a UDP/IPv4 socket; throws if the address cannot be bound (see `NativeUdpSocket.open`). */
  static open(opts: NativeDatagramPortOptions): NativeDatagramPort {
    const socket = NativeUdpSocket.open({
      address: opts.address,
      port: opts.port,
      family: 4,
      gro: opts.gro ?? true,
      // The VTEP is done with a datagram when its callback returns.
      borrowBuffers: true,
      // An underlay fragment costs both hosts a reassembly and is lost where fragments are filtered:
      // the VTEP keeps frames within the MTU, and the kernel refuses what still would not fit.
      dontFragment: true,
      ...(opts.netnsPath !== undefined && { netnsPath: opts.netnsPath }),
      recvBufferSize: opts.recvBufferSize ?? DEFAULT_RECV_BUFFER,
      sendBufferSize: opts.sendBufferSize ?? DEFAULT_SEND_BUFFER,
    });
    return new NativeDatagramPort(socket, opts.address, opts.logger ?? silentLogger, opts.fastPath ?? true);
  }

  /** The bound local port. */
  get port(): number {
    return this.#socket.port;
  }

  /** Datagrams given to `sendBatch` and `sendFrames`, or made by the fast path, that were not sent (queue full, destination failed, socket error). */
  get dropped(): number {
    return this.#dropped + (this.fastPath?.sendDropped ?? 0);
  }

  /**
   * Datagrams that arrive before `start` wait in the kernel's receive buffer.
   * Their `data` is valid only until `onBatch` returns (the memory is reused).
   */
  start(onBatch: (datagrams: ReceivedDatagrams) => void): void {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    this.#socket.start(onBatch);
  }

  /**
   * Attaches the ESP table whose SAs `spi`s name and which opens sealed
   * datagrams on receipt (see `NativeUdpSocket.setEspTable`); null detaches it.
   */
  setEspTable(table: EspTable | null): void {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    this.#socket.setEspTable(table);
  }

  sendBatch(datagrams: Datagram[]): void {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    // The addon seals a whole call with one SA: each run of datagrams with one SPI is a call.
    let refused: EspSendRefused | undefined;
    for (let start = 0; start < datagrams.length; ) {
      const spi = datagrams[start]!.spi ?? 0;
      let end = start + 1;
      while (end < datagrams.length && (datagrams[end]!.spi ?? 0) === spi) end++;
      try {
        this.#sendRun(datagrams, start, end, spi);
      } catch (err) {
        if (!(err instanceof EspSendRefused)) throw err;
        refused = err;
      }
      start = end;
    }
    if (refused !== undefined) throw refused;
  }

  #sendRun(datagrams: Datagram[], start: number, end: number, spi: number): void {
    const { data, addresses, ports } = this.#outbound;
    const count = end - start;
    for (let i = 0; i < count; i++) {
      const datagram = datagrams[start + i]!;
      data[i] = datagram.data;
      addresses[i] = datagram.address;
      ports[i] = datagram.port;
    }
    data.length = count;
    addresses.length = count;
    ports.length = count;
    try {
      this.#dropped += count - this.#socket.sendBatch(this.#outbound, spi);
    } catch (err) {
      this.#dropped += count;
      if (err instanceof EspSendRefused) throw err;
      this.#logger.warn(`underlay send: ${String(err)}`);
    } finally {
      // Let the payloads be collected.
      data.length = 0;
    }
  }

  sendFrames(header: Uint8Array, frames: FrameBatch, vnetHdr: boolean, address: string, port: number, remoteChecksum: boolean, spi = 0): number {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    let result;
    try {
      result = this.#socket.sendFrames(header, frames, vnetHdr, address, port, remoteChecksum, spi);
    } catch (err) {
      this.#logger.warn(`underlay send: ${String(err)}`);
      return 0;
    }
    if (result.refused !== undefined) throw new EspSendRefused(result.refused, spi);
    this.#dropped += result.datagrams - result.sent;
    return result.datagrams;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}

/** The number of slots the counters start with; they double when full. */
const INITIAL_SLOTS = 64;

/**
 * The addon's fast path on the port's socket (native/flow.c through
 * src/sys/flow.ts): drives native TAPs with virtio headers, and keeps the
 * counters' slots, one per attached network and one per (network, remote
 * VTEP) it was given a flow to.
 */
export class NativeFastPath implements FastPath {
  readonly #table: FlowTable;
  #counters = new Float64Array(INITIAL_SLOTS * FLOW_FIELDS);
  /** Per attached VNI: its port's slot, and a slot per remote VTEP address. */
  readonly #slots = new Map<number, { port: number; remotes: Map<string, number> }>();
  readonly #free: number[] = [];
  /** Slot 0 is FLOW_SEND_DROPPED's. */
  #nextSlot = 1;

  constructor(table: FlowTable) {
    this.#table = table;
    table.useCounters(this.#counters);
  }

  /** Datagrams the fast path made that the kernel did not take. */
  get sendDropped(): number {
    return this.#counters[FLOW_SEND_DROPPED]!;
  }

  attach(vni: number, port: FramePort, header: Uint8Array, encrypted: boolean, maxFrameLength: number): boolean {
    if (!(port instanceof TapDevice) || this.#slots.has(vni)) return false;
    const slot = this.#allocate();
    if (!this.#table.attach(vni, port, header, encrypted, maxFrameLength, slot)) {
      this.#free.push(slot);
      return false;
    }
    this.#slots.set(vni, { port: slot, remotes: new Map() });
    return true;
  }

  detach(vni: number): void {
    const slots = this.#slots.get(vni);
    if (slots === undefined) return;
    this.#table.detach(vni);
    this.#slots.delete(vni);
    this.#free.push(slots.port, ...slots.remotes.values());
  }

  install(vni: number, mac: number, flow: Flow): void {
    const slots = this.#slots.get(vni);
    if (slots === undefined) return;
    let slot = slots.remotes.get(flow.address);
    if (slot === undefined) {
      slot = this.#allocate();
      slots.remotes.set(flow.address, slot);
    }
    this.#table.install(vni, mac, { ...flow, slot });
  }

  forget(vni: number, mac?: number): void {
    if (this.#slots.has(vni)) this.#table.forget(vni, mac);
  }

  drain(sink: FastPathSink): void {
    const counters = this.#counters;
    for (const [vni, slots] of this.#slots) {
      let at = slots.port * FLOW_FIELDS;
      const rxFrames = counters[at + FLOW_NET_RX_FRAMES]!;
      const txFrames = counters[at + FLOW_NET_TX_FRAMES]!;
      const dropWriteFailed = counters[at + FLOW_NET_DROP_WRITE_FAILED]!;
      if (rxFrames + txFrames + dropWriteFailed > 0) sink.port(vni, { rxFrames, txFrames, dropWriteFailed });
      counters.fill(0, at, at + FLOW_FIELDS);
      for (const [address, slot] of slots.remotes) {
        at = slot * FLOW_FIELDS;
        const txDatagrams = counters[at + FLOW_REMOTE_TX_DATAGRAMS]!;
        const rxDatagrams = counters[at + FLOW_REMOTE_RX_DATAGRAMS]!;
        if (txDatagrams + rxDatagrams > 0) {
          sink.remote(vni, address, { txDatagrams, txBytes: counters[at + FLOW_REMOTE_TX_BYTES]!, rxDatagrams, rxBytes: counters[at + FLOW_REMOTE_RX_BYTES]! });
        }
        counters.fill(0, at, at + FLOW_FIELDS);
      }
    }
  }

  /** A slot with its counters at zero; the counters double (copied, and handed to the addon) when none is left. */
  #allocate(): number {
    const slot = this.#free.pop() ?? this.#nextSlot++;
    if ((slot + 1) * FLOW_FIELDS > this.#counters.length) {
      const grown = new Float64Array(this.#counters.length * 2);
      grown.set(this.#counters);
      this.#table.useCounters(grown);
      this.#counters = grown;
    }
    this.#counters.fill(0, slot * FLOW_FIELDS, (slot + 1) * FLOW_FIELDS);
    return slot;
  }
}
