/**
 * ESP in the UDP data path (native/udp.c with an ESP table attached): frames
 * sent with an SPI leave sealed after segmentation, and received ESP comes
 * back as the plain VXLAN datagrams it stands for, marked sealed. Two
 * sockets in two namespaces joined by a veth pair, opened as the VTEP opens
 * its underlay (GRO, borrowed buffers, DF); udpOpenDatagrams runs the
 * receive path on runs that GRO would make only by chance.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { addon } from '../../src/sys/addon.js';
import { DATAGRAM_SEALED } from '../../src/sys/batch-layout.js';
import { ESP_HEADER_LENGTH, EspBatch, EspTable, espSealedLength } from '../../src/sys/esp.js';
import type { EspDropReason } from '../../src/sys/esp.js';
import { EspSendRefused, NativeUdpSocket, SocketClosed, receivedDatagrams } from '../../src/sys/udp.js';
import { FrameList, VNET_HDR_LEN } from '../../src/vxlan/offload.js';
import {
  ETHERNET_HEADER_LEN,
  ETHERTYPE_IPV4,
  IPPROTO_TCP,
  PROBE_LEN,
  PROBE_REQUEST,
  encodeProbe,
  internetChecksum,
  onesComplementSum,
  foldChecksum,
  pseudoHeaderSumIPv4,
  writeVxlanHeader,
} from '../../src/wire/index.js';
import { HOST_A, HOST_B, HOST_C as OTHER_HOST, MSS, TCP_HEADER_LEN, frame, mac, superFrame } from '../vxlan/helpers.js';
import { run, uniqueName, vethUnderlay } from './helpers.js';

const VNI = 4242;
const SPI = 0x1234abcd;
/**
 * The largest MSS whose segments, sealed, fit the veth's 1500 bytes: 28 of IP
 * and UDP, 32 of ESP header and ICV, the frame (14 + 20 + 32 + MSS) and its
 * 2-byte trailer rounded up to 4. The overlay's MTU must leave this room (the
 * kernel refuses a bigger segment: DF), which is the VTEP's business.
 */
const SEALED_MSS = 1372;
const SEALED_SEGMENT = 8 + ETHERNET_HEADER_LEN + 20 + TCP_HEADER_LEN + SEALED_MSS;

/** A fresh SA (its own key: GCM must never see a key and sequence number twice) as a sender's and a receiver's table. */
function tables(t: ExecutionContext, opts: { spi?: number; tag?: number; firstSequence?: bigint; sender?: string } = {}) {
  const sa = { spi: opts.spi ?? SPI, key: randomBytes(32), salt: randomBytes(4), tag: opts.tag ?? VNI };
  const sender = EspTable.create();
  const receiver = EspTable.create();
  sender.addOutbound(sa, opts.firstSequence === undefined ? {} : { firstSequence: opts.firstSequence });
  receiver.addInbound(opts.sender === undefined ? sa : { ...sa, sender: opts.sender });
  t.teardown(() => {
    sender.close();
    receiver.close();
  });
  return { sa, sender, receiver };
}

function vxlanHeader(vni: number): Uint8Array {
  const header = new Uint8Array(8);
  writeVxlanHeader(vni, header);
  return header;
}

function frameList(frames: readonly Uint8Array[]): FrameList {
  const list = new FrameList();
  for (const piece of frames) list.push(piece, 0, piece.length);
  return list;
}

/** Seals each frame with `table`'s outbound SA `spi`, as a peer would; returns the datagrams. */
function seal(table: EspTable, spi: number, frames: readonly Uint8Array[]): Buffer[] {
  const batch = new EspBatch(frames.length);
  frames.forEach((piece, i) => {
    const buffer = Buffer.alloc(espSealedLength(piece.length));
    buffer.set(piece, ESP_HEADER_LENGTH);
    batch.buffers.push(buffer);
    batch.lengths[i] = piece.length;
  });
  batch.count = frames.length;
  table.seal(spi, batch);
  return batch.buffers.map((buffer, i) => Buffer.from(buffer.subarray(0, batch.lengths[i])));
}


/** A UDP socket opened as NativeDatagramPort opens the VTEP's underlay. */
function vtepSocket(t: ExecutionContext, netnsPath: string, address: string): NativeUdpSocket {
  const socket = NativeUdpSocket.open({
    netnsPath,
    address,
    port: 0,
    family: 4,
    gro: true,
    borrowBuffers: true,
    dontFragment: true,
    recvBufferSize: 8 << 20,
    sendBufferSize: 4 << 20,
  });
  t.teardown(() => {
    try {
      socket.close();
    } catch (err) {
      if (!(err instanceof SocketClosed)) throw err;
    }
  });
  return socket;
}

