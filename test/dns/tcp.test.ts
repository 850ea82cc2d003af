import test from 'ava';
import { Readable } from 'node:stream';
import { frameTcp, readTcpMessages } from '../../src/dns/tcp.js';

async function collect(chunks: Buffer[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const message of readTcpMessages(Readable.from(chunks))) out.push(message);
  return out;
}

test('frameTcp prefixes the two-byte big-endian length', (t) => {
  t.deepEqual(frameTcp(Buffer.from([0xaa, 0xbb, 0xcc])), Buffer.from([0, 3, 0xaa, 0xbb, 0xcc]));
  t.deepEqual(frameTcp(Buffer.alloc(0)), Buffer.from([0, 0]));
  t.is(frameTcp(Buffer.alloc(65535)).readUInt16BE(0), 65535);
  t.throws(() => frameTcp(Buffer.alloc(65536)), { instanceOf: RangeError });
});

test('readTcpMessages reassembles messages however the stream splits them', async (t) => {
  const messages = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('last')];
  const stream = Buffer.concat(messages.map(frameTcp));
  t.deepEqual(await collect([stream]), messages, 'all in one chunk');
  t.deepEqual(await collect([...stream].map((byte) => Buffer.from([byte]))), messages, 'one byte per chunk');
  for (let cut = 1; cut < stream.length; cut += 37) {
    t.deepEqual(await collect([stream.subarray(0, cut), stream.subarray(cut)]), messages, `cut at ${cut}`);
  }
});

test('a message cut off by the end of the stream is dropped', async (t) => {
  const whole = frameTcp(Buffer.from('whole'));
  t.deepEqual(await collect([whole, frameTcp(Buffer.from('partial')).subarray(0, 5)]), [Buffer.from('whole')]);
  t.deepEqual(await collect([Buffer.from([0])]), []);
});

test('the stream error reaches the reader', async (t) => {
  const failing = new Readable({
    read() {
      this.destroy(new Error('reset'));
    },
  });
  await t.throwsAsync(async () => {
    for await (const _ of readTcpMessages(failing)) t.fail();
  }, { message: 'reset' });
});
