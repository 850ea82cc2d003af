import test from 'ava';
import { CHECKSUM_UNVERIFIED, coalesceFrames, FrameList, segmentFrame, VNET_HDR_LEN } from '../../src/vxlan/offload.js';
import {
  ACK,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  FIN,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV6_HEADER_LEN,
  PSH,
  TCP_CHECKSUM_OFFSET,
  UDP_CHECKSUM_OFFSET,
  VXLAN_FLAG_RCO,
  VXLAN_HEADER_LEN,
  VXLAN_RCO_UDP,
  encodeEthernet,
  encodeIPv4,
  encodeIPv6,
  encodeTcp,
  foldChecksum,
  internetChecksum,
  onesComplementSum,
  parseIPv4,
  parseIPv6,
  pseudoHeaderSumIPv4,
  pseudoHeaderSumIPv6,
  writeVxlanHeader,
} from '../../src/wire/index.js';
import { GSO_TCPV4, GSO_TCPV6, MSS, TCP_HEADER_LEN, mac, payloadBytes, superFrame } from './helpers.js';

const NEEDS_CSUM = 1;
const DATA_VALID = 2;
const SRC4 = parseIPv4('10.0.0.1');
const DST4 = parseIPv4('10.0.0.2');

/** Checks one plain TCP frame the way a receiving stack would; returns its payload and header fields. */
function checkSegment(t: import('ava').ExecutionContext, frame: Uint8Array, v6: boolean) {
  const ip = ETHERNET_HEADER_LEN;
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  let l4: number;
  let pseudo: number;
  if (v6) {
    l4 = view.readUInt16BE(ip + 4);
    t.is(frame.length, ip + IPV6_HEADER_LEN + l4);
    pseudo = pseudoHeaderSumIPv6(frame, ip + 8, frame, ip + 24, IPPROTO_TCP, l4);
  } else {
    t.is(view.readUInt16BE(ip + 2), frame.length - ip, 'IPv4 total length');
    t.is(internetChecksum(frame, ip, 20), 0, 'IPv4 header checksum');
    l4 = frame.length - ip - 20;
    pseudo = pseudoHeaderSumIPv4(SRC4, DST4, IPPROTO_TCP, l4);
  }
  const tcp = frame.length - l4;
  t.is(foldChecksum(onesComplementSum(frame, tcp, l4, pseudo)), 0, 'TCP checksum');
  return {
    id: v6 ? 0 : view.readUInt16BE(ip + 4),
    seq: view.readUInt32BE(tcp + 4),
    flags: frame[tcp + 13]!,
    payload: frame.subarray(tcp + TCP_HEADER_LEN),
  };
}

const PREFIX = (() => {
  const header = new Uint8Array(VXLAN_HEADER_LEN);
  writeVxlanHeader(4096, header, 0);
  return header;
})();