/** The usual two ends: HOST_A's and HOST_B's VTEP sockets on an underlay, a fresh SA's tables attached, arrivals collected at B. */
async function sealedLink(t: ExecutionContext) {
  const { a, b, ifA } = await vethUnderlay(t, HOST_A, HOST_B);
  const sender = vtepSocket(t, a.path, HOST_A);
  const receiver = vtepSocket(t, b.path, HOST_B);
  const { sa, sender: outbound, receiver: inbound } = tables(t);
  sender.setEspTable(outbound);
  receiver.setEspTable(inbound);
  return { a, b, ifA, sender, receiver, sa, outbound, inbound, arrived: new Collector(receiver) };
}

interface Arrived {
  data: Buffer;
  segmentSize: number;
  flags: number;
}

/** Records every delivery (copied: the socket borrows its buffers) and cuts runs into their datagrams. */
class Collector {
  readonly deliveries: Arrived[] = [];

  constructor(socket: NativeUdpSocket) {
    socket.start((batch) => {
      for (const datagram of receivedDatagrams(batch)) {
        this.deliveries.push({ data: Buffer.from(datagram.data), segmentSize: datagram.segmentSize, flags: datagram.flags });
      }
    });
  }

  /** Every datagram delivered, a run cut into its datagrams, each with its run's flags. */
  datagrams(): { data: Buffer; flags: number }[] {
    return this.deliveries.flatMap(({ data, segmentSize, flags }) => {
      const step = segmentSize > 0 ? segmentSize : data.length;
      const pieces: { data: Buffer; flags: number }[] = [];
      for (let at = 0; at < data.length; at += step) pieces.push({ data: data.subarray(at, at + step), flags });
      return pieces;
    });
  }

  async until(count: number, timeoutMs = 5000): Promise<{ data: Buffer; flags: number }[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.datagrams().length < count) {
      if (Date.now() > deadline) throw new Error(`${this.datagrams().length} of ${count} datagrams arrived`);
      await sleep(5);
    }
    return this.datagrams();
  }

  /** Takes what arrived so far, leaving the collector empty. */
  take(): { data: Buffer; flags: number }[] {
    const datagrams = this.datagrams();
    this.deliveries.length = 0;
    return datagrams;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Udp OutDatagrams of the namespace (/proc/net/snmp): what its sockets handed to IP. */
async function udpOut(netnsPath: string): Promise<number> {
  const { stdout } = await run('nsenter', [`--net=${netnsPath}`, 'cat', '/proc/net/snmp']);
  const [names, values] = stdout.split('\n').filter((line) => line.startsWith('Udp:'));
  return Number(values!.split(' ')[names!.split(' ').indexOf('OutDatagrams')]);
}

/** True when an IPv4/TCP frame's IP and TCP checksums verify. */
function checksumsComplete(piece: Uint8Array): boolean {
  if (piece.length < ETHERNET_HEADER_LEN + 40 || ((piece[12]! << 8) | piece[13]!) !== ETHERTYPE_IPV4) return false;
  const ip = ETHERNET_HEADER_LEN;
  const ipHeader = (piece[ip]! & 0x0f) * 4;
  const total = (piece[ip + 2]! << 8) | piece[ip + 3]!;
  const view = new DataView(piece.buffer, piece.byteOffset);
  const pseudo = pseudoHeaderSumIPv4(view.getUint32(ip + 12), view.getUint32(ip + 16), IPPROTO_TCP, total - ipHeader);
  return internetChecksum(piece, ip, ipHeader) === 0 && foldChecksum(onesComplementSum(piece, ip + ipHeader, total - ipHeader, pseudo)) === 0;
}

/** A frame with a virtio_net_hdr that asks for nothing (GSO none, checksum whole). */
function withVnetHdr(piece: Uint8Array): Buffer {
  return Buffer.concat([Buffer.alloc(VNET_HDR_LEN), piece]);
}

/** The same TCP frame without GSO but with its checksum left partial (NEEDS_CSUM), as a TAP hands one over. */
function partialChecksumFrame(payload: number): Buffer {
  const piece = superFrame({ payload, gsoSize: payload + 1 });
  piece[1] = 0; // VIRTIO_NET_HDR_GSO_NONE
  return piece;
}

const CANARY = Buffer.from('NETCTL-ESP-CANARY!');

/** Fills the TCP payload of a super-frame (or a plain frame with `from`) with the canary, repeated. */
function withCanary(piece: Buffer, from = VNET_HDR_LEN + ETHERNET_HEADER_LEN + 20 + TCP_HEADER_LEN): Buffer {
  for (let at = from; at < piece.length; at += CANARY.length) CANARY.copy(piece, at, 0, Math.min(CANARY.length, piece.length - at));
  return piece;
}

function occurrences(haystack: Buffer, needle: Buffer): number {
  let count = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + 1)) count++;
  return count;
}

