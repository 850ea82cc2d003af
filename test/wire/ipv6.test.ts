import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { IPPROTO_ICMPV6, IPPROTO_TCP } from '../../src/wire/ipv4.js';
import {
  decodeIPv6,
  encodeIPv6,
  formatIPv6,
  IPV6_HEADER_LEN,
  ipv6HopLimit,
  ipv6NextHeader,
  ipv6PayloadLength,
  parseIPv6,
} from '../../src/wire/ipv6.js';
import type { IPv6Repr } from '../../src/wire/ipv6.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Captured in a test namespace (see vxlan.test.ts): the IPv6 header of a neighbour advertisement and its 32-byte payload.
const capturedNa = bytes(`
  6000000000203aff fd000099000000000000000000000002 fd000099000000000000000000000001
  8800102a60000000fd000099000000000000000000000002020102420a630002`);
const naRepr: IPv6Repr = {
  trafficClass: 0,
  flowLabel: 0,
  payloadLength: 32,
  nextHeader: IPPROTO_ICMPV6,
  hopLimit: 255,
  src: parseIPv6('fd00:99::2'),
  dst: parseIPv6('fd00:99::1'),
};

test('deconstructs a captured header with decode and with the accessors', (t) => {
  t.deepEqual(decodeIPv6(capturedNa), naRepr);
  t.is(ipv6PayloadLength(capturedNa, 0), 32);
  t.is(ipv6NextHeader(capturedNa, 0), IPPROTO_ICMPV6);
  t.is(ipv6HopLimit(capturedNa, 0), 255);
});

test('the decoded addresses are copies, not views', (t) => {
  const buf = capturedNa.slice();
  const repr = decodeIPv6(buf);
  buf.fill(0);
  t.is(formatIPv6(repr.src), 'fd00:99::2');
});

test('constructs the captured header', (t) => {
  const buf = new Uint8Array(IPV6_HEADER_LEN);
  t.is(encodeIPv6(naRepr, buf), 40);
  t.is(toHex(buf), toHex(capturedNa.subarray(0, 40)));
});

test('round-trips traffic class and flow label at an offset inside a larger buffer', (t) => {
  const repr: IPv6Repr = {
    trafficClass: 0xb8,
    flowLabel: 0xabcde,
    payloadLength: 0,
    nextHeader: IPPROTO_TCP,
    hopLimit: 1,
    src: parseIPv6('::'),
    dst: parseIPv6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
  };
  const buf = new Uint8Array(50).fill(0xaa);
  t.is(encodeIPv6(repr, buf, 5), 40);
  t.is(toHex(buf.subarray(5, 9)), '6b8abcde');
  t.is(buf[4], 0xaa);
  t.is(buf[45], 0xaa);
  t.deepEqual(decodeIPv6(buf, 5), repr);
  t.throws(() => encodeIPv6(repr, new Uint8Array(44), 5), { instanceOf: RangeError });
  t.throws(() => encodeIPv6({ ...repr, src: new Uint8Array(4) }, new Uint8Array(40)), { instanceOf: RangeError });
});

test('rejects what RFC 8200 §3 rules out', (t) => {
  const truncated = t.throws(() => decodeIPv6(capturedNa.subarray(0, 39)), { instanceOf: WireError });
  t.is(truncated.reason, 'truncated IPv6 header (RFC 8200 §3): 39 bytes at offset 0, need 40');
  const v4 = capturedNa.slice();
  v4[0] = 0x45;
  t.regex(t.throws(() => decodeIPv6(v4), { instanceOf: WireError }).reason, /version 4.*RFC 8200 §3/);
  const beyond = t.throws(() => decodeIPv6(capturedNa.subarray(0, 71)), { instanceOf: WireError });
  t.is(beyond.reason, 'IPv6 payload length 32 beyond the 31 bytes after the header at offset 0 (RFC 8200 §3)');
  t.is(beyond.offset, 4);
});

test('parses every RFC 4291 §2.2 form', (t) => {
  t.is(toHex(parseIPv6('fd00:99::2')), 'fd000099000000000000000000000002');
  t.is(toHex(parseIPv6('2001:DB8:0:0:8:800:200C:417A')), '20010db80000000000080800200c417a');
  t.is(toHex(parseIPv6('::')), '0'.repeat(32));
  t.is(toHex(parseIPv6('::1')), '0'.repeat(31) + '1');
  t.is(toHex(parseIPv6('fe80::')), 'fe80' + '0'.repeat(28));
  t.is(toHex(parseIPv6('1:2:3:4:5:6:7::')), '00010002000300040005000600070000');
  t.is(toHex(parseIPv6('::ffff:192.0.2.1')), '00000000000000000000ffffc0000201');
  t.is(toHex(parseIPv6('64:ff9b::198.18.0.1')), '0064ff9b0000000000000000c6120001');
});

test('rejects malformed text', (t) => {
  for (const text of [
    '',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    ':1:2:3:4:5:6:7',
    '12345::',
    'g::',
    'fe80::1%eth0',
    '1.2.3.4',
    '::1.2.3',
    '1.2.3.4::',
    '::1.2.3.4:5',
  ]) {
    t.throws(() => parseIPv6(text), { instanceOf: WireError }, text);
  }
});

test('formats in RFC 5952 canonical form', (t) => {
  const canonical = (text: string): string => formatIPv6(parseIPv6(text));
  t.is(canonical('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  t.is(canonical('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.is(canonical('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1');
  t.is(canonical('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1');
  t.is(canonical('0:0:0:0:0:0:0:0'), '::');
  t.is(canonical('0:0:0:0:0:0:0:1'), '::1');
  t.is(canonical('fe80:0:0:0:0:0:0:0'), 'fe80::');
  t.is(canonical('ff02::1:ff00:2'), 'ff02::1:ff00:2');
  t.is(canonical('::ffff:c000:0201'), '::ffff:192.0.2.1');
  const buf = new Uint8Array(20);
  buf.set(parseIPv6('fd00:99::1'), 4);
  t.is(formatIPv6(buf, 4), 'fd00:99::1');
});
