import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import { BROADCAST_MAC, formatMac, isMulticastMac, parseMac, readMac, writeMac } from '../../src/wire/mac.js';

const toHex = (buf: Uint8Array): string => Buffer.from(buf).toString('hex');

test('parses the colon form in any case to a 48-bit integer', (t) => {
  t.is(parseMac('02:42:ac:11:00:02'), 0x0242ac110002);
  t.is(parseMac('02:42:AC:11:00:02'), 0x0242ac110002);
  t.is(parseMac('ff:ff:ff:ff:ff:ff'), BROADCAST_MAC);
  t.is(parseMac('00:00:00:00:00:00'), 0);
});

test('formats lowercase with colons and leading zeros', (t) => {
  t.is(formatMac(0x0242ac110002), '02:42:ac:11:00:02');
  t.is(formatMac(0), '00:00:00:00:00:00');
  t.is(formatMac(BROADCAST_MAC), 'ff:ff:ff:ff:ff:ff');
  t.is(formatMac(parseMac('DE:AD:BE:EF:00:01')), 'de:ad:be:ef:00:01');
});

test('rejects malformed text with a WireError', (t) => {
  for (const text of ['', '02:42:ac:11:00', '02:42:ac:11:00:02:03', '02-42-ac-11-00-02', '2:42:ac:11:00:02', '02:42:ac:11:00:0g', ' 02:42:ac:11:00:02']) {
    const error = t.throws(() => parseMac(text), { instanceOf: WireError }, text);
    t.true(error.reason.includes(JSON.stringify(text)));
  }
});

test('reads and writes at an offset inside a larger buffer', (t) => {
  const buf = new Uint8Array(10).fill(0xaa);
  writeMac(0xfedcba987654, buf, 2);
  t.is(toHex(buf), 'aaaa' + 'fedcba987654' + 'aaaa');
  t.is(readMac(buf, 2), 0xfedcba987654);
  writeMac(BROADCAST_MAC, buf, 4);
  t.is(readMac(buf, 4), BROADCAST_MAC);
  t.is(toHex(buf), 'aaaafedc' + 'ffffffffffff');
});

test('the I/G bit marks multicast, broadcast included', (t) => {
  t.true(isMulticastMac(BROADCAST_MAC));
  t.true(isMulticastMac(parseMac('33:33:ff:00:00:02')));
  t.true(isMulticastMac(parseMac('01:00:5e:00:00:01')));
  t.false(isMulticastMac(parseMac('02:42:0a:63:00:01')));
  t.false(isMulticastMac(parseMac('fe:ff:ff:ff:ff:ff')));
});