for (const v6 of [false, true]) {
  test(`a 64 KB TCP/IPv${v6 ? 6 : 4} super-frame is cut into MSS-sized segments with valid checksums, and merged back`, (t) => {
    const payload = 65535 - 20 - (v6 ? 40 : 20) - TCP_HEADER_LEN - 100;
    // What a sender with a 1450-byte MTU and timestamps uses.
    const mss = v6 ? 1378 : MSS;
    const original = superFrame({ v6, payload, gsoSize: mss });
    const datagrams = segmentFrame(original, PREFIX);
    if (datagrams === undefined) return t.fail('not segmented');
    const count = Math.ceil(payload / mss);
    t.is(datagrams.length, count);
    const headers = ETHERNET_HEADER_LEN + (v6 ? 40 : 20) + TCP_HEADER_LEN;
    const inner: Uint8Array[] = [];
    const payloads: Uint8Array[] = [];
    datagrams.forEach((datagram, i) => {
      t.deepEqual(datagram.subarray(0, VXLAN_HEADER_LEN), PREFIX);
      const frame = datagram.subarray(VXLAN_HEADER_LEN);
      t.true(frame.length <= 1450 + ETHERNET_HEADER_LEN, 'fits the underlay MTU');
      t.is(frame.length, headers + (i < count - 1 ? mss : payload - (count - 1) * mss));
      const segment = checkSegment(t, frame, v6);
      t.is(segment.seq, (0xfffff000 + i * mss) >>> 0, 'sequence numbers follow, wrapping');
      if (!v6) t.is(segment.id, (0xfff0 + i) & 0xffff, 'IPv4 IDs count up');
      t.is(segment.flags, i < count - 1 ? ACK : ACK | PSH, 'PSH on the last segment only');
      inner.push(frame);
      payloads.push(segment.payload);
    });
    t.deepEqual(Buffer.concat(payloads), Buffer.from(payloadBytes(payload)));

    const merged = coalesceFrames(inner);
    t.is(merged.length, 1, 'one write to the TAP');
    const written = merged[0]!;
    t.is(written[0], NEEDS_CSUM);
    t.is(written[1], v6 ? GSO_TCPV6 : GSO_TCPV4);
    t.is(written.readUInt16LE(2), headers);
    t.is(written.readUInt16LE(4), mss);
    t.is(written.readUInt16LE(6), headers - TCP_HEADER_LEN);
    t.is(written.readUInt16LE(8), 16);
    // The kernel reads the merged frame as the sender's super-frame: same bytes after the virtio header.
    t.deepEqual(written.subarray(VNET_HDR_LEN), original.subarray(VNET_HDR_LEN));
    t.deepEqual(segmentFrame(written, PREFIX), datagrams, 'and cuts it into the same segments');
  });
}

test('segments of other flows, out of order, with other flags or a bad checksum are not merged', (t) => {
  const pieces = segmentFrame(superFrame({ payload: 4 * MSS, flags: ACK }))!;
  t.is(pieces.length, 4);
  const copy = (frame: Uint8Array) => Buffer.from(frame);
  const lengths = (frames: Uint8Array[]) => coalesceFrames(frames).map((frame) => (frame[1] === 0 ? 1 : Math.round((frame.length - VNET_HDR_LEN - 66) / MSS)));

  t.deepEqual(lengths(pieces), [4]);
  t.deepEqual(lengths([pieces[0]!, pieces[2]!, pieces[1]!, pieces[3]!]), [1, 1, 1, 1], 'a gap in sequence numbers ends a run');

  const otherPort = copy(pieces[2]!);
  otherPort.writeUInt16BE(40001, ETHERNET_HEADER_LEN + 20);
  otherPort.writeUInt16BE(0, ETHERNET_HEADER_LEN + 36);
  t.deepEqual(lengths([pieces[0]!, pieces[1]!, otherPort, pieces[3]!]), [2, 1, 1], 'another flow');

  const corrupt = copy(pieces[1]!);
  corrupt[corrupt.length - 1]! ^= 0xff;
  const singles = coalesceFrames([pieces[0]!, corrupt]);
  t.deepEqual(singles.map((frame) => frame[0]), [DATA_VALID, 0], 'a bad checksum is left for the kernel to drop');
  t.deepEqual(singles[1]!.subarray(VNET_HDR_LEN), corrupt);

  const fin = segmentFrame(superFrame({ payload: 2 * MSS, flags: ACK | FIN, seq: 0xfffff000 + 4 * MSS }))!;
  t.deepEqual(lengths([...pieces, ...fin]), [4, 1, 1], 'FIN is never merged');
});

test('segments whose checksums a netctl VTEP computed are merged without checking them again', (t) => {
  const pieces = segmentFrame(superFrame({ payload: 3 * MSS, flags: ACK }))!;
  const corrupt = Buffer.from(pieces[1]!);
  corrupt[corrupt.length - 1]! ^= 0xff;
  const frames = [pieces[0]!, corrupt, pieces[2]!];
  t.is(coalesceFrames(frames).length, 3, 'checked: the bad segment ends the run');
  const merged = coalesceFrames(frames, Uint8Array.of(1, 1, 1));
  t.is(merged.length, 1, 'trusted: one super-frame');
  t.is(merged[0]![0], NEEDS_CSUM, 'the kernel completes the checksum of what it gets');
  const [single] = coalesceFrames([pieces[0]!], Uint8Array.of(1));
  t.is(single![0], 0, 'an unchecked frame alone is not marked valid: the kernel checks it');
  t.is(coalesceFrames([pieces[0]!, corrupt], Uint8Array.of(1, 0)).length, 2, 'only the frames marked are trusted');
});

