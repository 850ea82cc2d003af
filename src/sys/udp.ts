/**
 * Sockets made inside any network namespace through the native addon: UDP
 * with batched I/O (recvmmsg/sendmmsg, one crossing into JavaScript per
 * wake-up) and TCP listeners that a `net.Server` adopts. A socket stays in
 * the namespace it was made in, whichever namespace later uses it.
 */
import { createServer, isIP } from 'node:net';
import type { Server, Socket } from 'node:net';
import { InvalidArgument, NetctlError } from '../errors.js';
import { addon, isNativeErrnoError, refilled } from './addon.js';
import type { NativeUdpHandle } from './addon.js';
import { FlowTable } from './flow.js';
import {
  DATAGRAM_ADDRESS,
  DATAGRAM_BUFFER,
  DATAGRAM_FLAGS,
  DATAGRAM_LENGTH,
  DATAGRAM_MAX,
  DATAGRAM_OFFSET,
  DATAGRAM_PORT,
  DATAGRAM_SEGMENT_SIZE,
  DATAGRAM_STRIDE,
  SEND_RESULT_DATAGRAMS,
  SEND_RESULT_LENGTH,
  SEND_RESULT_REFUSED,
  SEND_RESULT_SENT,
} from './batch-layout.js';
import { ESP_RESULTS, formatSpi } from './esp.js';
import type { EspTable } from './esp.js';
import type { FrameBatch } from './tap.js';

/** Datagrams to send as parallel arrays: index i of each describes datagram i. */
export interface DatagramBatch {
  data: Uint8Array[];
  /** Destination addresses. */
  addresses: string[];
  ports: number[];
}

/**
 * Received datagrams without an object per datagram. With `at = DATAGRAM_STRIDE * i`,
 * datagram i is index[at + DATAGRAM_LENGTH] bytes at offset index[at + DATAGRAM_OFFSET]
 * of buffers[index[at + DATAGRAM_BUFFER]], sent from addresses[index[at + DATAGRAM_ADDRESS]],
 * port index[at + DATAGRAM_PORT] (src/sys/batch-layout.ts); when index[at + DATAGRAM_SEGMENT_SIZE]
 * > 0 (sockets with `gro`), it holds datagrams of that size back to back (the last may be
 * shorter) that the kernel coalesced. index[at + DATAGRAM_FLAGS] has DATAGRAM_SEALED set when
 * they came out of ESP (see `NativeUdpSocket.setEspTable`).
 */
export interface ReceivedDatagrams {
  readonly buffers: readonly Uint8Array[];
  readonly index: Uint32Array;
  readonly addresses: readonly string[];
  readonly count: number;
}

/**
 * Datagrams to send, laid out as ReceivedDatagrams are (DATAGRAM_SEGMENT_SIZE
 * and DATAGRAM_FLAGS are not read): datagram i goes to addresses[index[at +
 * DATAGRAM_ADDRESS]], port index[at + DATAGRAM_PORT]. A reply can then go to
 * where its query came from with no object per datagram.
 */
export type IndexedDatagrams = ReceivedDatagrams;

export interface ReceivedDatagram {
  data: Uint8Array;
  address: string;
  port: number;
  /** See `ReceivedDatagrams`: 0 for one datagram. */
  segmentSize: number;
  /** DATAGRAM_* bits (DATAGRAM_SEALED). */
  flags: number;
}

/** Datagram i of a batch as an object (allocates; for slow paths and tests). */
export function receivedDatagram(batch: ReceivedDatagrams, i: number): ReceivedDatagram {
  const at = DATAGRAM_STRIDE * i;
  const { index } = batch;
  const offset = index[at + DATAGRAM_OFFSET]!;
  return {
    data: batch.buffers[index[at + DATAGRAM_BUFFER]!]!.subarray(offset, offset + index[at + DATAGRAM_LENGTH]!),
    address: batch.addresses[index[at + DATAGRAM_ADDRESS]!]!,
    port: index[at + DATAGRAM_PORT]!,
    segmentSize: index[at + DATAGRAM_SEGMENT_SIZE]!,
    flags: index[at + DATAGRAM_FLAGS]!,
  };
}

/** Every datagram of a batch as an object (allocates; for slow paths and tests). */
export function receivedDatagrams(batch: ReceivedDatagrams): ReceivedDatagram[] {
  return Array.from({ length: batch.count }, (_, i) => receivedDatagram(batch, i));
}

