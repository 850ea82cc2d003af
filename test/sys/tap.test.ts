import test from 'ava';
import type { ExecutionContext } from 'ava';
import { InvalidArgument, NetctlError } from '../../src/errors.js';
import { Rtnl } from '../../src/sys/rtnl.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, openTap } from '../../src/sys/tap.js';
import type { TapDevice } from '../../src/sys/tap.js';
import { NativeUdpSocket, receivedDatagrams } from '../../src/sys/udp.js';
import { FrameList, coalesceFrames, framesOf, segmentFrame } from '../../src/vxlan/offload.js';
import { MSS, superFrame } from '../vxlan/helpers.js';
import { ipJson, pingOk, tempNetns, uniqueName } from './helpers.js';

const FAKE_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);
const FAKE_IP = '198.18.60.2';
const VNET_HDR_LEN = 10;

function ipBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

function checksum(data: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += (data[data.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Answers ARP requests and ICMP echo requests for FAKE_IP, as a neighbour on the TAP's link would. */
function answer(frame: Buffer): { kind: 'arp' | 'echo'; reply: Buffer } | undefined {
  const ethertype = frame.readUInt16BE(12);
  const fakeIp = ipBytes(FAKE_IP);
  if (ethertype === 0x0806 && frame.readUInt16BE(20) === 1 && frame.subarray(38, 42).equals(fakeIp)) {
    const reply = Buffer.from(frame.subarray(0, 42));
    frame.copy(reply, 0, 6, 12); // to the asker
    FAKE_MAC.copy(reply, 6);
    reply.writeUInt16BE(2, 20); // ARP reply
    FAKE_MAC.copy(reply, 22);
    fakeIp.copy(reply, 28);
    frame.copy(reply, 32, 22, 32); // target = sender hardware + protocol address
    return { kind: 'arp', reply };
  }
  const ihl = ((frame[14] ?? 0) & 0x0f) * 4;
  if (ethertype === 0x0800 && frame[23] === 1 && frame.subarray(30, 34).equals(fakeIp) && frame[14 + ihl] === 8) {
    const reply = Buffer.from(frame);
    frame.copy(reply, 0, 6, 12);
    FAKE_MAC.copy(reply, 6);
    frame.copy(reply, 26, 30, 34);
    frame.copy(reply, 30, 26, 30);
    reply.writeUInt16BE(0, 24);
    reply.writeUInt16BE(checksum(reply.subarray(14, 14 + ihl)), 24);
    reply[14 + ihl] = 0; // echo reply
    reply.writeUInt16BE(0, 16 + ihl);
    reply.writeUInt16BE(checksum(reply.subarray(14 + ihl)), 16 + ihl);
    return { kind: 'echo', reply };
  }
  return undefined;
}

async function tapInNamespace(t: ExecutionContext, opts: { vnetHdr?: boolean; offloads?: number } = {}) {
  const ns = await tempNetns(t);
  const name = uniqueName('t');
  const tap = openTap(name, { netnsPath: ns.path, ...opts });
  t.teardown(() => {
    try {
      tap.close();
    } catch {
      // the test closed it already
    }
  });
  const rtnl = await Rtnl.open(ns.path);
  t.teardown(() => rtnl.close());
  await rtnl.addAddress(name, '198.18.60.1/24');
  await rtnl.setUp(name);
  return { ns, name, tap, rtnl };
}

/** Starts a responder on the TAP; returns what it answered. */
function respond(tap: TapDevice, headerLength: number) {
  const seen = new Set<string>();
  const batches: number[] = [];
  const headers: Buffer[] = [];
  const header = Buffer.alloc(headerLength);
  tap.start((batch) => {
    batches.push(batch.count);
    const replies: Buffer[] = [];
    for (const view of framesOf(batch)) {
      const frame = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
      headers.push(frame.subarray(0, headerLength));
      const answered = answer(frame.subarray(headerLength));
      if (answered === undefined) continue;
      seen.add(answered.kind);
      replies.push(Buffer.concat([header, answered.reply]));
    }
    if (replies.length > 0 && tap.writeBatch(replies) !== replies.length) throw new Error('short TAP write');
  });
  return { seen, batches, headers };
}

test('a TAP in a namespace delivers the ARP request and carries our replies back: ping works', async (t) => {
  const { ns, name, tap } = await tapInNamespace(t);
  t.is(tap.name, name);
  const [link] = await ipJson<{ ifname: string; linkinfo?: { info_kind: string } }[]>(ns.name, [
    '-d',
    'link',
    'show',
    name,
  ]);
  t.is(link?.linkinfo?.info_kind, 'tun');

  const { seen, batches } = respond(tap, 0);
  t.true(await pingOk(ns.path, FAKE_IP), 'ping through the TAP is answered by the JS responder');
  t.deepEqual([...seen].sort(), ['arp', 'echo']);
  t.true(batches.every((count) => count >= 1 && count <= 64));

  const [neighbour] = await ipJson<{ dst: string; lladdr: string }[]>(ns.name, ['neigh', 'show', FAKE_IP]);
  t.is(neighbour?.lladdr, '02:00:00:00:00:02', 'the kernel learnt the MAC from the ARP reply we wrote');
});

test('with IFF_VNET_HDR and offloads, frames carry a virtio-net header both ways', async (t) => {
  const { ns, tap } = await tapInNamespace(t, { vnetHdr: true, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 });
  const { seen, headers } = respond(tap, VNET_HDR_LEN);
  t.true(await pingOk(ns.path, FAKE_IP));
  t.deepEqual([...seen].sort(), ['arp', 'echo']);
  t.deepEqual(headers[0], Buffer.alloc(VNET_HDR_LEN), 'an empty header: no GSO, no checksum offload for ARP');
});

test('stop pauses delivery, start resumes it', async (t) => {
  const { ns, tap } = await tapInNamespace(t);
  const { seen } = respond(tap, 0);
  tap.stop();
  t.false(await pingOk(ns.path, FAKE_IP, 1), 'nobody answers while stopped');
  t.is(seen.size, 0);
  respond(tap, 0);
  t.true(await pingOk(ns.path, FAKE_IP));
});

test('close removes the device and later calls throw', async (t) => {
  const { ns, name, tap, rtnl } = await tapInNamespace(t);
  respond(tap, 0);
  tap.close();
  t.is(await rtnl.getLink(name), undefined);
  t.deepEqual(await ipJson<unknown[]>(ns.name, ['link', 'show', 'type', 'tun']), []);
  t.throws(() => tap.writeBatch([Buffer.alloc(60)]), { instanceOf: NetctlError });
  t.throws(() => tap.start(() => {}), { instanceOf: NetctlError });
  t.throws(() => tap.stop(), { instanceOf: NetctlError });
  t.throws(() => tap.close(), { instanceOf: NetctlError });
});

test('bad TAP names are rejected', (t) => {
  t.throws(() => openTap(''), { instanceOf: InvalidArgument });
  t.throws(() => openTap('name-longer-than-15'), { instanceOf: InvalidArgument });
});

test('writeFrames merges consecutive TCP segments into one super-frame with IFF_VNET_HDR, and writes frame by frame without', async (t) => {
  const segments = segmentFrame(superFrame({ payload: 10 * MSS }))!;
  t.is(segments.length, 10);
  for (const vnetHdr of [true, false]) {
    const { ns, name, tap } = await tapInNamespace(t, vnetHdr ? { vnetHdr, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 } : {});
    const list = new FrameList();
    for (const segment of segments) list.push(segment, 0, segment.length);
    t.is(tap.writeFrames(list), 10, 'every frame taken');
    const [link] = await ipJson<{ stats64: { rx: { packets: number; bytes: number } } }[]>(ns.name, ['-s', 'link', 'show', name]);
    const bytes = segments.reduce((sum, segment) => sum + segment.length, 0);
    if (vnetHdr) {
      t.like(link?.stats64.rx, { packets: 1, bytes: bytes - 9 * (14 + 20 + 32) }, 'one packet carrying all ten payloads');
    } else {
      t.like(link?.stats64.rx, { packets: 10, bytes });
    }
  }
});

/** An Ethernet frame with an IPv4 UDP datagram from FAKE_IP:40000 to `to`, checksums complete. */
function udpFrame(dstMac: Buffer, to: string, port: number, payload: Buffer, id: number): Buffer {
  const udpLength = 8 + payload.length;
  const frame = Buffer.alloc(14 + 20 + udpLength);
  dstMac.copy(frame, 0);
  FAKE_MAC.copy(frame, 6);
  frame.writeUInt16BE(0x0800, 12);
  const ip = frame.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + udpLength, 2);
  ip.writeUInt16BE(id, 4);
  ip[8] = 64;
  ip[9] = 17;
  ipBytes(FAKE_IP).copy(ip, 12);
  ipBytes(to).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  const udp = frame.subarray(34);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(port, 2);
  udp.writeUInt16BE(udpLength, 4);
  payload.copy(udp, 8);
  const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 17, udpLength >> 8, udpLength & 0xff]), udp]);
  udp.writeUInt16BE(checksum(pseudo) || 0xffff, 6);
  return frame;
}

