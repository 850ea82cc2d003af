import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import {
  PROBE_LEN,
  PROBE_REPLY,
  PROBE_REQUEST,
  decodeProbe,
  encodeProbe,
  probeCheck,
  probeLength,
  probeSequence,
  probeTimestamp,
  probeType,
  probeUnderlayMtu,
} from '../../src/wire/probe.js';
import { VXLAN_FLAG_I, vxlanCheck } from '../../src/wire/vxlan.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

/*
 * A request and its reply between two netctl VTEPs, captured with tshark on the
 * underlay bridge of two test hosts (198.18.84.2 asking 198.18.84.1): sequence
 * 3, timestamp 1796236637049956 µs (the requester's clock), no MTU stated.
 */
const request = bytes(`
  000000fb 01 01 0000
  00000003
  00000000
  000661aa eeaf1464`);
const reply = bytes(`
  000000fb 01 02 0000
  00000003
  00000000
  000661aa eeaf1464`);
const requestRepr = { type: PROBE_REQUEST, sequence: 3, timestamp: 1_796_236_637_049_956, underlayMtu: 0 } as const;

test('decodes a request field by field', (t) => {
  t.is(request.length, PROBE_LEN);
  t.true(probeCheck(request, 0, request.length));
  t.deepEqual(decodeProbe(request), requestRepr);
  t.is(probeType(request), PROBE_REQUEST);
  t.is(probeSequence(request), 3);
  t.is(probeTimestamp(request), 1_796_236_637_049_956);
  t.is(probeUnderlayMtu(request), 0);
});

test('encodes the same bytes as captured, and the reply differs only in its type', (t) => {
  const buf = new Uint8Array(PROBE_LEN).fill(0xee);
  t.is(encodeProbe(requestRepr, buf), PROBE_LEN);
  t.is(toHex(buf), toHex(request));
  t.deepEqual(decodeProbe(reply), { ...requestRepr, type: PROBE_REPLY });
  encodeProbe({ ...requestRepr, type: PROBE_REPLY }, buf);
  t.is(toHex(buf), toHex(reply));
  t.is(probeLength(), PROBE_LEN);
});

test('round-trips at an offset inside a larger buffer without touching its neighbours', (t) => {
  const buf = new Uint8Array(5 + PROBE_LEN + 3).fill(0xaa);
  const repr = { type: PROBE_REPLY, sequence: 0xffffffff, timestamp: Number.MAX_SAFE_INTEGER, underlayMtu: 9000 } as const;
  encodeProbe(repr, buf, 5);
  t.is(toHex(buf.subarray(0, 5)), 'aaaaaaaaaa');
  t.is(toHex(buf.subarray(5 + PROBE_LEN)), 'aaaaaa');
  t.is(toHex(buf.subarray(5, 13)), '000000fb' + '0102' + '2328');
  t.deepEqual(decodeProbe(buf, 5), repr);
  t.true(probeCheck(buf, 5, PROBE_LEN));
  t.false(probeCheck(buf, 5, PROBE_LEN + 4), 'the length runs past the buffer');
});

test('no VXLAN receiver takes a probe for a frame, and the marker is a reserved ESP SPI', (t) => {
  t.is(request[0]! & VXLAN_FLAG_I, 0);
  t.is(vxlanCheck(request, 0, request.length), -1);
  const spi = Buffer.from(request).readUInt32BE(0);
  t.true(spi >= 1 && spi <= 255, 'RFC 4303 §2.1: SPIs 1–255 are reserved, so no ESP packet starts this way');
});

test('octets past the 24 a version-1 receiver knows are ignored', (t) => {
  const longer = new Uint8Array(PROBE_LEN + 8);
  longer.set(request);
  longer.fill(0x5a, PROBE_LEN);
  t.true(probeCheck(longer, 0, longer.length));
  t.deepEqual(decodeProbe(longer), requestRepr);
});

test('rejects a truncated probe, citing its section', (t) => {
  const error = t.throws(() => decodeProbe(request.subarray(0, 23)), { instanceOf: WireError });
  t.is(error.message, 'truncated netctl probe (§1): 23 bytes at offset 0, need 24');
  t.false(probeCheck(request, 0, 23));
  t.false(probeCheck(request, 1, 24));
  t.false(probeCheck(request, -1, 24));
});

test('rejects a wrong marker, version, type and timestamp, each at its field', (t) => {
  const cases: [at: number, value: number, reason: RegExp][] = [
    [0, 0x08, /marker 0x080000fb is not a netctl probe's 0x000000fb \(netctl probe §2\)/],
    [3, 0x00, /marker 0x00000000 .*§2/],
    [4, 2, /probe version 2, need 1 \(netctl probe §3\)/],
    [5, 0, /probe type 0 is neither request \(1\) nor reply \(2\) \(netctl probe §3\)/],
    [5, 3, /probe type 3/],
    [17, 0x20, /timestamp not below 2\^53 µs \(netctl probe §6\)/],
  ];
  for (const [at, value, reason] of cases) {
    const bad = Uint8Array.from(request);
    bad[at] = value;
    const error = t.throws(() => decodeProbe(bad), { instanceOf: WireError });
    t.regex(error.reason, reason);
    t.is(error.offset, at === 3 ? 0 : at === 17 ? 16 : at);
    t.false(probeCheck(bad, 0, bad.length), `probeCheck refuses byte ${at} = ${value}`);
  }
});

test('refuses to encode values that do not fit, or into a buffer without room', (t) => {
  const buf = new Uint8Array(PROBE_LEN);
  t.throws(() => encodeProbe({ ...requestRepr, timestamp: 2 ** 53 }, buf), { instanceOf: RangeError });
  t.throws(() => encodeProbe({ ...requestRepr, timestamp: -1 }, buf), { instanceOf: RangeError });
  t.throws(() => encodeProbe({ ...requestRepr, sequence: 2 ** 32 }, buf), { instanceOf: RangeError });
  t.throws(() => encodeProbe({ ...requestRepr, underlayMtu: 65536 }, buf), { instanceOf: RangeError });
  t.throws(() => encodeProbe(requestRepr, new Uint8Array(PROBE_LEN + 2), 3), { instanceOf: RangeError });
});
