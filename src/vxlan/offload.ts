/**
 * The VTEP's side of segmentation offload: frame lists that need no object
 * per frame, and (from src/sys/offload.ts, which runs them in the addon)
 * cutting a frame read from a TAP with IFF_VNET_HDR into the plain frames
 * it stands for.
 */
import { FRAME_BUFFER, FRAME_LENGTH, FRAME_OFFSET, FRAME_STRIDE } from '../sys/batch-layout.js';
import { CHECKSUM_UNVERIFIED } from '../sys/tap.js';
import type { FrameBatch } from '../sys/tap.js';

export { CHECKSUM_PARTIAL_MIN, CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED, VNET_HDR_LEN } from '../sys/tap.js';
export type { FrameBatch } from '../sys/tap.js';
export { coalesceFrames, completePartialChecksum, segmentFrame } from '../sys/offload.js';

/** Frames a new list has room for before it first grows. */
const INITIAL_FRAMES = 64;

/**
 * A growable FrameBatch that is cleared and refilled batch after batch:
 * pushing a frame stores four numbers, so a batch costs no allocation once
 * the list has grown to its working size.
 */
export class FrameList implements FrameBatch {
  readonly buffers: Uint8Array[] = [];
  index = new Uint32Array(FRAME_STRIDE * INITIAL_FRAMES);
  checksum = new Uint8Array(INITIAL_FRAMES);
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
    const at = FRAME_STRIDE * this.count;
    if (at + FRAME_STRIDE > index.length) {
      const grown = new Uint32Array(index.length * 2);
      grown.set(index);
      this.index = index = grown;
      const states = new Uint8Array(2 * this.checksum.length);
      states.set(this.checksum);
      this.checksum = states;
    }
    this.checksum[this.count] = checksum;
    index[at + FRAME_BUFFER] = which;
    index[at + FRAME_OFFSET] = offset;
    index[at + FRAME_LENGTH] = length;
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
  const at = FRAME_STRIDE * i;
  const buffer = batch.buffers[batch.index[at + FRAME_BUFFER]!]!;
  const offset = batch.index[at + FRAME_OFFSET]!;
  return buffer.subarray(offset, offset + batch.index[at + FRAME_LENGTH]!);
}

/** Every frame of a batch as a view (allocates; for tests and slow paths). */
export function framesOf(batch: FrameBatch): Uint8Array[] {
  return Array.from({ length: batch.count }, (_, i) => frameOf(batch, i));
}
