import test from 'ava';
import { internetChecksum } from '../../src/wire/checksum.js';
import { WireError } from '../../src/wire/error.js';
import { icmpv6Checksum } from '../../src/wire/icmpv6.js';
import {
  fragmentationNeededLength,
  fragmentIPv4,
  ipv4DontFragment,
  ipv4ErrorAllowed,
  ipv6ErrorAllowed,
  packetTooBigLength,
  writeFragmentationNeeded,
  writePacketTooBig,
} from '../../src/wire/pmtud.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');
const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
/** `ping -p a5` fills what follows its 16-byte timestamp with 0xa5. */
const pattern = (length: number): Uint8Array => new Uint8Array(length).fill(0xa5);

/*
 * Captured in a sandbox namespace behind Linux's own bridged vxlan (sandbox veth → bridge → vxlan
 * with MTU 1500, over an underlay of MTU 1400, so the kernel's limit is 1350): `ping -M do -s 1400
 * -p a5` and its ICMP answer from the kernel's iptunnel_pmtud_build_icmp, the same over IPv6, then
 * `ping -M dont`, which the sandbox fragmented itself at the 1350 it had learnt.
 */
const echo4 = concat(
  bytes(`02420a630002 02420a630001 0800
    4500 0594 0000 4000 4001 20a1 0a630001 0a630002
    0800 0c93 13d1 0001 d55f106b00000000270c070000000000`),
  pattern(1384),
);
const fragNeeded = concat(
  bytes(`02420a630001 02420a630002 0800
    4500 0240 0000 4000 4001 23f5 0a630002 0a630001
    03 04 ac6a 0000 0546`),
  echo4.subarray(14, 14 + 548),
);
const echo6 = concat(
  bytes(`02420a630002 02420a630001 86dd
    600055ca 0580 3a 40 fd000099000000000000000000000001 fd000099000000000000000000000002
    80 00 6e86 13d2 0001 d55f106b000000004c26070000000000`),
  pattern(1384),
);
const tooBig = concat(
  bytes(`02420a630001 02420a630002 86dd
    60000000 04d8 3a 40 fd000099000000000000000000000002 fd000099000000000000000000000001
    02 00 ea81 00000546`),
  echo6.subarray(14, 14 + 1232),
);
const fragments = [
  concat(
    bytes(`02420a630002 02420a630001 0800
      4500 0544 e8ab 2000 4001 5845 0a630001 0a630002
      0800 996a 13d3 0001 d55f106b000000009a32070000000000`),
    pattern(1304),
  ),
  concat(bytes(`02420a630002 02420a630001 0800 4500 0064 e8ab 00a6 4001 7c7f 0a630001 0a630002`), pattern(80)),
];
/** The packet those fragments came from: the same header, whole, without DF. */
const unfragmented = (() => {
  const frame = concat(
    bytes(`02420a630002 02420a630001 0800
      4500 0594 e8ab 0000 4001 0000 0a630001 0a630002
      0800 996a 13d3 0001 d55f106b000000009a32070000000000`),
    pattern(1384),
  );
  const checksum = internetChecksum(frame, 14, 20);
  frame[24] = checksum >> 8;
  frame[25] = checksum & 0xff;
  return frame;
})();

test('writeFragmentationNeeded builds the frame Linux answered with, quoting 548 bytes', (t) => {
  t.is(fragmentationNeededLength(echo4.length), 590);
  const out = new Uint8Array(590).fill(0xee);
  t.is(writeFragmentationNeeded(echo4, 0, echo4.length, 1350, out), 590);
  t.is(toHex(out), toHex(fragNeeded));
});

test('writePacketTooBig builds the frame Linux answered with, within 1280 bytes', (t) => {
  t.is(packetTooBigLength(echo6.length), 1294);
  const out = new Uint8Array(1294).fill(0xee);
  t.is(writePacketTooBig(echo6, 0, echo6.length, 1350, out), 1294);
  t.is(toHex(out), toHex(tooBig));
});

