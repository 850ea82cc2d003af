import test from 'ava';
import { PeerTable } from '../../src/vxlan/peers.js';
import { BROADCAST_MAC, parseIPv4, parseIPv6 } from '../../src/wire/index.js';
import { mac } from './helpers.js';

const LOCAL = '198.18.0.1';

test('flood targets are the remote VTEPs holding configured peers plus external peers, never the local address', (t) => {
  const peers = new PeerTable({ localAddress: LOCAL }).vni(4096);
  peers.set({ mac: mac(1), vtep: LOCAL });
  t.deepEqual(peers.floodTargets, []);
  peers.set({ mac: mac(2), vtep: '198.18.0.2' });
  peers.set({ mac: mac(3), vtep: '198.18.0.2' });
  peers.set({ mac: mac(4), vtep: '198.18.0.3' });
  peers.setExternalPeers(['198.18.0.9', LOCAL, '198.18.0.2']);
  t.deepEqual([...peers.floodTargets].sort(), ['198.18.0.2', '198.18.0.3', '198.18.0.9']);
  t.true(peers.isKnownSender('198.18.0.3'));
  t.false(peers.isKnownSender(LOCAL));

  peers.remove(mac(2));
  t.true(peers.floodTargets.includes('198.18.0.2'), 'B still holds mac(3)');
  peers.remove(mac(4));
  t.false(peers.floodTargets.includes('198.18.0.3'));
  t.false(peers.isKnownSender('198.18.0.3'));
  // Moving a peer to another VTEP moves the flood target with it.
  peers.set({ mac: mac(3), vtep: '198.18.0.4' });
  peers.setExternalPeers([]);
  t.deepEqual([...peers.floodTargets], ['198.18.0.4']);
});

test('address maps follow replacement and removal', (t) => {
  const peers = new PeerTable({ localAddress: LOCAL }).vni(4096);
  const v6 = parseIPv6('fd00::5');
  peers.set({ mac: mac(1), ipv4: parseIPv4('10.0.0.5'), ipv6: v6, vtep: '198.18.0.2' });
  t.is(peers.macForIPv4(parseIPv4('10.0.0.5')), mac(1));
  t.is(peers.macForIPv6(parseIPv6('fd00::5')), mac(1));
  v6.fill(0);
  t.is(peers.macForIPv6(parseIPv6('fd00::5')), mac(1), 'the table keeps its own copy');

  // The address moved to a new endpoint; removing the old one must not forget the new owner.
  peers.set({ mac: mac(2), ipv4: parseIPv4('10.0.0.5'), vtep: '198.18.0.3' });
  peers.remove(mac(1));
  t.is(peers.macForIPv4(parseIPv4('10.0.0.5')), mac(2));
  t.is(peers.macForIPv6(parseIPv6('fd00::5')), undefined);

  // Replacing an entry drops the addresses it no longer has.
  peers.set({ mac: mac(2), vtep: '198.18.0.3' });
  t.is(peers.macForIPv4(parseIPv4('10.0.0.5')), undefined);
  t.false(peers.remove(mac(9)));
});

test('learned entries age out, are refreshed by traffic, and never override configured ones', (t) => {
  const peers = new PeerTable({ localAddress: LOCAL, learnedTtlMs: 1000 }).vni(4096);
  peers.setExternalPeers(['198.18.0.9', '198.18.0.10']);
  peers.set({ mac: mac(1), vtep: '198.18.0.2' });

  t.true(peers.learn(mac(5), '198.18.0.9', 0));
  t.false(peers.learn(mac(5), '198.18.0.10', 500), 'seen again: moved and refreshed, not new');
  t.like(peers.lookup(mac(5), 1499), { vtep: '198.18.0.10', learned: true });
  t.is(peers.lookup(mac(5), 1500), undefined);

  t.false(peers.learn(mac(1), '198.18.0.9', 0));
  t.like(peers.lookup(mac(1), 10_000_000), { vtep: '198.18.0.2', learned: false });
  t.false(peers.learn(BROADCAST_MAC, '198.18.0.9', 0));
  t.is(peers.lookup(BROADCAST_MAC, 0), undefined);

  peers.learn(mac(6), '198.18.0.9', 0);
  peers.learn(mac(7), '198.18.0.10', 0);
  peers.setExternalPeers(['198.18.0.10']);
  t.is(peers.lookup(mac(6), 1), undefined, 'forgotten with its external peer');
  t.truthy(peers.lookup(mac(7), 1));

  peers.sweep(1000);
  t.deepEqual(peers.entries().map((entry) => entry.mac), [mac(1)]);
});

test('a configured peer replaces a learned one', (t) => {
  const table = new PeerTable({ localAddress: LOCAL });
  const peers = table.vni(4096);
  peers.setExternalPeers(['198.18.0.9']);
  peers.learn(mac(5), '198.18.0.9', 0);
  peers.set({ mac: mac(5), vtep: '198.18.0.2' });
  t.like(peers.lookup(mac(5), Number.MAX_SAFE_INTEGER), { learned: false, vtep: '198.18.0.2' });
  t.is(table.vni(4096), peers);
  t.deepEqual(table.vni(4097).entries(), []);
});

test('the netctl VTEPs to probe are those holding configured peers, of any VNI for answering; external peers and the local address never', (t) => {
  const table = new PeerTable({ localAddress: LOCAL });
  const served = table.vni(4096);
  served.set({ mac: mac(1), vtep: LOCAL });
  served.set({ mac: mac(2), vtep: '198.18.0.2' });
  served.setExternalPeers(['198.18.0.9']);
  table.vni(5000).set({ mac: mac(3), vtep: '198.18.0.3' });
  t.deepEqual([...served.configuredVteps()], ['198.18.0.2']);
  t.deepEqual(['198.18.0.2', '198.18.0.3', '198.18.0.9', LOCAL].map((address) => table.isNetctlVtep(address)), [true, true, false, false]);
  served.remove(mac(2));
  t.deepEqual([...served.configuredVteps()], []);
  t.false(table.isNetctlVtep('198.18.0.2'));
});
