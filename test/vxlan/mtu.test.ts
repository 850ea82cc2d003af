/**
 * The VTEP never sends a frame longer than the path to its VTEP takes: it
 * answers as a router would (ICMP "fragmentation needed", ICMPv6 "packet
 * too big") or, for IPv4 without DF, cuts the packet into fragments.
 */
import test from 'ava';
import { MemoryFramePort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { VNET_HDR_LEN, segmentFrame } from '../../src/vxlan/offload.js';
import { VXLAN_OVERHEAD, largestFrame, overlayMtu, tooBig } from '../../src/vxlan/mtu.js';
import {
  BROADCAST_MAC,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IPPROTO_UDP,
  VXLAN_HEADER_LEN,
  encodeEthernet,
  encodeIPv4,
  encodeIPv6,
  fragmentIPv4,
  internetChecksum,
  parseIPv4,
  parseIPv6,
  writeFragmentationNeeded,
  writePacketTooBig,
} from '../../src/wire/index.js';
import { HOST_A, HOST_B, HOST_C, MSS, VNI, host, ip, mac, publish, superFrame } from './helpers.js';

/** An untagged IPv4/UDP frame of `totalLength` bytes of IP from endpoint `from` to `to`. */
function ipv4Frame(to: number, from: number, totalLength: number, dontFragment: boolean, dst = ip(to)): Buffer {
  const frame = Buffer.alloc(ETHERNET_HEADER_LEN + totalLength, 0x5a);
  encodeEthernet({ dst: mac(to), src: mac(from), etherType: ETHERTYPE_IPV4 }, frame, 0);
  encodeIPv4(
    { dscp: 0, ecn: 0, totalLength, identification: 0x1234, dontFragment, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: IPPROTO_UDP, src: parseIPv4(ip(from)), dst: parseIPv4(dst), headerLength: 20 },
    frame,
    ETHERNET_HEADER_LEN,
  );
  return frame;
}

function ipv6Frame(to: number, from: number, payloadLength: number): Buffer {
  const frame = Buffer.alloc(ETHERNET_HEADER_LEN + 40 + payloadLength, 0x5a);
  encodeEthernet({ dst: mac(to), src: mac(from), etherType: ETHERTYPE_IPV6 }, frame, 0);
  const repr = { trafficClass: 0, flowLabel: 0, payloadLength, nextHeader: IPPROTO_UDP, hopLimit: 64, src: parseIPv6(`fd00::${from}`), dst: parseIPv6(`fd00::${to}`) };
  encodeIPv6(repr, frame, ETHERNET_HEADER_LEN);
  return frame;
}

function fragmentationNeeded(frame: Uint8Array, mtu: number): Buffer {
  const answer = Buffer.alloc(590);
  return answer.subarray(0, writeFragmentationNeeded(frame, 0, frame.length, mtu, answer));
}

/** Hosts A (told `mtu`), B and C, endpoint n at the n-th of them. */
function cluster(mtu: number, vnetHdr = false) {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [], { mtu });
  const port = new MemoryFramePort({ vnetHdr });
  a.vtep.addNetwork(VNI, port);
  a.ports.set(VNI, port);
  const hosts = [a, host(net, HOST_B), host(net, HOST_C)] as const;
  publish([...hosts], hosts.map((at, i) => ({ n: i + 1, at })));
  return { net, hosts };
}

test('the overlay MTU is the underlay MTU less 50 bytes of VXLAN over IPv4', (t) => {
  t.is(VXLAN_OVERHEAD, 50);
  t.is(overlayMtu(1500), 1450);
  t.is(overlayMtu(1400), 1350);
});

test('a packet with DF too big for our underlay is dropped and answered with fragmentation needed; one that fits crosses', async (t) => {
  const { net, hosts } = cluster(1350);
  const [a, b] = hosts;
  const fits = ipv4Frame(2, 1, 1350, true);
  const tooLong = ipv4Frame(2, 1, 1351, true);
  a.port().inject([fits, tooLong]);
  await net.idle();
  t.deepEqual(b.port().written, [fits]);
  t.deepEqual(net.packets.map((p) => p.data.length), [VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + 1350]);
  t.deepEqual(a.port().written, [fragmentationNeeded(tooLong, 1350)]);
  t.like(a.vtep.stats, { dropTooBig: 1, tooBigAnswered: 1, fragmented: 0, txDatagrams: 1 });
  t.like(a.vtep.networkStats()[0]!.counters, { dropTooBig: 1, tooBigAnswered: 1 });
});

test('the smaller MTU another VTEP announced applies to frames for it alone', async (t) => {
  const { net, hosts } = cluster(1350);
  const [a, b, c] = hosts;
  // A queue for B exists before B's MTU is known: the limit must reach it too.
  a.port().inject([ipv4Frame(2, 1, 1300, true)]);
  await net.idle();
  t.is(b.port().written.length, 1);

  a.vtep.setVtepMtu(HOST_B, 1250);
  const toB = ipv4Frame(2, 1, 1300, true);
  const toC = ipv4Frame(3, 1, 1300, true);
  a.port().inject([toB, toC]);
  await net.idle();
  t.is(b.port().written.length, 1, 'nothing more for B');
  t.deepEqual(c.port().written, [toC]);
  t.deepEqual(a.port().written, [fragmentationNeeded(toB, 1250)]);

  t.throws(() => a.vtep.setVtepMtu(HOST_B, 67), { message: /invalid MTU 67/ });
});

