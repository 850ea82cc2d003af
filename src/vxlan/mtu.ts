/**
 * The overlay's MTU and what the VTEP does with a frame that would not fit
 * the path to its destination: what a router does (RFC 1191, RFC 8201),
 * so that no underlay datagram is ever fragmented and path-MTU discovery
 * in the sandboxes works.
 */
import {
  ETHERNET_HEADER_LEN,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ICMP_ERROR_MAX_LEN,
  VXLAN_HEADER_LEN,
  IPV4_MIN_HEADER_LEN,
  IPV6_HEADER_LEN,
  IPV6_MIN_MTU,
  WireError,
  fragmentIPv4,
  fragmentationNeededLength,
  ipv4DontFragment,
  ipv4ErrorAllowed,
  ipv6ErrorAllowed,
  packetTooBigLength,
  writeFragmentationNeeded,
  writePacketTooBig,
} from '../wire/index.js';
import { ESP_HEADER_LENGTH, ESP_ICV_LENGTH, ESP_TRAILER_LENGTH } from '../sys/esp.js';
import { VNET_HDR_LEN, segmentFrame } from './offload.js';

/**
 * Bytes VXLAN over IPv4 adds to an overlay packet on the underlay: outer
 * IPv4 20, UDP 8, VXLAN 8 and the inner Ethernet header 14 (as Linux's
 * VXLAN_HEADROOM).
 */
export const VXLAN_OVERHEAD = 50;

/** The largest IP packet an overlay can carry over an underlay interface of MTU `underlayMtu`. */
export function overlayMtu(underlayMtu: number): number {
  return underlayMtu - VXLAN_OVERHEAD;
}

/**
 * The largest IP packet an encrypted overlay carries where a plain one
 * carries `mtu` (see `overlayMtu`): a sealed frame takes the room of the
 * VXLAN header and the frame, and must fit ESP's header, its padding to 4
 * bytes with pad length and next header, and the ICV (src/sys/esp.ts). On an
 * underlay of 1500: 1424, where plain VXLAN gives 1450.
 */
export function encryptedMtu(mtu: number): number {
  const datagram = mtu + ETHERNET_HEADER_LEN + VXLAN_HEADER_LEN;
  const sealedPayload = (datagram - ESP_HEADER_LENGTH - ESP_ICV_LENGTH) & ~3;
  return sealedPayload - ESP_TRAILER_LENGTH - ETHERNET_HEADER_LEN;
}

/** What became of a frame too long for its path. */
export type TooBig =
  /** An IPv4 packet without DF, cut into `frames` (plain Ethernet frames) that fit, as a router cuts it. */
  | { readonly kind: 'fragmented'; readonly frames: Uint8Array[] }
  /** Dropped, and `answer` (ICMP "fragmentation needed" or ICMPv6 "packet too big") goes back to the sender. */
  | { readonly kind: 'answered'; readonly answer: Uint8Array }
  /** Dropped without an answer: not IP, tagged, an ICMP error, multicast, or an MTU no sender would believe. */
  | { readonly kind: 'dropped' };

const DROPPED: TooBig = { kind: 'dropped' };

/**
 * Decides for a frame longer than `mtu` (the path's IP MTU) plus its
 * Ethernet header; with `vnetHdr` the frame starts with a virtio_net_hdr
 * and may be a TCP super-frame whose segments are too long. Allocates: the
 * path of frames that do not fit, not of every frame.
 */
export function tooBig(frame: Uint8Array, mtu: number, vnetHdr: boolean): TooBig {
  const plain = vnetHdr ? frame.subarray(VNET_HDR_LEN) : frame;
  if (plain.length < ETHERNET_HEADER_LEN) return DROPPED;
  const type = (plain[12]! << 8) | plain[13]!;
  if (type === ETHERTYPE_IPV6) {
    if (plain.length < ETHERNET_HEADER_LEN + IPV6_HEADER_LEN || mtu < IPV6_MIN_MTU || !ipv6ErrorAllowed(plain, 0, plain.length)) return DROPPED;
    // A super-frame is quoted as it is, as Linux quotes a GSO packet: the sender needs only its headers.
    const answer = new Uint8Array(packetTooBigLength(plain.length));
    writePacketTooBig(plain, 0, plain.length, mtu, answer);
    return { kind: 'answered', answer };
  }
  if (type !== ETHERTYPE_IPV4 || plain.length < ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN) return DROPPED;
  if (ipv4DontFragment(plain)) {
    // Below 576 Linux neither sends this (iptunnel_pmtud_check_icmp) nor fully believes it (min_pmtu 552).
    if (mtu < ICMP_ERROR_MAX_LEN || !ipv4ErrorAllowed(plain, 0, plain.length)) return DROPPED;
    const answer = new Uint8Array(fragmentationNeededLength(plain.length));
    writeFragmentationNeeded(plain, 0, plain.length, mtu, answer);
    return { kind: 'answered', answer };
  }
  // Without DF the sender allows fragments: cut the inner packet (never the underlay datagram).
  const pieces = vnetHdr ? segmentFrame(frame) : [frame];
  if (pieces === undefined) return DROPPED;
  const frames: Uint8Array[] = [];
  for (const piece of pieces) {
    if (piece.length <= mtu + ETHERNET_HEADER_LEN) {
      frames.push(piece);
      continue;
    }
    try {
      frames.push(...fragmentIPv4(piece, mtu));
    } catch (err) {
      if (err instanceof WireError) return DROPPED;
      throw err;
    }
  }
  return { kind: 'fragmented', frames };
}

/**
 * The longest frame a frame read with a virtio_net_hdr puts on the wire
 * (virtio header not counted): a TCP super-frame's segment (its headers
 * and gso_size), else the frame itself. A malformed super-frame counts as
 * fitting: the segmenter refuses it.
 */
export function largestFrame(buffer: Uint8Array, offset: number, length: number): number {
  const frame = length - VNET_HDR_LEN;
  if (buffer[offset + 1] === 0) return frame;
  // Little-endian csum_start (where TCP starts in the frame) and gso_size.
  const tcpOffset = buffer[offset + 6]! | (buffer[offset + 7]! << 8);
  const tcp = offset + VNET_HDR_LEN + tcpOffset;
  if (tcp + 12 >= offset + length) return 0;
  const segment = tcpOffset + (buffer[tcp + 12]! >> 4) * 4 + (buffer[offset + 4]! | (buffer[offset + 5]! << 8));
  return Math.min(frame, segment);
}