test('writeFrames merges datagrams of one UDP flow into one UDP_L4 super-frame; a socket behind the TAP gets each whole', async (t) => {
  const { ns, name, tap } = await tapInNamespace(t, { vnetHdr: true, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 });
  const [link] = await ipJson<{ address: string }[]>(ns.name, ['link', 'show', name]);
  const tapMac = Buffer.from(link!.address.split(':').map((octet) => parseInt(octet, 16)));
  const receiver = NativeUdpSocket.open({ netnsPath: ns.path, address: '198.18.60.1', port: 0 });
  t.teardown(() => receiver.close());
  const arrived: Buffer[] = [];
  receiver.start((batch) => {
    for (const datagram of receivedDatagrams(batch)) arrived.push(Buffer.from(datagram.data));
  });
  // 20 datagrams of 64 bytes and a shorter last one: one flow, one write; then one of another port on its own.
  const payloads = [...Array.from({ length: 20 }, (_, i) => Buffer.alloc(64, i + 1)), Buffer.from('the last, shorter')];
  const frames = payloads.map((payload, i) => udpFrame(tapMac, '198.18.60.1', receiver.port, payload, 100 + i));
  frames.push(udpFrame(tapMac, '198.18.60.1', receiver.port + 1, Buffer.alloc(64), 200));
  const list = new FrameList();
  for (const frame of frames) list.push(frame, 0, frame.length);
  t.is(tap.writeFrames(list), frames.length, 'every frame taken');
  const deadline = Date.now() + 5000;
  while (arrived.length < payloads.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  t.deepEqual(arrived, payloads, 'each datagram whole and in order, checksums completed by the kernel');
  const [stats] = await ipJson<{ stats64: { rx: { packets: number } } }[]>(ns.name, ['-s', 'link', 'show', name]);
  t.is(stats?.stats64.rx.packets, 2, 'two writes: the flow as one super-frame, the other port on its own');
});

test('UDP datagrams are merged only when checked: a bad or missing checksum, another flow or a longer datagram ends the run', (t) => {
  const mac = Buffer.from([0x02, 0, 0, 0, 0, 0x01]);
  const flow = (payload: Buffer, port = 5000) => udpFrame(mac, '198.18.60.1', port, payload, 1);
  const four = Array.from({ length: 4 }, () => flow(Buffer.alloc(64, 7)));
  t.is(coalesceFrames(four).length, 1, 'four of one flow: one super-frame');
  const bad = flow(Buffer.alloc(64, 7));
  bad[bad.length - 1]! ^= 1;
  t.is(coalesceFrames([four[0]!, bad]).length, 2, 'a payload that does not match its checksum is not merged unchecked');
  t.is(coalesceFrames([four[0]!, bad], Uint8Array.of(1, 1)).length, 1, 'frames from a trusted sender are not checked again');
  const none = flow(Buffer.alloc(64, 7));
  none.writeUInt16BE(0, 40);
  t.is(coalesceFrames([four[0]!, none]).length, 2, 'no checksum (0) stays as it is');
  t.is(coalesceFrames([four[0]!, flow(Buffer.alloc(64), 5001)]).length, 2, 'another port');
  t.is(coalesceFrames([four[0]!, flow(Buffer.alloc(65))]).length, 2, 'a longer datagram');
  const merged = coalesceFrames([...four, flow(Buffer.alloc(10))]);
  t.is(merged.length, 1, 'a shorter one ends the run inside it');
  const written = merged[0]!;
  t.deepEqual([written[0], written[1], written.readUInt16LE(2), written.readUInt16LE(4), written.readUInt16LE(6), written.readUInt16LE(8)], [1, 5, 42, 64, 34, 6]);
  t.is(written.readUInt16BE(VNET_HDR_LEN + 16), 20 + 8 + 4 * 64 + 10, 'IPv4 total length of the whole');
});
