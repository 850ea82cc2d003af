import test from 'ava';
import { Conflict, InvalidArgument } from '../../src/errors.js';
import { receivedDatagrams } from '../../src/vxlan/io.js';
import type { Datagram, DatagramPort, ReceivedDatagram } from '../../src/vxlan/io.js';
import { MemoryFramePort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED, VNET_HDR_LEN, segmentFrame } from '../../src/vxlan/offload.js';
import { Vtep, VtepStopped } from '../../src/vxlan/vtep.js';
import {
  ARP_REPLY,
  BROADCAST_MAC,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  IPPROTO_ICMPV6,
  IPV6_HEADER_LEN,
  NA_FLAG_SOLICITED,
  NDP_OPTION_SOURCE_LINK_LAYER,
  NDP_OPTION_TARGET_LINK_LAYER,
  VXLAN_FLAG_RCO,
  VXLAN_HEADER_LEN,
  decodeArp,
  decodeEthernet,
  decodeIPv6,
  decodeVxlan,
  encodeEthernet,
  encodeIPv6,
  formatIPv4,
  formatIPv6,
  icmpv6Checksum,
  parseIPv6,
  readMac,
  writeMac,
} from '../../src/wire/index.js';
import {
  EXTERNAL,
  HOST_A,
  MSS,
  HOST_B,
  HOST_C,
  HOST_D,
  VNI,
  arpRequest,
  drops,
  frame,
  host,
  ip,
  mac,
  macText,
  prng,
  publish,
  superFrame,
  threeHosts,
  twoHosts,
  vxlan,
} from './helpers.js';
import { ManualTimers } from './clock.js';
import { capturedNeighborAdvertisement, capturedNeighborSolicitation } from '../helpers/captures.js';
import { levelLogger } from '../../src/log.js';

test('a unicast frame crosses the underlay unchanged in one VXLAN datagram to the peer VTEP', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  const sent = frame(mac(2), mac(1), 100, 7);
  a.port().inject([sent]);
  await net.idle();

  t.deepEqual(b.port().written, [sent]);
  t.is(net.packets.length, 1);
  const packet = net.packets[0]!;
  t.deepEqual(packet.to, { address: HOST_B, port: 4789 });
  t.is(packet.from.address, HOST_A);
  // RFC 7348 §5: flags 0x08 (I), 24 reserved bits, VNI 4096 = 0x001000, 8 reserved bits.
  t.deepEqual([...packet.data.subarray(0, 8)], [0x08, 0, 0, 0, 0x00, 0x10, 0x00, 0]);
  t.deepEqual(packet.data.subarray(8), sent);
  t.like(a.vtep.stats, { rxFrames: 1, txDatagrams: 1, flooded: 0 });
  t.like(b.vtep.stats, { rxDatagrams: 1, txFrames: 1 });
  t.is(drops(a.vtep) + drops(b.vtep), 0);

  const reply = frame(mac(1), mac(2), 60, 9);
  b.port().inject([reply]);
  await net.idle();
  t.deepEqual(a.port().written, [reply]);
});

test('the data path port is configurable', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = [HOST_A, HOST_B].map((address) => {
    const vtep = new Vtep({ underlay: net.open(address, 4790), localAddress: address, port: 4790, probe: { timers: new ManualTimers() } });
    vtep.start();
    const port = new MemoryFramePort();
    vtep.addNetwork(VNI, port);
    vtep.setPeer(VNI, { mac: mac(1), vtep: HOST_A });
    vtep.setPeer(VNI, { mac: mac(2), vtep: HOST_B });
    return { vtep, port };
  });
  a!.port.inject([frame(mac(2), mac(1))]);
  await net.idle();
  t.deepEqual(net.packets[0]?.to, { address: HOST_B, port: 4790 });
  t.is(b!.port.written.length, 1);
});

test('an ARP request for a known address is answered locally and nothing crosses the underlay', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  a.port().inject([arpRequest(mac(1), ip(1), ip(2))]);
  await net.idle();

  t.is(net.packets.length, 0);
  t.is(a.port().written.length, 1);
  const reply = a.port().written[0]!;
  const ethernet = decodeEthernet(reply);
  t.is(ethernet.dst, mac(1));
  t.is(ethernet.src, mac(2));
  t.is(ethernet.etherType, ETHERTYPE_ARP);
  const arp = decodeArp(reply, ETHERNET_HEADER_LEN);
  t.is(arp.operation, ARP_REPLY);
  t.is(arp.senderMac, mac(2));
  t.is(formatIPv4(arp.senderIp), ip(2));
  t.is(arp.targetMac, mac(1));
  t.is(formatIPv4(arp.targetIp), ip(1));
  t.is(a.vtep.stats.arpAnswered, 1);
  t.is(b.port().written.length, 0);
});