test('an IPv4 packet without DF is cut into fragments that fit, as a router would', async (t) => {
  const { net, hosts } = cluster(1350);
  const [a, b] = hosts;
  const packet = ipv4Frame(2, 1, 3000, false);
  a.port().inject([packet]);
  await net.idle();
  t.deepEqual(b.port().written, fragmentIPv4(packet, 1350).map((f) => Buffer.from(f)));
  // 1330 bytes of room after the header hold 1328 of payload, a multiple of 8 (RFC 791 §3.2).
  const datagram = (payload: number) => VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + 20 + payload;
  t.deepEqual(net.packets.map((p) => p.data.length), [datagram(1328), datagram(1328), datagram(2980 - 2 * 1328)]);
  t.is(a.port().written.length, 0);
  t.like(a.vtep.stats, { fragmented: 1, dropTooBig: 0, tooBigAnswered: 0 });
});

test('IPv6 gets packet too big; a broadcast, an ICMP error and a frame that is not IP are dropped unanswered', async (t) => {
  const { net, hosts } = cluster(1350);
  const [a] = hosts;
  const v6 = ipv6Frame(2, 1, 1400);
  const broadcast = ipv4Frame(2, 1, 1400, true, '255.255.255.255');
  broadcast.writeUIntBE(BROADCAST_MAC, 0, 6);
  const error = Buffer.from(fragmentationNeeded(ipv4Frame(2, 1, 1400, true), 1350));
  const bigError = Buffer.concat([error, Buffer.alloc(1000)]);
  bigError.writeUInt16BE(bigError.length - ETHERNET_HEADER_LEN, 16);
  bigError.writeUInt16BE(0, 24);
  bigError.writeUInt16BE(internetChecksum(bigError, 14, 20), 24);
  bigError.writeUIntBE(mac(2), 0, 6);
  const notIp = Buffer.alloc(1500);
  notIp.writeUIntBE(mac(2), 0, 6);
  notIp.writeUInt16BE(0x88b5, 12);
  a.port().inject([v6, broadcast, bigError, notIp]);
  await net.idle();
  const expected = Buffer.alloc(1294);
  writePacketTooBig(v6, 0, v6.length, 1350, expected);
  t.deepEqual(a.port().written, [expected.subarray(0, 14 + 1280)]);
  t.is(net.packets.length, 0);
  t.like(a.vtep.stats, { dropTooBig: 4, tooBigAnswered: 1 });
});

test('TCP super-frames: segments that fit leave; segments too long get one answer per super-frame, or fragments without DF', async (t) => {
  const { net, hosts } = cluster(1350, true);
  const [a, b] = hosts;
  // 20 bytes of IPv4, 32 of TCP and 1298 of payload: 1350 exactly.
  const fits = superFrame({ payload: 10 * 1298, gsoSize: 1298 });
  const tooLong = superFrame({ payload: 10 * MSS, seq: 20_000 });
  t.is(largestFrame(fits, 0, fits.length), 1364);
  t.is(largestFrame(tooLong, 0, tooLong.length), 1464);
  a.port().inject([fits, tooLong]);
  await net.idle();
  t.is(b.port().written.length, 10);
  t.true(net.packets.every((p) => p.data.length <= VXLAN_HEADER_LEN + 1364));
  t.deepEqual(a.port().written, [fragmentationNeeded(tooLong.subarray(VNET_HDR_LEN), 1350)]);
  t.like(a.vtep.stats, { dropTooBig: 1, tooBigAnswered: 1 });

  const v6 = superFrame({ v6: true, payload: 5 * MSS });
  a.port().inject([v6]);
  await net.idle();
  t.is(a.port().written.length, 2);
  t.is(a.port().written[1]![ETHERNET_HEADER_LEN + 40], 2, 'ICMPv6 packet too big');

  // Without DF (the sender turned path-MTU discovery off): each segment is cut in two.
  const noDf = superFrame({ payload: 3 * MSS, seq: 40_000 });
  const ip4 = VNET_HDR_LEN + ETHERNET_HEADER_LEN;
  noDf[ip4 + 6] = 0;
  noDf.writeUInt16BE(0, ip4 + 10);
  noDf.writeUInt16BE(internetChecksum(noDf, ip4, 20), ip4 + 10);
  const before = b.port().written.length;
  a.port().inject([noDf]);
  await net.idle();
  const expected = segmentFrame(noDf)!.flatMap((segment) => fragmentIPv4(segment, 1350)).map((f) => Buffer.from(f));
  t.is(expected.length, 6);
  t.deepEqual(b.port().written.slice(before), expected);
  t.like(a.vtep.stats, { fragmented: 1 });
});

test('tooBig drops what it cannot parse, and never answers below the MTUs receivers believe', (t) => {
  const v4 = ipv4Frame(2, 1, 1000, true);
  t.is(tooBig(v4, 575, false).kind, 'dropped', 'below 576, as Linux');
  t.is(tooBig(v4, 576, false).kind, 'answered');
  t.is(tooBig(ipv6Frame(2, 1, 1400), 1279, false).kind, 'dropped', 'below IPv6 minimum MTU');
  const corrupt = ipv4Frame(2, 1, 1000, false);
  corrupt[ETHERNET_HEADER_LEN + 10] = ~corrupt[ETHERNET_HEADER_LEN + 10]!;
  t.is(tooBig(corrupt, 576, false).kind, 'dropped', 'a bad header is not fragmented');
  t.is(tooBig(new Uint8Array(10), 576, false).kind, 'dropped');
});
