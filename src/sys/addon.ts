/**
 * Typed access to the native addon (build/Release/netctl_native.node, or
 * the prebuilt copy under prebuilds/), loaded on first use.
 * Each C part of the addon registers its functions on one module object;
 * each part adds its functions to `NativeAddon` here.
 *
 * Failed system calls throw an Error whose `code` is the errno name
 * (`EEXIST`, `ENOENT`…) and whose `errno` is the number.
 *
 * The sys/ folder is the only code that touches the kernel or the
 * host's files: this addon and its typed wrappers (tap.ts, udp.ts,
 * offload.ts, fslock.ts, rlimit.ts, with batch-layout.ts naming the shapes
 * batches cross in), rtnetlink (rtnl.ts, run on a worker thread), netns.ts,
 * nft.ts, sysctl.ts, and the files under /etc (resolvconf.ts,
 * host-files.ts).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Opaque handle to a TAP device's poller (a napi external). */
export interface NativeTapHandle {
  readonly __nativeTapHandle: unique symbol;
}

/** Opaque handle to a UDP socket and its poller (a napi external). */
export interface NativeUdpHandle {
  readonly __nativeUdpHandle: unique symbol;
}

/** Datagrams as the addon moves them: index i of each array describes datagram i. */
export interface NativeDatagrams {
  data: Uint8Array[];
  /** Destination addresses. */
  addresses: string[];
  ports: number[];
}

/** What `offloadSegment` wrote: `count` frames of `segmentLength` bytes (the last may be shorter), `length` in all. */
export interface NativeSegments {
  count: number;
  segmentLength: number;
  length: number;
}

/** Opaque handle to a table of ESP security associations (native/esp.h; a napi external). */
export interface NativeEspTable {
  readonly __nativeEspTable: unique symbol;
}

export type NativeEspDirection = 'inbound' | 'outbound';

/** An SA's counters, or a direction's totals; never key material. */
export interface NativeEspCounters {
  /** Datagrams sealed or opened, and their plaintext bytes. */
  packets: number;
  bytes: number;
  /** Outbound: the last sequence number sent. Inbound: the highest authenticated. Totals: 0. */
  sequence: bigint;
  /** Datagrams refused, by reason (the names of espLayout.results but 'ok'). */
  drops: Record<string, number>;
}

export interface NativeAddon {
  /** Moves the calling thread into the network namespace at `path`; returns an fd of the one it left. */
  netnsEnter(path: string): number;
  /** Returns the calling thread to the namespace saved by `netnsEnter` and closes that fd. */
  netnsRestore(savedFd: number): void;
  /** Makes `runDir` a shared mount point, then pins a new network namespace on `path` (created, must not exist). */
  netnsCreate(runDir: string, path: string): void;
  /** Detaches the mount on `path`; false when nothing was mounted there. */
  netnsUnmount(path: string): boolean;
  /** True when `path` is an nsfs file of a network namespace. */
  netnsIsNet(path: string): boolean;
  /** socket(2) with SOCK_CLOEXEC in the calling thread's network namespace. */
  socket(domain: number, type: number, protocol: number): number;

  /** Opens /dev/net/tun (non-blocking) and attaches it to TAP `name`; `offloads` < 0 leaves offloads alone. */
  tapOpen(name: string, vnetHdr: boolean, offloads: number): { fd: number; name: string };
  /**
   * Wraps a TAP fd for polling; the handle owns the fd from then on. `vnetHdr`: opened with
   * IFF_VNET_HDR. `borrowBuffers`: frames are delivered in the handle's own memory, valid until
   * the callback returns, instead of in a fresh Buffer per batch.
   */
  tapHandle(fd: number, vnetHdr: boolean, borrowBuffers: boolean): NativeTapHandle;
  /**
   * For every wake-up with data: fills `index` (at least FRAME_STRIDE × TAP_BATCH entries) and
   * `buffers` as a FrameBatch of `count` frames, then calls onBatch(count).
   */
  tapStart(handle: NativeTapHandle, onBatch: (count: number) => void, index: Uint32Array, buffers: Uint8Array[]): void;
  tapStop(handle: NativeTapHandle): void;
  tapWriteBatch(handle: NativeTapHandle, frames: readonly Uint8Array[]): number;
  /**
   * Writes `count` plain Ethernet frames, a FrameBatch (src/sys/batch-layout.ts). With IFF_VNET_HDR, consecutive segments of one TCP flow go as one
   * super-frame; a segment is merged only if its TCP checksum is valid, which is not checked when
   * checksum[i] (FrameBatch.checksum) says it is trusted or partial; a partial one is left to the
   * kernel, or completed without IFF_VNET_HDR. Returns how many frames were written; stops at a
   * full queue, skips frames the kernel rejects.
   */
  tapWriteFrames(
    handle: NativeTapHandle,
    buffers: readonly Uint8Array[],
    index: Uint32Array,
    count: number,
    checksum?: Uint8Array,
  ): number;
  tapClose(handle: NativeTapHandle): void;

