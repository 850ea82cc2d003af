/** UDP header (RFC 768). Offsets are relative to the start of the header. */
import { readU16, requireBytes, requireRoom, writeU16 } from './bytes.js';
import { checksumSkippingField, pseudoHeaderSumIPv4 } from './checksum.js';
import { WireError } from './error.js';
import { IPPROTO_UDP } from './ipv4.js';

export const UDP_HEADER_LEN = 8;

const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
/** Where the checksum field sits in the UDP header. */
export const UDP_CHECKSUM_OFFSET = 6;
const CHECKSUM = UDP_CHECKSUM_OFFSET;

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Header plus payload, in bytes. */
  length: number;
  /** 0 means the sender computed none (IPv4 only). */
  checksum: number;
}

/* Accessors: the caller has checked that the 8-byte header is there. */

export function udpSrcPort(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + SRC_PORT);
}

export function udpDstPort(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + DST_PORT);
}

export function udpLength(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + LENGTH);
}

export function udpChecksum(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + CHECKSUM);
}

/** Decodes the header; the checksum is returned, not verified (that needs the IP addresses). */
export function decodeUdp(buf: Uint8Array, offset = 0): UdpRepr {
  requireBytes(buf, offset, UDP_HEADER_LEN, 'UDP header (RFC 768)');
  const length = udpLength(buf, offset);
  if (length < UDP_HEADER_LEN) {
    throw new WireError(offset + LENGTH, `UDP length ${length} shorter than the 8-byte header (RFC 768)`);
  }
  if (length > buf.length - offset) {
    throw new WireError(
      offset + LENGTH,
      `UDP length ${length} beyond the ${buf.length - offset} bytes at offset ${offset} (RFC 768)`,
    );
  }
  return {
    srcPort: udpSrcPort(buf, offset),
    dstPort: udpDstPort(buf, offset),
    length,
    checksum: udpChecksum(buf, offset),
  };
}

/** Writes the header with `repr.checksum` as given and returns 8. */
export function encodeUdp(repr: UdpRepr, buf: Uint8Array, offset = 0): number {
  requireRoom(buf, offset, UDP_HEADER_LEN, 'UDP header');
  writeU16(repr.srcPort, buf, offset + SRC_PORT);
  writeU16(repr.dstPort, buf, offset + DST_PORT);
  writeU16(repr.length, buf, offset + LENGTH);
  writeU16(repr.checksum, buf, offset + CHECKSUM);
  return UDP_HEADER_LEN;
}

/**
 * The checksum the datagram of `length` bytes at offset should carry over
 * IPv4, ignoring its current checksum field. A computed 0 is returned as
 * 0xffff, since 0 on the wire means "no checksum" (RFC 768).
 */
export function udpChecksumIPv4(buf: Uint8Array, offset: number, length: number, src: number, dst: number): number {
  const pseudo = pseudoHeaderSumIPv4(src, dst, IPPROTO_UDP, length);
  const checksum = checksumSkippingField(buf, offset, length, CHECKSUM, pseudo);
  return checksum === 0 ? 0xffff : checksum;
}
