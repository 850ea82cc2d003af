/**
 * TAP devices with batched I/O through the native addon: the fd is watched
 * with uv_poll, each wake-up reads up to 64 frames and delivers them in one
 * call. Frames are whole Ethernet frames; with `vnetHdr` each one starts
 * with a 10-byte struct virtio_net_hdr (reads and writes alike).
 */
import { InvalidArgument, NetctlError } from '../cnm/errors.js';
import { addon, isNativeErrnoError } from './addon.js';
import type { NativeTapHandle } from './addon.js';
import { withNetns } from './netns.js';

/** TUNSETOFFLOAD bits (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

export interface TapOptions {
  /** Namespace to create the device in (default: the caller's current one). */
  netnsPath?: string;
  /** IFF_VNET_HDR: frames carry a virtio_net_hdr, needed for offloads. */
  vnetHdr?: boolean;
  /** TUNSETOFFLOAD flags (TUN_F_*); requires `vnetHdr` for anything but 0. */
  offloads?: number;
}

export class TapDevice {
  #handle: NativeTapHandle | undefined;

  constructor(
    readonly name: string,
    readonly fd: number,
  ) {
    this.#handle = addon.tapHandle(fd);
  }

  /**
   * Starts delivering received frames, up to 64 per call. Calling it again
   * replaces the callback. An exception thrown by `onBatch` is reported as an
   * uncaught exception. Each frame is a fresh Buffer the callee may keep.
   * Delivery ends by itself if the device disappears (its namespace deleted).
   * While started, the device keeps the event loop alive.
   */
  start(onBatch: (frames: Buffer[]) => void): void {
    addon.tapStart(this.#open(), onBatch);
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
      return addon.tapWriteBatch(handle, frames);
    } catch (err) {
      throw new NetctlError('Internal', `write to TAP ${this.name}: ${String(err)}`, { cause: err });
    }
  }

  /** Stops delivering frames; the kernel keeps queueing them until its queue is full. */
  stop(): void {
    addon.tapStop(this.#open());
  }

  /** Stops and closes the fd, which removes a non-persistent TAP. Every later call throws. */
  close(): void {
    addon.tapClose(this.#open());
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
  const open = (): { fd: number; name: string } => addon.tapOpen(name, opts.vnetHdr ?? false, opts.offloads ?? -1);
  let opened: { fd: number; name: string };
  try {
    opened = opts.netnsPath === undefined ? open() : withNetns(opts.netnsPath, open);
  } catch (err) {
    if (err instanceof NetctlError) throw err;
    const code = isNativeErrnoError(err) ? err.code : undefined;
    if (code === 'EINVAL') throw new InvalidArgument(`cannot open TAP ${name}: ${String(err)}`, { cause: err });
    throw new NetctlError('Internal', `cannot open TAP ${name}: ${String(err)}`, { cause: err });
  }
  return new TapDevice(opened.name, opened.fd);
}
