/**
 * The addon's fast path with real parts: two hosts (namespaces on a veth
 * underlay), each a VTEP on a native UDP port and a TAP with virtio headers
 * whose kernel side is the endpoint (address 10.99.0.N, IPv6 off so that
 * nothing but the test's traffic crosses). What reaches JavaScript is
 * counted by wrapping the ports' callbacks.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { EspTable } from '../../src/sys/esp.js';
import { NativeUdpSocket } from '../../src/sys/udp.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, openTap } from '../../src/sys/tap.js';
import { NativeDatagramPort } from '../../src/vxlan/native.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import { VXLAN_HEADER_LEN, readMac } from '../../src/wire/index.js';
import { ManualTimers } from './clock.js';
import { HOST_A, HOST_B, HOST_C, VNI, drops, mac } from './helpers.js';
import { inNetns, run, uniqueName, vethUnderlay } from '../sys/helpers.js';

const ENDPOINT_A = { mac: mac(1), ipv4: '10.99.0.1' };
const ENDPOINT_B = { mac: mac(2), ipv4: '10.99.0.2' };
/** A configured endpoint on host B that never sends: it keeps B a flood target of A. */
const IDLE_B = { mac: mac(9), ipv4: '10.99.0.9' };

interface Host {
  vtep: Vtep;
  underlay: NativeDatagramPort;
  /** Where the kernel counts the TAP's frames. */
  netnsName: string;
  tapName: string;
  /** Frames the TAP handed to JavaScript, and underlay receive entries. */
  seen: { frames: number; datagrams: number };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function macText(value: number): string {
  return value.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

/** A VTEP at `address` in namespace `netns`, with its endpoint `endpoint` behind a TAP there. */
async function host(
  t: ExecutionContext,
  netns: { name: string; path: string },
  address: string,
  endpoint: typeof ENDPOINT_A,
  fastPath: boolean,
  esp?: EspTable,
): Promise<Host> {
  await inNetns(netns.path, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  const underlay = NativeDatagramPort.open({ netnsPath: netns.path, address, port: 4789 });
  if (esp !== undefined) underlay.setEspTable(esp);
  const vtep = new Vtep({ underlay, localAddress: address, fastPath, probe: { timers: new ManualTimers() } });
  t.teardown(() => vtep.stop());
  const seen = { frames: 0, datagrams: 0 };
  const startUnderlay = underlay.start.bind(underlay);
  underlay.start = (onBatch) =>
    startUnderlay((batch) => {
      seen.datagrams += batch.count;
      onBatch(batch);
    });
  vtep.start();
  const name = uniqueName('f');
  const tap = openTap(name, { netnsPath: netns.path, vnetHdr: true, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, borrowBuffers: true });
  const startTap = tap.start.bind(tap);
  tap.start = (onBatch) =>
    startTap((batch) => {
      seen.frames += batch.count;
      onBatch(batch);
    });
  vtep.addNetwork(VNI, tap, { encrypted: esp !== undefined });
  await run('ip', ['-n', netns.name, 'link', 'set', name, 'address', macText(endpoint.mac), 'mtu', '1450', 'up']);
  await run('ip', ['-n', netns.name, 'addr', 'add', `${endpoint.ipv4}/24`, 'dev', name]);
  for (const peer of [
    { ...ENDPOINT_A, vtep: HOST_A },
    { ...ENDPOINT_B, vtep: HOST_B },
    { ...IDLE_B, vtep: HOST_B },
  ]) {
    vtep.setPeer(VNI, peer);
  }
  return { vtep, underlay, seen, netnsName: netns.name, tapName: name };
}

async function twoHosts(t: ExecutionContext, fastPath: boolean) {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B);
  const a = await host(t, nsA, HOST_A, ENDPOINT_A, fastPath);
  const b = await host(t, nsB, HOST_B, ENDPOINT_B, fastPath);
  return { nsA, nsB, a, b };
}

/** `count` echo requests from A's endpoint to B's, 5 ms apart; how many were answered. */
async function echoReplies(nsPath: string, count: number, target = ENDPOINT_B.ipv4): Promise<number> {
  // ping exits 1 when nothing came back; either way its summary says how many did.
  const { stdout } = await inNetns(nsPath, 'ping', ['-q', '-c', String(count), '-i', '0.005', '-W', '1', target]).catch((err: { stdout?: string }) => ({
    stdout: err.stdout ?? '',
  }));
  return Number(/(\d+) received/.exec(stdout)?.[1] ?? 0);
}

test('after the first frames of a flow the addon moves it: JavaScript sees only those, and the counters are the kernel\'s, as without it', async (t) => {
  const fast = await twoHosts(t, true);
  const slow = await twoHosts(t, false);
  for (const pair of [fast, slow]) t.is(await echoReplies(pair.nsA.path, 100), 100, 'echo requests answered');

  // 200 echo frames and 2 ARP requests (answered from the peer table) crossed each pair.
  const jsFrames = fast.a.seen.frames + fast.b.seen.frames;
  const jsDatagrams = fast.a.seen.datagrams + fast.b.seen.datagrams;
  t.true(jsFrames <= 6, `frames from the TAPs that reached JavaScript: ${jsFrames}`);
  t.true(jsDatagrams <= 4, `underlay receives that reached JavaScript: ${jsDatagrams}`);
  t.true(slow.a.seen.frames + slow.b.seen.frames >= 200, `without the fast path every frame reaches JavaScript (${slow.a.seen.frames} + ${slow.b.seen.frames})`);

  // Exact counters whichever path moved the frames: each host's match what the kernel counted on its TAP.
  for (const [pair, which] of [[fast, 'fast path'], [slow, 'without it']] as const) {
    for (const [local, remote] of [[pair.a, HOST_B], [pair.b, HOST_A]] as const) {
      const tap = await linkStats(local.netnsName, local.tapName);
      const stats = local.vtep.stats;
      const peer = local.vtep.networkStats()[0]!.peers.find((candidate) => candidate.address === remote)!;
      const arp = stats.arpAnswered * ARP_FRAME_LEN;
      t.like(stats, { rxFrames: tap.tx.packets, txFrames: tap.rx.packets, arpAnswered: 1 }, which);
      t.like(peer, { txDatagrams: tap.tx.packets - 1, txBytes: tap.tx.bytes - arp, rxDatagrams: tap.rx.packets - 1, rxBytes: tap.rx.bytes - arp }, which);
      t.is(drops(local.vtep), 0, which);
    }
  }
});

/** An ARP request or reply as Linux sends it on a TAP: no padding. */
const ARP_FRAME_LEN = 42;

async function linkStats(netnsName: string, name: string) {
  const { stdout } = await run('ip', ['-n', netnsName, '-s', '-j', 'link', 'show', name]);
  type Counts = { packets: number; bytes: number };
  return (JSON.parse(stdout) as { stats64: { rx: Counts; tx: Counts } }[])[0]!.stats64;
}

test('TCP through the fast path: 50 MiB cross without a drop and JavaScript sees under 5 % of the frames', async (t) => {
  const { nsA, nsB, a, b } = await twoHosts(t, true);
  const server = inNetns(nsB.path, 'iperf3', ['-s', '-1', '-B', ENDPOINT_B.ipv4]);
  // The server listens once the client's connection is no longer refused.
  let result: { stdout: string } | undefined;
  for (let attempt = 0; attempt < 50 && result === undefined; attempt++) {
    try {
      result = await inNetns(nsA.path, 'iperf3', ['-c', ENDPOINT_B.ipv4, '-n', '50M', '-J']);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  await server.catch(() => undefined);
  t.truthy(result, 'iperf3 ran');
  const report = JSON.parse(result!.stdout) as { end: { sum_received: { bytes: number } } };
  // iperf3 -n stops the receiver's count as the sender finishes: its last segments may be missing there.
  t.true(report.end.sum_received.bytes >= 0.9 * 50 * 2 ** 20, 'the 50 MiB arrived');
  t.is(drops(a.vtep) + drops(b.vtep), 0, 'nothing dropped');
  // The last segments may still be on their way when iperf3 returns: wait for them; a lost one never comes.
  await until(() => a.vtep.stats.txDatagrams === b.vtep.stats.rxDatagrams, 'B to receive every datagram A sent').catch(() => undefined);
  t.is(a.vtep.stats.txDatagrams, b.vtep.stats.rxDatagrams, 'every datagram A sent, B received');
  const moved = a.vtep.stats.rxFrames + b.vtep.stats.rxFrames;
  const seen = a.seen.frames + b.seen.frames;
  t.true(seen * 20 < moved, `JavaScript saw ${seen} of ${moved} frames read from the TAPs`);
  const toB = a.vtep.networkStats()[0]!.peers.find((peer) => peer.address === HOST_B)!;
  t.true(toB.txBytes > report.end.sum_received.bytes, 'the inner bytes (payload and headers) counted for the peer');
});

test('a flow is forgotten when its peer moves or leaves: from the return of the call no frame goes to the old VTEP', async (t) => {
  const { nsA, nsB, a, b } = await twoHosts(t, true);
  // Host C: a second underlay address in B's namespace, where a bare socket counts what A sends it.
  await run('ip', ['-n', nsB.name, 'addr', 'add', `${HOST_C}/24`, 'dev', (await underlayDevice(nsB.name))]);
  const atC: Uint8Array[] = [];
  const c = NativeUdpSocket.open({ netnsPath: nsB.path, address: HOST_C, port: 4789 });
  t.teardown(() => c.close());
  c.start((batch) => {
    for (let i = 0; i < batch.count; i++) {
      const at = 7 * i;
      const buffer = batch.buffers[batch.index[at]!]!;
      atC.push(buffer.slice(batch.index[at + 1]!, batch.index[at + 1]! + batch.index[at + 2]!));
    }
  });

  t.is(await echoReplies(nsA.path, 20), 20, 'B answers before the move');
  const seenByA = a.seen.frames;
  const toB = b.vtep.stats.rxDatagrams;

  // The endpoint moves to C: A's next frames to it go there, none to B.
  a.vtep.setPeer(VNI, { ...ENDPOINT_B, vtep: HOST_C });
  t.is(await echoReplies(nsA.path, 10), 0, 'nobody answers at C');
  await until(() => atC.length >= 10, 'the echo requests at C');
  t.is(b.vtep.stats.rxDatagrams, toB, 'B got nothing after the move');
  t.true(atC.every((datagram) => readMac(datagram, VXLAN_HEADER_LEN) === ENDPOINT_B.mac), 'C got frames for the moved endpoint');
  t.true(a.seen.frames > seenByA, 'the first frame after the move went up to the VTEP');

  // It leaves: A knows its MAC no more, so every frame is decided by the VTEP: flooded, to B alone, which
  // still holds IDLE_B (and the endpoint's TAP, which answers).
  a.vtep.removePeer(VNI, ENDPOINT_B.mac);
  const flooded = a.vtep.stats.flooded;
  const atCBefore = atC.length;
  await echoReplies(nsA.path, 10);
  t.is(a.vtep.stats.flooded - flooded, 10, 'each frame was flooded by the VTEP');
  t.is(atC.length, atCBefore, 'C, which holds no endpoint now, got none');
});

/** The underlay veth of a namespace made by vethUnderlay (its only link besides lo). */
async function underlayDevice(netnsName: string): Promise<string> {
  const { stdout } = await run('ip', ['-n', netnsName, '-j', 'link', 'show', 'type', 'veth']);
  return (JSON.parse(stdout) as { ifname: string }[])[0]!.ifname;
}

test('an encrypted network: the fast path seals and opens with the SAs the VTEP named, and without the SA nothing leaves in clear', async (t) => {
  const { a: nsA, b: nsB } = await vethUnderlay(t, HOST_A, HOST_B);
  const tables = [EspTable.create(), EspTable.create()] as const;
  t.teardown(() => tables.forEach((table) => table.close()));
  const sa = (spi: number) => ({ spi, key: randomBytes(32), salt: randomBytes(4), tag: VNI });
  const ab = sa(0x1000);
  const ba = sa(0x2000);
  tables[0].addOutbound(ab);
  tables[1].addInbound(ab);
  tables[1].addOutbound(ba);
  tables[0].addInbound(ba);
  const a = await host(t, nsA, HOST_A, ENDPOINT_A, true, tables[0]);
  const b = await host(t, nsB, HOST_B, ENDPOINT_B, true, tables[1]);
  a.vtep.setOutboundSpi(VNI, HOST_B, ab.spi);
  b.vtep.setOutboundSpi(VNI, HOST_A, ba.spi);

  t.is(await echoReplies(nsA.path, 100), 100, 'every echo request answered');
  t.true(a.seen.frames + b.seen.frames <= 6, 'the addon moved the flow');
  t.is(tables[0].counters('outbound', ab.spi)?.packets, 100, 'each request sealed with A to B');
  t.is(tables[0].counters('inbound', ba.spi)?.packets, 100, 'each reply opened with B to A');

  // The SA goes from the table behind the VTEP's back: frames are dropped as without a key, none leaves in clear.
  tables[0].remove('outbound', ab.spi);
  const received = b.vtep.stats.rxDatagrams;
  t.is(await echoReplies(nsA.path, 5), 0, 'no answer without a key');
  t.is(a.vtep.stats.dropNoKey, 5, 'each request dropped for want of a key');
  t.is(b.vtep.stats.rxDatagrams, received, 'B got nothing, sealed or not');
});