test('ARP for a local endpoint is answered too; gratuitous ARP and probes for the asker\'s own address are flooded', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a },
    { n: 3, at: a },
    { n: 2, at: b },
  ]);
  a.port().inject([arpRequest(mac(1), ip(1), ip(3))]);
  t.is(decodeArp(a.port().written[0]!, ETHERNET_HEADER_LEN).senderMac, mac(3));

  const gratuitous = arpRequest(mac(1), ip(1), ip(1));
  // RFC 5227 probe: sender 0.0.0.0, asking whether anyone else has ip(1).
  const probe = arpRequest(mac(1), '0.0.0.0', ip(1));
  a.port().inject([gratuitous, probe]);
  await net.idle();
  t.is(a.vtep.stats.arpAnswered, 1);
  t.deepEqual(b.port().written, [gratuitous, probe]);
});

test('ARP for an unknown address is flooded to every VTEP of the VNI', async (t) => {
  const net = new MemoryNetwork();
  const [a, b, c] = threeHosts(net);
  const request = arpRequest(mac(1), ip(1), ip(99));
  a.port().inject([request]);
  await net.idle();

  t.is(a.port().written.length, 0);
  t.deepEqual(b.port().written, [request]);
  t.deepEqual(c.port().written, [request]);
  t.deepEqual(net.packets.map((p) => p.to.address).sort(), [HOST_B, HOST_C]);
  t.like(a.vtep.stats, { flooded: 1, txDatagrams: 2, arpAnswered: 0 });
});

test('broadcast goes to the 2 other VTEPs with peers on the VNI, not to a VTEP without', async (t) => {
  const net = new MemoryNetwork();
  const [a, b, c] = threeHosts(net);
  // D serves the same VNI, but A knows no peer of that VNI at D.
  const d = host(net, HOST_D);
  const broadcast = frame(BROADCAST_MAC, mac(1), 50, 3);
  a.port().inject([broadcast]);
  await net.idle();

  t.deepEqual(b.port().written, [broadcast]);
  t.deepEqual(c.port().written, [broadcast]);
  t.deepEqual(d.port().written, []);
  t.deepEqual(net.packets.map((p) => p.to.address).sort(), [HOST_B, HOST_C]);
  // One buffer serves every copy, and it is the same VXLAN datagram for each.
  t.deepEqual(net.packets[0]!.data, net.packets[1]!.data);
});

test('unknown unicast is flooded; a frame with nowhere to go is counted as no route', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  const unknown = frame(mac(77), mac(1));
  a.port().inject([unknown]);
  await net.idle();
  t.deepEqual(b.port().written, [unknown]);
  t.is(a.vtep.stats.flooded, 1);

  const lonely = host(net, HOST_C);
  lonely.vtep.setPeer(VNI, { mac: mac(5), vtep: HOST_C });
  lonely.port().inject([frame(BROADCAST_MAC, mac(5)), frame(mac(5), mac(6))]);
  await net.idle();
  // Nobody else has peers on the VNI, and mac(5) is local: nothing to send.
  t.is(lonely.vtep.stats.dropNoRoute, 2);
  t.is(net.packets.filter((p) => p.from.address === HOST_C).length, 0);
});

/** An IPv6 neighbour solicitation from (srcMac, srcIp) for `target`, with a correct checksum. */
function neighborSolicitation(srcMac: number, srcIp: string, target: string): Buffer {
  const targetBytes = parseIPv6(target);
  // Solicited-node multicast address ff02::1:ffXX:XXXX and its MAC 33:33:ff:XX:XX:XX (RFC 4291 §2.7.1).
  const dstIp = parseIPv6('ff02::1:ff00:0');
  dstIp.set(targetBytes.subarray(13), 13);
  const icmpLength = 32;
  const buf = Buffer.alloc(ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmpLength);
  encodeEthernet({ dst: 0x3333ff000000 + (targetBytes[13]! << 16) + (targetBytes[14]! << 8) + targetBytes[15]!, src: srcMac, etherType: ETHERTYPE_IPV6 }, buf, 0);
  encodeIPv6(
    { trafficClass: 0, flowLabel: 0, payloadLength: icmpLength, nextHeader: IPPROTO_ICMPV6, hopLimit: 255, src: parseIPv6(srcIp), dst: dstIp },
    buf,
    ETHERNET_HEADER_LEN,
  );
  const icmp = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
  buf[icmp] = ICMPV6_NEIGHBOR_SOLICITATION;
  buf.set(targetBytes, icmp + 8);
  buf[icmp + 24] = NDP_OPTION_SOURCE_LINK_LAYER;
  buf[icmp + 25] = 1;
  writeMac(srcMac, buf, icmp + 26);
  buf.writeUInt16BE(icmpv6Checksum(buf, icmp, icmpLength, buf, ETHERNET_HEADER_LEN + 8, buf, ETHERNET_HEADER_LEN + 24), icmp + 2);
  return buf;
}