test('for a netctl receiver (RCO) segments keep partial checksums and say where they start; a plain prefix never does', (t) => {
  for (const v6 of [false, true]) {
    const original = superFrame({ v6, payload: 5 * MSS + 7 });
    const whole = segmentFrame(original, PREFIX)!;
    const partial = segmentFrame(original, PREFIX, true)!;
    t.is(partial.length, whole.length);
    const tcp = ETHERNET_HEADER_LEN + (v6 ? IPV6_HEADER_LEN : 20);
    partial.forEach((datagram, i) => {
      const expected = Buffer.from(whole[i]!);
      // Linux's RCO header: the flag in the second octet, the start in 2-byte units in the last.
      t.is(datagram[1], VXLAN_FLAG_RCO);
      t.is(datagram[7], tcp / 2);
      const frame = Buffer.from(datagram.subarray(VXLAN_HEADER_LEN));
      const at = tcp + TCP_CHECKSUM_OFFSET;
      const l4 = frame.length - tcp;
      const pseudo = v6 ? pseudoHeaderSumIPv6(frame, ETHERNET_HEADER_LEN + 8, frame, ETHERNET_HEADER_LEN + 24, IPPROTO_TCP, l4) : pseudoHeaderSumIPv4(SRC4, DST4, IPPROTO_TCP, l4);
      t.is(frame.readUInt16BE(at), ~foldChecksum(pseudo) & 0xffff, 'the field holds the pseudo-header sum');
      // Completed as the receiver's kernel does, it is the segment a plain prefix gets.
      frame.writeUInt16BE(foldChecksum(onesComplementSum(frame, tcp, l4)), at);
      t.deepEqual(frame, expected.subarray(VXLAN_HEADER_LEN));
    });
  }
  const udp = Buffer.alloc(VNET_HDR_LEN + ETHERNET_HEADER_LEN + 20 + 8 + 10);
  udp[0] = NEEDS_CSUM;
  udp.writeUInt16LE(ETHERNET_HEADER_LEN + 20, 6);
  udp.writeUInt16LE(6, 8);
  udp.writeUInt16BE(ETHERTYPE_IPV4, VNET_HDR_LEN + 12);
  t.is(segmentFrame(udp, PREFIX, true)![0]![1], 0, 'UDP checksums are completed: no RCO');
  t.is(segmentFrame(superFrame({ payload: 3 * MSS }), new Uint8Array(4), true)![0]!.length, 4 + ETHERNET_HEADER_LEN + 20 + TCP_HEADER_LEN + MSS);
  const [plain] = segmentFrame(superFrame({ payload: 3 * MSS }), new Uint8Array(0), true)!;
  t.is(checkSegment(t, plain!, false).seq, 0xfffff000, 'without a VXLAN header to mark, checksums are whole');
});

test('partial segments (RCO) merge like trusted ones; one alone goes to the kernel as NEEDS_CSUM where RCO said', (t) => {
  const partial = segmentFrame(superFrame({ payload: 3 * MSS, flags: ACK }), PREFIX, true)!.map((d) => d.subarray(VXLAN_HEADER_LEN));
  const octet = partial.map(() => (ETHERNET_HEADER_LEN + 20) / 2);
  const merged = coalesceFrames(partial, Uint8Array.from(octet));
  t.is(merged.length, 1);
  t.is(merged[0]![0], NEEDS_CSUM);
  t.is(coalesceFrames(partial).length, 3, 'unmarked, their checksums do not verify');
  const [single] = coalesceFrames([partial[0]!], Uint8Array.of(17));
  t.is(single![0], NEEDS_CSUM);
  t.is(single![1], 0, 'no GSO');
  t.is(single!.readUInt16LE(6), 34, 'csum_start');
  t.is(single!.readUInt16LE(8), TCP_CHECKSUM_OFFSET, 'csum_offset');
  const [udp] = coalesceFrames([partial[0]!], Uint8Array.of(VXLAN_RCO_UDP | 17));
  t.is(udp!.readUInt16LE(8), UDP_CHECKSUM_OFFSET, 'bit 7 of the RCO octet: a UDP checksum');
});

