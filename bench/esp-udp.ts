/**
 * A sealed stream between two of the addon's UDP sockets (native/udp.c with
 * ESP tables attached) against the same stream in plain VXLAN, in two
 * network namespaces joined by a veth pair (MTU 1500), the sockets opened as
 * the VTEP opens its underlay. The input is what a TAP with TSO hands over:
 * 64 KB TCP super-frames with an MSS whose segments still fit the link once
 * sealed; sendFrames segments them (and seals each segment) in C, the
 * receiver takes them through UDP GRO (and opens each segment) in C. Both
 * ends run on this one thread, so a figure is what one core does for both,
 * with the kernel's copies; no TAP, no TypeScript VTEP. Modes alternate
 * round by round (single runs on 2 cores swing). Gbit/s counts the inner
 * frames' bytes received. Writes bench/results/esp-udp.json.
 *
 *   npx tsx bench/esp-udp.ts [ROUNDS [SECONDS_PER_MEASUREMENT]]
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EspTable } from '../src/sys/esp.js';
import { NativeUdpSocket } from '../src/sys/udp.js';
import { DATAGRAM_LENGTH, DATAGRAM_SEGMENT_SIZE, DATAGRAM_STRIDE } from '../src/sys/batch-layout.js';
import { FrameList } from '../src/vxlan/offload.js';
import { writeVxlanHeader } from '../src/wire/index.js';
import { addNetns, removeNetns, run, uniqueName } from '../test/helpers/kernel.js';

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 2);
const root = new URL('..', import.meta.url).pathname;
/** Sealed, a full segment is 28 + 32 + 2-byte trailer rounded up + 8 + 14 + 20 + 32 + MSS = 1500 bytes of IP. */
const MSS = 1372;
const PAYLOAD = 65_000 - (14 + 20 + 32);
/** Super-frames per sendFrames, as a TAP batch under load carries. */
const FRAMES = 8;
const VNI = 4096;
const SPI = 0x4e455443;
const MODES = ['plain, RCO', 'plain, checksums', 'sealed'] as const;
type Mode = (typeof MODES)[number];

/** A TCP/IPv4 super-frame with a virtio_net_hdr (GSO_TCPV4, NEEDS_CSUM), as a TAP with TSO gives one. */
function superFrame(seq: number): Buffer {
  const tcpOff = 14 + 20;
  const l4 = 32 + PAYLOAD;
  const buf = randomBytes(10 + tcpOff + l4);
  buf.fill(0, 0, 10 + tcpOff + 32);
  buf[0] = 1;
  buf[1] = 1;
  buf.writeUInt16LE(tcpOff + 32, 2);
  buf.writeUInt16LE(MSS, 4);
  buf.writeUInt16LE(tcpOff, 6);
  buf.writeUInt16LE(16, 8);
  const f = 10;
  Buffer.from('02420a00000202420a0000010800', 'hex').copy(buf, f);
  const ip = f + 14;
  buf[ip] = 0x45;
  buf.writeUInt16BE(20 + l4, ip + 2);
  buf.writeUInt16BE(0x4000, ip + 6);
  buf[ip + 8] = 64;
  buf[ip + 9] = 6;
  Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(buf, ip + 12);
  const tcp = f + tcpOff;
  buf.writeUInt16BE(40000, tcp);
  buf.writeUInt16BE(5201, tcp + 2);
  buf.writeUInt32BE(seq >>> 0, tcp + 4);
  buf[tcp + 12] = (32 / 4) << 4;
  buf[tcp + 13] = 0x10;
  buf.writeUInt16BE(502, tcp + 14);
  Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]).copy(buf, tcp + 20);
  return buf;
}

