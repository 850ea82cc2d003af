import test from 'ava';
import {
  decodeEthernet,
  encodeEthernet,
  ETHERNET_HEADER_LEN,
  ethernetDst,
  ethernetHeaderLength,
  ethernetPayloadOffset,
  ethernetSrc,
  ethernetType,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_VLAN,
} from '../../src/wire/ethernet.js';
import type { EthernetRepr } from '../../src/wire/ethernet.js';
import { WireError } from '../../src/wire/error.js';
import { parseMac } from '../../src/wire/mac.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Inner frame headers captured in a test namespace (see vxlan.test.ts): a neighbour solicitation to its solicited-node group.
const capturedNs = bytes('3333ff000002 02420a630001 86dd 6000000000203aff');
const nsRepr: EthernetRepr = {
  dst: parseMac('33:33:ff:00:00:02'),
  src: parseMac('02:42:0a:63:00:01'),
  etherType: ETHERTYPE_IPV6,
};

// 802.1Q from IEEE 802.1Q §9.3: TPID 0x8100, PCP 5, DEI 1, VID 100, then IPv4.
const tagged = bytes('02420a630002 02420a630001 8100 b064 0800 4500');
const taggedRepr: EthernetRepr = {
  dst: parseMac('02:42:0a:63:00:02'),
  src: parseMac('02:42:0a:63:00:01'),
  vlan: { pcp: 5, dei: true, vid: 100 },
  etherType: ETHERTYPE_IPV4,
};

test('deconstructs a captured header', (t) => {
  t.deepEqual(decodeEthernet(capturedNs), { ...nsRepr, payloadOffset: 14 });
  t.is(ethernetDst(capturedNs), nsRepr.dst);
  t.is(ethernetSrc(capturedNs), nsRepr.src);
  t.is(ethernetType(capturedNs), ETHERTYPE_IPV6);
  t.is(ethernetPayloadOffset(capturedNs), ETHERNET_HEADER_LEN);
});

test('constructs the captured header', (t) => {
  const buf = new Uint8Array(14);
  t.is(encodeEthernet(nsRepr, buf), 14);
  t.is(toHex(buf), toHex(capturedNs.subarray(0, 14)));
  t.is(ethernetHeaderLength(nsRepr), 14);
});

test('looks past a single 802.1Q tag', (t) => {
  t.deepEqual(decodeEthernet(tagged), { ...taggedRepr, payloadOffset: 18 });
  t.is(ethernetType(tagged), ETHERTYPE_IPV4);
  t.is(ethernetPayloadOffset(tagged), 18);
  const buf = new Uint8Array(18);
  t.is(encodeEthernet(taggedRepr, buf), 18);
  t.is(toHex(buf), toHex(tagged.subarray(0, 18)));
  t.is(ethernetHeaderLength(taggedRepr), 18);
});

test('round-trips at an offset inside a larger buffer; accessors take the same offset', (t) => {
  const repr: EthernetRepr = { dst: 0xffffffffffff, src: 0x020000000001, vlan: { pcp: 0, dei: false, vid: 4095 }, etherType: ETHERTYPE_ARP };
  const buf = new Uint8Array(30).fill(0xaa);
  t.is(encodeEthernet(repr, buf, 7), 18);
  t.is(buf[6], 0xaa);
  t.is(buf[25], 0xaa);
  t.deepEqual(decodeEthernet(buf, 7), { ...repr, payloadOffset: 18 });
  t.is(ethernetType(buf, 7), ETHERTYPE_ARP);
  t.is(ethernetPayloadOffset(buf, 7), 18);
  t.is(ethernetDst(buf, 7), repr.dst);
  t.is(ethernetSrc(buf, 7), repr.src);
});

test('rejects truncated headers, citing the standard', (t) => {
  const short = t.throws(() => decodeEthernet(capturedNs.subarray(0, 13)), { instanceOf: WireError });
  t.is(short.reason, 'truncated Ethernet header (IEEE 802.3 §3.1.1): 13 bytes at offset 0, need 14');
  const shortTag = t.throws(() => decodeEthernet(tagged.subarray(0, 17)), { instanceOf: WireError });
  t.regex(shortTag.reason, /802\.1Q.*17 bytes at offset 0, need 18/);
  t.is(ETHERTYPE_VLAN, 0x8100);
});

test('refuses to encode out-of-range tags or past the buffer', (t) => {
  t.throws(() => encodeEthernet({ ...taggedRepr, vlan: { pcp: 8, dei: false, vid: 1 } }, new Uint8Array(18)), { instanceOf: RangeError });
  t.throws(() => encodeEthernet({ ...taggedRepr, vlan: { pcp: 0, dei: false, vid: 4096 } }, new Uint8Array(18)), { instanceOf: RangeError });
  t.throws(() => encodeEthernet(taggedRepr, new Uint8Array(17)), { instanceOf: RangeError });
  t.throws(() => encodeEthernet(nsRepr, new Uint8Array(20), 7), { instanceOf: RangeError });
});