test('an IPv6 neighbour solicitation for a known address is answered with a valid advertisement', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a, ipv6: 'fd00::1' },
    { n: 2, at: b, ipv6: 'fd00::2' },
  ]);
  a.port().inject([neighborSolicitation(mac(1), 'fd00::1', 'fd00::2')]);
  await net.idle();

  t.is(net.packets.length, 0);
  t.is(a.vtep.stats.ndAnswered, 1);
  const advert = a.port().written[0];
  if (advert === undefined) return t.fail('no advertisement written');
  const ethernet = decodeEthernet(advert);
  t.is(ethernet.dst, mac(1));
  t.is(ethernet.src, mac(2));
  t.is(ethernet.etherType, ETHERTYPE_IPV6);
  const ipv6 = decodeIPv6(advert, ETHERNET_HEADER_LEN);
  t.is(formatIPv6(ipv6.src), 'fd00::2');
  t.is(formatIPv6(ipv6.dst), 'fd00::1');
  t.is(ipv6.nextHeader, IPPROTO_ICMPV6);
  t.is(ipv6.hopLimit, 255);
  const icmp = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
  t.is(advert[icmp], ICMPV6_NEIGHBOR_ADVERTISEMENT);
  t.true((advert[icmp + 4]! & NA_FLAG_SOLICITED) !== 0);
  t.is(formatIPv6(advert, icmp + 8), 'fd00::2');
  t.is(advert[icmp + 24], NDP_OPTION_TARGET_LINK_LAYER);
  t.is(readMac(advert, icmp + 26), mac(2));
  const checksum = icmpv6Checksum(advert, icmp, ipv6.payloadLength, advert, ETHERNET_HEADER_LEN + 8, advert, ETHERNET_HEADER_LEN + 24);
  t.is(advert.readUInt16BE(icmp + 2), checksum);
});

test('the VTEP answers a captured neighbour solicitation with the advertisement the kernel sent, byte for byte', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  for (const [vtep, n] of [[HOST_A, 1], [HOST_B, 2]] as const) {
    a.vtep.setPeer(VNI, { mac: `02:42:0a:63:00:0${n}`, ipv6: `fd00:99::${n}`, vtep });
  }
  a.port().inject([Buffer.from(capturedNeighborSolicitation)]);
  await net.idle();
  t.is(net.packets.length, 0);
  t.deepEqual(a.port().written, [Buffer.from(capturedNeighborAdvertisement)]);
});

test('neighbour solicitations for unknown addresses, with a bad checksum or hop limit, or for DAD are flooded, not answered', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a, ipv6: 'fd00::1' },
    { n: 2, at: b, ipv6: 'fd00::2' },
  ]);
  const unknown = neighborSolicitation(mac(1), 'fd00::1', 'fd00::99');
  const corrupt = neighborSolicitation(mac(1), 'fd00::1', 'fd00::2');
  corrupt[corrupt.length - 1]! ^= 0xff;
  const dad = neighborSolicitation(mac(1), '::', 'fd00::2');
  // RFC 4861 §7.1.1: hop limit below 255 means it was routed, not sent on-link.
  const routed = neighborSolicitation(mac(1), 'fd00::1', 'fd00::2');
  routed[ETHERNET_HEADER_LEN + 7] = 254;
  a.port().inject([unknown, corrupt, dad, routed]);
  await net.idle();
  t.is(a.vtep.stats.ndAnswered, 0);
  t.deepEqual(a.port().written, []);
  t.deepEqual(b.port().written, [unknown, corrupt, dad, routed]);
});

test('networks with different VNIs are isolated', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [4096, 4097]);
  const b = host(net, HOST_B, [4096, 4097]);
  publish([a, b], [
    { n: 1, at: a, vni: 4096 },
    { n: 2, at: b, vni: 4096 },
    { n: 11, at: a, vni: 4097 },
    { n: 12, at: b, vni: 4097 },
  ]);
  const unicast = frame(mac(2), mac(1));
  const broadcast = frame(BROADCAST_MAC, mac(1));
  // mac(12) lives on 4097 only: on 4096 it is unknown unicast.
  const crossing = frame(mac(12), mac(1));
  a.port(4096).inject([unicast, broadcast, crossing]);
  await net.idle();
  t.deepEqual(b.port(4096).written, [unicast, broadcast, crossing]);
  t.deepEqual(b.port(4097).written, []);
  for (const packet of net.packets) t.is(decodeVxlan(packet.data).vni, 4096);

  // ARP on 4096 for an address that exists only on 4097 is not answered from 4097's table.
  a.port(4096).inject([arpRequest(mac(1), ip(1), ip(12))]);
  await net.idle();
  t.is(a.vtep.stats.arpAnswered, 0);
  t.deepEqual(a.port(4097).written, []);

  const other = host(net, HOST_C, [4097]);
  a.vtep.setPeer(4097, { mac: mac(13), vtep: HOST_C });
  // C holds peers of 4097 only; A drops what C claims is 4096.
  other.underlay.sendBatch([{ data: vxlan(4096, frame(mac(1), mac(13))), address: HOST_A, port: 4789 }]);
  await net.idle();
  t.is(a.vtep.stats.dropUnknownSender, 1);
  t.deepEqual(a.port(4096).written, []);
});

