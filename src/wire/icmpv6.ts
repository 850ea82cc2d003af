/**
 * ICMPv6 (RFC 4443) as far as an overlay's neighbour discovery proxy needs it:
 * reading Neighbor Solicitations and answering with Neighbor Advertisements
 * (RFC 4861 §4.3, §4.4). Offsets are relative to the ICMPv6 message.
 */
import { requireBytes, requireRoom, writeU16 } from './bytes.js';
import { checksumSkippingField, pseudoHeaderSumIPv6 } from './checksum.js';
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV6 } from './ethernet.js';
import { WireError } from './error.js';
import { IPPROTO_ICMPV6 } from './ipv4.js';
import { IPV6_DST_OFFSET, IPV6_HEADER_LEN, IPV6_SRC_OFFSET } from './ipv6.js';
import { readMac, writeMac } from './mac.js';

export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
export const NDP_OPTION_SOURCE_LINK_LAYER = 1;
export const NDP_OPTION_TARGET_LINK_LAYER = 2;
/** Type, code, checksum, reserved or flags, and the 16-byte target. */
export const NEIGHBOR_MESSAGE_LEN = 24;
/** The advertisement writeNeighborAdvertisement emits: 24 bytes plus an 8-byte target link-layer option. */
export const NEIGHBOR_ADVERTISEMENT_LEN = 32;
export const NEIGHBOR_ADVERTISEMENT_FRAME_LEN = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NEIGHBOR_ADVERTISEMENT_LEN;
export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;

const CHECKSUM = 2;
const FLAGS = 4;
const TARGET = 8;
const OPTIONS = 24;
/** Hop limit 255 proves the sender is on-link (RFC 4861 §7.1.2). */
const ND_HOP_LIMIT = 255;

export interface NeighborSolicitation {
  /** 16 bytes, a copy. */
  target: Uint8Array;
  sourceLinkLayer?: number;
}

export interface NeighborAdvertisementArgs {
  dstMac: number;
  srcMac: number;
  /** The advertised address, as the IPv6 source. */
  srcIp: Uint8Array;
  /** The solicitor's address. */
  dstIp: Uint8Array;
  target: Uint8Array;
  targetMac: number;
  solicited: boolean;
  router?: boolean;
}

/**
 * The checksum the ICMPv6 message of `length` bytes at offset should carry
 * (RFC 4443 §2.3), ignoring its current checksum field: write it when sending,
 * compare it with the field when receiving. The addresses are 16 bytes each at
 * the given offsets, usually inside the IPv6 header in the same buffer.
 */
export function icmpv6Checksum(
  buf: Uint8Array,
  offset: number,
  length: number,
  src: Uint8Array,
  srcOffset: number,
  dst: Uint8Array,
  dstOffset: number,
): number {
  const pseudo = pseudoHeaderSumIPv6(src, srcOffset, dst, dstOffset, IPPROTO_ICMPV6, length);
  return checksumSkippingField(buf, offset, length, CHECKSUM, pseudo);
}

/**
 * Decodes the Neighbor Solicitation of `length` bytes (the IPv6 payload length)
 * at offset. The checks that need the IP header (hop limit 255, checksum,
 * source address) are the caller's.
 */
