/**
 * Replies the addon gives again (native/answers.c): a query JavaScript
 * answered on the fast path with one record or none is answered by the
 * addon the next time its bytes come, under the new ID, byte for byte as
 * JavaScript answered it; a change of the table is never answered from an
 * old reply; shuffled answers are never replayed; every query is counted.
 * A real namespace, the embedded DNS at 127.0.0.11, a client socket there.
 */
import test, { type ExecutionContext } from 'ava';
import type { DnsQueryObservation } from '../../src/dns/server.js';
import { NativeUdpSocket, receivedDatagrams } from '../../src/sys/udp.js';
import { joinedEndpoint, startDnsFixture } from './embedded-fixture.js';
import { prng } from './helpers.js';

/** A query as a stub resolver sends it: one question, perhaps an OPT record. */
function query(id: number, name: string, type: number, rd: boolean, opt?: { udpSize: number; dnssecOk: boolean }): Buffer {
  const labels = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')]));
  const question = Buffer.concat([...labels, Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(rd ? 0x0100 : 0, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(opt === undefined ? 0 : 1, 10);
  const parts = [header, question];
  if (opt !== undefined) {
    const record = Buffer.alloc(11);
    record.writeUInt16BE(41, 1);
    record.writeUInt16BE(opt.udpSize, 3);
    record.writeUInt16BE(opt.dnssecOk ? 0x8000 : 0, 7);
    parts.push(record);
  }
  return Buffer.concat(parts);
}

/** A client socket in the sandbox: sends a query to 127.0.0.11:53 and waits for the reply. */
function client(netnsPath: string) {
  const socket = NativeUdpSocket.open({ netnsPath, address: '127.0.0.1', port: 0 });
  const waiting: ((reply: Buffer) => void)[] = [];
  socket.start((batch) => {
    for (const { data } of receivedDatagrams(batch)) waiting.shift()?.(Buffer.from(data));
  });
  return {
    ask(message: Buffer): Promise<Buffer> {
      const reply = new Promise<Buffer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no reply in 5 s')), 5000);
        waiting.push((bytes) => {
          clearTimeout(timer);
          resolve(bytes);
        });
      });
      socket.sendBatch({ data: [message], addresses: ['127.0.0.11'], ports: [53] });
      return reply;
    },
    close: () => socket.close(),
  };
}

async function setUp(t: ExecutionContext) {
  const observed: DnsQueryObservation[] = [];
  const { netnsPath, dns, write } = await startDnsFixture(
    t,
    [
      joinedEndpoint('web', '10.77.0.5'),
      joinedEndpoint('db', '10.77.0.6', { ipv6Address: 'fd00::6/64' }),
      joinedEndpoint('one', '10.77.0.7', { aliases: ['shared'] }),
      joinedEndpoint('two', '10.77.0.8', { aliases: ['shared'] }),
    ],
    { onQuery: (q) => observed.push(q) },
  );
  const asker = client(netnsPath);
  t.teardown(() => asker.close());
  const answered = dns;
  /** Queries JavaScript saw, and the replays the addon counted (read now). */
  const counts = () => {
    answered.countReplays();
    let javascript = 0;
    let replayed = 0;
    for (const q of observed) {
      if (q.count === undefined) javascript++;
      else replayed += q.count;
    }
    observed.length = 0;
    return { javascript, replayed };
  };
  // The listener opens once the sandbox record is applied: ask until it answers.
  const ready = query(1, 'not-a-name', 1, true);
  for (let tries = 0; ; tries++) {
    try {
      await asker.ask(ready);
      break;
    } catch (err) {
      if (tries === 10) throw err;
    }
  }
  counts();
  return { ask: asker.ask, write, counts };
}

test('a query asked again gets the reply JavaScript gave, under its own ID, from the addon', async (t) => {
  const { ask, counts } = await setUp(t);
  const random = prng(20261205);
  // Questions the fast path answers (a name with an address of the type), in any case, with or without the network.
  const questions: [string, number][] = [['web', 1], ['WEB', 1], ['wEb.FrOnT', 1], ['db', 1], ['Db.front', 28], ['db', 28]];
  let fromJavaScriptFirst = 0;
  for (let round = 0; round < 60; round++) {
    const [name, type] = questions[Math.floor(random() * questions.length)]!;
    const rd = random() < 0.5;
    const opt = random() < 0.5 ? { udpSize: 512 + Math.floor(random() * 3584), dnssecOk: random() < 0.5 } : undefined;
    const first = query(Math.floor(random() * 0x10000), name, type, rd, opt);
    const again = Buffer.from(first);
    again.writeUInt16BE(Math.floor(random() * 0x10000), 0);
    const reply = await ask(first);
    const replayed = await ask(again);
    const seen = counts();
    const expected = Buffer.from(reply);
    expected.writeUInt16BE(again.readUInt16BE(0), 0);
    t.deepEqual(replayed, expected, `${name} type ${type} rd ${rd} opt ${JSON.stringify(opt)}`);
    // The first of its bytes is JavaScript's, which stores the reply; every later one is the addon's.
    t.is(seen.javascript + seen.replayed, 2, 'every query is counted once');
    t.true(seen.replayed >= 1, "the second ask is the addon's");
    fromJavaScriptFirst += seen.javascript;
  }
  t.true(fromJavaScriptFirst > 10, `JavaScript answered ${fromJavaScriptFirst} first asks, compared with the addon's`);
});

test('a change of the table is never answered from an old reply; shuffled answers are not replayed', async (t) => {
  const { ask, write, counts } = await setUp(t);
  const asked = query(7, 'web', 1, true);
  const address = (reply: Buffer) => [...reply.subarray(reply.length - 4)].join('.');
  t.is(address(await ask(asked)), '10.77.0.5');
  t.is(address(await ask(asked)), '10.77.0.5');
  t.deepEqual(counts(), { javascript: 1, replayed: 1 });

  await write(joinedEndpoint('web', '10.77.0.15'));
  // The change arrives through the store's watch; once it is seen, the old reply never comes back.
  const deadline = Date.now() + 10_000;
  while (address(await ask(asked)) !== '10.77.0.15') {
    if (Date.now() > deadline) t.fail('the new address never came: an old reply is given again');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (let i = 0; i < 20; i++) t.is(address(await ask(asked)), '10.77.0.15');

  // Two records, shuffled for round robin: JavaScript answers every time.
  counts();
  const shared = query(9, 'shared', 1, true);
  for (let i = 0; i < 10; i++) t.is((await ask(shared)).readUInt16BE(6), 2);
  t.deepEqual(counts(), { javascript: 10, replayed: 0 });
});
