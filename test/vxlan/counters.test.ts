/** The VTEP's per-network and per-peer counters (what the daemon exports as metrics). */
import test from 'ava';
import { MemoryFramePort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { VNET_HDR_LEN } from '../../src/vxlan/offload.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import type { VtepNetworkStats } from '../../src/vxlan/vtep.js';
import { BROADCAST_MAC } from '../../src/wire/index.js';
import { HOST_A, HOST_B, HOST_C, MSS, VNI, frame, host, ip, mac, superFrame, threeHosts, twoHosts, vxlan } from './helpers.js';
import { ManualTimers } from './clock.js';

function networkOf(vtep: Vtep, vni = VNI): VtepNetworkStats {
  const found = vtep.networkStats().find((network) => network.vni === vni);
  if (found === undefined) throw new Error(`VNI ${vni} is not served`);
  return found;
}

function peerOf(vtep: Vtep, address: string, vni = VNI): VtepNetworkStats['peers'][number] | undefined {
  return networkOf(vtep, vni).peers.find((peer) => peer.address === address);
}

test('unicast traffic is counted on its network and on the remote VTEP, in frames, datagrams and inner bytes', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  const toB = [frame(mac(2), mac(1), 100), frame(mac(2), mac(1), 200)];
  a.port().inject(toB);
  await net.idle();
  const bytes = toB[0]!.length + toB[1]!.length;

  t.like(networkOf(a.vtep).counters, { rxFrames: 2, txDatagrams: 2, txBytes: bytes, rxDatagrams: 0 });
  t.like(peerOf(a.vtep, HOST_B), { txDatagrams: 2, txBytes: bytes, rxDatagrams: 0, rxBytes: 0 });
  t.like(networkOf(b.vtep).counters, { rxDatagrams: 2, rxBytes: bytes, txFrames: 2 });
  t.like(peerOf(b.vtep, HOST_A), { rxDatagrams: 2, rxBytes: bytes, txDatagrams: 0 });
  t.deepEqual(
    networkOf(a.vtep).peers.map((peer) => peer.address),
    [HOST_B],
    'only remote VTEPs have peer counters',
  );
});

test('a coalesced receive counts each datagram of the run for its sender', async (t) => {
  const net = new MemoryNetwork();
  const [a] = twoHosts(net);
  const first = vxlan(VNI, frame(mac(1), mac(2), 100, 1));
  const second = vxlan(VNI, frame(mac(1), mac(2), 100, 2));
  const third = vxlan(VNI, frame(mac(1), mac(2), 40, 3));
  a.underlay.deliver([{ data: Buffer.concat([first, second, third]), address: HOST_B, port: 4789, segmentSize: first.length }]);
  await net.idle();
  t.like(peerOf(a.vtep, HOST_B), { rxDatagrams: 3, rxBytes: first.length + second.length + third.length - 3 * 8 });
  t.is(networkOf(a.vtep).counters.txFrames, 3);
});

test('a flood is counted once on the network and once per target VTEP', async (t) => {
  const net = new MemoryNetwork();
  const [a] = threeHosts(net);
  const broadcast = frame(BROADCAST_MAC, mac(1), 46);
  a.port().inject([broadcast]);
  await net.idle();
  t.like(networkOf(a.vtep).counters, { flooded: 1, txDatagrams: 2, txBytes: 2 * broadcast.length });
  for (const address of [HOST_B, HOST_C]) t.like(peerOf(a.vtep, address), { txDatagrams: 1, txBytes: broadcast.length });
});

test('a super-frame counts its datagrams and its inner bytes without the virtio header', async (t) => {
  const net = new MemoryNetwork();
  const a = new Vtep({ underlay: net.open(HOST_A, 4789), localAddress: HOST_A, probe: { timers: new ManualTimers() } });
  t.teardown(() => a.stop());
  a.start();
  const port = new MemoryFramePort({ vnetHdr: true });
  a.addNetwork(VNI, port);
  const b = host(net, HOST_B);
  for (const vtep of [a, b.vtep]) {
    vtep.setPeer(VNI, { mac: mac(1), ipv4: ip(1), vtep: HOST_A });
    vtep.setPeer(VNI, { mac: mac(2), ipv4: ip(2), vtep: HOST_B });
  }
  const big = superFrame({ payload: 20_000 });
  port.inject([big]);
  await net.idle();
  t.like(peerOf(a, HOST_B), { txDatagrams: Math.ceil(20_000 / MSS), txBytes: big.length - VNET_HDR_LEN });
  t.is(peerOf(b.vtep, HOST_A)?.rxDatagrams, Math.ceil(20_000 / MSS));
});

test('drops are counted on the network, and on the peer when it sent them; drops before the network is known only in the totals', async (t) => {
  const net = new MemoryNetwork();
  const [a] = twoHosts(net);
  const fromB = net.open(HOST_B, 50_000);
  const fromStranger = net.open('198.18.0.99', 4789);
  const toA = (data: Buffer) => ({ data, address: HOST_A, port: 4789 });
  // Claims to come from endpoint 1, which lives at A.
  fromB.sendBatch([toA(vxlan(VNI, frame(mac(1), mac(1))))]);
  fromStranger.sendBatch([toA(vxlan(VNI, frame(mac(1), mac(2))))]);
  fromB.sendBatch([toA(vxlan(5000, frame(mac(1), mac(2))))]);
  a.port().inject([frame(mac(1), mac(1))]);
  await net.idle();

  t.like(a.vtep.stats, { dropSelf: 1, dropUnknownSender: 1, dropUnknownVni: 1, dropNoRoute: 1 });
  const network = networkOf(a.vtep);
  t.like(network.counters, { dropSelf: 1, dropUnknownSender: 1, dropNoRoute: 1, rxDatagrams: 0 });
  t.false('dropUnknownVni' in network.counters);
  t.like(peerOf(a.vtep, HOST_B), { dropSelf: 1, rxDatagrams: 0 });
  t.is(peerOf(a.vtep, '198.18.0.99'), undefined, 'an unknown sender gets no counters of its own');
});

test('peer counters stay when the peer leaves and comes back; a removed network has none', async (t) => {
  const net = new MemoryNetwork();
  const [a, b] = twoHosts(net);
  a.port().inject([frame(mac(2), mac(1))]);
  await net.idle();
  a.vtep.removePeer(VNI, mac(2));
  t.is(peerOf(a.vtep, HOST_B)?.txDatagrams, 1, 'counters of a VTEP that left stay, so they never go back');
  a.vtep.setPeer(VNI, { mac: mac(2), ipv4: ip(2), vtep: HOST_B });
  a.port().inject([frame(mac(2), mac(1))]);
  await net.idle();
  t.is(peerOf(a.vtep, HOST_B)?.txDatagrams, 2);
  t.is(b.port().written.length, 2);

  a.vtep.removeNetwork(VNI);
  t.deepEqual(a.vtep.networkStats(), []);
});
