/**
 * Run by udp-esp.test.ts as `node --expose-gc --import tsx esp-lifetime.ts NETNS_A NETNS_B`
 * (the namespaces joined by a veth, 198.18.0.1 in A, 198.18.0.2 in B): a
 * table whose JavaScript object the garbage collector took stays with the
 * socket that holds it until the socket closes. Prints what it saw as JSON.
 */
import { randomBytes } from 'node:crypto';
import { EspTable } from '../../../src/sys/esp.js';
import { NativeUdpSocket, receivedDatagrams } from '../../../src/sys/udp.js';
import { FrameList } from '../../../src/vxlan/offload.js';

const [netnsA, netnsB] = process.argv.slice(2) as [string, string];
const gc = (globalThis as { gc?: () => void }).gc!;
const sa = { spi: 0x2000_0001, key: randomBytes(32), salt: randomBytes(4), tag: 77 };
const open = (netnsPath: string, address: string) =>
  NativeUdpSocket.open({ netnsPath, address, port: 0, family: 4, gro: true, borrowBuffers: true });
const sender = open(netnsA, '198.18.0.1');
const receiver = open(netnsB, '198.18.0.2');
let opened = 0;
receiver.start((batch) => {
  // A GRO run (the five frames may leave as one UDP_SEGMENT send) counts each of its datagrams.
  for (const { flags, data, segmentSize } of receivedDatagrams(batch)) if (flags !== 0) opened += segmentSize > 0 ? Math.ceil(data.length / segmentSize) : 1;
});

/** Attaches a table of its own to the receiver and keeps no reference to it. */
let tableCollected: () => void = () => {};
const collected = new Promise<void>((resolve) => (tableCollected = resolve));
const registry = new FinalizationRegistry(() => tableCollected());
(() => {
  const table = EspTable.create();
  table.addInbound(sa);
  receiver.setEspTable(table);
  registry.register(table.native, 'inbound table');
})();
const turn = () => new Promise((resolve) => setImmediate(resolve));
async function collect(until: Promise<void>): Promise<void> {
  let done = false;
  void until.then(() => (done = true));
  for (let i = 0; i < 200 && !done; i++) {
    gc();
    await turn();
  }
  if (!done) throw new Error('the table was never collected');
  // The addon's finalizer runs after the object is gone: give it turns too.
  for (let i = 0; i < 10; i++) await turn();
}
await collect(collected);

const outbound = EspTable.create();
outbound.addOutbound(sa);
sender.setEspTable(outbound);
const frames = new FrameList();
const frame = randomBytes(200);
for (let i = 0; i < 5; i++) frames.push(frame, 0, frame.length);
sender.sendFrames(new Uint8Array(8), frames, false, '198.18.0.2', receiver.port, false, sa.spi);
for (let i = 0; i < 200 && opened < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
const openedAfterGc = opened;

outbound.close();
const refusedAfterClose = sender.sendFrames(new Uint8Array(8), frames, false, '198.18.0.2', receiver.port, false, sa.spi).refused;

// The last holder goes: the collected table is freed with it; nothing else may notice.
receiver.close();
for (let i = 0; i < 5; i++) {
  gc();
  await turn();
}
const again = EspTable.create();
again.addOutbound({ ...sa, key: randomBytes(32) });
sender.setEspTable(again);
const survivedSocketClose = sender.sendFrames(new Uint8Array(8), frames, false, '198.18.0.2', 9, false, sa.spi).datagrams === 5;
sender.close();
again.close();
console.log(JSON.stringify({ openedAfterGc, refusedAfterClose, survivedSocketClose }));