/**
 * Captures on `ifName` inside the namespace (dumpcap writing pcap to a pipe,
 * which it flushes per packet) from when a marker that `poke` sends shows up
 * until `stop` sees a second one; the process is killed by its PID whatever happens.
 */
async function capture(t: ExecutionContext, netnsPath: string, ifName: string, poke: (marker: Buffer) => void) {
  const dumpcap = spawn('nsenter', [`--net=${netnsPath}`, 'dumpcap', '-q', '-P', '-i', ifName, '-w', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => dumpcap.once('exit', () => resolve()));
  t.teardown(async () => {
    if (dumpcap.exitCode === null && dumpcap.pid !== undefined) process.kill(dumpcap.pid, 'SIGKILL');
    await exited;
  });
  const chunks: Buffer[] = [];
  let stderr = '';
  dumpcap.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  dumpcap.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const until = async (marker: Buffer): Promise<void> => {
    for (const deadline = Date.now() + 10_000; !Buffer.concat(chunks).includes(marker); await sleep(50)) {
      if (Date.now() > deadline || dumpcap.exitCode !== null) throw new Error(`dumpcap saw no marker: ${stderr}`);
      poke(marker);
    }
  };
  await until(Buffer.from(`capture ${uniqueName('s')} starts`));
  return {
    async stop(): Promise<Buffer> {
      await until(Buffer.from(`capture ${uniqueName('e')} ends`));
      if (dumpcap.pid !== undefined) process.kill(dumpcap.pid, 'SIGINT');
      await exited;
      return Buffer.concat(chunks);
    },
  };
}

/** The SPI of each ESP packet tshark finds in a capture, ESP in UDP on `port`. */
async function espSpis(t: ExecutionContext, pcap: Buffer, port: number): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-espio-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'underlay.pcap');
  await writeFile(file, pcap);
  const { stdout } = await run('tshark', ['-n', '-r', file, '-d', `udp.port==${port},udpencap`, '-Y', 'esp', '-T', 'fields', '-e', 'esp.spi']);
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

const NO_DROPS: Record<EspDropReason, number> = {
  unknownSpi: 0,
  truncated: 0,
  replayed: 0,
  badIcv: 0,
  badTrailer: 0,
  sequenceExhausted: 0,
  noRoom: 0,
  cryptoFailed: 0,
  wrongSender: 0,
};

// The receive path on runs built by hand: what GRO may coalesce from one sender to one port.

test('a run of sealed, plain and forged datagrams opens into runs of synthetic VXLAN the VTEP reads as plain, each in one piece', (t) => {
  const { sa, sender, receiver } = tables(t);
  // 1398 and 1397 bytes seal to the same length (the padding differs): GRO may put them in one run.
  const size = espSealedLength(1398);
  t.is(espSealedLength(1397), size);
  const frames = [1398, 1398, 1397, 1398, 1398, 1398, 1398].map((length, i) => frame(mac(2), mac(1), length - ETHERNET_HEADER_LEN, i));
  const sealed = seal(sender, sa.spi, frames);
  const forged = Buffer.from(sealed[5]!);
  forged[40]! ^= 1;
  const plain = Buffer.concat([vxlanHeader(7), frame(mac(4), mac(3), size - 8 - ETHERNET_HEADER_LEN, 9)]);
  const probe = Buffer.alloc(PROBE_LEN);
  encodeProbe({ type: PROBE_REQUEST, sequence: 3, timestamp: 12345, underlayMtu: 1500 }, probe);
  // Sealed 0, 1, 2 (shorter), 3; plain; sealed 4, forged 5, sealed 6; a probe, the shortest, last.
  const run = Buffer.concat([sealed[0]!, sealed[1]!, sealed[2]!, sealed[3]!, plain, sealed[4]!, forged, sealed[6]!, probe]);
  const flat = addon().udpOpenDatagrams(receiver.native, run, size);
  const runs = Array.from({ length: flat.length / 4 }, (_, i) => {
    const [offset, length, segmentSize, flags] = flat.slice(4 * i, 4 * i + 4) as [number, number, number, number];
    return { data: run.subarray(offset, offset + length), segmentSize, flags };
  });
  const synthetic = (i: number) => Buffer.concat([vxlanHeader(VNI), frames[i]!]);
  t.deepEqual(
    runs.map(({ segmentSize, flags }) => ({ segmentSize, flags })),
    [
      { segmentSize: 8 + 1398, flags: DATAGRAM_SEALED }, // 0, 1 and the shorter 2, which ends the run
      { segmentSize: 0, flags: DATAGRAM_SEALED }, // 3 alone: a plain datagram follows
      { segmentSize: 0, flags: 0 },
      { segmentSize: 8 + 1398, flags: DATAGRAM_SEALED }, // 4 and 6: the forged one between them is gone
      { segmentSize: 0, flags: 0 },
    ],
  );
  t.deepEqual(runs[0]!.data, Buffer.concat([synthetic(0), synthetic(1), synthetic(2)]));
  t.deepEqual(runs[1]!.data, synthetic(3));
  t.deepEqual(runs[2]!.data, plain);
  t.deepEqual(runs[3]!.data, Buffer.concat([synthetic(4), synthetic(6)]));
  t.deepEqual(runs[4]!.data, probe);
  // Contiguous, in order, from the start: the openings closed up over ESP's overhead and the forged one.
  t.is(runs[0]!.data.byteOffset - run.byteOffset, 0);
  for (let i = 1; i < runs.length; i++) t.is(runs[i]!.data.byteOffset, runs[i - 1]!.data.byteOffset + runs[i - 1]!.data.length);
  t.deepEqual(receiver.totals('inbound').drops, { ...NO_DROPS, badIcv: 1 });
  t.like(receiver.counters('inbound', sa.spi), { packets: 6, drops: { ...NO_DROPS, badIcv: 1 } });
});