test('garbage from the underlay is dropped and counted by reason; good frames still pass', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [VNI, 4097]);
  a.vtep.setPeer(VNI, { mac: mac(1), vtep: HOST_A });
  a.vtep.setPeer(VNI, { mac: mac(2), vtep: HOST_B });
  const fromB = net.open(HOST_B, 50_000);
  const fromStranger = net.open('198.18.0.99', 4789);
  const fromSelf = net.open(HOST_A, 50_000);
  const toA = (data: Uint8Array): Datagram => ({ data, address: HOST_A, port: 4789 });
  const good = frame(mac(1), mac(2));
  const stats = a.vtep.stats;

  const truncated = [];
  for (let length = 0; length < 8 + 14; length++) truncated.push(toA(vxlan(VNI, good).subarray(0, length)));
  fromB.sendBatch(truncated);
  await net.idle();
  t.is(stats.dropTruncated, 22);

  const noIFlag = vxlan(VNI, good);
  noIFlag[0] = 0x00;
  const reservedBitsSet = vxlan(VNI, good);
  reservedBitsSet[0] = 0xff;
  reservedBitsSet[7] = 0xff;
  fromB.sendBatch([toA(noIFlag), toA(vxlan(5000, good)), toA(reservedBitsSet)]);
  await net.idle();
  t.is(stats.dropBadFlags, 1);
  t.is(stats.dropUnknownVni, 1);
  // Reserved bits are ignored on receipt (RFC 7348 §5).
  t.deepEqual(a.port().written, [good]);
  a.port().written.length = 0;

  fromStranger.sendBatch([toA(vxlan(VNI, good))]);
  fromSelf.sendBatch([toA(vxlan(VNI, good))]);
  // The inner source is A's own endpoint: a loop or a spoof.
  fromB.sendBatch([toA(vxlan(VNI, frame(mac(2), mac(1))))]);
  await net.idle();
  t.is(stats.dropUnknownSender, 1);
  t.is(stats.dropSelf, 2);

  const random = prng(7348);
  const fuzz: Datagram[] = [];
  for (let i = 0; i < 3000; i++) {
    const data = new Uint8Array(Math.floor(random() * 120));
    for (let j = 0; j < data.length; j++) data[j] = Math.floor(random() * 256);
    fuzz.push(toA(data));
  }
  const before = drops(a.vtep);
  fromB.sendBatch(fuzz);
  await net.idle();
  t.is(drops(a.vtep) - before, 3000);
  t.deepEqual(a.port().written, []);
  t.deepEqual(a.port(4097).written, []);
  t.is(stats.txFrames, 1);

  fromB.sendBatch([toA(vxlan(VNI, good))]);
  await net.idle();
  t.deepEqual(a.port().written, [good]);
});

test('a port that throws or takes fewer frames costs only its own frames', async (t) => {
  const net = new MemoryNetwork();
  const logged: string[] = [];
  const a = host(net, HOST_A, [4096, 4097], { logger: levelLogger((_level, msg) => logged.push(msg)) });
  const b = host(net, HOST_B, [4096, 4097]);
  publish([a, b], [
    { n: 1, at: a, vni: 4096 },
    { n: 2, at: b, vni: 4096 },
    { n: 11, at: a, vni: 4097 },
    { n: 12, at: b, vni: 4097 },
  ]);
  a.port(4096).capacity = 1;
  const broken = a.port(4097);
  broken.writeFrames = () => {
    throw new Error('device gone');
  };
  b.port(4096).inject([frame(mac(1), mac(2), 46, 1), frame(mac(1), mac(2), 46, 2), frame(mac(1), mac(2), 46, 3)]);
  b.port(4097).inject([frame(mac(11), mac(12))]);
  await net.idle();
  t.is(a.port(4096).written.length, 1);
  t.like(a.vtep.stats, { rxDatagrams: 4, txFrames: 1, dropWriteFailed: 3 });
  t.true(logged.some((msg) => msg.includes('device gone')));
});

