import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { parseIPv4 } from '../../src/wire/ipv4addr.js';
import {
  ACK,
  CWR,
  decodeTcp,
  ECE,
  encodeTcp,
  FIN,
  PSH,
  RST,
  SYN,
  tcpAck,
  tcpChecksumIPv4,
  tcpDataOffset,
  tcpDstPort,
  tcpFlags,
  tcpHeaderLength,
  tcpHeaderLengthOf,
  tcpSeq,
  tcpSrcPort,
  URG,
} from '../../src/wire/tcp.js';
import type { TcpRepr } from '../../src/wire/tcp.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

// Captured in a test namespace (see vxlan.test.ts), 10.99.0.1:59490 → 10.99.0.2:8888.
const capturedSyn = bytes(`
  e862 22b8 c22e5563 00000000 a0 02 fd5c 4c93 0000
  020405820402080a581f6eaa000000000103030a`);
const capturedData = bytes(`
  e862 22b8 c22e5564 0fdcbe30 80 18 0040 55ef 0000
  0101080a581f6eaa961a7a47 68656c6c6f`);
const src = parseIPv4('10.99.0.1');
const dst = parseIPv4('10.99.0.2');
// MSS 1410, SACK permitted, timestamps, window scale 10.
const synOptions = '020405820402080a581f6eaa000000000103030a';

test('deconstructs a captured SYN with decode and with the accessors', (t) => {
  const repr = decodeTcp(capturedSyn);
  t.like(repr, {
    srcPort: 59490,
    dstPort: 8888,
    seq: 0xc22e5563,
    ack: 0,
    dataOffset: 10,
    flags: SYN,
    window: 0xfd5c,
    checksum: 0x4c93,
    urgentPointer: 0,
  });
  t.is(toHex(repr.options), synOptions);
  t.is(repr.options.buffer, capturedSyn.buffer);
  t.is(tcpSrcPort(capturedSyn, 0), 59490);
  t.is(tcpDstPort(capturedSyn, 0), 8888);
  t.is(tcpSeq(capturedSyn, 0), 0xc22e5563);
  t.is(tcpAck(capturedSyn, 0), 0);
  t.is(tcpDataOffset(capturedSyn, 0), 10);
  t.is(tcpHeaderLength(capturedSyn, 0), 40);
  t.is(tcpFlags(capturedSyn, 0), SYN);
});

test('deconstructs a captured data segment within its IP-given length', (t) => {
  const padded = new Uint8Array(capturedData.length + 6);
  padded.set(capturedData);
  const repr = decodeTcp(padded, 0, capturedData.length);
  t.is(repr.flags, PSH | ACK);
  t.is(repr.ack, 0x0fdcbe30);
  t.is(repr.dataOffset, 8);
  t.is(tcpSeq(padded, 0), 0xc22e5564);
});

test('computes the checksums the kernel sent', (t) => {
  t.is(tcpChecksumIPv4(capturedSyn, 0, capturedSyn.length, src, dst), 0x4c93);
  t.is(tcpChecksumIPv4(capturedData, 0, capturedData.length, src, dst), 0x55ef);
  t.not(tcpChecksumIPv4(capturedData, 0, capturedData.length - 1, src, dst), 0x55ef);
});

test('constructs the captured SYN', (t) => {
  const repr = decodeTcp(capturedSyn);
  const buf = new Uint8Array(tcpHeaderLengthOf(repr));
  t.is(encodeTcp(repr, buf), 40);
  t.is(toHex(buf), toHex(capturedSyn));
});

test('round-trips every flag at an offset inside a larger buffer', (t) => {
  const repr: TcpRepr = {
    srcPort: 1,
    dstPort: 65535,
    seq: 0xffffffff,
    ack: 0x80000000,
    dataOffset: 6,
    flags: FIN | SYN | RST | PSH | ACK | URG | ECE | CWR,
    window: 0,
    checksum: 0xabcd,
    urgentPointer: 0x1234,
    options: bytes('01010100'),
  };
  t.is(FIN | SYN | RST | PSH | ACK | URG | ECE | CWR, 0xff);
  const buf = new Uint8Array(40).fill(0xaa);
  t.is(encodeTcp(repr, buf, 9), 24);
  t.is(buf[8], 0xaa);
  t.is(buf[33], 0xaa);
  const decoded = decodeTcp(buf, 9, 24);
  t.deepEqual({ ...decoded, options: toHex(decoded.options) }, { ...repr, options: '01010100' });
});

test('refuses to encode options that do not match the data offset or the buffer', (t) => {
  const repr = decodeTcp(capturedSyn);
  t.throws(() => encodeTcp({ ...repr, dataOffset: 9 }, new Uint8Array(60)), { instanceOf: RangeError });
  t.throws(() => encodeTcp({ ...repr, options: new Uint8Array(3), dataOffset: 5 }, new Uint8Array(60)), { instanceOf: RangeError });
  t.throws(() => encodeTcp({ ...repr, options: new Uint8Array(44), dataOffset: 16 }, new Uint8Array(80)), { instanceOf: RangeError });
  t.throws(() => encodeTcp(repr, new Uint8Array(39)), { instanceOf: RangeError });
});

test('rejects impossible lengths, citing RFC 9293 §3.1', (t) => {
  const truncated = t.throws(() => decodeTcp(capturedSyn, 0, 19), { instanceOf: WireError });
  t.is(truncated.reason, 'truncated TCP header (RFC 9293 §3.1): 19 bytes at offset 0, need 20');
  const pastBuffer = t.throws(() => decodeTcp(capturedSyn, 0, 41), { instanceOf: WireError });
  t.is(pastBuffer.reason, 'truncated TCP segment (RFC 9293 §3.1): 40 bytes at offset 0, need 41');
  const small = capturedSyn.slice();
  small[12] = 0x40;
  const tooSmall = t.throws(() => decodeTcp(small), { instanceOf: WireError });
  t.is(tooSmall.reason, 'TCP data offset 4 below the minimum of 5 (RFC 9293 §3.1)');
  t.is(tooSmall.offset, 12);
  const beyond = t.throws(() => decodeTcp(capturedSyn, 0, 36), { instanceOf: WireError });
  t.is(beyond.reason, 'TCP data offset 10 (40 bytes) beyond the 36-byte segment at offset 0 (RFC 9293 §3.1)');
});