async function main(): Promise<void> {
  const names = [uniqueName('ea'), uniqueName('eb')];
  const cleanup = async () => {
    for (const name of names) await removeNetns(name);
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const [a, b] = [await addNetns(names[0]!), await addNetns(names[1]!)];
    await run('ip', ['-n', names[0]!, 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u1', 'netns', names[1]!]);
    await run('ip', ['-n', names[0]!, 'addr', 'add', '198.18.0.1/24', 'dev', 'u0']);
    await run('ip', ['-n', names[1]!, 'addr', 'add', '198.18.0.2/24', 'dev', 'u1']);
    await run('ip', ['-n', names[0]!, 'link', 'set', 'u0', 'up']);
    await run('ip', ['-n', names[1]!, 'link', 'set', 'u1', 'up']);
    const open = (netnsPath: string, address: string) =>
      NativeUdpSocket.open({ netnsPath, address, port: 0, family: 4, gro: true, borrowBuffers: true, dontFragment: true, recvBufferSize: 8 << 20, sendBufferSize: 4 << 20 });
    const sender = open(a, '198.18.0.1');
    const receiver = open(b, '198.18.0.2');
    const sa = { spi: SPI, key: randomBytes(32), salt: randomBytes(4), tag: VNI };
    const outbound = EspTable.create();
    const inbound = EspTable.create();
    outbound.addOutbound(sa);
    inbound.addInbound(sa);
    sender.setEspTable(outbound);
    receiver.setEspTable(inbound);

    let frameBytes = 0;
    receiver.start(({ index, count }) => {
      for (let i = 0; i < count; i++) {
        const at = DATAGRAM_STRIDE * i;
        const length = index[at + DATAGRAM_LENGTH]!;
        const size = index[at + DATAGRAM_SEGMENT_SIZE]!;
        frameBytes += length - 8 * (size > 0 ? Math.ceil(length / size) : 1);
      }
    });
    const frames = new FrameList();
    for (let i = 0; i < FRAMES; i++) {
      const piece = superFrame(i * PAYLOAD);
      frames.push(piece, 0, piece.length);
    }
    const header = new Uint8Array(8);
    writeVxlanHeader(VNI, header);
    const turn = () => new Promise((resolve) => setImmediate(resolve));

    async function measure(mode: Mode): Promise<number> {
      // Drain what an earlier mode left in flight, then count from zero.
      for (let i = 0; i < 20; i++) await turn();
      frameBytes = 0;
      const start = process.hrtime.bigint();
      const end = start + BigInt(Math.round(seconds * 1e9));
      while (process.hrtime.bigint() < end) {
        if (mode === 'sealed') sender.sendFrames(header, frames, true, '198.18.0.2', receiver.port, false, SPI);
        else sender.sendFrames(header, frames, true, '198.18.0.2', receiver.port, mode === 'plain, RCO');
        // One thread for both ends: the receiver runs between two sends.
        await turn();
      }
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      return (frameBytes * 8) / elapsed / 1e9;
    }

    const samples: Record<Mode, number[]> = { 'plain, RCO': [], 'plain, checksums': [], sealed: [] };
    await measure('sealed');
    for (let round = 0; round < rounds; round++) {
      for (const mode of MODES) samples[mode].push(await measure(mode));
      console.log(`round ${round + 1}: ${MODES.map((mode) => `${mode} ${samples[mode].at(-1)!.toFixed(2)}`).join(', ')} Gbit/s`);
    }
    const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
    const results = MODES.map((mode) => ({ mode, medianGbps: median(samples[mode]), samples: samples[mode] }));
    const drops = inbound.totals('inbound').drops;
    sender.close();
    receiver.close();
    outbound.close();
    inbound.close();

    const date = new Date().toISOString();
    await mkdir(join(root, 'bench', 'results'), { recursive: true });
    await writeFile(
      join(root, 'bench', 'results', 'esp-udp.json'),
      `${JSON.stringify({ date, node: process.version, mss: MSS, framesPerSend: FRAMES, rounds, seconds, results, inboundDrops: drops }, null, 2)}\n`,
    );
    console.log(`\nOne thread, both ends, MSS ${MSS}, ${FRAMES} × 64 KB super-frames per send, median of ${rounds} rounds of ${seconds} s:`);
    for (const r of results) console.log(`  ${r.mode.padEnd(17)} ${r.medianGbps.toFixed(2)} Gbit/s`);
    const plain = results.find((r) => r.mode === 'plain, checksums')!.medianGbps;
    console.log(`  sealed / plain (checksums): ${(results.find((r) => r.mode === 'sealed')!.medianGbps / plain).toFixed(2)}`);
    console.log(`  inbound drops: ${JSON.stringify(drops)}`);
  } finally {
    await cleanup();
  }
}

await main();
