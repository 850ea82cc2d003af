import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { decodeEthernet } from '../../src/wire/ethernet.js';
import {
  decodeNeighborSolicitation,
  icmpv6Checksum,
  NEIGHBOR_ADVERTISEMENT_FRAME_LEN,
  writeNeighborAdvertisement,
} from '../../src/wire/icmpv6.js';
import { decodeIPv6, formatIPv6, parseIPv6 } from '../../src/wire/ipv6.js';
import { parseMac } from '../../src/wire/mac.js';
import { capturedNeighborAdvertisement, capturedNeighborSolicitation } from '../helpers/captures.js';

const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

const capturedNs = capturedNeighborSolicitation;
const capturedNa = capturedNeighborAdvertisement;
const IP = 14;
const ICMP = 54;
const macA = parseMac('02:42:0a:63:00:01');
const macB = parseMac('02:42:0a:63:00:02');

test('deconstructs a captured neighbour solicitation', (t) => {
  const solicitation = decodeNeighborSolicitation(capturedNs, ICMP, 32);
  t.is(formatIPv6(solicitation.target), 'fd00:99::2');
  t.is(solicitation.sourceLinkLayer, macA);
  t.is(icmpv6Checksum(capturedNs, ICMP, 32, capturedNs, IP + 8, capturedNs, IP + 24), 0x71c0);
});

test('writeNeighborAdvertisement builds the frame the kernel answered with', (t) => {
  const solicitation = decodeNeighborSolicitation(capturedNs, ICMP, 32);
  const buf = new Uint8Array(NEIGHBOR_ADVERTISEMENT_FRAME_LEN).fill(0xee);
  const written = writeNeighborAdvertisement(
    {
      dstMac: macA,
      srcMac: macB,
      srcIp: solicitation.target,
      dstIp: parseIPv6('fd00:99::1'),
      target: solicitation.target,
      targetMac: macB,
      solicited: true,
    },
    buf,
  );
  t.is(written, 86);
  t.is(toHex(buf), toHex(capturedNa));
});

test('sets the router flag and keeps the checksum right at an offset inside a larger buffer', (t) => {
  const buf = new Uint8Array(100).fill(0xaa);
  const target = parseIPv6('fd00:99::fe');
  const written = writeNeighborAdvertisement(
    { dstMac: macA, srcMac: macB, srcIp: target, dstIp: parseIPv6('ff02::1'), target, targetMac: macB, solicited: false, router: true },
    buf,
    7,
  );
  t.is(written, 86);
  t.is(buf[6], 0xaa);
  t.is(buf[93], 0xaa);
  t.is(decodeEthernet(buf, 7).dst, macA);
  const ip = decodeIPv6(buf, 7 + 14);
  t.is(ip.hopLimit, 255);
  t.is(ip.payloadLength, 32);
  t.is(formatIPv6(ip.dst), 'ff02::1');
  const icmp = 7 + 54;
  t.is(buf[icmp], 136);
  t.is(buf[icmp + 4], 0xa0);
  const field = (buf[icmp + 2]! << 8) | buf[icmp + 3]!;
  t.is(icmpv6Checksum(buf, icmp, 32, buf, 7 + 14 + 8, buf, 7 + 14 + 24), field);
  t.throws(
    () =>
      writeNeighborAdvertisement(
        { dstMac: macA, srcMac: macB, srcIp: target, dstIp: target, target, targetMac: macB, solicited: true },
        new Uint8Array(90),
        5,
      ),
    { instanceOf: RangeError },
  );
});

test('a solicitation without options has no source link-layer address; unknown options are skipped', (t) => {
  const bare = capturedNs.slice(ICMP, ICMP + 24);
  t.false('sourceLinkLayer' in decodeNeighborSolicitation(bare, 0, 24));
  // A nonce option (type 14, RFC 3971) before the source link-layer option.
  const withNonce = new Uint8Array(40);
  withNonce.set(bare);
  withNonce.set([14, 1, 1, 2, 3, 4, 5, 6], 24);
  withNonce.set(capturedNs.subarray(ICMP + 24, ICMP + 32), 32);
  t.is(decodeNeighborSolicitation(withNonce, 0, 40).sourceLinkLayer, macA);
});

test('rejects what RFC 4861 rules out', (t) => {
  const message = capturedNs.slice(ICMP, ICMP + 32);
  const reject = (buf: Uint8Array, length: number, reason: RegExp, offset: number): void => {
    const error = t.throws(() => decodeNeighborSolicitation(buf, 0, length), { instanceOf: WireError });
    t.regex(error.reason, reason);
    t.is(error.offset, offset);
  };
  const withByte = (index: number, value: number): Uint8Array => {
    const copy = message.slice();
    copy[index] = value;
    return copy;
  };
  reject(message, 33, /truncated ICMPv6 message \(RFC 4443 §2\.1\): 32 bytes at offset 0, need 33/, 0);
  reject(message, 23, /length 23.*24 or more \(RFC 4861 §7\.1\.1\)/, 0);
  reject(withByte(0, 136), 32, /type 136.*RFC 4861 §4\.3/, 0);
  reject(withByte(1, 1), 32, /code 1.*RFC 4861 §7\.1\.1/, 1);
  reject(withByte(8, 0xff), 32, /multicast.*RFC 4861 §7\.1\.1/, 8);
  reject(withByte(25, 0), 32, /length 0 \(RFC 4861 §4\.6\)/, 24);
  reject(withByte(25, 2), 32, /16 bytes runs past the message: 8 bytes left at offset 24 \(RFC 4861 §4\.6\)/, 24);
  reject(message, 25, /truncated NDP option: 1 bytes at offset 24, need 2 \(RFC 4861 §4\.6\)/, 24);
});
