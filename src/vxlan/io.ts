/**
 * The VTEP's injected I/O parts (wireguard-go's tun.Device and conn.Bind):
 * both move batches, and both state what happens after they are closed.
 * `UdpDatagramPort` is the real underlay; `memory.ts` has the doubles.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { NetctlError } from '../cnm/errors.js';

/**
 * One overlay network's frame port (the TAP on the network's bridge);
 * `src/sys/tap.ts` `TapDevice` is the real one.
 */
export interface FramePort {
  /** Delivers received Ethernet frames in batches; calling it again replaces the callback. */
  start(onBatch: (frames: Buffer[]) => void): void;
  /** Writes whole Ethernet frames; returns how many were taken (fewer: the queue is full). Throws once closed. */
  writeBatch(frames: Uint8Array[]): number;
  /** Stops delivery. */
  stop(): void;
  /** Stops and releases the port; every later call throws. */
  close(): void;
}

export interface Datagram {
  data: Uint8Array;
  /** IPv4 dotted quad: the destination when sending, the source when received. */
  address: string;
  port: number;
}

/** The underlay UDP socket shared by every overlay network of the host. */
export interface DatagramPort {
  /** Delivers received datagrams in batches; calling it again replaces the callback. */
  start(onBatch: (datagrams: Datagram[]) => void): void;
  /**
   * Sends without blocking. Delivery is best effort, as with UDP: a datagram
   * that cannot be sent is dropped, never reported by a throw. Throws once closed.
   */
  sendBatch(datagrams: Datagram[]): void;
  /** Stops delivery and releases the socket; `sendBatch` and `start` throw afterwards, `close` again resolves. */
  close(): Promise<void>;
}

/** A call on a port (or on the VTEP) after it was closed or stopped. */
export class PortClosed extends NetctlError {
  constructor(what: string) {
    super('Unavailable', `${what} is closed`);
  }
}

export interface UdpDatagramPortOptions {
  /** Local IPv4 address to bind ('0.0.0.0' for all). */
  address: string;
  /** Local UDP port; 0 picks a free one (see `UdpDatagramPort.port`). */
  port: number;
  /** Told about socket and send errors, which are otherwise dropped as UDP drops packets. */
  log?: (msg: string) => void;
}

/**
 * The underlay over `node:dgram`: one recvmsg/sendmsg per datagram (about
 * 260 k packets/s here). Datagrams arriving in one event-loop turn are
 * handed over as one batch on `setImmediate`. Issue 5 replaces this with the
 * addon's recvmmsg/sendmmsg (and UDP_GRO/UDP_SEGMENT) behind the same interface.
 */
export class UdpDatagramPort implements DatagramPort {
  readonly #socket: Socket;
  readonly #log: (msg: string) => void;
  #onBatch: ((datagrams: Datagram[]) => void) | undefined;
  #pending: Datagram[] = [];
  #flushScheduled = false;
  #closed = false;

  private constructor(socket: Socket, log: (msg: string) => void) {
    this.#socket = socket;
    this.#log = log;
  }

  /** Binds a UDP/IPv4 socket; rejects if the address cannot be bound. */
  static async open(opts: UdpDatagramPortOptions): Promise<UdpDatagramPort> {
    const socket = createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        reject(new NetctlError('Unavailable', `cannot bind UDP ${opts.address}:${opts.port}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
      socket.bind({ address: opts.address, port: opts.port, exclusive: true }, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    const port = new UdpDatagramPort(socket, opts.log ?? (() => {}));
    socket.on('error', (err) => port.#log(`underlay socket: ${err.message}`));
    socket.on('message', (data, rinfo) => port.#receive(data, rinfo));
    return port;
  }

  /** The bound local address. */
  get address(): string {
    return this.#socket.address().address;
  }

  /** The bound local port. */
  get port(): number {
    return this.#socket.address().port;
  }

  /** Datagrams that arrive before `start` are dropped. */
  start(onBatch: (datagrams: Datagram[]) => void): void {
    if (this.#closed) throw new PortClosed('UDP datagram port');
    this.#onBatch = onBatch;
  }

  sendBatch(datagrams: Datagram[]): void {
    if (this.#closed) throw new PortClosed('UDP datagram port');
    for (const datagram of datagrams) {
      // A callback keeps a failed send from surfacing as an 'error' event.
      this.#socket.send(datagram.data, datagram.port, datagram.address, this.#onSent);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#onBatch = undefined;
    this.#pending = [];
    await new Promise<void>((resolve) => this.#socket.close(resolve));
  }

  readonly #onSent = (err: Error | null): void => {
    if (err !== null) this.#log(`underlay send: ${err.message}`);
  };

  #receive(data: Buffer, rinfo: RemoteInfo): void {
    if (this.#onBatch === undefined) return;
    this.#pending.push({ data, address: rinfo.address, port: rinfo.port });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length > 0) this.#onBatch?.(batch);
  };
}
