/**
 * What a router does with an IP packet larger than the next hop's MTU, for
 * a bridged tunnel endpoint that answers into the Ethernet segment the
 * packet came from: ICMP "fragmentation needed" (RFC 792, RFC 1191 §4) and
 * ICMPv6 "packet too big" (RFC 4443 §3.2), built as Linux's bridged tunnels
 * build them (iptunnel_pmtud_build_icmp/_icmpv6): Ethernet addresses swapped,
 * the original destination as source, the original TTL or hop limit, as
 * much of the original packet as fits in 576 / 1280 bytes. Every function
 * takes an untagged Ethernet frame; offsets are relative to its start.
 */
import { readU16, requireBytes, requireRoom, writeU16, writeU32 } from './bytes.js';
import { internetChecksum } from './checksum.js';
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from './ethernet.js';
import { WireError } from './error.js';
import { icmpv6Checksum } from './icmpv6.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPV4_MIN_HEADER_LEN, decodeIPv4 } from './ipv4.js';
import { IPV6_DST_OFFSET, IPV6_HEADER_LEN, IPV6_SRC_OFFSET } from './ipv6.js';

export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_FRAGMENTATION_NEEDED = 4;
export const ICMPV6_PACKET_TOO_BIG = 2;
/** RFC 1812 §4.3.2.3: an ICMP error quotes as much as fits in a 576-byte datagram. */
export const ICMP_ERROR_MAX_LEN = 576;
/** RFC 8200 §5; RFC 4443 §2.4(c): an ICMPv6 error fits in it. */
export const IPV6_MIN_MTU = 1280;
/** The smallest MTU an IPv4 module must forward without fragmenting (RFC 791 §3.2). */
export const IPV4_MIN_MTU = 68;
export const ICMP_HEADER_LEN = 8;

const IP = ETHERNET_HEADER_LEN;
const FLAGS_FRAGMENT = 6;
const DONT_FRAGMENT = 0x4000;
const MORE_FRAGMENTS = 0x2000;
const FRAGMENT_OFFSET_MASK = 0x1fff;
/** ICMP types that are errors (RFC 1812 §4.3.2.7 forbids an error about one): unreachable, quench, redirect, time exceeded, parameter problem. */
const ICMP_ERROR_TYPES = new Set([3, 4, 5, 11, 12]);
const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_DESTINATION = 60;
const IPPROTO_AH = 51;
const IPOPT_END = 0;
const IPOPT_NOOP = 1;
const IPOPT_COPIED = 0x80;

/** True when the IPv4 packet in `frame` carries DF (RFC 791 §3.1): it must not be fragmented on the way. */
export function ipv4DontFragment(frame: Uint8Array, offset = 0): boolean {
  return (readU16(frame, offset + IP + FLAGS_FRAGMENT) & DONT_FRAGMENT) !== 0;
}

/**
 * True when a router may answer the IPv4 packet in `frame` (`length` bytes)
 * with an ICMP error (RFC 1812 §4.3.2.7): not about a non-first fragment,
 * an ICMP error, a broadcast or multicast destination, or a source that
 * names no single host (0/8, 127/8, multicast, broadcast, class E). The
 * caller has checked the header.
 */
export function ipv4ErrorAllowed(frame: Uint8Array, offset: number, length: number): boolean {
  const ip = offset + IP;
  if ((readU16(frame, ip + FLAGS_FRAGMENT) & FRAGMENT_OFFSET_MASK) !== 0) return false;
  const src = frame[ip + 12]!;
  const dst = frame[ip + 16]!;
  if (src === 0 || src === 127 || src >= 224 || dst >= 224) return false;
  if (frame[ip + 9] !== IPPROTO_ICMP) return true;
  const icmp = ip + (frame[ip]! & 0x0f) * 4;
  return icmp < offset + length && !ICMP_ERROR_TYPES.has(frame[icmp]!);
}

/**
 * True when the IPv6 packet in `frame` (`length` bytes) may be answered with
 * an ICMPv6 error (RFC 4443 §2.4(e)): a source that names one host, not an
 * ICMPv6 error, and, as Linux, not a non-first fragment (its upper layer is
 * out of reach). Extension headers are skipped as RFC 8200 §4 chains them.
 */
export function ipv6ErrorAllowed(frame: Uint8Array, offset: number, length: number): boolean {
  const ip = offset + IP;
  const end = offset + length;
  const src = ip + IPV6_SRC_OFFSET;
  if (frame[src] === 0xff) return false;
  let unspecifiedOrLoopback = true;
  for (let i = 0; i < 15; i++) if (frame[src + i] !== 0) unspecifiedOrLoopback = false;
  if (unspecifiedOrLoopback && frame[src + 15]! <= 1) return false;
  let next = frame[ip + 6]!;
  let at = ip + IPV6_HEADER_LEN;
  for (;;) {
    if (next === IPV6_FRAGMENT) {
      if (at + 8 > end || (readU16(frame, at + 2) & 0xfff8) !== 0) return false;
      next = frame[at]!;
      at += 8;
    } else if (next === IPV6_HOP_BY_HOP || next === IPV6_ROUTING || next === IPV6_DESTINATION) {
      if (at + 8 > end) return false;
      next = frame[at]!;
      at += (frame[at + 1]! + 1) * 8;
    } else if (next === IPPROTO_AH) {
      // RFC 4302 §2.2: its length is in 4-byte units, less 2.
      if (at + 8 > end) return false;
      next = frame[at]!;
      at += (frame[at + 1]! + 2) * 4;
    } else {
      break;
    }
  }
  return next !== IPPROTO_ICMPV6 || (at < end && frame[at]! >= 128);
}

