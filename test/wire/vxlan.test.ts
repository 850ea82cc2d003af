import test from 'ava';
import { decodeEthernet, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../../src/wire/ethernet.js';
import { WireError } from '../../src/wire/error.js';
import { decodeIPv4, IPPROTO_UDP } from '../../src/wire/ipv4.js';
import { BROADCAST_MAC, parseMac } from '../../src/wire/mac.js';
import { decodeUdp } from '../../src/wire/udp.js';
import {
  DEFAULT_VXLAN_PORT,
  decodeVxlan,
  readVxlanVni,
  VXLAN_FLAG_I,
  VXLAN_HEADER_LEN,
  VXLAN_RCO_START_MASK,
  VXLAN_RCO_UDP,
  vxlanCheck,
  vxlanRemoteChecksum,
  writeVxlanHeader,
} from '../../src/wire/vxlan.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

/*
 * An ARP request as the kernel's VXLAN put it on the wire, captured with tshark on the
 * underlay veth of two test namespaces: VNI 4242, 198.18.0.1 → 198.18.0.2, inner
 * 02:42:0a:63:00:01 asking who has 10.99.0.2.
 */
const capturedArpInVxlan = bytes(`
  0200c6120002 0200c6120001 0800
  4500004ee0a9000040110dcec6120001c6120002
  ae8912b5003ad3e1
  0800000000109200
  ffffffffffff 02420a630001 0806
  000108000604000102420a6300010a6300010000000000000a630002`);
const UDP_AT = 34;
const VXLAN_AT = 42;
const INNER_AT = 50;

test('deconstructs a captured VXLAN packet layer by layer', (t) => {
  const outer = decodeEthernet(capturedArpInVxlan);
  t.is(outer.etherType, ETHERTYPE_IPV4);
  t.is(decodeIPv4(capturedArpInVxlan, outer.payloadOffset).protocol, IPPROTO_UDP);
  const udp = decodeUdp(capturedArpInVxlan, UDP_AT);
  t.is(udp.dstPort, DEFAULT_VXLAN_PORT);
  t.deepEqual(decodeVxlan(capturedArpInVxlan, VXLAN_AT), { vni: 4242, flags: VXLAN_FLAG_I, payloadOffset: 8 });
  t.is(readVxlanVni(capturedArpInVxlan, VXLAN_AT), 4242);
  t.is(vxlanCheck(capturedArpInVxlan, VXLAN_AT, udp.length - 8), 4242);
  const inner = decodeEthernet(capturedArpInVxlan, VXLAN_AT + VXLAN_HEADER_LEN);
  t.deepEqual(inner, {
    dst: BROADCAST_MAC,
    src: parseMac('02:42:0a:63:00:01'),
    etherType: ETHERTYPE_ARP,
    payloadOffset: 14,
  });
});

test('writes the same header bytes the kernel sent', (t) => {
  const buf = new Uint8Array(8).fill(0xee);
  writeVxlanHeader(4242, buf);
  t.is(toHex(buf), toHex(capturedArpInVxlan.subarray(VXLAN_AT, INNER_AT)));
});

test('writes at an offset inside a larger buffer without touching its neighbours', (t) => {
  const buf = new Uint8Array(20).fill(0xaa);
  writeVxlanHeader(0xabcdef, buf, 5);
  t.is(toHex(buf), 'aaaaaaaaaa' + '08000000abcdef00' + 'aaaaaaaaaaaaaa');
  t.deepEqual(decodeVxlan(buf, 5), { vni: 0xabcdef, flags: 0x08, payloadOffset: 8 });
});

test('round-trips the extreme VNIs', (t) => {
  for (const vni of [0, 1, 4096, 0xffffff]) {
    const buf = new Uint8Array(8 + 14);
    writeVxlanHeader(vni, buf);
    t.is(decodeVxlan(buf).vni, vni);
    t.is(vxlanCheck(buf, 0, buf.length), vni);
  }
});

test('refuses VNIs that do not fit 24 bits and buffers without room', (t) => {
  t.throws(() => writeVxlanHeader(0x1000000, new Uint8Array(8)), { instanceOf: RangeError });
  t.throws(() => writeVxlanHeader(-1, new Uint8Array(8)), { instanceOf: RangeError });
  t.throws(() => writeVxlanHeader(1, new Uint8Array(10), 3), { instanceOf: RangeError });
});

test('rejects a truncated header, citing RFC 7348 §5', (t) => {
  const buf = capturedArpInVxlan.slice(0, VXLAN_AT + 6);
  const error = t.throws(() => decodeVxlan(buf, VXLAN_AT), { instanceOf: WireError });
  t.is(error.message, 'truncated VXLAN header (RFC 7348 §5): 6 bytes at offset 42, need 8');
  t.is(error.code, 'WireError');
  t.is(error.offset, 42);
  t.is(error.reason, error.message);
});

test('rejects a header without the I flag', (t) => {
  const buf = capturedArpInVxlan.slice(VXLAN_AT);
  buf[0] = 0x00;
  const error = t.throws(() => decodeVxlan(buf), { instanceOf: WireError });
  t.regex(error.reason, /I flag.*RFC 7348 §5/);
  t.is(error.offset, 0);
  t.is(vxlanCheck(buf, 0, buf.length), -1);
});

test('accepts nonzero reserved bits and exposes them in flags', (t) => {
  const buf = capturedArpInVxlan.slice(VXLAN_AT);
  buf[0] = 0x88;
  buf[1] = 0xff;
  buf[7] = 0xff;
  t.deepEqual(decodeVxlan(buf), { vni: 4242, flags: 0x88, payloadOffset: 8 });
  t.is(vxlanCheck(buf, 0, buf.length), 4242);
});

test('vxlanCheck returns -1 for truncated packets and short inner frames', (t) => {
  const packet = capturedArpInVxlan.subarray(VXLAN_AT);
  t.is(vxlanCheck(packet, 0, 8 + 14), 4242);
  t.is(vxlanCheck(packet, 0, 8 + 13), -1);
  t.is(vxlanCheck(packet, 0, 7), -1);
  t.is(vxlanCheck(packet, 0, packet.length + 1), -1);
  t.is(vxlanCheck(packet, 1, packet.length), -1);
  t.is(vxlanCheck(packet, -1, 30), -1);
});

/*
 * A TCP SYN as the kernel's VXLAN sent it with remote checksum offload
 * (`ip link add … type vxlan id 4242 … udpcsum remcsumtx`), captured with
 * tshark on the underlay veth: the VXLAN header and the inner frame.
 */
const capturedRcoSyn = bytes(`
  0820000000109211
  020000000002 020000000001 0800
  4500003cbf8c400040066667 0a630001 0a630002
  c9b615b386d78c8300000000a002fd5c14f7000002040582040208 0a5c8f3f43000000000103030a`);

test('reads the remote checksum offload the kernel sent: flag, start and a pseudo-header-only checksum', (t) => {
  t.is(vxlanCheck(capturedRcoSyn, 0, capturedRcoSyn.length), 4242);
  const rco = vxlanRemoteChecksum(capturedRcoSyn);
  t.is(rco & VXLAN_RCO_UDP, 0, 'TCP');
  const start = 2 * (rco & VXLAN_RCO_START_MASK);
  t.is(start, 14 + 20, 'the TCP header of the inner frame');
  const syn = capturedRcoSyn.subarray(VXLAN_HEADER_LEN);
  const l4 = syn.length - start;
  // 10.99.0.1 + 10.99.0.2 + protocol 6 + TCP length, folded, not complemented.
  const pseudo = 0x0a63 + 0x0001 + 0x0a63 + 0x0002 + 6 + l4;
  t.is((syn[start + 16]! << 8) | syn[start + 17]!, pseudo);
  t.is(vxlanRemoteChecksum(capturedArpInVxlan, VXLAN_AT), -1, 'no flag, no RCO');
});
