/**
 * The VTEP's policy for encrypted networks, with the memory underlay's
 * stand-in for ESP (MemoryEspTable): what leaves is sealed or nothing, what
 * is taken in was sealed, and every refusal is counted. The cryptography
 * itself is tested against the addon (test/sys/udp-esp.test.ts) and end to
 * end (test/e2e/overlay-encrypted.test.ts).
 */
import test from 'ava';
import { InvalidArgument } from '../../src/errors.js';
import { MemoryEspTable, MemoryFramePort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { encryptedMtu, overlayMtu } from '../../src/vxlan/mtu.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import { espSealedLength } from '../../src/sys/esp.js';
import { ETHERNET_HEADER_LEN } from '../../src/wire/index.js';
import { ManualTimers } from './clock.js';
import { HOST_A, HOST_B, HOST_C, VNI, arpRequest, frame, ip, mac, publish, vxlan } from './helpers.js';
import type { Host } from './helpers.js';

const PLAIN_VNI = VNI + 1;
/** SPI of the SA from A to B, and from B to A (one table per host: A's outbound is B's inbound). */
const SPI_AB = 0x1000;
const SPI_BA = 0x2000;

interface EspHost extends Host {
  readonly esp: MemoryEspTable;
}

/** A host serving VNI encrypted and PLAIN_VNI in clear, its port holding a MemoryEspTable. */
function espHost(network: MemoryNetwork, address: string): EspHost {
  const underlay = network.open(address, 4789);
  const esp = new MemoryEspTable();
  underlay.setEspTable(esp);
  const vtep = new Vtep({ underlay, localAddress: address, probe: { timers: new ManualTimers() } });
  vtep.start();
  const ports = new Map<number, MemoryFramePort>([
    [VNI, new MemoryFramePort()],
    [PLAIN_VNI, new MemoryFramePort()],
  ]);
  vtep.addNetwork(VNI, ports.get(VNI)!, { encrypted: true });
  vtep.addNetwork(PLAIN_VNI, ports.get(PLAIN_VNI)!);
  return { address, vtep, underlay, ports, esp, port: (vni = VNI) => ports.get(vni)! };
}

/** A and B with endpoint 1 at A and 2 at B on both networks, and the SAs of VNI between them installed. */
function keyedPair(network: MemoryNetwork): [EspHost, EspHost] {
  const a = espHost(network, HOST_A);
  const b = espHost(network, HOST_B);
  for (const vni of [VNI, PLAIN_VNI]) publish([a, b], [{ n: 1, at: a, vni }, { n: 2, at: b, vni }]);
  const sa = (spi: number) => ({ spi, key: new Uint8Array(32), salt: new Uint8Array(4), tag: VNI });
  a.esp.addOutbound(sa(SPI_AB));
  b.esp.addInbound(sa(SPI_AB));
  b.esp.addOutbound(sa(SPI_BA));
  a.esp.addInbound(sa(SPI_BA));
  a.vtep.setOutboundSpi(VNI, HOST_B, SPI_AB);
  b.vtep.setOutboundSpi(VNI, HOST_A, SPI_BA);
  return [a, b];
}

test('frames of an encrypted network cross sealed with the SA of their VTEP, both ways; the plain network beside it is unchanged', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = keyedPair(net);
  const toB = frame(mac(2), mac(1), 200, 1);
  const toA = frame(mac(1), mac(2), 300, 2);
  a.port().inject([toB]);
  b.port().inject([toA]);
  a.port(PLAIN_VNI).inject([toB]);
  await net.idle();

  t.deepEqual(b.port().written, [toB]);
  t.deepEqual(a.port().written, [toA]);
  t.deepEqual(b.port(PLAIN_VNI).written, [toB]);
  const [sealedAB, sealedBA, plain] = net.packets;
  t.is(sealedAB!.data.readUInt32BE(0), SPI_AB, 'the SPI where a VXLAN header would start');
  t.is(sealedBA!.data.readUInt32BE(0), SPI_BA);
  t.deepEqual(plain!.data, vxlan(PLAIN_VNI, toB));
  t.like(a.vtep.stats, { dropNoKey: 0, dropCleartext: 0, dropUnexpectedSealed: 0 });
  t.like(b.vtep.stats, { dropNoKey: 0, dropCleartext: 0, dropUnexpectedSealed: 0 });
});