/** Bytes writeFragmentationNeeded writes for a frame of `length` bytes. */
export function fragmentationNeededLength(length: number): number {
  return IP + Math.min(ICMP_ERROR_MAX_LEN, IPV4_MIN_HEADER_LEN + ICMP_HEADER_LEN + length - IP);
}

/**
 * Writes at `outOffset` the frame answering the IPv4 frame of `length` bytes
 * at `offset` with ICMP "fragmentation needed and DF set" (type 3 code 4)
 * and next-hop MTU `mtu` (RFC 1191 §4); returns the bytes written. `out`
 * must not overlap `frame`. Whether to answer at all (DF, ipv4ErrorAllowed)
 * is the caller's decision.
 */
export function writeFragmentationNeeded(frame: Uint8Array, offset: number, length: number, mtu: number, out: Uint8Array, outOffset = 0): number {
  requireBytes(frame, offset, length, 'Ethernet frame');
  requireBytes(frame.subarray(0, offset + length), offset, IP + IPV4_MIN_HEADER_LEN, 'IPv4 header (RFC 791 §3.1)');
  if (readU16(frame, offset + 12) !== ETHERTYPE_IPV4) throw new WireError(offset + 12, 'not an untagged IPv4 frame (RFC 894)');
  checkMtu(mtu, IPV4_MIN_MTU);
  const written = fragmentationNeededLength(length);
  requireRoom(out, outOffset, written, 'fragmentation needed frame');
  const quoted = written - IP - IPV4_MIN_HEADER_LEN - ICMP_HEADER_LEN;
  const original = offset + IP;
  const ip = outOffset + IP;
  const icmp = ip + IPV4_MIN_HEADER_LEN;
  out.set(frame.subarray(original, original + quoted), icmp + ICMP_HEADER_LEN);
  swapEthernet(frame, offset, out, outOffset);
  out[ip] = 0x45;
  out[ip + 1] = 0;
  writeU16(written - IP, out, ip + 2);
  writeU16(0, out, ip + 4);
  writeU16(DONT_FRAGMENT, out, ip + FLAGS_FRAGMENT);
  out[ip + 8] = frame[original + 8]!;
  out[ip + 9] = IPPROTO_ICMP;
  writeU16(0, out, ip + 10);
  out.set(frame.subarray(original + 16, original + 20), ip + 12);
  out.set(frame.subarray(original + 12, original + 16), ip + 16);
  writeU16(internetChecksum(out, ip, IPV4_MIN_HEADER_LEN), out, ip + 10);
  out[icmp] = ICMP_DEST_UNREACHABLE;
  out[icmp + 1] = ICMP_FRAGMENTATION_NEEDED;
  writeU16(0, out, icmp + 2);
  writeU16(0, out, icmp + 4);
  writeU16(mtu, out, icmp + 6);
  writeU16(internetChecksum(out, icmp, ICMP_HEADER_LEN + quoted), out, icmp + 2);
  return written;
}

/** Bytes writePacketTooBig writes for a frame of `length` bytes. */
export function packetTooBigLength(length: number): number {
  return IP + Math.min(IPV6_MIN_MTU, IPV6_HEADER_LEN + ICMP_HEADER_LEN + length - IP);
}

/**
 * Writes at `outOffset` the frame answering the IPv6 frame of `length` bytes
 * at `offset` with ICMPv6 "packet too big" and MTU `mtu` (RFC 4443 §3.2);
 * returns the bytes written. `out` must not overlap `frame`. Whether to
 * answer (ipv6ErrorAllowed) is the caller's decision.
 */