test('a receive without ESP is left alone; unknown SPIs and truncated ones are dropped and counted, VXLAN with RCO is plain', (t) => {
  const { receiver } = tables(t);
  const plain = Buffer.concat([vxlanHeader(VNI), frame(mac(2), mac(1), 100)]);
  const rco = Buffer.from(plain);
  rco[1] = 0x20;
  rco[7] = (ETHERNET_HEADER_LEN + 20) / 2;
  for (const datagram of [plain, rco]) t.deepEqual(addon().udpOpenDatagrams(receiver.native, Buffer.from(datagram), 0), [0, datagram.length, 0, 0]);
  const unknown = Buffer.alloc(200);
  unknown.writeUInt32BE(0x0badf00d, 0);
  t.deepEqual(addon().udpOpenDatagrams(receiver.native, unknown, 0), []);
  t.deepEqual(addon().udpOpenDatagrams(receiver.native, unknown.subarray(0, 20), 0), []);
  t.deepEqual(receiver.totals('inbound').drops, { ...NO_DROPS, unknownSpi: 1, truncated: 1 });
  t.throws(() => EspTable.create().addInbound({ spi: 0x08200000, key: randomBytes(32), salt: randomBytes(4), tag: 1 }), {
    message: /how a VXLAN header starts/,
  });
});

// Two sockets in two namespaces.