test('one writeFrames per port per underlay batch; per TAP batch one sendFrames per destination and one sendBatch for floods', async (t) => {
  const net = new MemoryNetwork();
  const sends: string[] = [];
  const counting: DatagramPort = (() => {
    const inner = net.open(HOST_A, 4789);
    return {
      start: (onBatch) => inner.start(onBatch),
      sendBatch: (datagrams) => {
        sends.push(`flood ${datagrams.length}`);
        inner.sendBatch(datagrams);
      },
      sendFrames: (header, frames, vnetHdr, address, port) => {
        sends.push(`${address} ${frames.count}`);
        return inner.sendFrames(header, frames, vnetHdr, address, port);
      },
      close: () => inner.close(),
    };
  })();
  const a = new Vtep({ underlay: counting, localAddress: HOST_A, probe: { timers: new ManualTimers() } });
  a.start();
  const aPort = new MemoryFramePort();
  a.addNetwork(VNI, aPort);
  const b = host(net, HOST_B);
  const c = host(net, HOST_C);
  for (const vtep of [a, b.vtep, c.vtep]) {
    vtep.setPeer(VNI, { mac: mac(1), vtep: HOST_A });
    vtep.setPeer(VNI, { mac: mac(2), vtep: HOST_B });
    vtep.setPeer(VNI, { mac: mac(3), vtep: HOST_C });
  }
  const writes: number[] = [];
  const bPort = b.port();
  const write = bPort.writeFrames.bind(bPort);
  bPort.writeFrames = (frames) => {
    writes.push(frames.count);
    return write(frames);
  };
  aPort.inject([frame(mac(2), mac(1)), frame(mac(3), mac(1)), frame(BROADCAST_MAC, mac(1)), frame(mac(2), mac(1))]);
  await net.idle();
  t.deepEqual(sends, [`${HOST_B} 2`, `${HOST_C} 1`, 'flood 2']);
  t.is(a.stats.txDatagrams, 5);
  t.deepEqual(writes, [3]);
  t.is(c.port().written.length, 2);
});

test('frames longer than maxFrameLength are dropped in both directions', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [VNI], { maxFrameLength: 1518 });
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a },
    { n: 2, at: b },
  ]);
  a.port().inject([frame(mac(2), mac(1), 1505), frame(mac(2), mac(1), 1504)]);
  b.port().inject([frame(mac(1), mac(2), 1505), frame(mac(1), mac(2), 1504)]);
  await net.idle();
  t.is(a.vtep.stats.dropOversize, 2);
  t.is(b.port().written.length, 1);
  t.is(a.port().written.length, 1);
});

test('frames shorter than an Ethernet header from a port are dropped as truncated', (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  a.port().inject([Buffer.alloc(0), Buffer.alloc(13)]);
  t.is(a.vtep.stats.dropTruncated, 2);
});

test('frames from netctl VTEPs reach the port marked trusted, frames from external peers unverified, RCO ones partial', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, []);
  const aPort = new MemoryFramePort();
  a.vtep.addNetwork(VNI, aPort, { externalPeers: [EXTERNAL] });
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a },
    { n: 2, at: b },
  ]);
  const marks: number[] = [];
  const write = aPort.writeFrames.bind(aPort);
  aPort.writeFrames = (frames) => {
    for (let i = 0; i < frames.count; i++) marks.push(frames.checksum?.[i] ?? 0);
    return write(frames);
  };
  const kernel = net.open(EXTERNAL, 4789);
  kernel.start(() => {});

  const fromNetctl = frame(mac(1), mac(2));
  b.port().inject([fromNetctl]);
  await net.idle();
  const fromKernel = frame(mac(1), mac(0x50));
  kernel.sendBatch([{ data: vxlan(VNI, fromKernel), address: HOST_A, port: 4789 }]);
  await net.idle();
  t.deepEqual(aPort.written, [fromNetctl, fromKernel]);
  t.deepEqual(marks, [CHECKSUM_TRUSTED, CHECKSUM_UNVERIFIED]);

  // RCO (as Linux's remcsumtx sends it): TCP checksum starting 34 bytes in, or UDP (bit 7) at 34.
  const rco = (from: number, octet: number) => {
    const data = vxlan(VNI, frame(mac(1), mac(from), 100));
    data[1] = VXLAN_FLAG_RCO;
    data[7] = octet;
    return data;
  };
  b.underlay.sendBatch([
    { data: rco(2, 17), address: HOST_A, port: 4789 },
    { data: rco(2, 0x80 | 17), address: HOST_A, port: 4789 },
  ]);
  kernel.sendBatch([{ data: rco(0x50, 17), address: HOST_A, port: 4789 }]);
  await net.idle();
  t.deepEqual(marks.slice(2), [17, 0x80 | 17, 17], 'the RCO octet, from netctl and external VTEPs alike');
  const before = a.vtep.stats.dropBadFlags;
  b.underlay.sendBatch([
    { data: rco(2, 3), address: HOST_A, port: 4789 },
    { data: rco(2, 0x7f), address: HOST_A, port: 4789 },
  ]);
  await net.idle();
  t.is(a.vtep.stats.dropBadFlags - before, 2, 'a start inside the Ethernet header or past the frame is refused');
  t.is(marks.length, 5);
});