test('answers read from and write to offsets inside larger buffers, and quote a short packet whole', (t) => {
  const source = new Uint8Array(echo4.length + 9).fill(0x77);
  source.set(echo4, 5);
  const out = new Uint8Array(600).fill(0xaa);
  t.is(writeFragmentationNeeded(source, 5, echo4.length, 1350, out, 3), 590);
  t.is(toHex(out.subarray(3, 593)), toHex(fragNeeded));
  t.is(out[2], 0xaa);
  t.is(out[593], 0xaa);

  // 100 bytes of IP: all of it is quoted, and both checksums hold.
  const short = echo4.slice(0, 114);
  short[16] = 0;
  short[17] = 100;
  const answer = new Uint8Array(fragmentationNeededLength(114));
  t.is(writeFragmentationNeeded(short, 0, 114, 1000, answer), 14 + 20 + 8 + 100);
  t.is(internetChecksum(answer, 14, 20), 0);
  t.is(internetChecksum(answer, 34, 108), 0);
  t.is((answer[40]! << 8) | answer[41]!, 1000);
  t.deepEqual(answer.subarray(42), short.subarray(14));

  const short6 = echo6.slice(0, 200);
  const answer6 = new Uint8Array(packetTooBigLength(200));
  t.is(writePacketTooBig(short6, 0, 200, 1280, answer6), 14 + 40 + 8 + 186);
  t.is(icmpv6Checksum(answer6, 54, 194, answer6, 22, answer6, 38), (answer6[56]! << 8) | answer6[57]!);
  t.deepEqual(answer6.subarray(62), short6.subarray(14));
});

test('impossible inputs are refused: wrong EtherType, truncated frames, MTUs no link may have, no room', (t) => {
  const out = new Uint8Array(2000);
  t.throws(() => writeFragmentationNeeded(echo6, 0, echo6.length, 1350, out), { instanceOf: WireError, message: /not an untagged IPv4 frame/ });
  t.throws(() => writePacketTooBig(echo4, 0, echo4.length, 1350, out), { instanceOf: WireError, message: /not an untagged IPv6 frame/ });
  t.throws(() => writeFragmentationNeeded(echo4, 0, 30, 1350, out), { instanceOf: WireError, message: /truncated IPv4 header/ });
  t.throws(() => writeFragmentationNeeded(echo4, 0, echo4.length + 1, 1350, out), { instanceOf: WireError, message: /truncated Ethernet frame/ });
  t.throws(() => writeFragmentationNeeded(echo4, 0, echo4.length, 67, out), { instanceOf: RangeError });
  t.throws(() => writePacketTooBig(echo6, 0, echo6.length, 1279, out), { instanceOf: RangeError });
  t.throws(() => writeFragmentationNeeded(echo4, 0, echo4.length, 1350, new Uint8Array(589)), { instanceOf: RangeError });
});

test('fragmentIPv4 cuts a packet as Linux did, and the fragments add up to it', (t) => {
  t.false(ipv4DontFragment(unfragmented));
  const cut = fragmentIPv4(unfragmented, 1350);
  t.deepEqual(cut.map(toHex), fragments.map(toHex));
  t.deepEqual(fragmentIPv4(unfragmented, 1500).map(toHex), [toHex(unfragmented)], 'a packet that fits is one fragment');

  // Smaller pieces: 8-byte multiples, offsets in 8-byte units, MF on all but the last, valid headers.
  const small = fragmentIPv4(unfragmented, 576);
  t.deepEqual(small.map((f) => f.length - 34), [552, 552, 304]);
  t.deepEqual(small.map((f) => (f[20]! << 8) | f[21]!), [0x2000, 0x2000 | 69, 138]);
  for (const f of small) t.is(internetChecksum(f, 14, 20), 0);
  t.deepEqual(concat(...small.map((f) => f.subarray(34))), unfragmented.subarray(34));

  // A fragment cut again keeps its offset and MF.
  const again = fragmentIPv4(small[1]!, 300);
  t.deepEqual(again.map((f) => (f[20]! << 8) | f[21]!), [0x2000 | 69, 0x2000 | (69 + 35)]);
});