test('FrameList keeps the checksum state of every frame as it grows', (t) => {
  const list = new FrameList();
  const buffer = new Uint8Array(300);
  for (let i = 0; i < 200; i++) list.push(buffer, i, 1, i % 3);
  list.push(buffer, 0, 1);
  t.is(list.count, 201);
  t.deepEqual([...list.checksum.subarray(0, 7)], [0, 1, 2, 0, 1, 2, 0]);
  t.is(list.checksum[199], 1);
  t.is(list.checksum[200], CHECKSUM_UNVERIFIED, 'unverified unless told');
});

test('a frame without GSO gets its partial checksum completed; a bad virtio header is refused', (t) => {
  // UDP/IPv4 with NEEDS_CSUM: csum_start at the UDP header, offset 6, the field holding the pseudo-header sum.
  const data = payloadBytes(101);
  const frame = Buffer.alloc(VNET_HDR_LEN + ETHERNET_HEADER_LEN + 20 + 8 + data.length);
  frame[0] = NEEDS_CSUM;
  frame.writeUInt16LE(ETHERNET_HEADER_LEN + 20, 6);
  frame.writeUInt16LE(6, 8);
  const f = VNET_HDR_LEN;
  encodeEthernet({ dst: mac(2), src: mac(1), etherType: ETHERTYPE_IPV4 }, frame, f);
  const udpLen = 8 + data.length;
  encodeIPv4(
    { dscp: 0, ecn: 0, totalLength: 20 + udpLen, identification: 1, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: IPPROTO_UDP, src: SRC4, dst: DST4, headerLength: 20 },
    frame,
    f + ETHERNET_HEADER_LEN,
  );
  const udp = f + ETHERNET_HEADER_LEN + 20;
  frame.writeUInt16BE(53, udp);
  frame.writeUInt16BE(5353, udp + 2);
  frame.writeUInt16BE(udpLen, udp + 4);
  frame.writeUInt16BE(~foldChecksum(pseudoHeaderSumIPv4(SRC4, DST4, IPPROTO_UDP, udpLen)) & 0xffff, udp + 6);
  frame.set(data, udp + 8);
  const [plain, ...rest] = segmentFrame(frame)!;
  t.is(rest.length, 0);
  t.is(plain!.length, frame.length - VNET_HDR_LEN);
  const sum = onesComplementSum(plain!, ETHERNET_HEADER_LEN + 20, udpLen, pseudoHeaderSumIPv4(SRC4, DST4, IPPROTO_UDP, udpLen));
  t.is(foldChecksum(sum), 0, 'UDP checksum valid');

  const unsupported = superFrame({ payload: 3000 });
  unsupported[1] = 5; // GSO_UDP_L4, which the TAP is never asked for
  t.is(segmentFrame(unsupported), undefined);
  const lying = superFrame({ payload: 3000 });
  lying.writeUInt16LE(ETHERNET_HEADER_LEN + 12, 6); // csum_start inside the IPv4 header
  t.is(segmentFrame(lying), undefined);
  t.is(segmentFrame(Buffer.alloc(12)), undefined, 'shorter than the headers');
});

test('FrameList stores views as numbers, grows, and clears', (t) => {
  const list = new FrameList();
  const a = Buffer.from('abcdef');
  const b = Buffer.from('xyz');
  for (let i = 0; i < 100; i++) list.push(i % 2 === 0 ? a : b, 1, 2);
  t.is(list.count, 100);
  t.is(list.buffers.length, 100, 'a new entry whenever the buffer changes');
  t.deepEqual(Buffer.from(list.frame(0)), Buffer.from('bc'));
  t.deepEqual(Buffer.from(list.frame(99)), Buffer.from('yz'));
  list.clear();
  list.push(a, 0, 6);
  list.push(a, 3, 3);
  t.is(list.buffers.length, 1, 'runs from one buffer share an entry');
  t.deepEqual(Buffer.from(list.frame(1)), Buffer.from('def'));
});
