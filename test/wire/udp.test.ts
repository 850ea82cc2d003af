import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { parseIPv4 } from '../../src/wire/ipv4addr.js';
import {
  decodeUdp,
  encodeUdp,
  UDP_HEADER_LEN,
  udpChecksum,
  udpChecksumIPv4,
  udpDstPort,
  udpLength,
  udpSrcPort,
} from '../../src/wire/udp.js';
import type { UdpRepr } from '../../src/wire/udp.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Captured in a test namespace (see vxlan.test.ts): "netctl" from 10.99.0.1:40000 to 10.99.0.2:7777.
const capturedDatagram = bytes('9c40 1e61 000e d932 6e657463746c');
const datagramRepr: UdpRepr = { srcPort: 40000, dstPort: 7777, length: 14, checksum: 0xd932 };
const innerSrc = parseIPv4('10.99.0.1');
const innerDst = parseIPv4('10.99.0.2');

// The underlay datagram that carried a VXLAN-encapsulated ARP request, from its IPv4 header on.
const capturedUnderlay = bytes(`
  4500004ee0a9000040110dcec6120001c6120002
  ae8912b5003ad3e1
  0800000000109200 ffffffffffff02420a6300010806000108000604000102420a6300010a6300010000000000000a630002`);

test('deconstructs a captured datagram', (t) => {
  t.deepEqual(decodeUdp(capturedDatagram), datagramRepr);
  t.is(udpSrcPort(capturedDatagram, 0), 40000);
  t.is(udpDstPort(capturedDatagram, 0), 7777);
  t.is(udpLength(capturedDatagram, 0), 14);
  t.is(udpChecksum(capturedDatagram, 0), 0xd932);
});

test('constructs the captured header', (t) => {
  const buf = new Uint8Array(UDP_HEADER_LEN);
  t.is(encodeUdp(datagramRepr, buf), 8);
  t.is(toHex(buf), toHex(capturedDatagram.subarray(0, 8)));
});

test('computes the checksums the kernel sent, ignoring the current field', (t) => {
  t.is(udpChecksumIPv4(capturedDatagram, 0, 14, innerSrc, innerDst), 0xd932);
  const zeroed = capturedDatagram.slice();
  zeroed[6] = 0;
  zeroed[7] = 0;
  t.is(udpChecksumIPv4(zeroed, 0, 14, innerSrc, innerDst), 0xd932);
  t.is(udpChecksumIPv4(capturedUnderlay, 20, 58, parseIPv4('198.18.0.1'), parseIPv4('198.18.0.2')), 0xd3e1);
  t.not(udpChecksumIPv4(capturedDatagram, 0, 14, innerDst, innerDst), 0xd932);
});

test('sends a computed zero checksum as 0xffff (RFC 768)', (t) => {
  const datagram = bytes('9c40 1e61 000e 0000 6e657463 0000');
  const checksum = udpChecksumIPv4(datagram, 0, 14, innerSrc, innerDst);
  // Putting the checksum into a zero payload word makes the sum all ones, so the checksum becomes 0.
  datagram.set([checksum >>> 8, checksum & 0xff], 12);
  t.is(udpChecksumIPv4(datagram, 0, 14, innerSrc, innerDst), 0xffff);
});

test('round-trips at an offset inside a larger buffer', (t) => {
  const repr: UdpRepr = { srcPort: 65535, dstPort: 4789, length: 8, checksum: 0 };
  const buf = new Uint8Array(20).fill(0xaa);
  t.is(encodeUdp(repr, buf, 11), 8);
  t.is(buf[10], 0xaa);
  t.is(buf[19], 0xaa);
  t.deepEqual(decodeUdp(buf, 11), repr);
  t.throws(() => encodeUdp(repr, new Uint8Array(10), 3), { instanceOf: RangeError });
});

test('rejects impossible lengths, citing RFC 768', (t) => {
  const truncated = t.throws(() => decodeUdp(capturedDatagram.subarray(0, 7)), { instanceOf: WireError });
  t.is(truncated.reason, 'truncated UDP header (RFC 768): 7 bytes at offset 0, need 8');
  const short = capturedDatagram.slice();
  short[5] = 7;
  const tooShort = t.throws(() => decodeUdp(short), { instanceOf: WireError });
  t.is(tooShort.reason, 'UDP length 7 shorter than the 8-byte header (RFC 768)');
  t.is(tooShort.offset, 4);
  const beyond = t.throws(() => decodeUdp(capturedDatagram.subarray(0, 13)), { instanceOf: WireError });
  t.is(beyond.reason, 'UDP length 14 beyond the 13 bytes at offset 0 (RFC 768)');
});
