/**
 * Segmentation and receive offload run by the native addon on buffers in
 * memory: cutting a frame read from a TAP with IFF_VNET_HDR into the plain
 * frames it stands for, merging plain frames as a TAP write would, and
 * completing a checksum a sender left partial. The data path does the same
 * in C inside its batched sends and writes; these are for the paths that
 * are not per packet, and for tests.
 */
import { type NativeAddon, addon } from './addon.js';

/** Never cut a frame into more than this many bytes (about 16 MB would need a gso_size of a few bytes). */
const MAX_SEGMENTED_LENGTH = 1 << 24;
const NO_PREFIX = new Uint8Array(0);

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
    let segments: ReturnType<NativeAddon['offloadSegment']>;
    try {
      segments = addon().offloadSegment(frame, prefix, out, remoteChecksum);
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
 * Completes in place the transport checksum of a frame that a sender left
 * partial (`checksum` is its RCO octet, see `FrameBatch.checksum`), as the
 * kernel behind a TAP does; false, leaving it alone, when it does not fit the frame.
 */
export function completePartialChecksum(frame: Uint8Array, checksum: number): boolean {
  return addon().offloadCompletePartial(frame, checksum);
}

/**
 * The frames a TAP with IFF_VNET_HDR would be written for these plain
 * frames, each with its virtio_net_hdr: consecutive segments of one TCP flow
 * merged into one super-frame (as `TapDevice.writeFrames` does);
 * `checksum` as in `FrameBatch`.
 */
export function coalesceFrames(frames: readonly Uint8Array[], checksum?: Uint8Array): Buffer[] {
  return addon().offloadCoalesce(frames, checksum);
}