export function writePacketTooBig(frame: Uint8Array, offset: number, length: number, mtu: number, out: Uint8Array, outOffset = 0): number {
  requireBytes(frame, offset, length, 'Ethernet frame');
  requireBytes(frame.subarray(0, offset + length), offset, IP + IPV6_HEADER_LEN, 'IPv6 header (RFC 8200 §3)');
  if (readU16(frame, offset + 12) !== ETHERTYPE_IPV6) throw new WireError(offset + 12, 'not an untagged IPv6 frame (RFC 2464)');
  checkMtu(mtu, IPV6_MIN_MTU);
  const written = packetTooBigLength(length);
  requireRoom(out, outOffset, written, 'packet too big frame');
  const quoted = written - IP - IPV6_HEADER_LEN - ICMP_HEADER_LEN;
  const original = offset + IP;
  const ip = outOffset + IP;
  const icmp = ip + IPV6_HEADER_LEN;
  out.set(frame.subarray(original, original + quoted), icmp + ICMP_HEADER_LEN);
  swapEthernet(frame, offset, out, outOffset);
  writeU32(0x60000000, out, ip);
  writeU16(written - IP - IPV6_HEADER_LEN, out, ip + 4);
  out[ip + 6] = IPPROTO_ICMPV6;
  out[ip + 7] = frame[original + 7]!;
  out.set(frame.subarray(original + IPV6_DST_OFFSET, original + IPV6_DST_OFFSET + 16), ip + IPV6_SRC_OFFSET);
  out.set(frame.subarray(original + IPV6_SRC_OFFSET, original + IPV6_SRC_OFFSET + 16), ip + IPV6_DST_OFFSET);
  out[icmp] = ICMPV6_PACKET_TOO_BIG;
  out[icmp + 1] = 0;
  writeU32(mtu, out, icmp + 4);
  const length6 = ICMP_HEADER_LEN + quoted;
  writeU16(icmpv6Checksum(out, icmp, length6, out, ip + IPV6_SRC_OFFSET, out, ip + IPV6_DST_OFFSET), out, icmp + 2);
  return written;
}

/**
 * Cuts the IPv4 packet in `frame` (DF clear) into fragments of at most `mtu`
 * bytes, as a router does (RFC 791 §3.2, RFC 1812 §5.2.6) and as Linux's
 * ip_do_fragment lays them out: 8-byte multiples of payload, the header kept
 * whole, options without the copied flag replaced by NOPs after the first
 * fragment, MF on all but the last (which keeps the original's), TTL
 * untouched. Returns the fragments as Ethernet frames with the original's
 * Ethernet header; Ethernet padding after the packet is dropped.
 */
export function fragmentIPv4(frame: Uint8Array, mtu: number): Uint8Array[] {
  requireBytes(frame, 0, IP, 'Ethernet header (IEEE 802.3 §3.1.1)');
  if (readU16(frame, 12) !== ETHERTYPE_IPV4) throw new WireError(12, 'not an untagged IPv4 frame (RFC 894)');
  const header = decodeIPv4(frame, IP);
  if (header.dontFragment) throw new WireError(IP + FLAGS_FRAGMENT, 'IPv4 packet with DF set may not be fragmented (RFC 791 §3.1)');
  const headerLength = header.headerLength;
  const room = Math.floor((mtu - headerLength) / 8) * 8;
  if (!Number.isInteger(mtu) || mtu < IPV4_MIN_MTU || room < 8) {
    throw new RangeError(`MTU ${mtu} cannot carry fragments of a ${headerLength}-byte IPv4 header (RFC 791 §3.2: 68 or more)`);
  }
  const payload = header.totalLength - headerLength;
  const fragments: Uint8Array[] = [];
  const headers = frame.slice(0, IP + headerLength);
  for (let done = 0; done < payload; ) {
    const size = Math.min(room, payload - done);
    const last = done + size === payload;
    const out = new Uint8Array(IP + headerLength + size);
    out.set(headers, 0);
    out.set(frame.subarray(IP + headerLength + done, IP + headerLength + done + size), IP + headerLength);
    writeU16(headerLength + size, out, IP + 2);
    const flags = last && !header.moreFragments ? 0 : MORE_FRAGMENTS;
    writeU16(flags | (header.fragmentOffset + done / 8), out, IP + FLAGS_FRAGMENT);
    writeU16(0, out, IP + 10);
    writeU16(internetChecksum(out, IP, headerLength), out, IP + 10);
    fragments.push(out);
    if (done === 0) dropUncopiedOptions(headers, IP + IPV4_MIN_HEADER_LEN, IP + headerLength);
    done += size;
  }
  return fragments;
}

function checkMtu(mtu: number, min: number): void {
  if (!Number.isInteger(mtu) || mtu < min || mtu > 0xffff) throw new RangeError(`MTU ${mtu} outside ${min}–65535`);
}

/** The reply's Ethernet header: the original's addresses swapped, its EtherType kept. */
function swapEthernet(frame: Uint8Array, offset: number, out: Uint8Array, outOffset: number): void {
  out.set(frame.subarray(offset + 6, offset + 12), outOffset);
  out.set(frame.subarray(offset, offset + 6), outOffset + 6);
  out[outOffset + 12] = frame[offset + 12]!;
  out[outOffset + 13] = frame[offset + 13]!;
}

/** Options of later fragments: those without the copied flag (RFC 791 §3.1) become NOPs; a malformed list is left alone, as Linux's ip_options_fragment does. */
function dropUncopiedOptions(header: Uint8Array, start: number, end: number): void {
  for (let at = start; at < end; ) {
    const type = header[at]!;
    if (type === IPOPT_END) return;
    if (type === IPOPT_NOOP) {
      at++;
      continue;
    }
    const length = at + 1 < end ? header[at + 1]! : 0;
    if (length < 2 || at + length > end) return;
    if ((type & IPOPT_COPIED) === 0) header.fill(IPOPT_NOOP, at, at + length);
    at += length;
  }
}
