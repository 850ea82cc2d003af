import test from 'ava';
import { WireError } from '../../src/wire/error.js';
import * as wire from '../../src/wire/index.js';

test('WireError carries a stable code, the offset and the reason', (t) => {
  const error = new WireError(12, 'truncated thing (RFC 0 §0): 1 bytes at offset 12, need 2');
  t.true(error instanceof Error);
  t.is(error.name, 'WireError');
  t.is(error.code, 'WireError');
  t.is(error.offset, 12);
  t.is(error.reason, 'truncated thing (RFC 0 §0): 1 bytes at offset 12, need 2');
  t.is(error.message, error.reason);
});

test('the index re-exports every codec', (t) => {
  for (const name of [
    'WireError',
    'readMac',
    'parseIPv4',
    'decodeEthernet',
    'decodeArp',
    'writeArpReply',
    'internetChecksum',
    'decodeIPv4',
    'decodeIPv6',
    'formatIPv6',
    'decodeNeighborSolicitation',
    'writeNeighborAdvertisement',
    'decodeUdp',
    'decodeTcp',
    'decodeVxlan',
    'vxlanCheck',
  ]) {
    t.is(typeof (wire as Record<string, unknown>)[name], 'function', name);
  }
});

test('decoders refuse offsets outside the buffer as a programming error', (t) => {
  t.throws(() => wire.decodeVxlan(new Uint8Array(8), 9), { instanceOf: RangeError });
  t.throws(() => wire.decodeVxlan(new Uint8Array(8), -1), { instanceOf: RangeError });
  t.throws(() => wire.decodeVxlan(new Uint8Array(8), 0.5), { instanceOf: RangeError });
});