  /**
   * Binds a non-blocking UDP socket made in the namespace at `netnsPath` ('' = the caller's);
   * `port` 0 picks one. Buffer sizes pass the sysctl limits when the process may (SO_*BUFFORCE).
   */
  udpOpen(
    netnsPath: string,
    family: 4 | 6,
    address: string,
    port: number,
    opts: { reuseAddr?: boolean; gro?: boolean; borrowBuffers?: boolean; dontFragment?: boolean; recvBufferSize?: number; sendBufferSize?: number },
  ): { handle: NativeUdpHandle; port: number };
  /**
   * For every wake-up with data (up to 4 recvmmsg of 64): fills `index` (at least
   * DATAGRAM_STRIDE × DATAGRAM_MAX entries), `buffers` and `addresses` as ReceivedDatagrams (src/sys/udp.ts) of `count`
   * datagrams, then calls onBatch(count). The payloads of one recvmmsg are in one fresh Buffer,
   * back to back; with `borrowBuffers`, one call per recvmmsg, in the socket's own memory that
   * the next one overwrites.
   */
  udpStart(
    handle: NativeUdpHandle,
    onBatch: (count: number) => void,
    index: Uint32Array,
    buffers: Uint8Array[],
    addresses: string[],
  ): void;
  udpStop(handle: NativeUdpHandle): void;
  /**
   * sendmmsg per 64; returns how many were sent. Stops at a full queue; skips datagrams whose destination fails.
   * With `spi` (not 0) each datagram is a VXLAN header and a frame, and the frame alone leaves sealed with that
   * outbound SA of the socket's ESP table; with no such SA, or too few sequence numbers left for every datagram,
   * nothing is sent and it throws code ESP_UNKNOWN_SPI or ESP_SEQUENCE_EXHAUSTED.
   */
  udpSendBatch(handle: NativeUdpHandle, datagrams: NativeDatagrams, spi?: number): number;
  /**
   * sendmmsg per 64 of `count` datagrams laid out as received ones (DATAGRAM_* of batch-layout.ts; segment size
   * and flags not read); returns how many were sent, as udpSendBatch does without an SPI. A datagram outside its
   * buffer is skipped.
   */
  udpSendIndexed(
    handle: NativeUdpHandle,
    buffers: readonly Uint8Array[],
    index: Uint32Array,
    addresses: readonly string[],
    count: number,
  ): number;
  /**
   * Sends the frames of a FrameBatch (buffers, index, count) to one destination, each prefixed
   * with `prefix`. With `vnetHdr` each
   * frame starts with a virtio_net_hdr: TCP super-frames are segmented, partial checksums
   * completed (with `remoteChecksum`, the receiver being a netctl VTEP, TCP ones are left partial
   * and marked with VXLAN RCO in `prefix`, a VXLAN header), and each frame's segments leave in one
   * UDP_SEGMENT send. `result` gets how many datagrams the frames made, how many the kernel
   * took, and what refused a sealed send (SEND_RESULT_*).
   * With `spi` (not 0) each datagram carries ESP instead: the outbound SA of the socket's ESP
   * table seals each segment's frame without `prefix` (checksums completed, no RCO), and the
   * sealed segments of a frame still leave in one UDP_SEGMENT send; with no such SA, or too few
   * sequence numbers left, nothing is sent and SEND_RESULT_REFUSED is espLayout.results' index of
   * unknownSpi or sequenceExhausted.
   */
  udpSendFrames(
    handle: NativeUdpHandle,
    prefix: Uint8Array,
    buffers: readonly Uint8Array[],
    index: Uint32Array,
    count: number,
    vnetHdr: boolean,
    address: string,
    port: number,
    remoteChecksum: boolean,
    result: Uint32Array,
    spi?: number,
  ): void;
  /**
   * Attaches an ESP table to the socket (replacing another) or, with null, detaches it. With a table, received
   * datagrams that are ESP by their first word are opened with it and delivered as plain VXLAN marked
   * DATAGRAM_SEALED, and sends may name an outbound SPI. The socket holds the table until detached or closed,
   * whichever of the two is closed first.
   */
  udpSetEspTable(handle: NativeUdpHandle, table: NativeEspTable | null): void;
  /**
   * What the receive path makes of one receive (a GRO run of `segmentSize`, 0 for one datagram) with `table`
   * attached, done in place in `data`: [offset, length, segmentSize, flags] per datagram it hands on, flat. For
   * tests that need runs GRO makes only by chance (plain and sealed mixed, a forged one among them).
   */
  udpOpenDatagrams(table: NativeEspTable, data: Uint8Array, segmentSize: number): number[];
  udpClose(handle: NativeUdpHandle): void;
  /**
   * The fast path (native/flow.c; src/sys/flow.ts says what each does): serve VNI `vni` between the
   * socket and a TAP with IFF_VNET_HDR (false, nothing done, for one without), fill and empty its
   * flow cache, and name where its counters go.
   */
  udpFlowAttach(handle: NativeUdpHandle, vni: number, tap: NativeTapHandle, header: Uint8Array, encrypted: boolean, maxFrame: number, slot: number): boolean;
  udpFlowDetach(handle: NativeUdpHandle, vni: number): void;
  udpFlowInstall(
    handle: NativeUdpHandle,
    vni: number,
    mac: number,
    address: string,
    port: number,
    frameLimit: number,
    spi: number,
    remoteChecksum: boolean,
    slot: number,
  ): boolean;
  udpFlowForget(handle: NativeUdpHandle, vni: number, mac?: number): void;
  udpFlowCounters(handle: NativeUdpHandle, counters: Float64Array): void;
  /** Keeps reply[replyStart, replyEnd) as the answer to queries whose bytes after the ID are those of query[start, end) (native/answers.c). */
  udpAnswersStore(handle: NativeUdpHandle, query: Uint8Array, start: number, end: number, reply: Uint8Array, replyStart: number, replyEnd: number): boolean;
  udpAnswersClear(handle: NativeUdpHandle): void;
  udpAnswersTaken(handle: NativeUdpHandle): number;
  /** A listening TCP socket (SO_REUSEADDR, non-blocking, close-on-exec) made in the namespace; returns its fd. */
  tcpListen(netnsPath: string, family: 4 | 6, address: string, port: number, backlog: number): number;

