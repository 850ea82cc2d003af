/**
 * `dontFragment` (IP_PMTUDISC_DO) on the addon's UDP socket: a datagram
 * larger than the path MTU is refused by the kernel, never fragmented.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { NativeUdpSocket, receivedDatagrams } from '../../src/sys/udp.js';
import { FrameList } from '../../src/vxlan/offload.js';
import { inNetns, run, tempNetns, uniqueName } from './helpers.js';

/** Two namespaces joined by a veth pair of MTU 1400: 198.18.0.1/24 in `a`, 198.18.0.2/24 in `b`. */
async function narrowLink(t: ExecutionContext) {
  const a = await tempNetns(t);
  const b = await tempNetns(t);
  const ifA = uniqueName('a');
  await run('ip', ['-n', a.name, 'link', 'add', ifA, 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1400', 'netns', b.name]);
  await run('ip', ['-n', a.name, 'addr', 'add', '198.18.0.1/24', 'dev', ifA]);
  await run('ip', ['-n', b.name, 'addr', 'add', '198.18.0.2/24', 'dev', 'eth0']);
  await run('ip', ['-n', a.name, 'link', 'set', ifA, 'up']);
  await run('ip', ['-n', b.name, 'link', 'set', 'eth0', 'up']);
  return { a, b };
}

/** IPv4 fragments this namespace made (Ip: FragCreates in /proc/net/snmp). */
async function fragCreates(netnsPath: string): Promise<number> {
  const { stdout } = await inNetns(netnsPath, 'cat', ['/proc/net/snmp']);
  const [names, values] = stdout.split('\n').filter((line) => line.startsWith('Ip:'));
  const column = names!.split(/\s+/).indexOf('FragCreates');
  return Number(values!.split(/\s+/)[column]);
}

function open(t: ExecutionContext, netnsPath: string, address: string, dontFragment: boolean): NativeUdpSocket {
  const socket = NativeUdpSocket.open({ netnsPath, address, port: 0, dontFragment });
  t.teardown(() => socket.close());
  return socket;
}

/** Resolves with the sizes of the datagrams received until one of `marker` bytes arrives (bounded by 5 s). */
function sizesUntil(socket: NativeUdpSocket, marker: number): Promise<number[]> {
  const sizes: number[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${marker}-byte marker within 5 s; got ${sizes.join(', ')}`)), 5000);
    socket.start((batch) => {
      for (const datagram of receivedDatagrams(batch)) {
        sizes.push(datagram.data.length);
        if (datagram.data.length === marker) {
          clearTimeout(timer);
          socket.stop();
          resolve(sizes);
        }
      }
    });
  });
}

test('with dontFragment a datagram larger than the path MTU is not sent, and no fragment is made', async (t) => {
  const { a, b } = await narrowLink(t);
  const receiver = open(t, b.path, '198.18.0.2', false);
  const sender = open(t, a.path, '198.18.0.1', true);
  const arrived = sizesUntil(receiver, 10);
  const send = (size: number) => sender.sendBatch({ data: [new Uint8Array(size)], addresses: ['198.18.0.2'], ports: [receiver.port] });
  t.is(send(1450), 0, 'the kernel refuses 1478 bytes of IP on a 1400-byte link');
  t.is(send(1372), 1, 'exactly 1400 bytes of IP go');
  // The VTEP's path: a frame behind a VXLAN header, sent with sendFrames.
  const frames = new FrameList();
  frames.push(new Uint8Array(1400), 0, 1400);
  t.deepEqual(sender.sendFrames(new Uint8Array(8), frames, false, '198.18.0.2', receiver.port), { datagrams: 1, sent: 0 });
  t.is(send(10), 1);
  t.deepEqual(await arrived, [1372, 10]);
  t.is(await fragCreates(a.path), 0);
});

test('without dontFragment the same datagram leaves in fragments', async (t) => {
  const { a, b } = await narrowLink(t);
  const receiver = open(t, b.path, '198.18.0.2', false);
  const sender = open(t, a.path, '198.18.0.1', false);
  const arrived = sizesUntil(receiver, 10);
  t.is(sender.sendBatch({ data: [new Uint8Array(1450), new Uint8Array(10)], addresses: ['198.18.0.2', '198.18.0.2'], ports: [receiver.port, receiver.port] }), 2);
  t.deepEqual(await arrived, [1450, 10]);
  t.is(await fragCreates(a.path), 2);
});
