/**
 * The VTEP's ARP and IPv6 neighbour discovery proxy, as libnetwork's overlay
 * answers them: a request for an endpoint the peer table knows is answered
 * on the spot instead of flooded across the underlay. Pure: a frame and the
 * table in, the reply's bytes (or undefined: not ours to answer) out.
 */
import {
  ARP_FRAME_LEN,
  ARP_REQUEST,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  ICMPV6_NEIGHBOR_SOLICITATION,
  IPPROTO_ICMPV6,
  IPV6_DST_OFFSET,
  IPV6_HEADER_LEN,
  IPV6_SRC_OFFSET,
  NEIGHBOR_ADVERTISEMENT_FRAME_LEN,
  arpCheck,
  arpOperation,
  arpSenderIp,
  arpSenderMac,
  arpTargetIp,
  decodeArp,
  decodeNeighborSolicitation,
  ethernetPayloadOffset,
  ethernetSrc,
  ethernetType,
  icmpv6Checksum,
  ipv6HopLimit,
  ipv6NextHeader,
  ipv6PayloadLength,
  writeArpReply,
  writeNeighborAdvertisement,
} from '../wire/index.js';

/** What the proxy asks of the peer table: the MAC of an endpoint by address, on one VNI. */
export interface NeighborTable {
  macForIPv4(ipv4: number): number | undefined;
  macForIPv6(ipv6: Uint8Array): number | undefined;
}

/**
 * Answers an ARP request for another endpoint's address in `table` (not a
 * gratuitous one): the ARP reply frame, or undefined. `frame` is an untagged
 * Ethernet frame of EtherType ARP.
 */
export function answerArp(frame: Uint8Array, table: NeighborTable): Uint8Array | undefined {
  const arp = ETHERNET_HEADER_LEN;
  if (!arpCheck(frame, arp, frame.length - arp) || arpOperation(frame, arp) !== ARP_REQUEST) return undefined;
  const targetIp = arpTargetIp(frame, arp);
  if (targetIp === arpSenderIp(frame, arp)) return undefined;
  const mac = table.macForIPv4(targetIp);
  // Telling an endpoint that its own address is taken by itself would fail its conflict detection.
  if (mac === undefined || mac === arpSenderMac(frame, arp)) return undefined;
  const reply = new Uint8Array(ARP_FRAME_LEN);
  writeArpReply(decodeArp(frame, arp), mac, reply, 0);
  return reply;
}

/**
 * Answers a neighbour solicitation (RFC 4861 §7.2.4) for an address in
 * `table`: the solicited neighbour advertisement frame, or undefined.
 * Duplicate address detection (unspecified source) is left to the real
 * owner, as is anything with extension headers. `frame` is an untagged
 * Ethernet frame of EtherType IPv6.
 */
export function answerNeighborSolicitation(frame: Uint8Array, table: NeighborTable): Uint8Array | undefined {
  const ip = ETHERNET_HEADER_LEN;
  const icmp = ip + IPV6_HEADER_LEN;
  if (frame.length <= icmp || ipv6NextHeader(frame, ip) !== IPPROTO_ICMPV6 || frame[icmp] !== ICMPV6_NEIGHBOR_SOLICITATION) {
    return undefined;
  }
  // RFC 4861 §7.1.1: hop limit 255, a valid checksum, a length within the frame.
  const length = ipv6PayloadLength(frame, ip);
  if (ipv6HopLimit(frame, ip) !== 255 || length > frame.length - icmp) return undefined;
  const src = ip + IPV6_SRC_OFFSET;
  const checksum = icmpv6Checksum(frame, icmp, length, frame, src, frame, ip + IPV6_DST_OFFSET);
  if (checksum !== ((frame[icmp + 2]! << 8) | frame[icmp + 3]!)) return undefined;
  const source = frame.subarray(src, src + 16);
  if (source.every((byte) => byte === 0)) return undefined;
  let solicitation: ReturnType<typeof decodeNeighborSolicitation>;
  try {
    solicitation = decodeNeighborSolicitation(frame, icmp, length);
  } catch {
    return undefined;
  }
  const mac = table.macForIPv6(solicitation.target);
  if (mac === undefined) return undefined;
  const advert = new Uint8Array(NEIGHBOR_ADVERTISEMENT_FRAME_LEN);
  writeNeighborAdvertisement(
    {
      dstMac: solicitation.sourceLinkLayer ?? ethernetSrc(frame),
      srcMac: mac,
      srcIp: solicitation.target,
      dstIp: source,
      target: solicitation.target,
      targetMac: mac,
      solicited: true,
    },
    advert,
    0,
  );
  return advert;
}

/**
 * True for the frame at `offset` (ending at `end`) if the proxy may answer
 * it: ARP, and IPv6 ICMP (neighbour solicitations). Looks at headers only,
 * so a super-frame can be judged before it is cut.
 */
export function mayBeAnswered(buffer: Uint8Array, offset: number, end: number): boolean {
  const type = ethernetType(buffer, offset);
  if (type === ETHERTYPE_ARP) return true;
  const ip = offset + ethernetPayloadOffset(buffer, offset);
  return type === ETHERTYPE_IPV6 && end > ip + IPV6_HEADER_LEN && ipv6NextHeader(buffer, ip) === IPPROTO_ICMPV6;
}
