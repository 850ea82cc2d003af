import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { formatIPv4, parseIPv4, readIPv4, writeIPv4 } from '../../src/wire/ipv4addr.js';

test('parses dotted quads to unsigned 32-bit numbers', (t) => {
  t.is(parseIPv4('198.18.0.1'), 0xc6120001);
  t.is(parseIPv4('255.255.255.255'), 0xffffffff);
  t.is(parseIPv4('0.0.0.0'), 0);
  t.is(parseIPv4('10.0.0.255'), 0x0a0000ff);
});

test('formats and round-trips', (t) => {
  t.is(formatIPv4(0xc6120001), '198.18.0.1');
  t.is(formatIPv4(0xffffffff), '255.255.255.255');
  for (const text of ['0.0.0.0', '172.17.0.2', '224.0.0.251', '255.255.255.254']) t.is(formatIPv4(parseIPv4(text)), text);
});

test('rejects everything but four decimal octets', (t) => {
  for (const text of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', '1.2.3.4 ', '0x1.2.3.4', '1..3.4']) {
    t.throws(() => parseIPv4(text), { instanceOf: WireError }, text);
  }
});

test('reads and writes network byte order at an offset', (t) => {
  const buf = new Uint8Array(8).fill(0xaa);
  writeIPv4(0xc6120002, buf, 3);
  t.is(Buffer.from(buf).toString('hex'), 'aaaaaa' + 'c6120002' + 'aa');
  t.is(readIPv4(buf, 3), 0xc6120002);
  writeIPv4(0xffffffff, buf, 0);
  t.is(readIPv4(buf, 0), 0xffffffff);
});
