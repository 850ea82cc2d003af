/**
 * Big-endian field access and bounds checks shared by the codecs. The readers
 * and writers do no bounds checks: each codec checks a length once, up front.
 */
import { WireError } from './error.js';

export function readU16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

export function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

/** Uint8Array stores keep the low 8 bits, so no masking is needed. */
export function writeU16(value: number, buf: Uint8Array, offset: number): void {
  buf[offset] = value >>> 8;
  buf[offset + 1] = value;
}

export function writeU32(value: number, buf: Uint8Array, offset: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = value >>> 16;
  buf[offset + 2] = value >>> 8;
  buf[offset + 3] = value;
}

function checkOffset(buf: Uint8Array, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset > buf.length) {
    throw new RangeError(`offset ${offset} outside a buffer of ${buf.length} bytes`);
  }
}

/**
 * Throws WireError unless `need` bytes are readable at offset; `what` names the
 * structure and its RFC, e.g. 'VXLAN header (RFC 7348 §5)'.
 */
export function requireBytes(buf: Uint8Array, offset: number, need: number, what: string): void {
  checkOffset(buf, offset);
  const available = buf.length - offset;
  if (available < need) {
    throw new WireError(offset, `truncated ${what}: ${available} bytes at offset ${offset}, need ${need}`);
  }
}

/**
 * Encoders call this before writing: a typed array silently drops writes past
 * its end, which would emit a short packet instead of failing.
 */
export function requireRoom(buf: Uint8Array, offset: number, need: number, what: string): void {
  checkOffset(buf, offset);
  if (buf.length - offset < need) {
    throw new RangeError(`${what} needs ${need} bytes at offset ${offset}, buffer has ${buf.length - offset}`);
  }
}