export function decodeNeighborSolicitation(buf: Uint8Array, offset: number, length: number): NeighborSolicitation {
  requireBytes(buf, offset, length, 'ICMPv6 message (RFC 4443 §2.1)');
  if (length < NEIGHBOR_MESSAGE_LEN) {
    throw new WireError(offset, `ICMPv6 length ${length}, a Neighbor Solicitation needs 24 or more (RFC 4861 §7.1.1)`);
  }
  const type = buf[offset]!;
  if (type !== ICMPV6_NEIGHBOR_SOLICITATION) {
    throw new WireError(offset, `ICMPv6 type ${type} is not a Neighbor Solicitation (135) (RFC 4861 §4.3)`);
  }
  const code = buf[offset + 1]!;
  if (code !== 0) throw new WireError(offset + 1, `Neighbor Solicitation code ${code}, need 0 (RFC 4861 §7.1.1)`);
  if (buf[offset + TARGET] === 0xff) {
    throw new WireError(offset + TARGET, 'Neighbor Solicitation target is a multicast address (RFC 4861 §7.1.1)');
  }
  const solicitation: NeighborSolicitation = { target: buf.slice(offset + TARGET, offset + TARGET + 16) };
  const end = offset + length;
  for (let option = offset + OPTIONS; option < end; ) {
    if (end - option < 2) {
      throw new WireError(
        option,
        `truncated NDP option: ${end - option} bytes at offset ${option}, need 2 (RFC 4861 §4.6)`,
      );
    }
    const optionLength = buf[option + 1]! * 8;
    if (optionLength === 0) throw new WireError(option, 'NDP option with length 0 (RFC 4861 §4.6)');
    if (optionLength > end - option) {
      throw new WireError(
        option,
        `NDP option of ${optionLength} bytes runs past the message: ${end - option} bytes left at offset ${option} (RFC 4861 §4.6)`,
      );
    }
    if (buf[option] === NDP_OPTION_SOURCE_LINK_LAYER && solicitation.sourceLinkLayer === undefined) {
      solicitation.sourceLinkLayer = readMac(buf, option + 2);
    }
    option += optionLength;
  }
  return solicitation;
}

/**
 * Writes a whole Ethernet + IPv6 + ICMPv6 Neighbor Advertisement frame at
 * offset: hop limit 255, override set, a target link-layer address option,
 * a correct checksum. Returns the bytes written (86). The address arrays must
 * not be views into the part of buf being written (answer into a fresh frame,
 * not over the solicitation).
 */
export function writeNeighborAdvertisement(args: NeighborAdvertisementArgs, buf: Uint8Array, offset = 0): number {
  if (args.srcIp.length !== 16 || args.dstIp.length !== 16 || args.target.length !== 16) {
    throw new RangeError('Neighbor Advertisement addresses need 16 bytes each');
  }
  requireRoom(buf, offset, NEIGHBOR_ADVERTISEMENT_FRAME_LEN, 'Neighbor Advertisement frame');
  writeMac(args.dstMac, buf, offset);
  writeMac(args.srcMac, buf, offset + 6);
  writeU16(ETHERTYPE_IPV6, buf, offset + 12);

  const ip = offset + ETHERNET_HEADER_LEN;
  buf[ip] = 0x60;
  buf[ip + 1] = 0;
  writeU16(0, buf, ip + 2);
  writeU16(NEIGHBOR_ADVERTISEMENT_LEN, buf, ip + 4);
  buf[ip + 6] = IPPROTO_ICMPV6;
  buf[ip + 7] = ND_HOP_LIMIT;
  buf.set(args.srcIp, ip + IPV6_SRC_OFFSET);
  buf.set(args.dstIp, ip + IPV6_DST_OFFSET);

  const icmp = ip + IPV6_HEADER_LEN;
  buf[icmp] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
  buf[icmp + 1] = 0;
  const router = args.router === true ? NA_FLAG_ROUTER : 0;
  buf[icmp + FLAGS] = router | (args.solicited ? NA_FLAG_SOLICITED : 0) | NA_FLAG_OVERRIDE;
  buf[icmp + FLAGS + 1] = 0;
  writeU16(0, buf, icmp + FLAGS + 2);
  buf.set(args.target, icmp + TARGET);
  buf[icmp + OPTIONS] = NDP_OPTION_TARGET_LINK_LAYER;
  buf[icmp + OPTIONS + 1] = 1;
  writeMac(args.targetMac, buf, icmp + OPTIONS + 2);
  const checksum = icmpv6Checksum(
    buf,
    icmp,
    NEIGHBOR_ADVERTISEMENT_LEN,
    buf,
    ip + IPV6_SRC_OFFSET,
    buf,
    ip + IPV6_DST_OFFSET,
  );
  writeU16(checksum, buf, icmp + CHECKSUM);
  return NEIGHBOR_ADVERTISEMENT_FRAME_LEN;
}