  /**
   * Cuts `frame` (a virtio_net_hdr, then an Ethernet frame) into the frames it stands for and
   * writes each to `out` as `prefix` then the frame, back to back: a TCP super-frame gives
   * gso_size segments with lengths, IDs, sequence numbers, flags and checksums fixed; any other
   * frame gives itself with its partial checksum completed, or with `remoteChecksum` (`prefix` is
   * a VXLAN header) TCP checksums left partial and marked with RCO. Null for a malformed frame;
   * RangeError when `out` is too small.
   */
  offloadSegment(frame: Uint8Array, prefix: Uint8Array, out: Uint8Array, remoteChecksum?: boolean): NativeSegments | null;
  /**
   * The writes a TAP with IFF_VNET_HDR would get for these plain frames, each with its
   * virtio_net_hdr: runs of consecutive segments of one TCP flow merged into one super-frame.
   */
  offloadCoalesce(frames: readonly Uint8Array[], checksum?: Uint8Array): Buffer[];
  /** Completes in place a checksum left partial (an RCO octet, see FrameBatch.checksum); false when it does not fit the frame. */
  offloadCompletePartial(frame: Uint8Array, checksum: number): boolean;

  /** True when AES-256-GCM gives a known answer (GCM test case 16) through the code SAs use; the result is kept. */
  espSelfTest(): boolean;
  /** A table of ESP SAs indexed by SPI. Throws code ESP_SELF_TEST_FAILED when AES-256-GCM does not work. */
  espTableCreate(): NativeEspTable;
  /** Wipes and frees every SA now; later calls with the handle throw ESP_TABLE_CLOSED. */
  espTableClose(table: NativeEspTable): void;
  /**
   * Adds an SA, its key schedule made once. Throws RangeError ESP_SPI_RESERVED (0–255, 0x08000000),
   * ESP_KEY_LENGTH (key 32 bytes, salt 4), Error ESP_SPI_IN_USE. `tag` comes back from espOpenBatch.
   * `firstSequence` (outbound, tests only) is the first datagram's sequence number, 1 by default.
   * `sender` (inbound) binds the SA to its peer's IPv4 address: datagrams from any other are dropped as wrongSender.
   */
  espSaAdd(
    table: NativeEspTable,
    direction: NativeEspDirection,
    spi: number,
    key: Uint8Array,
    salt: Uint8Array,
    tag: number,
    firstSequence?: bigint,
    sender?: string,
  ): void;
  /** Wipes the SA's key; false when there is none. */
  espSaRemove(table: NativeEspTable, direction: NativeEspDirection, spi: number): boolean;
  espSaCounters(table: NativeEspTable, direction: NativeEspDirection, spi: number): NativeEspCounters | null;
  /** Totals of every SA of that direction, removed ones included, with the drops of unknown SPIs and truncated datagrams. */
  espTableCounters(table: NativeEspTable, direction: NativeEspDirection): NativeEspCounters;
  /**
   * Seals buffers[i] in place with outbound SA `spi`: its plaintext is lengths[i] bytes at
   * espLayout.HEADER_LEN, the buffer's length is its room; lengths[i] becomes the datagram's
   * length, results[i] an index into espLayout.results. Returns how many were sealed; throws
   * ESP_UNKNOWN_SPI when there is no such SA.
   */
  espSealBatch(
    table: NativeEspTable,
    spi: number,
    buffers: readonly Uint8Array[],
    lengths: Uint32Array,
    results: Uint8Array,
    count: number,
  ): number;
  /**
   * Opens buffers[i] (lengths[i] bytes) in place; when results[i] is 0 (ok), the frame is lengths[i]
   * bytes at espLayout.HEADER_LEN and tags[i] the SA's tag. `source`: the IPv4 address they came
   * from (none: unknown, refused by SAs bound to a sender). Returns how many were opened.
   */
  espOpenBatch(
    table: NativeEspTable,
    buffers: readonly Uint8Array[],
    lengths: Uint32Array,
    results: Uint8Array,
    tags: Uint32Array,
    count: number,
    source?: string,
  ): number;
  /** The constants of native/esp.h, by their names there without ESP_, and the result names by code. */
  readonly espLayout: {
    readonly KEY_LEN: number;
    readonly SALT_LEN: number;
    readonly HEADER_LEN: number;
    readonly ICV_LEN: number;
    readonly TRAILER_LEN: number;
    readonly MIN_LEN: number;
    readonly MAX_OVERHEAD: number;
    readonly NEXT_HEADER_ETHERNET: number;
    readonly REPLAY_WINDOW: number;
    readonly results: readonly string[];
  };

