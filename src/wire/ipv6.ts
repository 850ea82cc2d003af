/** IPv6 fixed header (RFC 8200 §3) and address text (RFC 4291 §2.2, RFC 5952). */
import { readU16, requireBytes, requireRoom, writeU16 } from './bytes.js';
import { WireError } from './error.js';
import { formatIPv4, parseIPv4 } from './ipv4addr.js';

export const IPV6_HEADER_LEN = 40;
/** Where the addresses sit, relative to the header: for checksums and lookups without a copy. */
export const IPV6_SRC_OFFSET = 8;
export const IPV6_DST_OFFSET = 24;

const PAYLOAD_LENGTH = 4;
const NEXT_HEADER = 6;
const HOP_LIMIT = 7;

export interface IPv6Repr {
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  /** 16 bytes, a copy. */
  src: Uint8Array;
  /** 16 bytes, a copy. */
  dst: Uint8Array;
}

/* Accessors: the caller has checked that the 40-byte header is there. */

export function ipv6PayloadLength(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + PAYLOAD_LENGTH);
}

export function ipv6NextHeader(buf: Uint8Array, offset: number): number {
  return buf[offset + NEXT_HEADER]!;
}

export function ipv6HopLimit(buf: Uint8Array, offset: number): number {
  return buf[offset + HOP_LIMIT]!;
}

/** Decodes the fixed header; bytes after the payload (Ethernet padding) are allowed. */
export function decodeIPv6(buf: Uint8Array, offset = 0): IPv6Repr {
  requireBytes(buf, offset, IPV6_HEADER_LEN, 'IPv6 header (RFC 8200 §3)');
  const version = buf[offset]! >>> 4;
  if (version !== 6) throw new WireError(offset, `IP version ${version} in an IPv6 header, need 6 (RFC 8200 §3)`);
  const payloadLength = ipv6PayloadLength(buf, offset);
  const available = buf.length - offset - IPV6_HEADER_LEN;
  if (payloadLength > available) {
    throw new WireError(
      offset + PAYLOAD_LENGTH,
      `IPv6 payload length ${payloadLength} beyond the ${available} bytes after the header at offset ${offset} (RFC 8200 §3)`,
    );
  }
  return {
    trafficClass: ((buf[offset]! & 0x0f) << 4) | (buf[offset + 1]! >>> 4),
    flowLabel: ((buf[offset + 1]! & 0x0f) << 16) | readU16(buf, offset + 2),
    payloadLength,
    nextHeader: ipv6NextHeader(buf, offset),
    hopLimit: ipv6HopLimit(buf, offset),
    src: buf.slice(offset + IPV6_SRC_OFFSET, offset + IPV6_SRC_OFFSET + 16),
    dst: buf.slice(offset + IPV6_DST_OFFSET, offset + IPV6_DST_OFFSET + 16),
  };
}

/** Writes the 40-byte header at offset and returns 40. */
export function encodeIPv6(repr: IPv6Repr, buf: Uint8Array, offset = 0): number {
  if (repr.src.length !== 16 || repr.dst.length !== 16) {
    throw new RangeError(`IPv6 addresses need 16 bytes, got ${repr.src.length} and ${repr.dst.length}`);
  }
  requireRoom(buf, offset, IPV6_HEADER_LEN, 'IPv6 header');
  buf[offset] = 0x60 | ((repr.trafficClass >>> 4) & 0x0f);
  buf[offset + 1] = ((repr.trafficClass & 0x0f) << 4) | ((repr.flowLabel >>> 16) & 0x0f);
  writeU16(repr.flowLabel & 0xffff, buf, offset + 2);
  writeU16(repr.payloadLength, buf, offset + PAYLOAD_LENGTH);
  buf[offset + NEXT_HEADER] = repr.nextHeader;
  buf[offset + HOP_LIMIT] = repr.hopLimit;
  buf.set(repr.src, offset + IPV6_SRC_OFFSET);
  buf.set(repr.dst, offset + IPV6_DST_OFFSET);
  return IPV6_HEADER_LEN;
}

const HEX_GROUP = /^[0-9a-f]{1,4}$/i;

/** The 16-bit groups of one side of `::`, or null if malformed; a trailing dotted quad counts as two. */
function parseGroups(part: string, allowDottedQuad: boolean): number[] | null {
  if (part === '') return [];
  const pieces = part.split(':');
  const groups: number[] = [];
  for (const [index, piece] of pieces.entries()) {
    if (allowDottedQuad && index === pieces.length - 1 && piece.includes('.')) {
      let v4: number;
      try {
        v4 = parseIPv4(piece);
      } catch {
        return null;
      }
      groups.push(v4 >>> 16, v4 & 0xffff);
    } else if (HEX_GROUP.test(piece)) {
      groups.push(Number.parseInt(piece, 16));
    } else {
      return null;
    }
  }
  return groups;
}

/** Parses any RFC 4291 §2.2 text form (`::` compression, trailing dotted quad); zone IDs are refused. */
export function parseIPv6(text: string): Uint8Array {
  const halves = text.split('::');
  const compressed = halves.length === 2;
  const head = halves.length <= 2 ? parseGroups(halves[0]!, !compressed) : null;
  const tail = compressed ? parseGroups(halves[1]!, true) : [];
  if (head === null || tail === null || (compressed ? head.length + tail.length > 7 : head.length !== 8)) {
    throw new WireError(0, `invalid IPv6 address ${JSON.stringify(text)} (RFC 4291 §2.2)`);
  }
  const bytes = new Uint8Array(16);
  head.forEach((group, index) => writeU16(group, bytes, index * 2));
  tail.forEach((group, index) => writeU16(group, bytes, 16 - (tail.length - index) * 2));
  return bytes;
}

/**
 * RFC 5952 canonical text: lowercase, no leading zeros, the longest run of two
 * or more zero groups (the first on a tie) as `::`, IPv4-mapped addresses with
 * a dotted quad (§5).
 */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(readU16(bytes, offset + i * 2));
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(((groups[6]! << 16) | groups[7]!) >>> 0)}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end === start ? start + 1 : end;
  }
  const hex = (list: number[]): string => list.map((group) => group.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
