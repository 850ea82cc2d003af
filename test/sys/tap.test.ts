import test from 'ava';
import type { ExecutionContext } from 'ava';
import { InvalidArgument, NetctlError } from '../../src/errors.js';
import { Rtnl } from '../../src/sys/rtnl.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, openTap } from '../../src/sys/tap.js';
import type { TapDevice } from '../../src/sys/tap.js';
import { FrameList, framesOf, segmentFrame } from '../../src/vxlan/offload.js';
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
