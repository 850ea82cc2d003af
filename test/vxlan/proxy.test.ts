import test from 'ava';
import { answerArp, answerNeighborSolicitation, mayBeAnswered } from '../../src/vxlan/proxy.js';
import type { NeighborTable } from '../../src/vxlan/proxy.js';
import { formatIPv6, parseIPv4, parseMac } from '../../src/wire/index.js';
import { bytes, capturedNeighborAdvertisement, capturedNeighborSolicitation } from '../helpers/captures.js';

const toHex = (buf: Uint8Array | undefined): string | undefined => (buf === undefined ? undefined : Buffer.from(buf).toString('hex'));

/** The peer table of the captures: fd00:99::2 and 10.99.0.2 are 02:42:0a:63:00:02, the asker is 02:42:0a:63:00:01. */
const table: NeighborTable = {
  macForIPv4: (ipv4) => ({ [parseIPv4('10.99.0.1')]: parseMac('02:42:0a:63:00:01'), [parseIPv4('10.99.0.2')]: parseMac('02:42:0a:63:00:02') })[ipv4],
  macForIPv6: (ipv6) => ({ 'fd00:99::1': parseMac('02:42:0a:63:00:01'), 'fd00:99::2': parseMac('02:42:0a:63:00:02') })[formatIPv6(ipv6)],
};
const empty: NeighborTable = { macForIPv4: () => undefined, macForIPv6: () => undefined };

/** The inner frame of test/wire/vxlan.test.ts's capture: 02:42:0a:63:00:01 (10.99.0.1) asks who has 10.99.0.2. */
const arpRequest = bytes(`
  ffffffffffff 02420a630001 0806
  0001 0800 06 04 0001 02420a630001 0a630001 000000000000 0a630002`);

test('a captured neighbour solicitation is answered with the very advertisement the kernel sent', (t) => {
  t.is(toHex(answerNeighborSolicitation(capturedNeighborSolicitation, table)), toHex(capturedNeighborAdvertisement));
});

test('an ARP request is answered with the reply RFC 826 prescribes, written out by hand', (t) => {
  // Unicast back to the asker; operation 2; sender 02:42:0a:63:00:02 / 10.99.0.2; target the asker.
  const reply = `
    02420a630001 02420a630002 0806
    0001 0800 06 04 0002 02420a630002 0a630002 02420a630001 0a630001`;
  t.is(toHex(answerArp(arpRequest, table)), reply.replace(/\s+/g, ''));
});

test('nothing is answered for an address the table lacks, nor a solicitation that fails RFC 4861 §7.1.1', (t) => {
  t.is(answerArp(arpRequest, empty), undefined);
  t.is(answerNeighborSolicitation(capturedNeighborSolicitation, empty), undefined);
  const routed = capturedNeighborSolicitation.slice();
  routed[14 + 7] = 254;
  t.is(answerNeighborSolicitation(routed, table), undefined);
  const corrupt = capturedNeighborSolicitation.slice();
  corrupt[corrupt.length - 1]! ^= 0xff;
  t.is(answerNeighborSolicitation(corrupt, table), undefined);
});

test('ARP for the asker\'s own address (a gratuitous ARP or a probe by its owner) is not answered', (t) => {
  const gratuitous = arpRequest.slice();
  gratuitous.set(gratuitous.subarray(28, 32), 38);
  t.is(answerArp(gratuitous, table), undefined);
  const fromOwner = arpRequest.slice();
  fromOwner.set([0x02, 0x42, 0x0a, 0x63, 0x00, 0x02], 22);
  t.is(answerArp(fromOwner, table), undefined);
});

test('mayBeAnswered picks ARP and ICMPv6 by their headers alone', (t) => {
  t.true(mayBeAnswered(arpRequest, 0, arpRequest.length));
  t.true(mayBeAnswered(capturedNeighborSolicitation, 0, capturedNeighborSolicitation.length));
  t.false(mayBeAnswered(capturedNeighborSolicitation, 0, 14 + 40));
  const udp = capturedNeighborSolicitation.slice();
  udp[14 + 6] = 17;
  t.false(mayBeAnswered(udp, 0, udp.length));
});
