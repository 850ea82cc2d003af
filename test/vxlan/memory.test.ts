import test from 'ava';
import { PortClosed, receivedDatagrams } from '../../src/vxlan/io.js';
import type { ReceivedDatagram } from '../../src/vxlan/io.js';
import { MemoryFramePort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { FrameList, framesOf } from '../../src/vxlan/offload.js';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

test('the memory network delivers asynchronously, one batch per port, with the sender as address', async (t) => {
  const net = new MemoryNetwork();
  const a = net.open('198.18.0.1');
  const b = net.open('198.18.0.2');
  const batches: ReceivedDatagram[][] = [];
  b.start((batch) => batches.push(receivedDatagrams(batch)));
  const data = bytes(1, 2, 3);
  a.sendBatch([{ data, address: '198.18.0.2', port: 4789 }]);
  a.sendBatch([{ data: bytes(4), address: '198.18.0.2', port: 4789 }]);
  data[0] = 9;
  t.deepEqual(batches, []);
  await net.idle();
  t.is(batches.length, 1);
  t.deepEqual(
    batches[0]!.map((d) => ({ data: [...d.data], address: d.address, port: d.port })),
    [
      { data: [1, 2, 3], address: '198.18.0.1', port: 4789 },
      { data: [4], address: '198.18.0.1', port: 4789 },
    ],
  );
});

test('the drop hook and unbound or unstarted ports lose datagrams; everything sent is recorded', async (t) => {
  const net = new MemoryNetwork({ drop: (packet) => packet.data[0] === 0xdd });
  const a = net.open('198.18.0.1');
  const b = net.open('198.18.0.2', 5000);
  const c = net.open('198.18.0.3');
  const received: number[] = [];
  b.start((batch) => received.push(...receivedDatagrams(batch).map((d) => d.data[0]!)));
  a.sendBatch([
    { data: bytes(0xdd), address: '198.18.0.2', port: 5000 },
    { data: bytes(1), address: '198.18.0.2', port: 5000 },
    { data: bytes(2), address: '198.18.0.2', port: 4789 },
    { data: bytes(3), address: '198.18.0.3', port: 4789 },
  ]);
  await net.idle();
  t.deepEqual(received, [1]);
  t.is(net.packets.length, 4);
  const late: ReceivedDatagram[] = [];
  c.start((batch) => late.push(...receivedDatagrams(batch)));
  await net.idle();
  t.deepEqual(late, [], 'what reached c before it started is gone');
});

test('memory ports refuse a taken address and calls after close', async (t) => {
  const net = new MemoryNetwork();
  const a = net.open('198.18.0.1');
  t.throws(() => net.open('198.18.0.1'));
  await a.close();
  await a.close();
  t.throws(() => a.sendBatch([]), { instanceOf: PortClosed });
  t.throws(() => a.start(() => {}), { instanceOf: PortClosed });
  t.notThrows(() => net.open('198.18.0.1'), 'the address is free again');

  const port = new MemoryFramePort();
  t.false(port.inject([bytes(1)]), 'not started');
  const got: Uint8Array[][] = [];
  port.start((frames) => got.push(framesOf(frames)));
  t.true(port.inject([bytes(1), bytes(2)]));
  t.deepEqual(got, [[Buffer.from([1]), Buffer.from([2])]]);
  port.capacity = 1;
  const batch = new FrameList();
  const buffer = Buffer.from([6, 7, 8]);
  batch.push(buffer, 1, 1);
  batch.push(buffer, 2, 1);
  t.is(port.writeFrames(batch), 1);
  t.deepEqual(port.written, [Buffer.from([7])]);
  port.close();
  t.throws(() => port.writeFrames(new FrameList()), { instanceOf: PortClosed });
  t.throws(() => port.stop(), { instanceOf: PortClosed });
});
