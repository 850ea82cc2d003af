/**
 * TAP devices with batched I/O through the native addon: the fd is watched
 * with uv_poll, each wake-up reads up to 64 frames and delivers them in one
 * call, as a FrameBatch that is the same object every time (no object per frame). Frames are whole Ethernet frames; with `vnetHdr` each one read, or
 * given to `writeBatch`, starts with a 10-byte struct virtio_net_hdr
 * (`writeFrames` takes plain frames and adds the header itself).
 */
import { InvalidArgument, NetctlError } from '../errors.js';
import { addon, isNativeErrnoError, refilled } from './addon.js';
import type { NativeTapHandle } from './addon.js';
import { FRAME_STRIDE, TAP_BATCH } from './batch-layout.js';
import { withNetns } from './netns.js';

/** TUNSETOFFLOAD bits (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** Length of struct virtio_net_hdr as a TAP with IFF_VNET_HDR uses it (no num_buffers). */
export const VNET_HDR_LEN = 10;

export { CHECKSUM_PARTIAL_MIN, CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED, TAP_BATCH } from './batch-layout.js';

/**
 * Frames as views without one object per frame, for i < `count`: with
 * `at = FRAME_STRIDE * i`, frame i is `index[at + FRAME_LENGTH]` bytes at
 * offset `index[at + FRAME_OFFSET]` of `buffers[index[at + FRAME_BUFFER]]`
 * (src/sys/batch-layout.ts).
 */
export interface FrameBatch {
  readonly buffers: readonly Uint8Array[];
  readonly index: Uint32Array;
  readonly count: number;
  /**
   * How far frame i's transport checksum can be trusted (default CHECKSUM_UNVERIFIED):
   * CHECKSUM_TRUSTED when a sender trusted to (a netctl VTEP) computed it and
   * it reached us intact (the underlay's UDP checksum), so merging need not
   * verify it again; the header's RCO octet (>= CHECKSUM_PARTIAL_MIN) when
   * the sender left the transport checksum partial (VXLAN RCO): the field
   * holds the pseudo-header sum, and the kernel (or the port) completes it.
   */
  readonly checksum?: Uint8Array;
}

export interface TapOptions {
  /** Namespace to create the device in (default: the caller's current one). */
  netnsPath?: string;
  /** IFF_VNET_HDR: frames carry a virtio_net_hdr, needed for offloads. */
  vnetHdr?: boolean;
  /** TUNSETOFFLOAD flags (TUN_F_*); requires `vnetHdr` for anything but 0. */
  offloads?: number;
  /**
   * Frames delivered by `start` are in the device's own read memory, valid
   * only until the callback returns (no copy and no allocation per batch),
   * rather than in a fresh Buffer per batch.
   */
  borrowBuffers?: boolean;
}

export class TapDevice {
  #handle: NativeTapHandle | undefined;
  /** What `start` hands out: refilled by the addon on every wake-up. */
  readonly #received: { buffers: Uint8Array[]; index: Uint32Array; count: number } = {
    buffers: [],
    index: new Uint32Array(FRAME_STRIDE * TAP_BATCH),
    count: 0,
  };

  /**
   * `vnetHdr` says the device was opened with IFF_VNET_HDR: frames read
   * then start with a virtio_net_hdr (and are up to 64 KB TCP super-frames
   * when TSO offloads are on).
   */
  constructor(
    readonly name: string,
    readonly fd: number,
    readonly vnetHdr = false,
    borrowBuffers = false,
  ) {
    this.#handle = addon().tapHandle(fd, vnetHdr, borrowBuffers);
  }

  /**
   * Starts delivering received frames, up to 64 per call, as one FrameBatch
   * object that is refilled for every call (keep the frames, not the batch).
   * Calling it again replaces the callback. An exception thrown by `onBatch`
   * is reported as an uncaught exception. The frames' memory is a fresh
   * Buffer per call the callee may keep, or, when the device was opened with
   * `borrowBuffers`, the device's read memory, valid only during the call.
   * Delivery ends by itself if the device disappears (its namespace deleted).
   * While started, the device keeps the event loop alive.
   */
  start(onBatch: (frames: FrameBatch) => void): void {
    const received = this.#received;
    addon().tapStart(this.#open(), refilled(received, onBatch), received.index, received.buffers);
  }

  /**
   * Writes frames without blocking; returns how many were written. Fewer than
   * given means the device's queue is full (the rest were not sent). A frame
   * the kernel rejects, or a device that is gone, throws; frames before it
   * were written.
   */
  writeBatch(frames: readonly Uint8Array[]): number {
    const handle = this.#open();
    try {
      return addon().tapWriteBatch(handle, frames);
    } catch (err) {
      throw new NetctlError('Internal', `write to TAP ${this.name}: ${String(err)}`, { cause: err });
    }
  }

  /**
   * Writes plain Ethernet frames without blocking; returns how many were
   * written (fewer: the queue is full, or the kernel rejected some). With
   * `vnetHdr` each write gets a virtio_net_hdr, and consecutive segments of
   * one TCP flow are merged into one super-frame (checksum left to the
   * kernel) so the stack above sees one large segment. A device that is gone throws.
   */
  writeFrames(batch: FrameBatch): number {
    const handle = this.#open();
    try {
      return addon().tapWriteFrames(handle, batch.buffers, batch.index, batch.count, batch.checksum);
    } catch (err) {
      throw new NetctlError('Internal', `write to TAP ${this.name}: ${String(err)}`, { cause: err });
    }
  }

  /** The addon's handle, for the underlay's fast path (flow.ts); throws once closed. */
  get native(): NativeTapHandle {
    return this.#open();
  }

  /** Stops delivering frames; the kernel keeps queueing them until its queue is full. */
  stop(): void {
    addon().tapStop(this.#open());
  }

  /** Stops and closes the fd, which removes a non-persistent TAP. Every later call throws. */
  close(): void {
    addon().tapClose(this.#open());
    this.#handle = undefined;
  }

  #open(): NativeTapHandle {
    if (this.#handle === undefined) throw new NetctlError('Internal', `TAP device ${this.name} is closed`);
    return this.#handle;
  }
}

/** Creates (or attaches to) TAP device `name`, IFF_TAP|IFF_NO_PI, optionally with IFF_VNET_HDR and offloads. */
export function openTap(name: string, opts: TapOptions = {}): TapDevice {
  if (name === '' || Buffer.byteLength(name) > 15) throw new InvalidArgument(`invalid TAP name "${name}"`);
  const open = (): { fd: number; name: string } => addon().tapOpen(name, opts.vnetHdr ?? false, opts.offloads ?? -1);
  let opened: { fd: number; name: string };
  try {
    opened = opts.netnsPath === undefined ? open() : withNetns(opts.netnsPath, open);
  } catch (err) {
    if (err instanceof NetctlError) throw err;
    const code = isNativeErrnoError(err) ? err.code : undefined;
    if (code === 'EINVAL') throw new InvalidArgument(`cannot open TAP ${name}: ${String(err)}`, { cause: err });
    throw new NetctlError('Internal', `cannot open TAP ${name}: ${String(err)}`, { cause: err });
  }
  return new TapDevice(opened.name, opened.fd, opts.vnetHdr ?? false, opts.borrowBuffers ?? false);
}
