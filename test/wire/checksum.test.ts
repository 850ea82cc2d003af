import test from 'ava';
import {
  foldChecksum,
  internetChecksum,
  onesComplementSum,
  pseudoHeaderSumIPv4,
  pseudoHeaderSumIPv6,
} from '../../src/wire/checksum.js';
import { parseIPv4 } from '../../src/wire/ipv4addr.js';
import { parseIPv6 } from '../../src/wire/ipv6.js';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));

// The worked example of RFC 1071 §3.
const rfc1071Example = bytes('0001 f203 f4f5 f6f7');

test('sums the RFC 1071 §3 example without folding, then folds and inverts', (t) => {
  t.is(onesComplementSum(rfc1071Example, 0, 8), 0x2ddf0);
  t.is(foldChecksum(0x2ddf0), (~0xddf2) & 0xffff);
  t.is(internetChecksum(rfc1071Example, 0, 8), 0x220d);
});

test('pads an odd final byte with zero', (t) => {
  t.is(onesComplementSum(bytes('ab'), 0, 1), 0xab00);
  t.is(onesComplementSum(bytes('0001f2'), 0, 3), 0xf201);
  t.is(onesComplementSum(bytes('aa0001f2aa'), 1, 3), 0xf201);
});

test('chains partial sums through initial', (t) => {
  const whole = onesComplementSum(rfc1071Example, 0, 8);
  t.is(onesComplementSum(rfc1071Example, 4, 4, onesComplementSum(rfc1071Example, 0, 4)), whole);
});

test('folds carries repeatedly and handles sums far beyond 16 bits', (t) => {
  t.is(foldChecksum(0), 0xffff);
  t.is(foldChecksum(0xffff), 0);
  t.is(foldChecksum(0x1fffe), 0);
  const big = new Uint8Array(65536).fill(0xff);
  const sum = onesComplementSum(big, 0, big.length);
  t.is(sum, 0xffff * 32768);
  t.is(foldChecksum(sum), 0);
});

test('a captured IPv4 header with its checksum sums to zero', (t) => {
  const header = bytes('45000054735540004001b28b0a6300010a630002');
  t.is(internetChecksum(header, 0, 20), 0);
  header[8] = 63;
  t.not(internetChecksum(header, 0, 20), 0);
});

test('pseudo-header sums add the address words, protocol and length', (t) => {
  t.is(
    pseudoHeaderSumIPv4(parseIPv4('10.99.0.1'), parseIPv4('10.99.0.2'), 17, 14),
    0x0a63 + 0x0001 + 0x0a63 + 0x0002 + 17 + 14,
  );
  const src = parseIPv6('fd00:99::1');
  const dst = new Uint8Array(20);
  dst.set(parseIPv6('ff02::1:ff00:2'), 4);
  t.is(
    pseudoHeaderSumIPv6(src, 0, dst, 4, 58, 0x10020),
    0xfd00 + 0x99 + 1 + 0xff02 + 1 + 0xff00 + 2 + 58 + 1 + 0x0020,
  );
});
