/** IPv4 header (RFC 791 §3.1). Offsets are relative to the start of the header. */
import { readU16, requireBytes, requireRoom, writeU16 } from './bytes.js';
import { internetChecksum } from './checksum.js';
import { WireError } from './error.js';
import { readIPv4, writeIPv4 } from './ipv4addr.js';

export const IPV4_MIN_HEADER_LEN = 20;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

const VERSION_IHL = 0;
const DSCP_ECN = 1;
const TOTAL_LENGTH = 2;
const IDENTIFICATION = 4;
const FLAGS_FRAGMENT = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;
const DONT_FRAGMENT = 0x4000;
const MORE_FRAGMENTS = 0x2000;

export interface IPv4Repr {
  dscp: number;
  ecn: number;
  /** Header plus payload, in bytes. */
  totalLength: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** The field as sent: in units of 8 bytes. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  src: number;
  dst: number;
  /** In bytes; 20 unless the packet carries options. */
  headerLength: number;
}

/* Accessors: the caller has checked the header (decodeIPv4, or its own length checks). */

export function ipv4HeaderLength(buf: Uint8Array, offset: number): number {
  return (buf[offset + VERSION_IHL]! & 0x0f) * 4;
}

export function ipv4TotalLength(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + TOTAL_LENGTH);
}

export function ipv4Protocol(buf: Uint8Array, offset: number): number {
  return buf[offset + PROTOCOL]!;
}

export function ipv4Src(buf: Uint8Array, offset: number): number {
  return readIPv4(buf, offset + SRC);
}

export function ipv4Dst(buf: Uint8Array, offset: number): number {
  return readIPv4(buf, offset + DST);
}

/**
 * Decodes and validates the header at offset. Bytes after `totalLength` (such
 * as Ethernet padding) are allowed; options are skipped, not returned.
 */
export function decodeIPv4(
  buf: Uint8Array,
  offset = 0,
  { verifyChecksum = true }: { verifyChecksum?: boolean } = {},
): IPv4Repr {
  requireBytes(buf, offset, IPV4_MIN_HEADER_LEN, 'IPv4 header (RFC 791 §3.1)');
  const version = buf[offset + VERSION_IHL]! >>> 4;
  if (version !== 4) throw new WireError(offset, `IP version ${version} in an IPv4 header, need 4 (RFC 791 §3.1)`);
  const headerLength = ipv4HeaderLength(buf, offset);
  if (headerLength < IPV4_MIN_HEADER_LEN) {
    throw new WireError(offset, `IPv4 IHL ${headerLength / 4} below the minimum of 5 (RFC 791 §3.1)`);
  }
  requireBytes(buf, offset, headerLength, 'IPv4 header with options (RFC 791 §3.1)');
  const totalLength = ipv4TotalLength(buf, offset);
  if (totalLength < headerLength) {
    throw new WireError(
      offset + TOTAL_LENGTH,
      `IPv4 total length ${totalLength} shorter than its ${headerLength}-byte header (RFC 791 §3.1)`,
    );
  }
  if (totalLength > buf.length - offset) {
    throw new WireError(
      offset + TOTAL_LENGTH,
      `IPv4 total length ${totalLength} beyond the ${buf.length - offset} bytes at offset ${offset} (RFC 791 §3.1)`,
    );
  }
  if (verifyChecksum && internetChecksum(buf, offset, headerLength) !== 0) {
    throw new WireError(
      offset + CHECKSUM,
      `IPv4 header checksum 0x${readU16(buf, offset + CHECKSUM).toString(16).padStart(4, '0')} does not match the header (RFC 791 §3.1)`,
    );
  }
  const flagsFragment = readU16(buf, offset + FLAGS_FRAGMENT);
  return {
    dscp: buf[offset + DSCP_ECN]! >>> 2,
    ecn: buf[offset + DSCP_ECN]! & 0x03,
    totalLength,
    identification: readU16(buf, offset + IDENTIFICATION),
    dontFragment: (flagsFragment & DONT_FRAGMENT) !== 0,
    moreFragments: (flagsFragment & MORE_FRAGMENTS) !== 0,
    fragmentOffset: flagsFragment & 0x1fff,
    ttl: buf[offset + TTL]!,
    protocol: buf[offset + PROTOCOL]!,
    src: ipv4Src(buf, offset),
    dst: ipv4Dst(buf, offset),
    headerLength,
  };
}

/**
 * Writes a 20-byte header with its checksum and returns 20. Options are not
 * supported: a repr with another headerLength is refused rather than emitted
 * with a header length that does not match its bytes.
 */
export function encodeIPv4(repr: IPv4Repr, buf: Uint8Array, offset = 0): number {
  if (repr.headerLength !== IPV4_MIN_HEADER_LEN) {
    throw new RangeError(`IPv4 options are not supported: headerLength ${repr.headerLength}, need 20`);
  }
  requireRoom(buf, offset, IPV4_MIN_HEADER_LEN, 'IPv4 header');
  buf[offset + VERSION_IHL] = 0x45;
  buf[offset + DSCP_ECN] = (repr.dscp << 2) | (repr.ecn & 0x03);
  writeU16(repr.totalLength, buf, offset + TOTAL_LENGTH);
  writeU16(repr.identification, buf, offset + IDENTIFICATION);
  const flags = (repr.dontFragment ? DONT_FRAGMENT : 0) | (repr.moreFragments ? MORE_FRAGMENTS : 0);
  writeU16(flags | (repr.fragmentOffset & 0x1fff), buf, offset + FLAGS_FRAGMENT);
  buf[offset + TTL] = repr.ttl;
  buf[offset + PROTOCOL] = repr.protocol;
  writeU16(0, buf, offset + CHECKSUM);
  writeIPv4(repr.src, buf, offset + SRC);
  writeIPv4(repr.dst, buf, offset + DST);
  writeU16(internetChecksum(buf, offset, IPV4_MIN_HEADER_LEN), buf, offset + CHECKSUM);
  return IPV4_MIN_HEADER_LEN;
}
