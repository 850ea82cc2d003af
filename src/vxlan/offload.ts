/**
 * The VTEP's side of segmentation offload: frame lists that need no object
 * per frame, and cutting a frame read from a TAP with IFF_VNET_HDR into the
 * plain frames it stands for (the native addon does the cutting, in C).
 */
import { addon } from '../sys/addon.js';
import { CHECKSUM_UNVERIFIED } from '../sys/tap.js';
import type { FrameBatch } from '../sys/tap.js';

export { CHECKSUM_PARTIAL_MIN, CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED, VNET_HDR_LEN } from '../sys/tap.js';
export type { FrameBatch } from '../sys/tap.js';

/** Never cut a frame into more than this many bytes (about 16 MB would need a gso_size of a few bytes). */
const MAX_SEGMENTED_LENGTH = 1 << 24;
const NO_PREFIX = new Uint8Array(0);

/**
 * A growable FrameBatch that is cleared and refilled batch after batch:
 * pushing a frame stores four numbers, so a batch costs no allocation once
 * the list has grown to its working size.
 */
export class FrameList implements FrameBatch {
  readonly buffers: Uint8Array[] = [];
  index = new Uint32Array(3 * 64);
  checksum = new Uint8Array(64);
  count = 0;

  /** Adds `length` bytes at `offset` of `buffer`, with a `FrameBatch.checksum` value. */
  push(buffer: Uint8Array, offset: number, length: number, checksum = CHECKSUM_UNVERIFIED): void {
    const buffers = this.buffers;
    let which = buffers.length - 1;
    if (which < 0 || buffers[which] !== buffer) {
      buffers.push(buffer);
      which++;
    }
    let index = this.index;
    const at = 3 * this.count;
    if (at + 3 > index.length) {
      const grown = new Uint32Array(index.length * 2);
      grown.set(index);
      this.index = index = grown;
      const states = new Uint8Array(2 * this.checksum.length);
      states.set(this.checksum);
      this.checksum = states;
    }
    this.checksum[this.count] = checksum;
    index[at] = which;
    index[at + 1] = offset;
    index[at + 2] = length;
    this.count++;
  }

  /** Forgets every frame (and lets their buffers be collected). */
  clear(): void {
    this.buffers.length = 0;
    this.count = 0;
  }

  /** Frame i as a view (allocates; for tests and slow paths). */
  frame(i: number): Uint8Array {
    return frameOf(this, i);
  }
}

/** Frame i of a batch as a view (allocates; for tests and slow paths). */
export function frameOf(batch: FrameBatch, i: number): Uint8Array {
  const at = 3 * i;
  const buffer = batch.buffers[batch.index[at]!]!;
  const offset = batch.index[at + 1]!;
  return buffer.subarray(offset, offset + batch.index[at + 2]!);
}

/** Every frame of a batch as a view (allocates; for tests and slow paths). */
export function framesOf(batch: FrameBatch): Uint8Array[] {
  return Array.from({ length: batch.count }, (_, i) => frameOf(batch, i));
}

/**
 * Cuts `frame` (a virtio_net_hdr, then an Ethernet frame) into the frames it
 * stands for, each with `prefix` in front: a TCP super-frame into gso_size
 * segments with headers and checksums fixed, any other frame into itself
 * with its partial checksum completed; with `remoteChecksum` (`prefix` is a
 * VXLAN header) TCP checksums are left partial and marked with RCO instead.
 * Undefined when the virtio header does not match the frame. Allocates: for
 * the paths that are not per packet.
 */
export function segmentFrame(frame: Uint8Array, prefix: Uint8Array = NO_PREFIX, remoteChecksum = false): Uint8Array[] | undefined {
  for (let size = 2 * (frame.length + prefix.length) + 8192; size <= MAX_SEGMENTED_LENGTH; size *= 4) {
    const out = new Uint8Array(size);
    let segments: ReturnType<typeof addon.offloadSegment>;
    try {
      segments = addon.offloadSegment(frame, prefix, out, remoteChecksum);
    } catch (err) {
      if (err instanceof RangeError) continue;
      throw err;
    }
    if (segments === null) return undefined;
    const frames = new Array<Uint8Array>(segments.count);
    for (let i = 0, offset = 0; i < segments.count; i++, offset += segments.segmentLength) {
      frames[i] = out.subarray(offset, Math.min(offset + segments.segmentLength, segments.length));
    }
    return frames;
  }
  return undefined;
}

/**
 * The frames a TAP with IFF_VNET_HDR would be written for these plain
 * frames, each with its virtio_net_hdr: consecutive segments of one TCP flow
 * merged into one super-frame (as `TapDevice.writeFrames` does);
 * `checksum` as in `FrameBatch`.
 */
/**
 * Completes in place the transport checksum of a frame that a sender left
 * partial (`checksum` is its RCO octet, see `FrameBatch.checksum`), as the
 * kernel behind a TAP does; false, leaving it alone, when it does not fit the frame.
 */
export function completePartialChecksum(frame: Uint8Array, checksum: number): boolean {
  return addon.offloadCompletePartial(frame, checksum);
}

export function coalesceFrames(frames: readonly Uint8Array[], checksum?: Uint8Array): Buffer[] {
  return addon.offloadCoalesce(frames, checksum);
}