  /** The constants of native/batch_layout.h, by the names src/sys/batch-layout.ts gives them. */
  readonly batchLayout: Readonly<Record<string, number>>;

  /** getrlimit(RLIMIT_NOFILE); an unlimited value is Infinity. */
  fileLimit(): NativeFileLimit;
  /** Sets the soft RLIMIT_NOFILE to the hard one; returns the limits now in force. */
  raiseFileLimit(): NativeFileLimit;

  /** flock(2); returns false when `nonBlocking` is set and the lock is held elsewhere. */
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): boolean;
  funlock(fd: number): void;
}

/** The open-file limits of the process (RLIMIT_NOFILE). */
export interface NativeFileLimit {
  soft: number;
  hard: number;
}

/** Error thrown by the addon for a failed system call. */
export interface NativeErrnoError extends Error {
  code: string;
  errno: number;
}

export function isNativeErrnoError(err: unknown): err is NativeErrnoError {
  return err instanceof Error && typeof (err as Partial<NativeErrnoError>).errno === 'number';
}

const require = createRequire(import.meta.url);

/**
 * Where the addon may be, first match wins (node-gyp-build's order): the
 * one node-gyp built here, then the one the package ships for hosts
 * without a compiler (`npm pack` copies it there).
 */
const ADDON_CANDIDATES = [
  '../../build/Release/netctl_native.node',
  `../../prebuilds/${process.platform}-${process.arch}/netctl_native.node`,
] as const;

let loaded: NativeAddon | undefined;

/**
 * The addon, loaded on the first call: importing netctl (the API client, the
 * codecs, the in-memory doubles) must work where the addon was never built.
 */
export function addon(): NativeAddon {
  loaded ??= loadAddon();
  return loaded;
}

function loadAddon(): NativeAddon {
  for (const candidate of ADDON_CANDIDATES) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    // A file that exists but does not load is an error worth seeing, not a reason to try the next.
    if (existsSync(path)) return require(path) as NativeAddon;
  }
  const looked = ADDON_CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).join(', ');
  throw new Error(
    `netctl's native addon is missing (looked for ${looked}); build it with \`npm run build:addon\` ` +
      '(needs a C compiler, make and python3: on Debian `apt-get install -y build-essential python3`)',
  );
}

/**
 * The addon's per-call callback for a batch it refills in place (a TAP's
 * FrameBatch, a socket's ReceivedDatagrams): sets the count, then hands the batch on.
 */
export function refilled<T extends { count: number }>(batch: T, onBatch: (batch: T) => void): (count: number) => void {
  return (count) => {
    batch.count = count;
    onBatch(batch);
  };
}