test('frames and TCP super-frames sent with an SPI arrive as the VXLAN datagrams the plain path delivers, marked sealed', async (t) => {
  const { sender, receiver, sa, outbound, inbound, arrived } = await sealedLink(t);
  const prefix = vxlanHeader(VNI);

  const plainFrames = [46, 100, 1000, 1400].map((length, i) => frame(mac(2), mac(1), length - ETHERNET_HEADER_LEN, i));
  t.deepEqual(sender.sendFrames(prefix, frameList(plainFrames), false, HOST_B, receiver.port), { datagrams: 4, sent: 4 });
  const plain = await arrived.until(4);
  arrived.take();
  t.deepEqual(sender.sendFrames(prefix, frameList(plainFrames), false, HOST_B, receiver.port, false, sa.spi), { datagrams: 4, sent: 4 });
  const sealed = await arrived.until(4);
  arrived.take();
  t.deepEqual(sealed.map(({ data }) => data), plain.map(({ data }) => data));
  t.deepEqual(sealed.map(({ data }) => data), plainFrames.map((piece) => Buffer.concat([prefix, piece])));
  t.true(sealed.every(({ flags }) => flags === DATAGRAM_SEALED));
  t.true(plain.every(({ flags }) => flags === 0));
  // sendBatch (floods, fragments) takes VXLAN datagrams: their frames leave sealed alike.
  const datagrams = plainFrames.map((piece) => Buffer.concat([prefix, piece]));
  t.is(sender.sendBatch({ data: datagrams, addresses: datagrams.map(() => HOST_B), ports: datagrams.map(() => receiver.port) }, sa.spi), 4);
  t.deepEqual(await arrived.until(4), datagrams.map((data) => ({ data, flags: DATAGRAM_SEALED })));
  arrived.take();

  // From a TAP with vnetHdr: super-frames (segmented in C, each segment sealed on its own), a frame whose checksum
  // is left partial, and a plain one; the plain path without RCO computes every checksum too.
  const supers = [
    superFrame({ payload: 60_000, gsoSize: SEALED_MSS }),
    superFrame({ payload: 30_000, seq: 60_000, gsoSize: SEALED_MSS }),
    superFrame({ payload: 100, seq: 90_000, gsoSize: SEALED_MSS }),
    partialChecksumFrame(700),
    withVnetHdr(frame(mac(2), mac(1), 500, 5)),
  ];
  const expected = Math.ceil(60_000 / SEALED_MSS) + Math.ceil(30_000 / SEALED_MSS) + 3;
  t.is(espSealedLength(SEALED_SEGMENT - 8) + 28, 1500, 'a full segment, sealed, is as long as the link takes');
  t.deepEqual(sender.sendFrames(prefix, frameList(supers), true, HOST_B, receiver.port, false), { datagrams: expected, sent: expected });
  const plainSegments = await arrived.until(expected);
  arrived.take();
  t.deepEqual(sender.sendFrames(prefix, frameList(supers), true, HOST_B, receiver.port, true, sa.spi), { datagrams: expected, sent: expected });
  const sealedSegments = await arrived.until(expected);
  const runs = arrived.deliveries.filter(({ segmentSize }) => segmentSize > 0);
  arrived.take();
  t.is(sealedSegments.length, expected);
  t.deepEqual(sealedSegments.map(({ data }) => data), plainSegments.map(({ data }) => data), 'byte for byte what the plain path delivers');
  t.true(sealedSegments.every(({ flags }) => flags === DATAGRAM_SEALED));
  t.true(sealedSegments.slice(0, -1).every(({ data }) => checksumsComplete(data.subarray(8))), 'checksums complete, no RCO');
  // Each UDP_SEGMENT send of sealed segments came through GRO as one run, handed on as a run of synthetic VXLAN
  // (the last two frames, one datagram each, may leave as one send too: a run of their own size).
  t.true(runs.filter(({ segmentSize }) => segmentSize === SEALED_SEGMENT).length >= 2, `${runs.length} runs`);
  t.true(runs.every(({ flags }) => flags === DATAGRAM_SEALED));
  t.like(outbound.counters('outbound', sa.spi), { packets: 8 + expected, drops: NO_DROPS });
  t.like(inbound.counters('inbound', sa.spi), { packets: 8 + expected, drops: NO_DROPS });
});

test('on the wire a sealed stream is ESP with its SPI and never carries the inner bytes; the plain one does', async (t) => {
  const { a, ifA, sender, receiver, sa, arrived } = await sealedLink(t);
  const frames = frameList([
    withCanary(superFrame({ payload: 40_000, gsoSize: SEALED_MSS })),
    withVnetHdr(withCanary(frame(mac(2), mac(1), 1000, 1), ETHERNET_HEADER_LEN + 20)),
  ]);
  const count = Math.ceil(40_000 / SEALED_MSS) + 1;

  // Markers go to the discard port in clear, so the capture's own start and end can be seen.
  const poke = (marker: Buffer) => sender.sendBatch({ data: [marker], addresses: [HOST_B], ports: [9] });
  const sealedCapture = await capture(t, a.path, ifA, poke);
  t.like(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, true, sa.spi), { sent: count });
  const delivered = await arrived.until(count);
  const sealedPcap = await sealedCapture.stop();
  t.true(delivered.some(({ data }) => data.includes(CANARY)), 'the receiver got the canary');
  t.is(occurrences(sealedPcap, CANARY), 0);
  t.is(occurrences(sealedPcap, Buffer.from('02420a000002', 'hex')), 0, 'nor an inner MAC address');
  const spis = await espSpis(t, sealedPcap, receiver.port);
  t.true(spis.length >= 2, `${spis.length} ESP packets (a UDP_SEGMENT send is one on the veth)`);
  t.true(spis.every((spi) => Number(spi) === sa.spi), spis.join(' '));

  const plainCapture = await capture(t, a.path, ifA, poke);
  t.like(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, true), { sent: count });
  const plainPcap = await plainCapture.stop();
  t.true(occurrences(plainPcap, CANARY) > 100, 'the same capture sees the plain stream');
});