test('each datagram of a coalesced (GRO) receive is judged on its own', (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  const first = frame(mac(1), mac(2), 46, 1);
  const otherVni = frame(mac(1), mac(2), 46, 2);
  const second = frame(mac(1), mac(2), 46, 3);
  const fromSelf = frame(mac(1), mac(1), 46, 4);
  const last = frame(mac(1), mac(2), 20, 5);
  const data = Buffer.concat([vxlan(VNI, first), vxlan(VNI + 1, otherVni), vxlan(VNI, second), vxlan(VNI, fromSelf), vxlan(VNI, last)]);
  a.underlay.deliver([{ data, address: HOST_B, port: 4789, segmentSize: vxlan(VNI, first).length }]);
  t.deepEqual(a.port().written, [first, second, last]);
  t.like(a.vtep.stats, { rxDatagrams: 5, dropUnknownVni: 1, dropSelf: 1 });
});

test('external peers: their MACs are learned, replies go back to them, entries age out, floods reach them', async (t) => {
  const net = new MemoryNetwork();
  let clock = 1_000_000;
  const a = host(net, HOST_A, [], { now: () => clock });
  const aPort = new MemoryFramePort();
  a.vtep.addNetwork(VNI, aPort, { externalPeers: [EXTERNAL] });
  const b = host(net, HOST_B);
  publish([a, b], [
    { n: 1, at: a },
    { n: 2, at: b },
  ]);
  // A kernel vxlan device on another host: a bare UDP port speaking VXLAN.
  const kernel = net.open(EXTERNAL, 4789);
  const received: ReceivedDatagram[] = [];
  kernel.start((batch) => received.push(...receivedDatagrams(batch)));
  const external = mac(0x50);

  const hello = frame(BROADCAST_MAC, external);
  kernel.sendBatch([{ data: vxlan(VNI, hello), address: HOST_A, port: 4789 }]);
  await net.idle();
  t.deepEqual(aPort.written, [hello]);
  t.is(a.vtep.stats.learned, 1);

  const reply = frame(external, mac(1));
  aPort.inject([reply]);
  await net.idle();
  t.is(received.length, 1);
  t.deepEqual(decodeVxlan(received[0]!.data).vni, VNI);
  t.deepEqual(Buffer.from(received[0]!.data.subarray(8)), reply);
  t.deepEqual(b.port().written, [], 'a learned MAC is unicast, not flooded');

  const broadcast = frame(BROADCAST_MAC, mac(1));
  aPort.inject([broadcast]);
  await net.idle();
  t.is(received.length, 2);
  t.deepEqual(Buffer.from(received[1]!.data.subarray(8)), broadcast);
  t.deepEqual(b.port().written, [broadcast]);

  clock += 300_001;
  aPort.inject([reply]);
  await net.idle();
  t.deepEqual(b.port().written, [broadcast, reply], 'after ageing out the MAC is unknown and flooded');
  t.is(a.vtep.stats.flooded, 2);

  // Traffic refreshes a learned entry.
  kernel.sendBatch([{ data: vxlan(VNI, hello), address: HOST_A, port: 4789 }]);
  await net.idle();
  clock += 200_000;
  kernel.sendBatch([{ data: vxlan(VNI, hello), address: HOST_A, port: 4789 }]);
  await net.idle();
  clock += 200_000;
  aPort.inject([reply]);
  await net.idle();
  t.is(a.vtep.stats.flooded, 2);
  t.is(a.vtep.stats.learned, 2);

  // A learned MAC never overrides a configured one.
  kernel.sendBatch([{ data: vxlan(VNI, frame(BROADCAST_MAC, mac(2))), address: HOST_A, port: 4789 }]);
  await net.idle();
  const toB = frame(mac(2), mac(1), 46, 5);
  aPort.inject([toB]);
  await net.idle();
  t.deepEqual(b.port().written.at(-1), toB);

  a.vtep.setExternalPeers(VNI, []);
  kernel.sendBatch([{ data: vxlan(VNI, hello), address: HOST_A, port: 4789 }]);
  await net.idle();
  t.is(a.vtep.stats.dropUnknownSender, 1);
});