export interface NativeUdpSocketOptions {
  /** Namespace to make the socket in (default: the caller's). */
  netnsPath?: string;
  /** Local address to bind ('0.0.0.0' or '::' for all). */
  address: string;
  /** 0 picks a free port (see `port`). */
  port: number;
  /** Default: the family of `address`. An IPv6 socket sends to IPv4 addresses as v4-mapped. */
  family?: 4 | 6;
  reuseAddr?: boolean;
  /** UDP_GRO: the kernel may hand over runs of equal-size datagrams from one sender as one (see `ReceivedDatagrams`). */
  gro?: boolean;
  /**
   * IP_PMTUDISC_DO: every datagram leaves with DF, and one larger than the
   * path MTU is not sent (counted as not sent) rather than fragmented.
   */
  dontFragment?: boolean;
  /**
   * Received payloads stay in the socket's own receive memory, valid only
   * until `onBatch` returns (no copy, no allocation per wake-up); `onBatch`
   * is then called once per recvmmsg (up to 64 datagrams).
   */
  borrowBuffers?: boolean;
  /** SO_RCVBUF in bytes; as root it may pass net.core.rmem_max. Default: the kernel's. */
  recvBufferSize?: number;
  /** SO_SNDBUF in bytes; as root it may pass net.core.wmem_max. Default: the kernel's. */
  sendBufferSize?: number;
}

/** A call on a NativeUdpSocket after `close`. */
export class SocketClosed extends NetctlError {
  constructor() {
    super('Unavailable', 'the UDP socket is closed');
  }
}

/** Why a sealed send was refused whole, nothing sent. */
export type EspSendRefusal = 'unknownSpi' | 'sequenceExhausted';

/**
 * `sendBatch` with an SPI sent nothing: the socket's ESP table has no
 * outbound SA with it (or no table is attached), or the SA has fewer
 * sequence numbers left than the batch needs.
 */
export class EspSendRefused extends NetctlError {
  constructor(
    readonly reason: EspSendRefusal,
    readonly spi: number,
  ) {
    super('Unavailable', `sealed send with SPI ${formatSpi(spi)} refused (${reason}): nothing sent`);
  }
}

/** What `sendFrames` did: datagrams made and taken by the kernel, and why a sealed send was refused. */
export interface SentFrames {
  datagrams: number;
  sent: number;
  /** Set when a send with an SPI was refused whole (then `datagrams` and `sent` are 0). */
  refused?: EspSendRefusal;
}

