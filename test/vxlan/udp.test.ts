import test from 'ava';
import type { Datagram } from '../../src/vxlan/io.js';
import { PortClosed, UdpDatagramPort } from '../../src/vxlan/io.js';

// Loopback sockets on ephemeral ports: no address, route or link is added anywhere.
test('UdpDatagramPort sends and receives batches on loopback', async (t) => {
  const a = await UdpDatagramPort.open({ address: '127.0.0.1', port: 0 });
  const b = await UdpDatagramPort.open({ address: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const received: Datagram[] = [];
  const all = new Promise<void>((resolve) => {
    b.start((batch) => {
      received.push(...batch);
      if (received.length === 3) resolve();
    });
  });
  a.sendBatch([1, 2, 3].map((n) => ({ data: Uint8Array.of(n, n), address: '127.0.0.1', port: b.port })));
  await all;
  t.deepEqual(
    received.map((d) => [...d.data]).sort(),
    [
      [1, 1],
      [2, 2],
      [3, 3],
    ],
  );
  t.true(received.every((d) => d.address === '127.0.0.1' && d.port === a.port));
});

test('UdpDatagramPort refuses a port in use and calls after close', async (t) => {
  const a = await UdpDatagramPort.open({ address: '127.0.0.1', port: 0 });
  await t.throwsAsync(UdpDatagramPort.open({ address: '127.0.0.1', port: a.port }), { message: /cannot bind/ });
  await a.close();
  await a.close();
  t.throws(() => a.sendBatch([]), { instanceOf: PortClosed });
  t.throws(() => a.start(() => {}), { instanceOf: PortClosed });
});