test('removePeer and removeNetwork stop forwarding', async (t) => {
  const net = new MemoryNetwork();
  const [a, b, c] = threeHosts(net);
  a.vtep.removePeer(VNI, macText(2));
  const toB = frame(mac(2), mac(1));
  a.port().inject([toB, arpRequest(mac(1), ip(1), ip(2))]);
  await net.idle();
  // B holds no more peers of the VNI for A: the frame is unknown unicast, flooded to C only.
  t.deepEqual(b.port().written, []);
  t.is(c.port().written.length, 2);
  t.is(a.vtep.stats.arpAnswered, 0);
  b.port().inject([frame(mac(1), mac(2))]);
  await net.idle();
  t.is(a.vtep.stats.dropUnknownSender, 1);
  t.deepEqual(a.port().written, []);

  const port = a.port();
  a.vtep.removeNetwork(VNI);
  t.true(port.closed);
  t.false(port.inject([frame(mac(3), mac(1))]));
  c.port().inject([frame(mac(1), mac(3))]);
  await net.idle();
  t.is(a.vtep.stats.dropUnknownVni, 1);
  t.deepEqual(port.written, []);

  // The VNI can be served again on a new port, with the peers still known.
  const again = new MemoryFramePort();
  a.vtep.addNetwork(VNI, again);
  c.port().inject([frame(mac(1), mac(3))]);
  await net.idle();
  t.is(again.written.length, 1);
});

test('stop closes every port and the underlay; every later call throws VtepStopped', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [4096, 4097]);
  const ports = [...a.ports.values()];
  await a.vtep.stop();
  t.true(ports.every((port) => port.closed));
  t.true(a.underlay.closed);
  const port = new MemoryFramePort();
  const calls: Array<() => unknown> = [
    () => a.vtep.start(),
    () => a.vtep.addNetwork(5000, port),
    () => a.vtep.removeNetwork(4096),
    () => a.vtep.setExternalPeers(4096, []),
    () => a.vtep.setPeer(4096, { mac: mac(1), vtep: HOST_B }),
    () => a.vtep.removePeer(4096, mac(1)),
  ];
  for (const call of calls) t.throws(call, { instanceOf: VtepStopped });
  await t.throwsAsync(a.vtep.stop(), { instanceOf: VtepStopped });
  t.false(port.started);
});

test('stop reports every port that fails to close, after closing the rest', async (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A, [4096, 4097, 4098]);
  for (const vni of [4096, 4097]) {
    a.port(vni).close = () => {
      throw new Error(`close ${vni} failed`);
    };
  }
  const error = await t.throwsAsync(a.vtep.stop());
  t.regex(error?.message ?? '', /close 4096 failed.*close 4097 failed/);
  t.true(a.port(4098).closed);
  t.true(a.underlay.closed);
});

test('arguments are validated', (t) => {
  const net = new MemoryNetwork();
  const a = host(net, HOST_A);
  t.throws(() => a.vtep.addNetwork(VNI, new MemoryFramePort()), { instanceOf: Conflict });
  t.throws(() => a.vtep.addNetwork(1 << 24, new MemoryFramePort()), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setPeer(VNI, { mac: 'not-a-mac', vtep: HOST_B }), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setPeer(VNI, { mac: 'ff:ff:ff:ff:ff:ff', vtep: HOST_B }), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setPeer(VNI, { mac: mac(1), vtep: 'host-b' }), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setPeer(VNI, { mac: mac(1), ipv4: '10.0.0.256', vtep: HOST_B }), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setPeer(VNI, { mac: mac(1), ipv6: 'fd00:::1', vtep: HOST_B }), { instanceOf: InvalidArgument });
  t.throws(() => a.vtep.setExternalPeers(VNI, ['198.18.0.300']), { instanceOf: InvalidArgument });
  t.throws(() => new Vtep({ underlay: net.open(HOST_B), localAddress: 'b' }), { instanceOf: InvalidArgument });
});

test('with a vnetHdr port a TCP super-frame leaves as MSS-sized datagrams, ARP is answered, broadcasts flooded without the virtio header', async (t) => {
  const net = new MemoryNetwork();
  const underlay = net.open(HOST_A, 4789);
  const a = new Vtep({ underlay, localAddress: HOST_A, probe: { timers: new ManualTimers() } });
  t.teardown(() => a.stop());
  a.start();
  const aPort = new MemoryFramePort({ vnetHdr: true });
  a.addNetwork(VNI, aPort);
  const b = host(net, HOST_B);
  for (const vtep of [a, b.vtep]) {
    vtep.setPeer(VNI, { mac: mac(1), ipv4: ip(1), vtep: HOST_A });
    vtep.setPeer(VNI, { mac: mac(2), ipv4: ip(2), vtep: HOST_B });
  }
  const noOffload = Buffer.alloc(VNET_HDR_LEN);
  const big = superFrame({ payload: 20_000 });
  const broadcast = frame(BROADCAST_MAC, mac(1), 46, 9);
  aPort.inject([big, Buffer.concat([noOffload, arpRequest(mac(1), ip(1), ip(2))]), Buffer.concat([noOffload, broadcast])]);
  await net.idle();

  const segments = Math.ceil(20_000 / MSS);
  const fromA = net.packets.filter((packet) => packet.from.address === HOST_A);
  t.is(fromA.length, segments + 1);
  t.true(fromA.every((packet) => packet.data.length <= VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + 1450), 'every datagram fits a 1500-byte underlay');
  const expected = segmentFrame(big)!;
  t.is(expected.length, segments);
  t.deepEqual(b.port().written, [...expected.map((piece) => Buffer.from(piece)), broadcast]);
  t.is(aPort.written.length, 1, 'the ARP request was answered locally');
  t.is(decodeArp(aPort.written[0]!, ETHERNET_HEADER_LEN).operation, ARP_REPLY);
  t.like(a.stats, { rxFrames: 3, txDatagrams: segments + 1, arpAnswered: 1, flooded: 1 });

  const bad = Buffer.from(big);
  bad[1] = 5; // a GSO type the TAP is never asked for
  aPort.inject([bad]);
  await net.idle();
  t.is(a.stats.dropBadOffload, 0, 'unicast goes whole to the underlay, which drops what it cannot cut');
  b.vtep.removePeer(VNI, mac(2));
  a.removePeer(VNI, mac(2));
  aPort.inject([bad]);
  await net.idle();
  t.is(a.stats.dropBadOffload, 1, 'a frame to flood is cut first, and counted when it cannot be');
});