test('fragmentIPv4 keeps copied options in every fragment and turns the others into NOPs after the first', (t) => {
  // A 40-byte header: router alert (0x94, copied), a record route (7, not copied), NOPs, end of list.
  const header = bytes('4a00 0000 1234 0000 4011 0000 0a000001 0a000002 94040000 07040400 01010101 01010101 00000000');
  const payload = new Uint8Array(100).map((_, i) => i);
  const frame = concat(bytes('02420a000002 02420a000001 0800'), header, payload);
  frame[16] = 0;
  frame[17] = header.length + payload.length;
  const checksum = internetChecksum(frame, 14, header.length);
  frame[24] = checksum >> 8;
  frame[25] = checksum & 0xff;
  const cut = fragmentIPv4(frame, 40 + 56);
  t.is(cut.length, 2);
  t.is(toHex(cut[0]!.subarray(34, 54)), '9404000007040400010101010101010100000000');
  t.is(toHex(cut[1]!.subarray(34, 54)), '9404000001010101010101010101010100000000');
  for (const f of cut) t.is(internetChecksum(f, 14, 40), 0);
  t.deepEqual(concat(...cut.map((f) => f.subarray(54))), payload);
});

test('fragmentIPv4 refuses a packet with DF, a bad header and an MTU too small for one fragment', (t) => {
  t.throws(() => fragmentIPv4(echo4, 1350), { instanceOf: WireError, message: /DF set may not be fragmented \(RFC 791/ });
  const corrupt = unfragmented.slice();
  corrupt[22] = 1;
  t.throws(() => fragmentIPv4(corrupt, 1350), { instanceOf: WireError, message: /checksum/ });
  t.throws(() => fragmentIPv4(unfragmented, 27), { instanceOf: RangeError });
  t.throws(() => fragmentIPv4(echo6, 1350), { instanceOf: WireError });
});

test('ICMP errors are allowed only about packets a router may answer (RFC 1812 §4.3.2.7, RFC 4443 §2.4)', (t) => {
  t.true(ipv4ErrorAllowed(echo4, 0, echo4.length));
  const withSource = (first: number) => {
    const f = echo4.slice();
    f[26] = first;
    return ipv4ErrorAllowed(f, 0, f.length);
  };
  t.false(withSource(0), '0/8');
  t.false(withSource(127), 'loopback');
  t.false(withSource(224), 'multicast');
  t.false(withSource(255), 'broadcast');
  const toMulticast = echo4.slice();
  toMulticast[30] = 239;
  t.false(ipv4ErrorAllowed(toMulticast, 0, toMulticast.length));
  t.false(ipv4ErrorAllowed(fragNeeded, 0, fragNeeded.length), 'not about an ICMP error');
  t.false(ipv4ErrorAllowed(fragments[1]!, 0, fragments[1]!.length), 'not about a later fragment');
  t.true(ipv4ErrorAllowed(fragments[0]!, 0, fragments[0]!.length), 'but about a first fragment');

  t.true(ipv6ErrorAllowed(echo6, 0, echo6.length));
  t.false(ipv6ErrorAllowed(tooBig, 0, tooBig.length), 'not about an ICMPv6 error');
  const fromUnspecified = echo6.slice();
  fromUnspecified.fill(0, 22, 38);
  t.false(ipv6ErrorAllowed(fromUnspecified, 0, fromUnspecified.length));
  const fromMulticast = echo6.slice();
  fromMulticast[22] = 0xff;
  t.false(ipv6ErrorAllowed(fromMulticast, 0, fromMulticast.length));
  // A fragment header in front of the echo: the first fragment may be answered, a later one not.
  const fragmented = (offsetUnits: number) => {
    const f = concat(echo6.subarray(0, 54), bytes(`3a000000 00000001`), echo6.subarray(54));
    f[20] = 44;
    f[18] = ((f.length - 54) >> 8) & 0xff;
    f[19] = (f.length - 54) & 0xff;
    f[56] = (offsetUnits << 3) >> 8;
    f[57] = ((offsetUnits << 3) & 0xff) | 1;
    return ipv6ErrorAllowed(f, 0, f.length);
  };
  t.true(fragmented(0));
  t.false(fragmented(10));
});
