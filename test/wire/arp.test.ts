import test from 'ava';
import {
  ARP_FRAME_LEN,
  ARP_LEN,
  ARP_REPLY,
  ARP_REQUEST,
  arpCheck,
  arpOperation,
  arpSenderIp,
  arpSenderMac,
  arpTargetIp,
  arpTargetMac,
  decodeArp,
  encodeArp,
  writeArpReply,
} from '../../src/wire/arp.js';
import type { ArpRepr } from '../../src/wire/arp.js';
import { WireError } from '../../src/wire/error.js';
import { parseIPv4 } from '../../src/wire/ipv4addr.js';
import { parseMac } from '../../src/wire/mac.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Inner frames captured in a test namespace (see vxlan.test.ts): the kernel's request and its neighbour's reply.
const capturedRequest = bytes(`
  ffffffffffff 02420a630001 0806
  0001 0800 06 04 0001 02420a630001 0a630001 000000000000 0a630002`);
const capturedReply = bytes(`
  02420a630001 02420a630002 0806
  0001 0800 06 04 0002 02420a630002 0a630002 02420a630001 0a630001`);

const macA = parseMac('02:42:0a:63:00:01');
const macB = parseMac('02:42:0a:63:00:02');
const request: ArpRepr = {
  operation: ARP_REQUEST,
  senderMac: macA,
  senderIp: parseIPv4('10.99.0.1'),
  targetMac: 0,
  targetIp: parseIPv4('10.99.0.2'),
};

test('deconstructs a captured request with decode and with the accessors', (t) => {
  t.deepEqual(decodeArp(capturedRequest, 14), request);
  t.true(arpCheck(capturedRequest, 14, capturedRequest.length - 14));
  t.is(arpOperation(capturedRequest, 14), ARP_REQUEST);
  t.is(arpSenderMac(capturedRequest, 14), macA);
  t.is(arpSenderIp(capturedRequest, 14), request.senderIp);
  t.is(arpTargetMac(capturedRequest, 14), 0);
  t.is(arpTargetIp(capturedRequest, 14), request.targetIp);
});

test('constructs the captured request', (t) => {
  const buf = new Uint8Array(ARP_LEN);
  t.is(encodeArp(request, buf), 28);
  t.is(toHex(buf), toHex(capturedRequest.subarray(14)));
});

test('writeArpReply builds the same frame the neighbour sent', (t) => {
  const buf = new Uint8Array(ARP_FRAME_LEN);
  t.is(writeArpReply(decodeArp(capturedRequest, 14), macB, buf), 42);
  t.is(toHex(buf), toHex(capturedReply));
  t.deepEqual(decodeArp(buf, 14), {
    operation: ARP_REPLY,
    senderMac: macB,
    senderIp: request.targetIp,
    targetMac: macA,
    targetIp: request.senderIp,
  });
});

test('writes at an offset inside a larger buffer without touching its neighbours', (t) => {
  const buf = new Uint8Array(60).fill(0xaa);
  t.is(writeArpReply(request, macB, buf, 9), 42);
  t.is(toHex(buf.subarray(9, 51)), toHex(capturedReply));
  t.is(buf[8], 0xaa);
  t.is(buf[51], 0xaa);
  const packet = new Uint8Array(40).fill(0xaa);
  encodeArp(request, packet, 5);
  t.deepEqual(decodeArp(packet, 5), request);
  t.is(packet[33], 0xaa);
  t.throws(() => writeArpReply(request, macB, new Uint8Array(50), 9), { instanceOf: RangeError });
  t.throws(() => encodeArp(request, new Uint8Array(30), 3), { instanceOf: RangeError });
});

test('rejects truncation and anything but Ethernet/IPv4, citing RFC 826', (t) => {
  const arp = capturedRequest.subarray(14);
  const truncated = t.throws(() => decodeArp(arp.subarray(0, 27)), { instanceOf: WireError });
  t.is(truncated.reason, 'truncated ARP packet (RFC 826): 27 bytes at offset 0, need 28');
  t.false(arpCheck(arp, 0, 27));
  t.false(arpCheck(arp, 1, 28));

  const cases: Array<[number, number, RegExp]> = [
    [1, 6, /hardware type 6.*RFC 826/],
    [3, 0xdd, /protocol type 0x08dd.*RFC 826/],
    [4, 8, /hardware address length 8.*RFC 826/],
    [5, 16, /protocol address length 16.*RFC 826/],
  ];
  for (const [index, value, reason] of cases) {
    const bad = arp.slice();
    bad[index] = value;
    const error = t.throws(() => decodeArp(bad), { instanceOf: WireError });
    t.regex(error.reason, reason);
    t.is(error.offset, index === 1 || index === 3 ? index - 1 : index);
    t.false(arpCheck(bad, 0, bad.length));
  }
});