test('two VTEPs probe each other on the data path: up, down when the underlay loses their datagrams, up again; stop ends probing', async (t) => {
  let cut = false;
  const net = new MemoryNetwork({ drop: (packet) => cut && (packet.from.address === HOST_B || packet.to.address === HOST_B) });
  const timers = new ManualTimers();
  const logs: string[] = [];
  const a = host(net, HOST_A, [VNI], { probe: { timers }, logger: levelLogger((_level, message) => logs.push(message)) });
  const b = host(net, HOST_B, [VNI], { probe: { timers } });
  publish([a, b], [
    { n: 1, at: a },
    { n: 2, at: b },
  ]);
  a.vtep.setExternalPeers(VNI, [EXTERNAL]);
  const changes: string[] = [];
  a.vtep.onPeerStateChange((peer) => changes.push(`${peer.address} ${peer.state}`));
  const tick = async (ms: number) => {
    timers.advance(ms);
    await net.idle();
  };

  await tick(300);
  t.like(a.vtep.peerState(HOST_B), { state: 'up', rttMs: 0 });
  t.like(b.vtep.peerState(HOST_A), { state: 'up' });
  t.is(a.vtep.peerState(EXTERNAL), undefined, 'an external peer is not netctl: never probed');
  t.false(net.packets.some((packet) => packet.to.address === EXTERNAL), 'nothing was sent to it');
  t.deepEqual(a.vtep.peerStates().map((peer) => peer.address), [HOST_B]);
  t.is(a.vtep.stats.dropBadFlags + b.vtep.stats.dropBadFlags, 0, 'probes are not counted as bad VXLAN');
  t.is(a.vtep.stats.txDatagrams, 2, 'a request and a reply');

  // Frames still cross while probes run.
  a.port().inject([frame(mac(2), mac(1))]);
  await net.idle();
  t.is(b.port().written.length, 1);

  cut = true;
  await tick(900);
  t.is(a.vtep.peerState(HOST_B)?.state, 'up');
  await tick(300);
  t.like(a.vtep.peerState(HOST_B), { state: 'down', since: timers.now() });
  t.is(b.vtep.peerState(HOST_A)?.state, 'down');
  await tick(3000);
  cut = false;
  await tick(300);
  t.is(a.vtep.peerState(HOST_B)?.state, 'up');
  t.deepEqual(changes, [`${HOST_B} up`, `${HOST_B} down`, `${HOST_B} up`]);
  t.deepEqual(
    logs.filter((line) => line.startsWith('VTEP peer')),
    [`VTEP peer ${HOST_B} is up (RTT 0µs)`, `VTEP peer ${HOST_B} is down: no probe reply for 1200 ms`, `VTEP peer ${HOST_B} is up (RTT 0µs)`],
  );

  // Only VTEPs with peers on a served network are probed, and only known VTEPs get replies.
  a.vtep.removePeer(VNI, mac(2));
  await tick(300);
  t.is(a.vtep.peerState(HOST_B), undefined);
  t.is(changes.at(-1), `${HOST_B} unknown`);
  const sent = net.packets.length;
  await tick(300);
  const fromB = net.packets.slice(sent).filter((packet) => packet.from.address === HOST_B);
  t.true(fromB.length === 1 && fromB[0]!.data[5] === 1, 'B still asks; A, which no longer knows B, does not answer');

  await a.vtep.stop();
  await b.vtep.stop();
  t.is(timers.running, 0, 'stop ends the probe timers');
  t.deepEqual(a.vtep.peerStates(), []);
});
