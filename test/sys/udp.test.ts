import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { InvalidArgument, NetctlError } from '../../src/errors.js';
import { NativeUdpSocket, SocketClosed, openTcpListener, receivedDatagrams } from '../../src/sys/udp.js';
import type { DatagramBatch, ReceivedDatagram } from '../../src/sys/udp.js';
import { DATAGRAM_ADDRESS, DATAGRAM_BUFFER, DATAGRAM_LENGTH, DATAGRAM_OFFSET, DATAGRAM_PORT, DATAGRAM_STRIDE } from '../../src/sys/batch-layout.js';
import { FrameList } from '../../src/vxlan/offload.js';
import { inNetns, run, tempNetns, uniqueName } from './helpers.js';

/** A namespace with its loopback up (a new namespace's `lo` is down). */
async function netnsWithLoopback(t: ExecutionContext): Promise<{ name: string; path: string }> {
  const ns = await tempNetns(t);
  await run('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
  return ns;
}

/** Two namespaces joined by a veth pair: 198.18.0.1/24 in `a`, 198.18.0.2/24 in `b`. */
async function vethPair(t: ExecutionContext) {
  const a = await tempNetns(t);
  const b = await tempNetns(t);
  const ifA = uniqueName('a');
  const ifB = uniqueName('b');
  await run('ip', ['-n', a.name, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  await run('ip', ['-n', a.name, 'addr', 'add', '198.18.0.1/24', 'dev', ifA]);
  await run('ip', ['-n', b.name, 'addr', 'add', '198.18.0.2/24', 'dev', ifB]);
  await run('ip', ['-n', a.name, 'link', 'set', ifA, 'up']);
  await run('ip', ['-n', b.name, 'link', 'set', ifB, 'up']);
  return { a, b };
}

function openSocket(t: ExecutionContext, opts: Parameters<typeof NativeUdpSocket.open>[0]): NativeUdpSocket {
  const socket = NativeUdpSocket.open(opts);
  t.teardown(() => {
    try {
      socket.close();
    } catch (err) {
      if (!(err instanceof SocketClosed)) throw err;
    }
  });
  return socket;
}

/** Sends `count` datagrams (payload: the index as text) with node:dgram from inside a namespace; resolves to the client's port. */
async function dgramClient(
  netnsPath: string,
  from: string,
  to: string,
  port: number,
  count = 1,
): Promise<number> {
  const script = `
    const dgram = require('node:dgram');
    const [from, to, port, count] = process.argv.slice(1);
    const socket = dgram.createSocket('udp4');
    socket.bind(0, from, () => {
      let pending = Number(count);
      for (let i = 0; i < Number(count); i++) {
        socket.send(String(i), Number(port), to, (err) => {
          if (err) throw err;
          if (--pending === 0) { console.log(socket.address().port); socket.close(); }
        });
      }
    });`;
  const { stdout } = await inNetns(netnsPath, process.execPath, ['-e', script, from, to, String(port), String(count)]);
  return Number(stdout.trim());
}

/** Collects batches until `count` datagrams arrived. */
function collect(socket: NativeUdpSocket, count: number): Promise<ReceivedDatagram[][]> {
  const batches: ReceivedDatagram[][] = [];
  let received = 0;
  return new Promise((resolve) => {
    socket.start((batch) => {
      batches.push(receivedDatagrams(batch));
      received += batch.count;
      if (received >= count) {
        socket.stop();
        resolve(batches);
      }
    });
  });
}

function texts(batches: ReceivedDatagram[][]): string[] {
  return batches.flatMap((batch) => batch.map(({ data }) => Buffer.from(data).toString()));
}

async function listeningUdpPorts(netnsPath: string): Promise<string[]> {
  const { stdout } = await inNetns(netnsPath, 'ss', ['-Hlun']);
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(/\s+/)[3] ?? '');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a datagram from a client in the namespace arrives with its source address and port', async (t) => {
  const ns = await netnsWithLoopback(t);
  const socket = openSocket(t, { netnsPath: ns.path, address: '127.0.0.11', port: 0 });
  const arrived = collect(socket, 1);
  const clientPort = await dgramClient(ns.path, '127.0.0.7', '127.0.0.11', socket.port);
  const batches = await arrived;
  t.deepEqual(texts(batches), ['0']);
  t.deepEqual(batches[0]?.map((d) => d.address), ['127.0.0.7']);
  t.deepEqual(batches[0]?.map((d) => d.port), [clientPort]);
});

test('a burst of 1000 datagrams arrives whole, in a few batches', async (t) => {
  const ns = await netnsWithLoopback(t);
  // Room for the whole burst, which is sent before the socket is started.
  const socket = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0, recvBufferSize: 8 << 20 });
  await dgramClient(ns.path, '127.0.0.1', '127.0.0.1', socket.port, 1000);
  const batches = await collect(socket, 1000);
  t.deepEqual(
    texts(batches).map(Number).sort((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  t.true(batches.length <= Math.ceil(1000 / 64), `${batches.length} batches`);
});

test('sendBatch delivers 200 datagrams to a receiver in another namespace', async (t) => {
  const { a, b } = await vethPair(t);
  const receiverScript = `
    const dgram = require('node:dgram');
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    const seen = new Set();
    const senders = new Set();
    const done = () => { console.log(JSON.stringify({ payloads: [...seen], senders: [...senders] })); process.exit(0); };
    socket.on('message', (data, rinfo) => {
      seen.add(data.toString());
      senders.add(rinfo.address + ':' + rinfo.port);
      if (seen.size === 200) done();
    });
    socket.bind(0, '198.18.0.2', () => console.log(socket.address().port));
    setTimeout(done, 5000);`;
  const receiver = spawn('nsenter', [`--net=${b.path}`, process.execPath, '-e', receiverScript]);
  t.teardown(() => receiver.kill());
  let output = '';
  receiver.stdout.setEncoding('utf8');
  const portLine = new Promise<number>((resolve) => {
    receiver.stdout.on('data', (chunk: string) => {
      output += chunk;
      const newline = output.indexOf('\n');
      if (newline >= 0) resolve(Number(output.slice(0, newline)));
    });
  });
  const exited = new Promise<void>((resolve) => receiver.on('exit', () => resolve()));
  const receiverPort = await portLine;

  const sender = openSocket(t, { netnsPath: a.path, address: '198.18.0.1', port: 0 });
  const data = Array.from({ length: 200 }, (_, i) => Buffer.from(`datagram ${i}`));
  const sent = sender.sendBatch({
    data,
    addresses: data.map(() => '198.18.0.2'),
    ports: data.map(() => receiverPort),
  });
  t.is(sent, 200);
  await exited;
  const result = JSON.parse(output.slice(output.indexOf('\n') + 1)) as { payloads: string[]; senders: string[] };
  t.deepEqual(result.payloads.sort(), data.map(String).sort());
  t.deepEqual(result.senders, [`198.18.0.1:${sender.port}`]);
});

test('port 0 binds an ephemeral port, reported and listed by ss until closed', async (t) => {
  const ns = await netnsWithLoopback(t);
  const socket = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  t.true(socket.port >= 1024 && socket.port <= 65535);
  t.deepEqual(await listeningUdpPorts(ns.path), [`127.0.0.1:${socket.port}`]);
  socket.close();
  t.deepEqual(await listeningUdpPorts(ns.path), []);
});

test("a socket in namespace A is not reachable from namespace B's loopback", async (t) => {
  const nsA = await netnsWithLoopback(t);
  const nsB = await netnsWithLoopback(t);
  const socket = openSocket(t, { netnsPath: nsA.path, address: '127.0.0.1', port: 0 });
  const received: string[] = [];
  socket.start((batch) => received.push(...texts([receivedDatagrams(batch)])));
  await dgramClient(nsB.path, '127.0.0.1', '127.0.0.1', socket.port);
  await sleep(300);
  t.deepEqual(received, []);
  // The same client from inside A is heard, so the silence above was the namespace.
  const heard = new Promise<void>((resolve) => socket.start(() => resolve()));
  await dgramClient(nsA.path, '127.0.0.1', '127.0.0.1', socket.port);
  await heard;
  t.pass();
});

test('after close every call throws SocketClosed', async (t) => {
  const ns = await netnsWithLoopback(t);
  const socket = NativeUdpSocket.open({ netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  socket.start(() => {});
  socket.close();
  t.throws(() => socket.start(() => {}), { instanceOf: SocketClosed });
  t.throws(() => socket.sendBatch({ data: [Buffer.from('x')], addresses: ['127.0.0.1'], ports: [9] }), {
    instanceOf: SocketClosed,
  });
  t.throws(() => socket.sendIndexed({ buffers: [], index: new Uint32Array(0), addresses: [], count: 0 }), { instanceOf: SocketClosed });
  t.throws(() => socket.stop(), { instanceOf: SocketClosed });
  t.throws(() => socket.close(), { instanceOf: SocketClosed });
});

test('open refuses a missing namespace, a bad address and a port in use (unless both reuse it)', async (t) => {
  const ns = await netnsWithLoopback(t);
  t.throws(() => NativeUdpSocket.open({ netnsPath: `/var/run/netns/${uniqueName('x')}`, address: '127.0.0.1', port: 0 }), {
    instanceOf: InvalidArgument,
  });
  t.throws(() => NativeUdpSocket.open({ netnsPath: ns.path, address: '127.0.0.300', port: 0 }), {
    instanceOf: InvalidArgument,
  });
  const first = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  const error = t.throws(() => NativeUdpSocket.open({ netnsPath: ns.path, address: '127.0.0.1', port: first.port }), {
    instanceOf: NetctlError,
  });
  t.is(error?.code, 'Unavailable');
  const shared = openSocket(t, { netnsPath: ns.path, address: '127.0.0.2', port: 0, reuseAddr: true });
  const again = openSocket(t, { netnsPath: ns.path, address: '127.0.0.2', port: shared.port, reuseAddr: true });
  t.is(again.port, shared.port);
});

test('sendBatch skips datagrams it cannot send and sends the rest', async (t) => {
  const ns = await netnsWithLoopback(t);
  const receiver = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  const sender = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  const arrived = collect(receiver, 2);
  const sent = sender.sendBatch({
    data: ['one', 'unparseable', 'unroutable', 'two'].map((text) => Buffer.from(text)),
    addresses: ['127.0.0.1', 'not-an-address', '198.19.255.1', '127.0.0.1'],
    ports: [receiver.port, receiver.port, receiver.port, receiver.port],
  });
  t.is(sent, 2);
  t.deepEqual(texts(await arrived).sort(), ['one', 'two']);
});

test('sendIndexed sends datagrams laid out as received ones, skipping those outside their buffer or with a bad address', async (t) => {
  const ns = await netnsWithLoopback(t);
  const first = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  const second = openSocket(t, { netnsPath: ns.path, address: '127.0.0.2', port: 0 });
  const sender = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0 });
  const toFirst = collect(first, 2);
  const toSecond = collect(second, 1);
  const memory = Buffer.from('onetwothreefour');
  const index = new Uint32Array(DATAGRAM_STRIDE * 6);
  // [buffer, offset, length, address, port] per datagram.
  const datagrams: [number, number, number, number, number][] = [
    [0, 0, 3, 0, first.port],
    [1, 0, 3, 1, second.port],
    [0, 3, 3, 2, first.port],
    [0, 14, 5, 0, first.port],
    [0, 6, 5, 0, first.port],
    [0, 11, 4, 0, 0],
  ];
  datagrams.forEach(([buffer, offset, length, address, port], i) => {
    const at = DATAGRAM_STRIDE * i;
    index[at + DATAGRAM_BUFFER] = buffer;
    index[at + DATAGRAM_OFFSET] = offset;
    index[at + DATAGRAM_LENGTH] = length;
    index[at + DATAGRAM_ADDRESS] = address;
    index[at + DATAGRAM_PORT] = port;
  });
  const sent = sender.sendIndexed({ buffers: [memory, Buffer.from('six')], index, addresses: ['127.0.0.1', '127.0.0.2', 'not-an-address'], count: 6 });
  t.is(sent, 2 + 1, 'not the bad address, the one past the end of its buffer, nor port 0');
  t.deepEqual(texts(await toFirst).sort(), ['one', 'three']);
  t.deepEqual(texts(await toSecond), ['six']);
});

test('a received batch given to sendIndexed goes back to each sender', async (t) => {
  const ns = await netnsWithLoopback(t);
  const echo = openSocket(t, { netnsPath: ns.path, address: '127.0.0.1', port: 0, borrowBuffers: true });
  echo.start((batch) => echo.sendIndexed(batch));
  const script = `
    const dgram = require('node:dgram');
    const socket = dgram.createSocket('udp4');
    socket.on('message', (data) => { console.log(data.toString()); socket.close(); });
    socket.bind(0, '127.0.0.2', () => socket.send('ping', Number(process.argv[1]), '127.0.0.1'));
    setTimeout(() => process.exit(1), 5000).unref();`;
  const { stdout } = await inNetns(ns.path, process.execPath, ['-e', script, String(echo.port)]);
  t.is(stdout.trim(), 'ping');
});

test('a TCP listener made in a namespace accepts connections from inside it, not from another namespace', async (t) => {
  const ns = await netnsWithLoopback(t);
  const other = await netnsWithLoopback(t);
  const connections: Socket[] = [];
  let heard: (message: { text: string; localAddress: string | undefined }) => void = () => {};
  const firstMessage = new Promise<{ text: string; localAddress: string | undefined }>((resolve) => {
    heard = resolve;
  });
  const server = await openTcpListener({ netnsPath: ns.path, address: '127.0.0.11', port: 0 }, (socket) => {
    connections.push(socket);
    socket.setEncoding('utf8');
    socket.once('data', (text: string) => heard({ text, localAddress: socket.localAddress }));
  });
  t.teardown(() => {
    for (const socket of connections) socket.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === 'string') return t.fail('not a TCP listener');
  t.is(address.address, '127.0.0.11');
  const connect = `exec 3<>/dev/tcp/127.0.0.11/${address.port} && echo hello >&3`;
  await t.throwsAsync(inNetns(other.path, 'bash', ['-c', connect]));
  await inNetns(ns.path, 'bash', ['-c', connect]);
  t.deepEqual(await firstMessage, { text: 'hello\n', localAddress: '127.0.0.11' });
  t.is(connections.length, 1);
});

test('sendFrames sends a burst of small frames of one length as UDP_SEGMENT sends: each arrives whole, in order, as a run', async (t) => {
  const { a, b } = await vethPair(t);
  const receiver = openSocket(t, { netnsPath: b.path, address: '198.18.0.2', port: 0, gro: true });
  const sender = openSocket(t, { netnsPath: a.path, address: '198.18.0.1', port: 0 });
  const arrived: ReceivedDatagram[] = [];
  receiver.start((batch) => arrived.push(...receivedDatagrams(batch).map((datagram) => ({ ...datagram, data: Buffer.from(datagram.data) }))));
  const prefix = Buffer.from('PREFIX:!');
  // 100 frames of 92 bytes, then a shorter one, then a longer one: the shorter ends the run, the longer starts another.
  const frames = [...Array.from({ length: 100 }, (_, i) => Buffer.alloc(92, i)), Buffer.alloc(40, 0xee), Buffer.alloc(300, 0xff)];
  const list = new FrameList();
  for (const frame of frames) list.push(frame, 0, frame.length);
  t.deepEqual(sender.sendFrames(prefix, list, false, '198.18.0.2', receiver.port), { datagrams: 102, sent: 102 });
  const datagrams = () => arrived.flatMap(({ data, segmentSize }) => (segmentSize > 0 ? chunks(data, segmentSize) : [data]));
  await until(() => datagrams().length >= 102);
  t.deepEqual(datagrams(), frames.map((frame) => Buffer.concat([prefix, frame])));
  t.true(arrived.some(({ segmentSize }) => segmentSize === 100), 'the frames of 92 bytes came as a run');
  t.true(arrived.length < 10, `${arrived.length} receives for 102 datagrams`);
});

function chunks(data: Uint8Array, size: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) pieces.push(Buffer.from(data.subarray(at, Math.min(at + size, data.length))));
  return pieces;
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