test('plain VXLAN and liveness probes keep arriving, unmarked, on a socket with a table', async (t) => {
  const { a, b } = await vethUnderlay(t, HOST_A, HOST_B);
  const sender = vtepSocket(t, a.path, HOST_A);
  const receiver = vtepSocket(t, b.path, HOST_B);
  const { receiver: inbound } = tables(t);
  receiver.setEspTable(inbound);
  const arrived = new Collector(receiver);
  const supers = [superFrame({ payload: 20_000 })];
  const count = Math.ceil(20_000 / MSS);
  // To a netctl VTEP: RCO, whose header starts 0x08200000.
  t.like(sender.sendFrames(vxlanHeader(VNI), frameList(supers), true, HOST_B, receiver.port, true), { sent: count });
  const plain = await arrived.until(count);
  arrived.take();
  t.true(plain.every(({ data, flags }) => flags === 0 && data[0] === 0x08 && data[1] === 0x20));
  const probe = Buffer.alloc(PROBE_LEN);
  encodeProbe({ type: PROBE_REQUEST, sequence: 1, timestamp: 99, underlayMtu: 1500 }, probe);
  t.is(sender.sendBatch({ data: [probe], addresses: [HOST_B], ports: [receiver.port] }), 1);
  t.deepEqual(await arrived.until(1), [{ data: probe, flags: 0 }]);
  t.deepEqual(inbound.totals('inbound'), { packets: 0, bytes: 0, sequence: 0n, drops: NO_DROPS });
});

test('an unknown SPI or too few sequence numbers left refuse the whole send: nothing on the wire, a reason to count', async (t) => {
  const { a, b } = await vethUnderlay(t, HOST_A, HOST_B);
  const sender = vtepSocket(t, a.path, HOST_A);
  const receiver = vtepSocket(t, b.path, HOST_B);
  const arrived = new Collector(receiver);
  const frames = frameList([superFrame({ payload: 10 * SEALED_MSS, gsoSize: SEALED_MSS })]);
  const datagrams = [Buffer.concat([vxlanHeader(VNI), frame(mac(2), mac(1), 100)])];
  const times = (n: number) => ({ data: Array(n).fill(datagrams[0]!), addresses: Array(n).fill(HOST_B), ports: Array(n).fill(receiver.port) });
  const before = await udpOut(a.path);
  // No table at all, then a table without that SA.
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, false, SPI), { datagrams: 0, sent: 0, refused: 'unknownSpi' });
  const { sender: outbound } = tables(t, { spi: SPI + 1, firstSequence: 2n ** 64n - 12n });
  sender.setEspTable(outbound);
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, false, SPI), { datagrams: 0, sent: 0, refused: 'unknownSpi' });
  const refused = t.throws(() => sender.sendBatch(times(1), SPI), { instanceOf: EspSendRefused });
  t.is(refused?.reason, 'unknownSpi');
  await sleep(100);
  t.is(await udpOut(a.path), before, 'nothing left the socket');
  t.deepEqual(arrived.datagrams(), []);
  // 12 numbers left: 10 segments go, then a frame of 10 segments does not (not even 2 of them), nor a batch of 3.
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, false, SPI + 1), { datagrams: 10, sent: 10 });
  await arrived.until(10);
  const afterTen = await udpOut(a.path);
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, false, SPI + 1), {
    datagrams: 0,
    sent: 0,
    refused: 'sequenceExhausted',
  });
  const exhausted = t.throws(() => sender.sendBatch(times(3), SPI + 1), { instanceOf: EspSendRefused });
  t.is(exhausted?.reason, 'sequenceExhausted');
  await sleep(100);
  t.is(await udpOut(a.path), afterTen, 'nothing left the socket');
  t.is(arrived.datagrams().length, 10);
  t.is(sender.sendBatch(times(2), SPI + 1), 2);
  t.like(outbound.counters('outbound', SPI + 1), { packets: 12, sequence: 2n ** 64n - 1n, drops: NO_DROPS });
  // What arrived was never in clear: a receiver without the SA takes it for ESP it cannot open.
  const all = await arrived.until(12);
  t.true(all.every(({ data }) => data.readUInt32BE(0) === SPI + 1));
});

test('a sealed segment longer than the path takes is refused by the kernel, never sent in fragments', async (t) => {
  const { a, b } = await vethUnderlay(t, HOST_A, HOST_B);
  const sender = vtepSocket(t, a.path, HOST_A);
  const receiver = vtepSocket(t, b.path, HOST_B);
  const { sa, sender: outbound } = tables(t);
  sender.setEspTable(outbound);
  // MSS 1398 fits plain VXLAN on 1500 bytes, not ESP: the UDP_SEGMENT send fails, then each datagram alone.
  const frames = frameList([superFrame({ payload: 10 * MSS }), superFrame({ payload: 3 * SEALED_MSS, gsoSize: SEALED_MSS, seq: 10 * MSS })]);
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, true, HOST_B, receiver.port, false, sa.spi), { datagrams: 13, sent: 3 });
  const { stdout } = await run('nsenter', [`--net=${a.path}`, 'cat', '/proc/net/snmp']);
  const [names, values] = stdout.split('\n').filter((line) => line.startsWith('Ip:'));
  t.is(values!.split(' ')[names!.split(' ').indexOf('FragCreates')], '0');
});

