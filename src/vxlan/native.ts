/**
 * The underlay over the native addon's batched UDP socket (recvmmsg and
 * sendmmsg, one crossing into JavaScript per wake-up), optionally made
 * inside another network namespace. Same contract as the doubles in memory.ts.
 */
import { NativeUdpSocket } from '../sys/udp.js';
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

  sendBatch(datagrams: Datagram[]): void {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    const { data, addresses, ports } = this.#outbound;
    const count = datagrams.length;
    for (let i = 0; i < count; i++) {
      const datagram = datagrams[i]!;
      data[i] = datagram.data;
      addresses[i] = datagram.address;
      ports[i] = datagram.port;
    }
    data.length = count;
    addresses.length = count;
    ports.length = count;
    try {
      this.#dropped += count - this.#socket.sendBatch(this.#outbound);
    } catch (err) {
      this.#dropped += count;
      this.#logger.warn(`underlay send: ${String(err)}`);
    } finally {
      // Let the payloads be collected.
      data.length = 0;
    }
  }

  sendFrames(header: Uint8Array, frames: FrameBatch, vnetHdr: boolean, address: string, port: number, remoteChecksum: boolean): number {
    if (this.#closed) throw new PortClosed('native UDP datagram port');
    try {
      const { datagrams, sent } = this.#socket.sendFrames(header, frames, vnetHdr, address, port, remoteChecksum);
      this.#dropped += datagrams - sent;
      return datagrams;
    } catch (err) {
      this.#logger.warn(`underlay send: ${String(err)}`);
      return 0;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}
