import test from 'ava';
import type { ExecutionContext } from 'ava';
import { PortClosed, receivedDatagrams } from '../../src/vxlan/io.js';
import { MemoryFramePort } from '../../src/vxlan/memory.js';
import { NativeDatagramPort } from '../../src/vxlan/native.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import { run, tempNetns, vethUnderlay } from '../sys/helpers.js';
import { VNET_HDR_LEN, segmentFrame } from '../../src/vxlan/offload.js';
import { HOST_A, HOST_B, MSS, VNI, drops, frame, mac, superFrame } from './helpers.js';
import { ManualTimers } from './clock.js';
import { ETHERNET_HEADER_LEN, VXLAN_FLAG_RCO, VXLAN_HEADER_LEN } from '../../src/wire/index.js';


/** A started VTEP on a native underlay port in the namespace, serving VNI on a MemoryFramePort. */
function host(t: ExecutionContext, netnsPath: string, address: string, vnetHdr = false) {
  const underlayPort = NativeDatagramPort.open({ netnsPath, address, port: 4789 });
  const vtep = new Vtep({ underlay: underlayPort, localAddress: address, probe: { timers: new ManualTimers() } });
  t.teardown(() => vtep.stop());
  vtep.start();
  const port = new MemoryFramePort({ vnetHdr });
  vtep.addNetwork(VNI, port);
  vtep.setPeer(VNI, { mac: mac(1), vtep: HOST_A });
  vtep.setPeer(VNI, { mac: mac(2), vtep: HOST_B });
  return { vtep, port, underlayPort };
}

async function until(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('frames cross between two VTEPs over native UDP ports in two namespaces unchanged', async (t) => {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B);
  const a = host(t, nsA.path, HOST_A);
  const b = host(t, nsB.path, HOST_B);

  const sent = frame(mac(2), mac(1), 100, 7);
  a.port.inject([sent]);
  await until(() => b.port.written.length === 1);
  t.deepEqual(b.port.written, [sent]);

  // A batch both ways, up to the largest frame the underlay carries whole (1500 less 36 bytes of outer headers).
  const sizes = [46, 1400, 1464 - ETHERNET_HEADER_LEN, 46];
  const toA = sizes.map((size, i) => frame(mac(1), mac(2), size, i));
  b.port.inject(toA);
  await until(() => a.port.written.length === toA.length);
  t.deepEqual(a.port.written, toA);
  t.like(a.vtep.stats, { txDatagrams: 1, rxDatagrams: toA.length, txFrames: toA.length });
  t.is(drops(a.vtep) + drops(b.vtep), 0);
});

test('TCP super-frames leave in UDP_SEGMENT sends and arrive through UDP_GRO as the same segments', async (t) => {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B);
  const a = host(t, nsA.path, HOST_A, true);
  const b = host(t, nsB.path, HOST_B);
  const supers = [superFrame({ payload: 60_000 }), superFrame({ payload: 30_000, seq: 60_000 }), superFrame({ payload: 100, seq: 90_000 })];
  const expected = supers.flatMap((big) => segmentFrame(big)!.map((piece) => Buffer.from(piece)));
  t.is(expected.length, Math.ceil(60_000 / MSS) + Math.ceil(30_000 / MSS) + 1);
  a.port.inject(supers);
  await until(() => b.port.written.length >= expected.length);
  t.deepEqual(b.port.written, expected);
  t.like(a.vtep.stats, { rxFrames: 3, txDatagrams: expected.length });
  t.like(b.vtep.stats, { rxDatagrams: expected.length, txFrames: expected.length });
  t.is(a.underlayPort.dropped, 0);
  t.is(drops(a.vtep) + drops(b.vtep), 0);
});

test('segments larger than the underlay MTU are refused by the kernel, never sent in fragments', async (t) => {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B, 1000);
  const a = host(t, nsA.path, HOST_A, true);
  const b = host(t, nsB.path, HOST_B);
  // The VTEP was not told the MTU (see mtu.test.ts for one that was): UDP_SEGMENT, then each datagram alone, fail.
  a.port.inject([superFrame({ payload: 10 * MSS }), Buffer.concat([Buffer.alloc(VNET_HDR_LEN), frame(mac(2), mac(1), 900, 1)])]);
  await until(() => b.port.written.length === 1);
  t.is(b.port.written[0]!.length, ETHERNET_HEADER_LEN + 900, 'a frame that fits still goes');
  t.is(a.underlayPort.dropped, 10);
  const snmp = await run('nsenter', [`--net=${nsA.path}`, 'cat', '/proc/net/snmp']);
  const [names, values] = snmp.stdout.split('\n').filter((line) => line.startsWith('Ip:'));
  t.is(values!.split(' ')[names!.split(' ').indexOf('FragCreates')], '0');
});

test('to a netctl VTEP TCP segments leave with partial checksums marked RCO; to an external VTEP with whole ones', async (t) => {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B);
  const a = host(t, nsA.path, HOST_A, true);
  // HOST_B is a bare socket that records what arrives, GRO off so that each datagram is one.
  const listener = NativeDatagramPort.open({ netnsPath: nsB.path, address: HOST_B, port: 4789, gro: false });
  t.teardown(() => listener.close());
  const seen: Buffer[] = [];
  listener.start((datagrams) => {
    for (const datagram of receivedDatagrams(datagrams)) seen.push(Buffer.from(datagram.data));
  });
  const big = superFrame({ payload: 3 * MSS });
  const whole = segmentFrame(big)!;
  a.port.inject([big]);
  await until(() => seen.length === whole.length);
  for (const datagram of seen) {
    t.is(datagram[1], VXLAN_FLAG_RCO);
    t.is(datagram[7], (ETHERNET_HEADER_LEN + 20) / 2);
  }
  t.notDeepEqual(seen[0]!.subarray(VXLAN_HEADER_LEN), Buffer.from(whole[0]!), 'the checksum is not computed');

  seen.length = 0;
  a.vtep.setExternalPeers(VNI, [HOST_B]);
  a.port.inject([big]);
  await until(() => seen.length === whole.length);
  t.deepEqual(
    seen.map((datagram) => datagram.subarray(VXLAN_HEADER_LEN)),
    whole.map((piece) => Buffer.from(piece)),
    'a kernel VTEP gets every checksum computed',
  );
  t.true(seen.every((datagram) => datagram[1] === 0 && datagram[7] === 0));
});

test('NativeDatagramPort counts what it cannot send, binds port 0, and throws PortClosed after close', async (t) => {
  const ns = await tempNetns(t);
  await run('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
  const port = NativeDatagramPort.open({ netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  t.teardown(() => port.close());
  t.true(port.port > 0);
  const received = new Promise<string[]>((resolve) => {
    port.start((datagrams) => resolve(receivedDatagrams(datagrams).map((d) => `${Buffer.from(d.data).toString()} ${d.address}:${d.port}`)));
  });
  port.sendBatch([
    { data: Buffer.from('lost'), address: 'nowhere', port: port.port },
    { data: Buffer.from('hello'), address: '127.0.0.1', port: port.port },
  ]);
  t.is(port.dropped, 1);
  t.deepEqual(await received, [`hello 127.0.0.1:${port.port}`]);

  await port.close();
  await port.close();
  t.throws(() => port.sendBatch([]), { instanceOf: PortClosed });
  t.throws(() => port.start(() => {}), { instanceOf: PortClosed });
});
