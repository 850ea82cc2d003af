/**
 * Throughput of ESP with AES-256-GCM on one core: the addon's batch seal and
 * open (native/esp.c, Node's OpenSSL, one call per batch of 64) against the
 * same work done with Node's crypto (a cipher object per datagram, as
 * JavaScript must: it cannot change an AES-GCM object's IV), on 1400-byte
 * and 64-byte frames. The two alternate round by round, since single runs on
 * this 2-core machine swing. `openssl speed` (the system's own OpenSSL build,
 * a record at a time) runs after them for reference. GB/s counts frame
 * (plaintext) bytes. Prints a table; writes
 * bench/results/esp.json.
 *
 *   npm run bench:esp [-- ROUNDS [SECONDS_PER_MEASUREMENT]]
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ESP_HEADER_LENGTH, ESP_ICV_LENGTH, ESP_NEXT_HEADER_ETHERNET, EspBatch, EspTable, espSealedLength } from '../src/sys/esp.js';

const rounds = Number(process.argv[2] ?? 7);
const seconds = Number(process.argv[3] ?? 0.5);
const BATCH = 64;
const SIZES = [1400, 64];
const SPI = 0x4e455443;
const KEY = Buffer.alloc(32, 0x5a);
const SALT = Buffer.from('0badcafe', 'hex');
const root = new URL('..', import.meta.url).pathname;

interface Rate {
  gbps: number;
  mpps: number;
}

/** Seal and open measured apart, over as many batches as fit in `seconds`. */
interface Measurement {
  seal: Rate;
  open: Rate;
}

function rate(packets: number, bytes: number, ns: bigint): Rate {
  const s = Number(ns) / 1e9;
  return { gbps: bytes / s / 1e9, mpps: packets / s / 1e6 };
}

/** The addon: each batch is sealed in place, then opened in place, which leaves the frames ready to seal again. */
function measureAddon(size: number): Measurement {
  const sender = EspTable.create();
  const receiver = EspTable.create();
  const sa = { spi: SPI, key: KEY, salt: SALT, tag: 1 };
  sender.addOutbound(sa);
  receiver.addInbound(sa);
  const batch = new EspBatch(BATCH);
  for (let i = 0; i < BATCH; i++) batch.buffers.push(Buffer.alloc(espSealedLength(size), i));
  batch.count = BATCH;
  let sealNs = 0n;
  let openNs = 0n;
  let batches = 0;
  const deadline = performance.now() + seconds * 1000;
  while (performance.now() < deadline) {
    batch.lengths.fill(size);
    const t0 = process.hrtime.bigint();
    const sealed = sender.seal(SPI, batch);
    const t1 = process.hrtime.bigint();
    const opened = receiver.open(batch);
    const t2 = process.hrtime.bigint();
    if (sealed !== BATCH || opened !== BATCH) throw new Error(`sealed ${sealed}, opened ${opened} of ${BATCH}`);
    sealNs += t1 - t0;
    openNs += t2 - t1;
    batches++;
  }
  sender.close();
  receiver.close();
  const packets = batches * BATCH;
  return { seal: rate(packets, packets * size, sealNs), open: rate(packets, packets * size, openNs) };
}

/** Node's crypto, the same bytes: header, frame and trailer sealed, opened and checked per datagram. */
function measureNode(size: number): Measurement {
  const pad = (4 - ((size + 2) % 4)) % 4;
  const frames = Array.from({ length: BATCH }, (_, i) =>
    Buffer.concat([Buffer.alloc(size, i), Buffer.from([...Array.from({ length: pad }, (_, j) => j + 1), pad, ESP_NEXT_HEADER_ETHERNET])]),
  );
  const nonce = Buffer.alloc(12);
  SALT.copy(nonce);
  const aad = Buffer.alloc(12);
  aad.writeUInt32BE(SPI, 0);
  let sequence = 0n;
  let sealNs = 0n;
  let openNs = 0n;
  let batches = 0;
  const sealed: Buffer[] = new Array(BATCH);
  const deadline = performance.now() + seconds * 1000;
  while (performance.now() < deadline) {
    const first = sequence + 1n;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) {
      sequence++;
      const header = Buffer.allocUnsafe(ESP_HEADER_LENGTH);
      header.writeUInt32BE(SPI, 0);
      header.writeUInt32BE(Number(sequence & 0xffffffffn), 4);
      header.writeBigUInt64BE(sequence, 8);
      header.copy(nonce, 4, 8, 16);
      aad.writeBigUInt64BE(sequence, 4);
      const cipher = createCipheriv('aes-256-gcm', KEY, nonce);
      cipher.setAAD(aad);
      sealed[i] = Buffer.concat([header, cipher.update(frames[i]!), cipher.final(), cipher.getAuthTag()]);
    }
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) {
      const datagram = sealed[i]!;
      const at = first + BigInt(i);
      datagram.copy(nonce, 4, 8, 16);
      aad.writeBigUInt64BE(at, 4);
      const decipher = createDecipheriv('aes-256-gcm', KEY, nonce);
      decipher.setAAD(aad);
      decipher.setAuthTag(datagram.subarray(datagram.length - ESP_ICV_LENGTH));
      const body = Buffer.concat([decipher.update(datagram.subarray(ESP_HEADER_LENGTH, datagram.length - ESP_ICV_LENGTH)), decipher.final()]);
      if (body[body.length - 1] !== ESP_NEXT_HEADER_ETHERNET || body.length - 2 - body[body.length - 2]! !== size) throw new Error('bad trailer');
    }
    const t2 = process.hrtime.bigint();
    sealNs += t1 - t0;
    openNs += t2 - t1;
    batches++;
  }
  const packets = batches * BATCH;
  return { seal: rate(packets, packets * size, sealNs), open: rate(packets, packets * size, openNs) };
}