export class NativeUdpSocket {
  /** The bound local port. */
  readonly port: number;
  #handle: NativeUdpHandle | undefined;
  #flows: FlowTable | undefined;
  /** Where the addon writes what a `sendFrames` made and sent. */
  readonly #sendResult = new Uint32Array(SEND_RESULT_LENGTH);
  /** What `start` hands out: refilled by the addon on every call. */
  readonly #received: { buffers: Uint8Array[]; index: Uint32Array; addresses: string[]; count: number } = {
    buffers: [],
    index: new Uint32Array(DATAGRAM_STRIDE * DATAGRAM_MAX),
    addresses: [],
    count: 0,
  };

  private constructor(handle: NativeUdpHandle, port: number) {
    this.#handle = handle;
    this.port = port;
  }

  /** Makes and binds the socket; InvalidArgument for a bad address or namespace, Unavailable if it cannot bind. */
  static open(opts: NativeUdpSocketOptions): NativeUdpSocket {
    const family = opts.family ?? familyOf(opts.address);
    const where = `UDP ${opts.address}:${opts.port}${opts.netnsPath === undefined ? '' : ` in ${opts.netnsPath}`}`;
    try {
      const { handle, port } = addon().udpOpen(opts.netnsPath ?? '', family, opts.address, opts.port, {
        reuseAddr: opts.reuseAddr ?? false,
        gro: opts.gro ?? false,
        borrowBuffers: opts.borrowBuffers ?? false,
        dontFragment: opts.dontFragment ?? false,
        recvBufferSize: opts.recvBufferSize ?? 0,
        sendBufferSize: opts.sendBufferSize ?? 0,
      });
      return new NativeUdpSocket(handle, port);
    } catch (err) {
      throw socketError(err, where);
    }
  }

  /**
   * Starts delivering received datagrams: everything one wake-up of the
   * event loop reads (up to 256; with `borrowBuffers`, up to 64 per call)
   * arrives in one call, as one ReceivedDatagrams object that is refilled
   * for every call (keep the datagrams, not the batch). Their memory is
   * fresh unless the socket borrows buffers: then it is reused once the
   * callback returns. Calling it again replaces the callback. An exception
   * thrown by `onBatch` is reported as an uncaught exception. While started,
   * the socket keeps the event loop alive.
   */
  start(onBatch: (batch: ReceivedDatagrams) => void): void {
    const received = this.#received;
    addon().udpStart(this.#open(), refilled(received, onBatch), received.index, received.buffers, received.addresses);
  }

  /**
   * Attaches `table` (or with null detaches the one attached). With a table,
   * a received datagram that is ESP by its first word (esp.h: not 0x08000000
   * or 0x08200000, how VXLAN headers start, and not below 256, where probes
   * lie) is opened with it, and what it carried is delivered as a plain VXLAN
   * datagram (VNI: the low 24 bits of the SA's tag) with DATAGRAM_SEALED set;
   * one that does not open is dropped and counted by reason in the table
   * (`EspTable.totals('inbound')`, `counters('inbound', spi)`). Sends may then
   * name an outbound SPI. The socket holds the table: closing either first
   * is safe (see `EspTable.close`).
   */
  setEspTable(table: EspTable | null): void {
    addon().udpSetEspTable(this.#open(), table === null ? null : table.native);
  }

  /**
   * Sends without blocking; returns how many datagrams were sent. When the
   * socket's queue fills the rest are not sent; a datagram whose destination
   * is unparseable or fails (unreachable, too long) is skipped. Neither throws.
   * With `spi` (not 0) each datagram is a VXLAN header and a frame, and the
   * frame alone leaves sealed with that outbound SA of the attached table;
   * throws EspSendRefused, having sent nothing, when the SA is missing or has
   * too few sequence numbers left.
   */
  sendBatch(batch: DatagramBatch, spi = 0): number {
    const handle = this.#open();
    try {
      return addon().udpSendBatch(handle, batch, spi);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ESP_UNKNOWN_SPI') throw new EspSendRefused('unknownSpi', spi);
      if (code === 'ESP_SEQUENCE_EXHAUSTED') throw new EspSendRefused('sequenceExhausted', spi);
      throw new NetctlError('Internal', `UDP send: ${String(err)}`, { cause: err });
    }
  }

  /**
   * Sends `datagrams.count` datagrams as `sendBatch` sends them without an
   * SPI, and returns how many were sent; one that lies outside its buffer
   * is skipped, as one whose destination fails is. Allocates nothing per
   * datagram, so a socket answering at high rates makes no garbage here.
   */
  sendIndexed(datagrams: IndexedDatagrams): number {
    const handle = this.#open();
    try {
      return addon().udpSendIndexed(handle, datagrams.buffers, datagrams.index, datagrams.addresses, datagrams.count);
    } catch (err) {
      throw new NetctlError('Internal', `UDP send: ${String(err)}`, { cause: err });
    }
  }

  /**
   * Sends the frames of `frames` to one destination, each prefixed with `prefix`
   * (a VXLAN header): with `vnetHdr` every frame starts with a virtio_net_hdr,
   * TCP super-frames are cut into gso_size segments, partial checksums are
   * completed (or, with `remoteChecksum`, TCP ones left partial and marked
   * with VXLAN RCO for a receiver that is a netctl VTEP), and the segments
   * of a frame leave in one UDP_SEGMENT send.
   * Returns the datagrams the frames made and how many of them the kernel
   * took (fewer: queue full or destination failed). Never throws for a
   * datagram, as `sendBatch`.
   *
   * With `spi` (not 0) every datagram carries ESP instead (esp.h): the
   * outbound SA `spi` of the attached table seals each segment's frame,
   * without `prefix` (the SA names the network) and with its checksums
   * complete (`remoteChecksum` is ignored); the sealed segments of a frame
   * still leave in one UDP_SEGMENT send. Without that SA, or with too few
   * sequence numbers left for every datagram, nothing is sent and `refused`
   * says why: never a frame in clear.
   */
  sendFrames(
    prefix: Uint8Array,
    frames: FrameBatch,
    vnetHdr: boolean,
    address: string,
    port: number,
    remoteChecksum = false,
    spi = 0,
  ): SentFrames {
    const handle = this.#open();
    try {
      const result = this.#sendResult;
      addon().udpSendFrames(handle, prefix, frames.buffers, frames.index, frames.count, vnetHdr, address, port, remoteChecksum, result, spi);
      const refused = result[SEND_RESULT_REFUSED]!;
      if (refused !== 0) return { datagrams: 0, sent: 0, refused: ESP_RESULTS[refused] as EspSendRefusal };
      return { datagrams: result[SEND_RESULT_DATAGRAMS]!, sent: result[SEND_RESULT_SENT]! };
    } catch (err) {
      throw new NetctlError('Internal', `UDP send: ${String(err)}`, { cause: err });
    }
  }

  /**
   * Keeps `reply` (reply[replyStart, replyEnd)) as the answer to every later
   * datagram whose bytes after its first two are those of query[start,
   * end): the addon sends it back at once, with the datagram's first two
   * bytes in place of the reply's (a DNS ID), and JavaScript never sees the
   * datagram (native/answers.c). For replies that depend on nothing else.
   * False when either is too long to keep (512 bytes).
   */
  storeAnswer(query: Uint8Array, start: number, end: number, reply: Uint8Array, replyStart: number, replyEnd: number): boolean {
    return addon().udpAnswersStore(this.#open(), query, start, end, reply, replyStart, replyEnd);
  }

  /** Forgets every stored answer before it returns. */
  clearAnswers(): void {
    addon().udpAnswersClear(this.#open());
  }

  /** How many datagrams stored answers answered since the last call. */
  answersTaken(): number {
    return addon().udpAnswersTaken(this.#open());
  }

  /** The socket's fast path (flow.ts). */
  flows(): FlowTable {
    return (this.#flows ??= new FlowTable(() => this.#open()));
  }

  /** Stops delivering; the kernel queues datagrams until the receive buffer is full. */
  stop(): void {
    addon().udpStop(this.#open());
  }

  /** Stops and closes the socket; every later call throws SocketClosed. */
  close(): void {
    addon().udpClose(this.#open());
    this.#handle = undefined;
  }

  #open(): NativeUdpHandle {
    if (this.#handle === undefined) throw new SocketClosed();
    return this.#handle;
  }
}

export interface TcpListenerOptions {
  /** Namespace to make the socket in (default: the caller's); accepted connections live there too. */
  netnsPath?: string;
  address: string;
  /** 0 picks a free port (see `server.address()`). */
  port: number;
  /** Default 511, as Node's. */
  backlog?: number;
}

/**
 * Listens on TCP in a namespace: the socket is made there natively and
 * adopted by a `net.Server`, which calls `onConnection` for every accepted
 * connection. Resolves once listening; `server.close()` closes the socket.
 */
export async function openTcpListener(
  opts: TcpListenerOptions,
  onConnection: (socket: Socket) => void,
): Promise<Server> {
  const backlog = opts.backlog ?? 511;
  const where = `TCP ${opts.address}:${opts.port}${opts.netnsPath === undefined ? '' : ` in ${opts.netnsPath}`}`;
  let fd: number;
  try {
    fd = addon().tcpListen(opts.netnsPath ?? '', familyOf(opts.address), opts.address, opts.port, backlog);
  } catch (err) {
    throw socketError(err, where);
  }
  // From here the fd belongs to the server, which closes it on close.
  const server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.close();
      reject(new NetctlError('Internal', `cannot listen on ${where}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ fd, backlog }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  return server;
}

function familyOf(address: string): 4 | 6 {
  const family = isIP(address);
  if (family === 0) throw new InvalidArgument(`"${address}" is not an IP address`);
  return family as 4 | 6;
}

/** Maps an addon failure to the domain's errors, keeping the errno error as the cause. */
function socketError(err: unknown, where: string): Error {
  if (err instanceof NetctlError) return err;
  if (err instanceof RangeError || err instanceof TypeError) {
    return new InvalidArgument(`cannot open ${where}: ${err.message}`, { cause: err });
  }
  if (isNativeErrnoError(err)) {
    const syscall = (err as { syscall?: unknown }).syscall;
    if ((syscall === 'open' && err.code === 'ENOENT') || (syscall === 'setns' && err.code === 'EINVAL')) {
      return new InvalidArgument(`cannot open ${where}: not a network namespace`, { cause: err });
    }
    if (syscall === 'bind') return new NetctlError('Unavailable', `cannot bind ${where}: ${err.message}`, { cause: err });
  }
  return new NetctlError('Internal', `cannot open ${where}: ${String(err)}`, { cause: err });
}