test('fail closed: with no SA for the destination nothing leaves, not unicast, flood nor fragment; counted as dropNoKey', async (t) => {
  const net = new MemoryNetwork();
  const [a] = keyedPair(net);
  a.vtep.setOutboundSpi(VNI, HOST_B, undefined);
  const big = frame(mac(2), mac(1), 3000, 3);
  a.port().inject([frame(mac(2), mac(1), 100, 1), frame(0xffffffffffff, mac(1), 60, 2), arpRequest(mac(1), ip(1), '10.0.9.9'), big]);
  await net.idle();

  t.is(net.packets.length, 0, 'not one datagram on the underlay');
  t.true(a.vtep.stats.dropNoKey >= 3);
  t.is(a.vtep.networkStats().find((n) => n.vni === VNI)!.counters.dropNoKey, a.vtep.stats.dropNoKey);
});

test('an SPI the VTEP was told of but the table lacks is refused by the port: nothing in clear, counted as dropNoKey', async (t) => {
  const net = new MemoryNetwork();
  const [a] = keyedPair(net);
  a.esp.remove('outbound', SPI_AB);
  a.port().inject([frame(mac(2), mac(1), 100, 1), frame(0xffffffffffff, mac(1), 60, 2)]);
  await net.idle();

  t.is(net.packets.length, 0);
  t.is(a.vtep.stats.dropNoKey, 2);
});

test('plain VXLAN for an encrypted network is dropped and counted, sealed datagrams for a plain network too; traffic goes on', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = keyedPair(net);
  const forged = frame(mac(2), mac(1), 100, 9);
  // Cleartext on the encrypted VNI, as an attacker (or a host without keys) would send it, from A's address.
  b.underlay.deliver([{ data: vxlan(VNI, forged), address: HOST_A, port: 4789 }]);
  t.deepEqual(b.port().written, []);
  t.is(b.vtep.stats.dropCleartext, 1);

  // An SA of the encrypted network whose tag names the plain one.
  b.esp.addInbound({ spi: 0x3000, key: new Uint8Array(32), salt: new Uint8Array(4), tag: PLAIN_VNI });
  const sealedForPlain = Buffer.concat([Buffer.from([0, 0, 0x30, 0]), forged]);
  b.underlay.deliver([{ data: sealedForPlain, address: HOST_A, port: 4789 }]);
  t.deepEqual(b.port(PLAIN_VNI).written, []);
  t.is(b.vtep.stats.dropUnexpectedSealed, 1);

  const good = frame(mac(2), mac(1), 100, 10);
  a.port().inject([good]);
  await net.idle();
  t.deepEqual(b.port().written, [good]);
});

test('a sealed datagram from an address that is no VTEP of the network is dropped as from an unknown sender', async (t) => {
  const net = new MemoryNetwork();
  const [, b] = keyedPair(net);
  const data = Buffer.concat([Buffer.from([0, 0, 0x10, 0]), frame(mac(2), mac(1), 100, 1)]);
  b.underlay.deliver([{ data, address: HOST_C, port: 4789 }]);
  t.deepEqual(b.port().written, []);
  t.is(b.vtep.stats.dropUnknownSender, 1);
});