/** `openssl speed` for AES-256-GCM at this record size, GB/s: the system's OpenSSL on this core, without ESP. */
async function opensslSpeed(size: number): Promise<number | undefined> {
  try {
    const { stdout } = await promisify(execFile)('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', String(size), '-seconds', '2', '-mr']);
    // -mr prints "+F:<n>:<name>:<bytes per second>"
    const match = /^\+F:\d+:[^:]+:([\d.]+)/m.exec(stdout);
    return match ? Number(match[1]) / 1e9 : undefined;
  } catch {
    return undefined;
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

interface Series {
  addonSeal: Rate[];
  addonOpen: Rate[];
  nodeSeal: Rate[];
  nodeOpen: Rate[];
}

const series = new Map<number, Series>(SIZES.map((size) => [size, { addonSeal: [], addonOpen: [], nodeSeal: [], nodeOpen: [] }]));
// Warm-up: the first round of each warms caches and the JIT; it is not counted.
for (const size of SIZES) {
  measureAddon(size);
  measureNode(size);
}
for (let round = 0; round < rounds; round++) {
  for (const size of SIZES) {
    const s = series.get(size)!;
    // Alternate which goes first, so neither always runs on the warmer or quieter half of a pair.
    const order = round % 2 === 0 ? ['addon', 'node'] : ['node', 'addon'];
    for (const who of order) {
      const m = who === 'addon' ? measureAddon(size) : measureNode(size);
      (who === 'addon' ? s.addonSeal : s.nodeSeal).push(m.seal);
      (who === 'addon' ? s.addonOpen : s.nodeOpen).push(m.open);
    }
  }
}

const summarize = (rates: Rate[]) => ({
  medianGBps: median(rates.map((r) => r.gbps)),
  minGBps: Math.min(...rates.map((r) => r.gbps)),
  maxGBps: Math.max(...rates.map((r) => r.gbps)),
  medianMpps: median(rates.map((r) => r.mpps)),
});
const results = [];
for (const size of SIZES) {
  const s = series.get(size)!;
  const summary = {
    size,
    addonSeal: summarize(s.addonSeal),
    addonOpen: summarize(s.addonOpen),
    nodeSeal: summarize(s.nodeSeal),
    nodeOpen: summarize(s.nodeOpen),
    opensslSpeedGBps: await opensslSpeed(size),
  };
  results.push({
    ...summary,
    sealRatio: summary.addonSeal.medianGBps / summary.nodeSeal.medianGBps,
    openRatio: summary.addonOpen.medianGBps / summary.nodeOpen.medianGBps,
  });
}

const date = new Date().toISOString();
await mkdir(join(root, 'bench', 'results'), { recursive: true });
await writeFile(
  join(root, 'bench', 'results', 'esp.json'),
  `${JSON.stringify({ date, node: process.version, openssl: process.versions.openssl, batch: BATCH, rounds, seconds, results }, null, 2)}\n`,
);

const cell = (r: ReturnType<typeof summarize>) =>
  `${r.medianGBps.toFixed(2)} (${r.minGBps.toFixed(2)}–${r.maxGBps.toFixed(2)}) | ${r.medianMpps.toFixed(2)}`;
const lines = [
  `ESP AES-256-GCM, one core, batches of ${BATCH}, ${rounds} alternating rounds of ${seconds} s (${date}, Node ${process.version}, OpenSSL ${process.versions.openssl})`,
  '',
  '| frame | operation | addon GB/s median (range) | addon Mpps | Node crypto GB/s median (range) | Node Mpps | addon / Node |',
  '|---|---|---|---|---|---|---|',
];
for (const r of results) {
  lines.push(`| ${r.size} B | seal | ${cell(r.addonSeal)} | ${cell(r.nodeSeal)} | ${r.sealRatio.toFixed(1)}× |`);
  lines.push(`| ${r.size} B | open | ${cell(r.addonOpen)} | ${cell(r.nodeOpen)} | ${r.openRatio.toFixed(1)}× |`);
}
lines.push('');
for (const r of results)
  if (r.opensslSpeedGBps !== undefined) lines.push(`openssl speed -evp aes-256-gcm -bytes ${r.size} (the system's OpenSSL): ${r.opensslSpeedGBps.toFixed(2)} GB/s`);
console.log(lines.join('\n'));
