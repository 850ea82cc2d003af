/**
 * The addon's flow table (src/sys/flow.ts) on its own, with real parts: a
 * TAP whose kernel side sends to 2,000 neighbours (static ARP entries, one
 * MAC each), a UDP socket that the fast path sends from, and a receiver on
 * the other end of a veth. Which MACs leave through the fast path and which
 * reach JavaScript shows what the table holds after many entries were made
 * and half of them forgotten in a scattered order.
 */
import test from 'ava';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, openTap } from '../../src/sys/tap.js';
import { NativeUdpSocket, receivedDatagrams } from '../../src/sys/udp.js';
import { VNET_HDR_LEN } from '../../src/vxlan/offload.js';
import { readMac, writeVxlanHeader } from '../../src/wire/index.js';
import { HOST_A, HOST_B } from '../vxlan/helpers.js';
import { inNetns, run, uniqueName, vethUnderlay } from './helpers.js';

const VNI = 4321;
const NEIGHBOURS = 2000;

const neighbourMac = (i: number) => 0x02_00_00_00_00_00 + 0x1000 + i;
const neighbourIp = (i: number) => `10.99.${1 + (i >> 8)}.${i & 0xff}`;

test('2,000 flows installed and half forgotten in a scattered order: exactly the others leave through the fast path', async (t) => {
  const { a, b } = await vethUnderlay(t, HOST_A, HOST_B);
  await inNetns(a.path, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  const name = uniqueName('f');
  const tap = openTap(name, { netnsPath: a.path, vnetHdr: true, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, borrowBuffers: true });
  t.teardown(() => tap.close());
  await run('ip', ['-n', a.name, 'addr', 'add', '10.99.0.1/16', 'dev', name]);
  await run('ip', ['-n', a.name, 'link', 'set', name, 'up']);
  const neighbours = Array.from({ length: NEIGHBOURS }, (_, i) => {
    const mac = neighbourMac(i).toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
    return `neigh replace ${neighbourIp(i)} lladdr ${mac} dev ${name} nud permanent`;
  });
  await run('sh', ['-c', `printf '%s\\n' "$@" | ip -n ${a.name} -batch -`, 'sh', ...neighbours]);

  const underlay = NativeUdpSocket.open({ netnsPath: a.path, address: HOST_A, port: 0 });
  t.teardown(() => underlay.close());
  const receiver = NativeUdpSocket.open({ netnsPath: b.path, address: HOST_B, port: 0 });
  t.teardown(() => receiver.close());
  const viaFastPath = new Set<number>();
  receiver.start((batch) => {
    for (const { data } of receivedDatagrams(batch)) viaFastPath.add(readMac(data, 8));
  });
  const toJavaScript = new Set<number>();
  tap.start((frames) => {
    for (let i = 0; i < frames.count; i++) {
      const at = 3 * i;
      toJavaScript.add(readMac(frames.buffers[frames.index[at]!]!, frames.index[at + 1]! + VNET_HDR_LEN));
    }
  });

  const header = new Uint8Array(8);
  writeVxlanHeader(VNI, header);
  const flows = underlay.flows();
  t.true(flows.attach(VNI, tap, header, false, 65_535, 1));
  const target = { address: HOST_B, port: receiver.port, frameLimit: 1514, spi: 0, remoteChecksum: false, slot: 2 };
  for (let i = 0; i < NEIGHBOURS; i++) t.true(flows.install(VNI, neighbourMac(i), target));
  // Forget every other one, in a scattered order (a stride prime to the count), and one twice.
  const forgotten = new Set<number>();
  for (let k = 0; k < NEIGHBOURS; k++) {
    const i = (k * 7919) % NEIGHBOURS;
    if (i % 2 === 1) {
      flows.forget(VNI, neighbourMac(i));
      forgotten.add(neighbourMac(i));
    }
  }
  flows.forget(VNI, neighbourMac(1));
  t.false(flows.install(VNI + 1, neighbourMac(0), target), 'a VNI not attached takes no flow');

  // One datagram to every neighbour from the TAP's side of the namespace.
  const sender = NativeUdpSocket.open({ netnsPath: a.path, address: '10.99.0.1', port: 0 });
  t.teardown(() => sender.close());
  const data = Array.from({ length: NEIGHBOURS }, () => new Uint8Array(32));
  const addresses = Array.from({ length: NEIGHBOURS }, (_, i) => neighbourIp(i));
  let sent = 0;
  for (let start = 0; start < NEIGHBOURS; start += 100) {
    sent += sender.sendBatch({ data: data.slice(start, start + 100), addresses: addresses.slice(start, start + 100), ports: data.slice(start, start + 100).map(() => 9) });
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.is(sent, NEIGHBOURS);
  const deadline = Date.now() + 10_000;
  while (viaFastPath.size + toJavaScript.size < NEIGHBOURS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));

  const kept = new Set(Array.from({ length: NEIGHBOURS }, (_, i) => neighbourMac(i)).filter((mac) => !forgotten.has(mac)));
  t.deepEqual([...viaFastPath].sort(), [...kept].sort(), 'the entries kept, and only those, sent by the addon');
  t.deepEqual([...toJavaScript].sort(), [...forgotten].sort(), 'the forgotten ones handed to JavaScript');

  // Without a MAC, forget empties the network's table: everything goes up.
  flows.forget(VNI);
  viaFastPath.clear();
  toJavaScript.clear();
  t.is(sender.sendBatch({ data: data.slice(0, 10), addresses: addresses.slice(0, 10), ports: data.slice(0, 10).map(() => 9) }), 10);
  while (toJavaScript.size < 10 && Date.now() < deadline + 5000) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(toJavaScript.size, 10);
  t.is(viaFastPath.size, 0);
});
