import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import {
  decodeIPv4,
  encodeIPv4,
  IPPROTO_ICMP,
  IPPROTO_UDP,
  IPV4_MIN_HEADER_LEN,
  ipv4Dst,
  ipv4HeaderLength,
  ipv4Protocol,
  ipv4Src,
  ipv4TotalLength,
} from '../../src/wire/ipv4.js';
import type { IPv4Repr } from '../../src/wire/ipv4.js';
import { internetChecksum } from '../../src/wire/checksum.js';
import { parseIPv4 } from '../../src/wire/ipv4addr.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Captured in a test namespace (see vxlan.test.ts): a ping's IPv4 packet, 84 bytes.
const capturedPing = bytes(`
  45000054735540004001b28b0a6300010a630002
  080011f2779a000165c80a6b00000000346c0b0000000000101112131415161718191a1b1c1d1e1f
  202122232425262728292a2b2c2d2e2f3031323334353637`);
const pingRepr: IPv4Repr = {
  dscp: 0,
  ecn: 0,
  totalLength: 84,
  identification: 0x7355,
  dontFragment: true,
  moreFragments: false,
  fragmentOffset: 0,
  ttl: 64,
  protocol: IPPROTO_ICMP,
  src: parseIPv4('10.99.0.1'),
  dst: parseIPv4('10.99.0.2'),
  headerLength: 20,
};

test('deconstructs a captured header, with decode and with the accessors', (t) => {
  t.deepEqual(decodeIPv4(capturedPing), pingRepr);
  t.is(ipv4HeaderLength(capturedPing, 0), 20);
  t.is(ipv4TotalLength(capturedPing, 0), 84);
  t.is(ipv4Protocol(capturedPing, 0), IPPROTO_ICMP);
  t.is(ipv4Src(capturedPing, 0), pingRepr.src);
  t.is(ipv4Dst(capturedPing, 0), pingRepr.dst);
});

test('constructs the captured header, checksum included', (t) => {
  const buf = new Uint8Array(IPV4_MIN_HEADER_LEN).fill(0xee);
  t.is(encodeIPv4(pingRepr, buf), 20);
  t.is(toHex(buf), toHex(capturedPing.subarray(0, 20)));
});

test('round-trips every field at an offset inside a larger buffer', (t) => {
  const repr: IPv4Repr = {
    dscp: 46,
    ecn: 3,
    totalLength: 48,
    identification: 0xbeef,
    dontFragment: false,
    moreFragments: true,
    fragmentOffset: 0x1fff,
    ttl: 1,
    protocol: IPPROTO_UDP,
    src: parseIPv4('255.255.255.255'),
    dst: parseIPv4('198.18.0.2'),
    headerLength: 20,
  };
  const buf = new Uint8Array(7 + 48 + 3).fill(0xaa);
  t.is(encodeIPv4(repr, buf, 7), 20);
  t.is(buf[6], 0xaa);
  t.is(buf[27], 0xaa);
  t.deepEqual(decodeIPv4(buf, 7), repr);
  t.is(ipv4Protocol(buf, 7), IPPROTO_UDP);
});

test('reports the header length of a packet with options and skips them', (t) => {
  // IHL 6: three NOPs and an end-of-options octet (RFC 791 §3.1), checksum filled in below.
  const packet = bytes('4600001c000000004011000001020304050607080101010000000000');
  packet.set([0, 0], 10);
  const checksum = internetChecksum(packet, 0, 24);
  packet.set([checksum >>> 8, checksum & 0xff], 10);
  const repr = decodeIPv4(packet);
  t.is(repr.headerLength, 24);
  t.is(repr.totalLength, 28);
  t.is(ipv4HeaderLength(packet, 0), 24);
  t.throws(() => encodeIPv4(repr, new Uint8Array(24)), { instanceOf: RangeError, message: /options are not supported/ });
});

test('rejects what RFC 791 §3.1 rules out, with the offending offset', (t) => {
  const reject = (packet: Uint8Array, reason: RegExp, offset: number, decodeAt = 0): void => {
    const error = t.throws(() => decodeIPv4(packet, decodeAt), { instanceOf: WireError });
    t.regex(error.reason, reason);
    t.regex(error.reason, /RFC 791 §3\.1/);
    t.is(error.offset, offset);
  };
  const withByte = (index: number, value: number): Uint8Array => {
    const copy = capturedPing.slice();
    copy[index] = value;
    return copy;
  };
  reject(capturedPing.subarray(0, 19), /truncated IPv4 header.*19 bytes at offset 0, need 20/, 0);
  reject(withByte(0, 0x65), /version 6/, 0);
  reject(withByte(0, 0x44), /IHL 4/, 0);
  reject(withByte(0, 0x46).subarray(0, 22), /truncated IPv4 header with options.*22 bytes at offset 0, need 24/, 0);
  reject(withByte(3, 19), /total length 19 shorter than its 20-byte header/, 2);
  reject(capturedPing.subarray(0, 83), /total length 84 beyond the 83 bytes at offset 0/, 2);
  reject(withByte(11, 0x8c), /checksum 0xb28c/, 10);
  const padded = new Uint8Array(5 + 84);
  padded.set(capturedPing, 5);
  padded[5 + 8] = 63;
  reject(padded, /checksum/, 15, 5);
  t.is(decodeIPv4(padded, 5, { verifyChecksum: false }).ttl, 63);
});

test('accepts trailing bytes after the total length (Ethernet padding)', (t) => {
  const padded = new Uint8Array(100);
  padded.set(capturedPing);
  t.is(decodeIPv4(padded).totalLength, 84);
});

test('refuses to encode past the buffer', (t) => {
  t.throws(() => encodeIPv4(pingRepr, new Uint8Array(25), 6), { instanceOf: RangeError });
});