test('forged, replayed, truncated and unknown-SPI datagrams are dropped and counted by reason while good traffic goes on', async (t) => {
  const { a, sender, receiver, sa, inbound, arrived } = await sealedLink(t);
  const injector = vtepSocket(t, a.path, HOST_A);
  const frames = [100, 500, 1000].map((length, i) => frame(mac(2), mac(1), length, i));
  const send = () => t.like(sender.sendFrames(vxlanHeader(VNI), frameList(frames), false, HOST_B, receiver.port, false, sa.spi), { sent: 3 });

  send();
  await arrived.until(3);
  // A datagram someone with the key made (sequence 1000, authentic), then copies of it spoiled each way.
  const forger = EspTable.create();
  t.teardown(() => forger.close());
  forger.addOutbound(sa, { firstSequence: 1000n });
  // 1001 is spoiled before anyone saw it, so it counts as forged rather than replayed.
  const [genuine, spoiled] = seal(forger, sa.spi, [frame(mac(2), mac(1), 64, 9), frame(mac(2), mac(1), 64, 9)]);
  const forged = Buffer.from(spoiled!);
  forged[forged.length - 1]! ^= 0x80;
  const unknown = Buffer.from(genuine!);
  unknown.writeUInt32BE(0x0badf00d, 0);
  const inject = [genuine!, genuine!, forged, genuine!.subarray(0, 20), unknown];
  for (const datagram of inject) t.is(injector.sendBatch({ data: [datagram], addresses: [HOST_B], ports: [receiver.port] }), 1);
  send();
  await arrived.until(7);
  await sleep(100);
  const delivered = arrived.take();
  t.is(delivered.length, 7, 'three, the genuine one, three more');
  t.true(delivered.every(({ flags }) => flags === DATAGRAM_SEALED));
  t.deepEqual(inbound.totals('inbound').drops, { ...NO_DROPS, replayed: 1, badIcv: 1, truncated: 1, unknownSpi: 1 });
  t.like(inbound.counters('inbound', sa.spi), { packets: 7, sequence: 1000n, drops: { ...NO_DROPS, replayed: 1, badIcv: 1 } });
});

test('an inbound SA bound to its sender drops the same datagrams from another address, before they can use up a sequence number', async (t) => {
  const { a, b, ifA } = await vethUnderlay(t, HOST_A, HOST_B);
  // A third address on A's veth: another host of the cluster, which has a key of its own but not this one.
  await run('ip', ['-n', a.name, 'addr', 'add', `${OTHER_HOST}/24`, 'dev', ifA]);
  const sender = vtepSocket(t, a.path, HOST_A);
  const receiver = vtepSocket(t, b.path, HOST_B);
  const other = vtepSocket(t, a.path, OTHER_HOST);
  const { sa, sender: outbound, receiver: inbound } = tables(t, { sender: HOST_A });
  receiver.setEspTable(inbound);
  const arrived = new Collector(receiver);
  const [first, second] = seal(outbound, sa.spi, [frame(mac(2), mac(1), 100, 1), frame(mac(2), mac(1), 100, 2)]);
  // The other host sends A's datagrams first (it recorded them, or made them with a stolen SPI): refused.
  for (const datagram of [first!, second!]) t.is(other.sendBatch({ data: [datagram], addresses: [HOST_B], ports: [receiver.port] }), 1);
  for (const datagram of [first!, second!]) t.is(sender.sendBatch({ data: [datagram], addresses: [HOST_B], ports: [receiver.port] }), 1);
  await arrived.until(2);
  await sleep(100);
  t.is(arrived.take().length, 2, 'the genuine ones, from A, still open');
  t.deepEqual(inbound.totals('inbound').drops, { ...NO_DROPS, wrongSender: 2 });
  t.throws(() => inbound.addInbound({ ...sa, spi: SPI + 1, sender: 'not an address' }), { message: /an address must be IPv4 in dotted quads/ });
});

