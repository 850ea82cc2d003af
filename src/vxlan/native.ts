/**
 * The underlay over the native addon's batched UDP socket (recvmmsg and
 * sendmmsg, one crossing into JavaScript per wake-up), optionally made
 * inside another network namespace. Same contract as the doubles in memory.ts.
 */
import type { EspTable } from '../sys/esp.js';
import { EspSendRefused, NativeUdpSocket } from '../sys/udp.js';
import type { DatagramBatch } from '../sys/udp.js';
import { PortClosed } from './io.js';
import type { Datagram, DatagramPort, FrameBatch, ReceivedDatagrams } from './io.js';
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
}

export class NativeDatagramPort implements DatagramPort {
  /** The bound local address. */
  readonly address: string;
  readonly #socket: NativeUdpSocket;
  readonly #logger: Logger;
  /** Reused for every send: the socket reads it synchronously. */
  readonly #outbound: DatagramBatch = { data: [], addresses: [], ports: [] };
  #dropped = 0;
  #closed = false;

  private constructor(socket: NativeUdpSocket, address: string, logger: Logger) {
    this.#socket = socket;
    this.address = address;
    this.#logger = logger;
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
    return new NativeDatagramPort(socket, opts.address, opts.logger ?? silentLogger);
  }

  /** The bound local port. */
  get port(): number {
    return this.#socket.port;
  }

  /** Datagrams given to `sendBatch` that were not sent (queue full, destination failed, socket error). */
  get dropped(): number {
    return this.#dropped;
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
