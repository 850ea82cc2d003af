/**
 * The VTEP's injected I/O parts (wireguard-go's tun.Device and conn.Bind):
 * both move batches, and both state what happens after they are closed.
 * `native.ts` has the real underlay (the addon's batched UDP socket); `memory.ts` has the doubles.
 */
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