test('a sequence number seen already drops its segment from the middle of a GRO run, and the run closes up over it', async (t) => {
  const { a, sender, receiver, sa, inbound, arrived } = await sealedLink(t);
  const injector = vtepSocket(t, a.path, HOST_A);
  // Sequence number 5 arrives first from elsewhere; the run that follows carries 1 to 10.
  const early = EspTable.create();
  t.teardown(() => early.close());
  early.addOutbound(sa, { firstSequence: 5n });
  t.is(injector.sendBatch({ data: seal(early, sa.spi, [frame(mac(2), mac(1), 64)]), addresses: [HOST_B], ports: [receiver.port] }), 1);
  await arrived.until(1);
  arrived.take();
  const big = superFrame({ payload: 10 * SEALED_MSS, gsoSize: SEALED_MSS });
  t.like(sender.sendFrames(vxlanHeader(VNI), frameList([big]), true, HOST_B, receiver.port, false, sa.spi), { sent: 10 });
  await arrived.until(9);
  await sleep(100);
  const runs = [...arrived.deliveries];
  const segments = arrived.take();
  t.is(segments.length, 9);
  t.deepEqual(runs.map(({ segmentSize }) => segmentSize), [SEALED_SEGMENT], 'still one run');
  const sequences = segments.map(({ data }) => data.readUInt32BE(8 + ETHERNET_HEADER_LEN + 20 + 4));
  t.deepEqual(sequences.map((seq) => ((seq - 0xfffff000) >>> 0) / SEALED_MSS), [0, 1, 2, 3, 5, 6, 7, 8, 9], 'the fifth segment is gone');
  t.deepEqual(inbound.totals('inbound').drops, { ...NO_DROPS, replayed: 1 });
});

test('closing the table while sockets hold it wipes it: sealed sends are refused, sealed arrivals dropped, plain goes on', async (t) => {
  const { b, sender, receiver, sa, outbound, inbound, arrived } = await sealedLink(t);
  const spare = tables(t, { spi: SPI + 7 });
  const frames = frameList([frame(mac(2), mac(1), 300)]);
  inbound.close();
  t.like(sender.sendFrames(vxlanHeader(VNI), frames, false, HOST_B, receiver.port, false, sa.spi), { sent: 1 });
  t.like(sender.sendFrames(vxlanHeader(VNI), frames, false, HOST_B, receiver.port), { sent: 1 });
  t.deepEqual(await arrived.until(1), [{ data: Buffer.concat([vxlanHeader(VNI), frame(mac(2), mac(1), 300)]), flags: 0 }]);
  await sleep(100);
  t.is(arrived.datagrams().length, 1, 'the sealed one was dropped');
  t.throws(() => inbound.totals('inbound'), { message: /closed/ });

  outbound.close();
  t.deepEqual(sender.sendFrames(vxlanHeader(VNI), frames, false, HOST_B, receiver.port, false, sa.spi), { datagrams: 0, sent: 0, refused: 'unknownSpi' });
  // Replaced, detached, attached to two sockets, closed under them in either order: each goes on working.
  sender.setEspTable(spare.sender);
  receiver.setEspTable(null);
  receiver.setEspTable(spare.receiver);
  receiver.setEspTable(spare.receiver);
  t.like(sender.sendFrames(vxlanHeader(VNI), frames, false, HOST_B, receiver.port, false, SPI + 7), { sent: 1 });
  await arrived.until(2);
  t.is(arrived.datagrams()[1]?.flags, DATAGRAM_SEALED);
  const third = vtepSocket(t, b.path, HOST_B);
  third.setEspTable(spare.receiver);
  receiver.close();
  t.is(spare.receiver.counters('inbound', SPI + 7)?.packets, 1, 'the table outlives a socket that held it');
  third.close();
  spare.receiver.addInbound({ spi: SPI + 8, key: randomBytes(32), salt: randomBytes(4), tag: 1 });
  t.throws(() => sender.setEspTable(inbound), { message: /closed/ });
  // Another kind of handle is never taken for a table.
  const { handle } = addon().udpOpen(b.path, 4, HOST_B, 0, {});
  t.throws(() => addon().udpSetEspTable(handle, handle as never), { message: /expected an ESP table handle/ });
  addon().udpClose(handle);
});

test('a table the garbage collector took from JavaScript stays with the socket that holds it, and goes when the socket does', async (t) => {
  const { a, b } = await vethUnderlay(t, HOST_A, HOST_B);
  // A process of its own, for --expose-gc.
  const script = new URL('./helpers/esp-lifetime.ts', import.meta.url).pathname;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', script, a.path, b.path], { timeout: 60_000 });
  t.deepEqual(JSON.parse(stdout), { openedAfterGc: 5, refusedAfterClose: 'unknownSpi', survivedSocketClose: true });
});