test('the path limit of an encrypted network leaves room for ESP: the largest frame that passes seals to the underlay MTU exactly', async (t) => {
  const plainMtu = overlayMtu(1500);
  const mtu = encryptedMtu(plainMtu);
  t.is(mtu, 1424);
  // IPv4 20 + UDP 8 + the sealed datagram fills a 1500-byte underlay packet; one more byte of frame would not fit.
  t.is(20 + 8 + espSealedLength(mtu + ETHERNET_HEADER_LEN), 1500);
  t.true(20 + 8 + espSealedLength(mtu + 1 + ETHERNET_HEADER_LEN) > 1500);

  const net = new MemoryNetwork();
  const a = espHostWithMtu(net, HOST_A, plainMtu);
  const b = espHostWithMtu(net, HOST_B, plainMtu);
  publish([a, b], [{ n: 1, at: a }, { n: 2, at: b }]);
  a.esp.addOutbound({ spi: SPI_AB, key: new Uint8Array(32), salt: new Uint8Array(4), tag: VNI });
  a.vtep.setOutboundSpi(VNI, HOST_B, SPI_AB);
  a.port().inject([ipv4Frame(mtu), ipv4Frame(mtu + 1)]);
  await net.idle();
  t.is(net.packets.length, 1, 'the frame one byte too long is not sent');
  t.is(a.vtep.stats.dropTooBig, 1);
  t.is(a.vtep.stats.tooBigAnswered, 1, 'its sender is told the MTU (ICMP fragmentation needed)');
  const answer = a.port().written[0]!;
  // ICMP type 3 code 4, next-hop MTU in bytes 6–7 of the ICMP header (RFC 1191).
  t.is(answer.readUInt16BE(ETHERNET_HEADER_LEN + 20 + 6), mtu);
});

test('an encrypted network cannot have external peers', (t) => {
  const net = new MemoryNetwork();
  const underlay = net.open(HOST_A, 4789);
  const vtep = new Vtep({ underlay, localAddress: HOST_A, probe: { timers: new ManualTimers() } });
  t.throws(() => vtep.addNetwork(VNI, new MemoryFramePort(), { encrypted: true, externalPeers: ['198.18.0.9'] }), { instanceOf: InvalidArgument });
  vtep.addNetwork(VNI, new MemoryFramePort(), { encrypted: true });
  t.throws(() => vtep.setExternalPeers(VNI, ['198.18.0.9']), { instanceOf: InvalidArgument });
  t.throws(() => vtep.setOutboundSpi(VNI, HOST_B, 0x08000000 + 0.5), { instanceOf: InvalidArgument });
});

function espHostWithMtu(network: MemoryNetwork, address: string, mtu: number): EspHost {
  const underlay = network.open(address, 4789);
  const esp = new MemoryEspTable();
  underlay.setEspTable(esp);
  const vtep = new Vtep({ underlay, localAddress: address, mtu, probe: { timers: new ManualTimers() } });
  vtep.start();
  const port = new MemoryFramePort();
  vtep.addNetwork(VNI, port, { encrypted: true });
  return { address, vtep, underlay, ports: new Map([[VNI, port]]), esp, port: () => port };
}

/** An IPv4 frame from endpoint 1 to endpoint 2 with DF set, of IP length `length`. */
function ipv4Frame(length: number): Buffer {
  const data = Buffer.alloc(ETHERNET_HEADER_LEN + length);
  data.writeUIntBE(mac(2), 0, 6);
  data.writeUIntBE(mac(1), 6, 6);
  data.writeUInt16BE(0x0800, 12);
  const ip4 = ETHERNET_HEADER_LEN;
  data[ip4] = 0x45;
  data.writeUInt16BE(length, ip4 + 2);
  data.writeUInt16BE(0x4000, ip4 + 6);
  data[ip4 + 8] = 64;
  data[ip4 + 9] = 17;
  Buffer.from(ip(1).split('.').map(Number)).copy(data, ip4 + 12);
  Buffer.from(ip(2).split('.').map(Number)).copy(data, ip4 + 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += data.readUInt16BE(ip4 + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  data.writeUInt16BE(~sum & 0xffff, ip4 + 10);
  return data;
}
