import test from 'ava';
import { decode, encode } from 'dns-packet';
import type { StringAnswer } from 'dns-packet';
import { Forwarder } from '../../src/dns/forwarder.js';
import { RecordTable } from '../../src/dns/records.js';
import { DnsServer } from '../../src/dns/server.js';
import type { QueryContext } from '../../src/dns/server.js';
import { FakeTransport, answering, decodeReply, makeQuery, prng, silent, upstreamReply } from './helpers.js';

const UDP: QueryContext = { sandboxId: 'sb-client', transport: 'udp', mayForward: true };
const TCP: QueryContext = { ...UDP, transport: 'tcp' };
const INTERNAL: QueryContext = { ...UDP, mayForward: false };

function table(): RecordTable {
  const records = new RecordTable();
  const front = { networkId: 'net-front', networkName: 'front', aliases: [] };
  records.upsertEndpoint({ ...front, endpointId: 'ep-client', sandboxId: 'sb-client', name: 'client', ipv4: '10.0.0.3' });
  records.upsertEndpoint({ ...front, endpointId: 'ep-web', sandboxId: 'sb-web', name: 'web', aliases: ['www'], ipv4: '10.0.0.2', ipv6: 'fd00::2' });
  for (let i = 1; i <= 3; i++) {
    records.upsertEndpoint({ ...front, endpointId: `ep-rr${i}`, sandboxId: `sb-rr${i}`, name: `rr${i}`, aliases: ['pool'], ipv4: `10.0.1.${i}` });
  }
  for (let i = 1; i <= 40; i++) {
    records.upsertEndpoint({ ...front, endpointId: `ep-big${i}`, sandboxId: `sb-big${i}`, name: `big${i}`, aliases: ['big'], ipv4: `10.0.2.${i}` });
  }
  return records;
}

function serverWith(transport?: FakeTransport, forwarder: Partial<ConstructorParameters<typeof Forwarder>[0]> = {}): DnsServer {
  return new DnsServer({
    table: table(),
    ...(transport
      ? { forwarder: new Forwarder({ upstreams: ['192.0.2.1', '192.0.2.2', '192.0.2.3:5353'], timeoutMs: 50, transport, ...forwarder }) }
      : {}),
  });
}

function addresses(reply: ReturnType<typeof decodeReply>): string[] {
  return (reply.answers ?? []).map((answer) => (answer as StringAnswer).data);
}

test('A, AAAA and PTR for table names, with the name as asked, TTL 600, RD echoed and RA set', async (t) => {
  const server = serverWith();
  const a = decodeReply(await server.handle(makeQuery('Web.Front', 'A', { id: 777 }), UDP));
  t.is(a.id, 777);
  t.is(a.rcode, 'NOERROR');
  t.true(a.flag_qr && a.flag_rd && a.flag_ra);
  t.false(a.flag_tc);
  t.deepEqual(a.questions, [{ name: 'Web.Front', type: 'A', class: 'IN' }]);
  t.deepEqual(a.answers, [{ name: 'Web.Front', type: 'A', class: 'IN', ttl: 600, flush: false, data: '10.0.0.2' }]);

  const aaaa = decodeReply(await server.handle(makeQuery('www', 'AAAA'), UDP));
  t.deepEqual(addresses(aaaa), ['fd00::2']);
  t.is(aaaa.answers?.[0]?.type, 'AAAA');

  const ptr = decodeReply(await server.handle(makeQuery('2.0.0.10.in-addr.arpa', 'PTR'), UDP));
  t.is(ptr.rcode, 'NOERROR');
  t.deepEqual(ptr.answers?.map((answer) => [answer.name, answer.type, (answer as StringAnswer).data]), [
    ['2.0.0.10.in-addr.arpa', 'PTR', 'web.front'],
  ]);
  const ptr6 = decodeReply(await server.handle(makeQuery(`2${'.0'.repeat(29)}.d.f.ip6.arpa`, 'PTR'), UDP));
  t.deepEqual(addresses(ptr6), ['web.front']);

  const noRd = decodeReply(await server.handle(makeQuery('web', 'A', { recursionDesired: false }), UDP));
  t.false(noRd.flag_rd);

  const shortTtl = new DnsServer({ table: table(), ttl: 5 });
  t.is((decodeReply(await shortTtl.handle(makeQuery('web', 'A'), UDP)).answers?.[0] as StringAnswer).ttl, 5);
});

test('A answers are shuffled: over many queries every address comes first', async (t) => {
  const server = serverWith();
  const firsts = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const reply = decodeReply(await server.handle(makeQuery('pool', 'A'), UDP));
    t.deepEqual(addresses(reply).sort(), ['10.0.1.1', '10.0.1.2', '10.0.1.3']);
    firsts.add(addresses(reply)[0]!);
  }
  t.deepEqual([...firsts].sort(), ['10.0.1.1', '10.0.1.2', '10.0.1.3']);
});

test('a table name without records of the type is NODATA and never forwarded; upstream NXDOMAIN is relayed', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(3));
  const server = serverWith(transport);
  for (const [name, type] of [['client', 'AAAA'], ['web', 'MX'], ['web.front', 'TXT']] as const) {
    const reply = decodeReply(await server.handle(makeQuery(name, type), UDP));
    t.is(reply.rcode, 'NOERROR', `${name} ${type}`);
    t.deepEqual(reply.answers, []);
  }
  t.is(transport.exchanges.length, 0);

  const nx = decodeReply(await server.handle(makeQuery('nosuch.example', 'A', { id: 4242 }), UDP));
  t.is(nx.rcode, 'NXDOMAIN');
  t.is(nx.id, 4242, 'the client ID is restored');
  t.is(transport.exchanges.length, 1);
});

test('names of networks the sandbox does not share are forwarded, not answered', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(0, ['203.0.113.7']));
  const server = serverWith(transport);
  const reply = decodeReply(await server.handle(makeQuery('web', 'A'), { ...UDP, sandboxId: 'sb-elsewhere' }));
  t.deepEqual(addresses(reply), ['203.0.113.7']);
});

test('forwarding: a timeout moves to the next upstream, under a fresh ID each time', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', silent);
  transport.set('192.0.2.2:53', answering(0, ['203.0.113.1']));
  const server = serverWith(transport);
  const reply = decodeReply(await server.handle(makeQuery('example.com', 'A', { id: 99 }), UDP));
  t.is(reply.id, 99);
  t.deepEqual(addresses(reply), ['203.0.113.1']);
  t.deepEqual(
    transport.exchanges.map((exchange) => exchange.upstream.address),
    ['192.0.2.1', '192.0.2.2'],
  );
  t.true(transport.exchanges.every((exchange) => exchange.signal.aborted), 'each attempt is released');
  t.true(
    transport.exchanges.some((exchange) => exchange.query.readUInt16BE(0) !== 99),
    'upstreams see random IDs, not the client one',
  );
  t.deepEqual(transport.exchanges[0]!.query.subarray(2), makeQuery('example.com', 'A', { id: 99 }).subarray(2), 'otherwise as sent');
});

test('forwarding: SERVFAIL and REFUSED move to the next upstream; all failing gives SERVFAIL', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(2));
  transport.set('192.0.2.2:53', answering(5));
  transport.set('192.0.2.3:5353', answering(0, ['203.0.113.3']));
  const server = serverWith(transport);
  t.deepEqual(addresses(decodeReply(await server.handle(makeQuery('example.com', 'A'), UDP))), ['203.0.113.3']);

  transport.set('192.0.2.3:5353', silent);
  const failed = decodeReply(await server.handle(makeQuery('example.com', 'A', { id: 5 }), UDP));
  t.is(failed.rcode, 'SERVFAIL');
  t.is(failed.id, 5);
  t.deepEqual(failed.questions, [{ name: 'example.com', type: 'A', class: 'IN' }]);
});

test('forwarding: replies that are not answers to the query are not taken', async (t) => {
  const transport = new FakeTransport();
  const wrong = (mutate: (reply: Buffer, query: Buffer) => Buffer) => async ({ query }: { query: Buffer }) =>
    mutate(upstreamReply(query, 0), query);
  transport.set('192.0.2.1:53', wrong((reply) => (reply.writeUInt16BE(reply.readUInt16BE(0) ^ 1, 0), reply)));
  transport.set('192.0.2.2:53', wrong((_, query) => upstreamReply(makeQuery('other.example', 'A', { id: query.readUInt16BE(0) }), 0)));
  transport.set('192.0.2.3:5353', wrong((_, query) => Buffer.from(query)));
  const server = serverWith(transport);
  t.is(decodeReply(await server.handle(makeQuery('example.com', 'A'), UDP)).rcode, 'SERVFAIL', 'wrong ID, wrong question, not a response');
});

test('forwarding: more than maxConcurrent in flight is REFUSED at once', async (t) => {
  const transport = new FakeTransport();
  const release: (() => void)[] = [];
  transport.set('192.0.2.1:53', (exchange) =>
    new Promise<void>((resolve) => release.push(resolve)).then(() => upstreamReply(exchange.query, 0)),
  );
  const server = serverWith(transport, { maxConcurrent: 2, timeoutMs: 5000 });
  const first = server.handle(makeQuery('a.example', 'A'), UDP);
  const second = server.handle(makeQuery('b.example', 'A'), UDP);
  const third = decodeReply(await server.handle(makeQuery('c.example', 'A'), UDP));
  t.is(third.rcode, 'REFUSED');
  t.is(transport.exchanges.length, 2);
  release.forEach((resolve) => resolve());
  t.is(decodeReply(await first).rcode, 'NOERROR');
  t.is(decodeReply(await second).rcode, 'NOERROR');
  const fourth = server.handle(makeQuery('d.example', 'A'), UDP);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(transport.exchanges.length, 3, 'room again once the first two ended');
  release.forEach((resolve) => resolve());
  t.is(decodeReply(await fourth).rcode, 'NOERROR');
});

test('no forwarding for sandboxes only on internal networks, nor without a forwarder: SERVFAIL', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(0, ['203.0.113.1']));
  const server = serverWith(transport);
  t.is(decodeReply(await server.handle(makeQuery('example.com', 'A'), INTERNAL)).rcode, 'SERVFAIL');
  t.is(decodeReply(await server.handle(makeQuery('single', 'A'), INTERNAL)).rcode, 'SERVFAIL');
  t.deepEqual(addresses(decodeReply(await server.handle(makeQuery('web', 'A'), INTERNAL))), ['10.0.0.2'], 'table names still answer');
  t.is(transport.exchanges.length, 0);
  t.is(decodeReply(await serverWith().handle(makeQuery('example.com', 'A'), UDP)).rcode, 'SERVFAIL');
});

test('EDNS: the reply carries OPT only when the query did; version other than 0 is BADVERS', async (t) => {
  const server = serverWith();
  const plain = decodeReply(await server.handle(makeQuery('web', 'A'), UDP));
  t.deepEqual(plain.additionals, []);
  const edns = decodeReply(await server.handle(makeQuery('web', 'A', { udpSize: 1232 }), UDP));
  t.is(edns.additionals?.length, 1);
  t.like(edns.additionals?.[0], { type: 'OPT', name: '.', udpPayloadSize: 4096, ednsVersion: 0 });
  t.deepEqual(addresses(edns), ['10.0.0.2']);

  const badvers = decodeReply(await server.handle(makeQuery('web', 'A', { udpSize: 1232, ednsVersion: 1 }), UDP));
  t.deepEqual(badvers.answers, []);
  t.like(badvers.additionals?.[0], { type: 'OPT', extendedRcode: 1 }, 'BADVERS is 16: 1 in the OPT upper bits, 0 in the header');
  t.is(badvers.rcode, 'NOERROR');
});

test('a big answer is truncated over UDP by the client size, whole over TCP', async (t) => {
  const server = serverWith();
  const udp = await server.handle(makeQuery('big', 'A'), UDP);
  const small = decodeReply(udp);
  t.true(udp!.length <= 512);
  t.true(small.flag_tc);
  t.deepEqual(small.answers, []);
  t.deepEqual(small.questions, [{ name: 'big', type: 'A', class: 'IN' }]);

  const tiny = decodeReply(await server.handle(makeQuery('big', 'A', { udpSize: 100 }), UDP));
  t.true(tiny.flag_tc, 'a size under 512 counts as 512');
  t.is(tiny.additionals?.[0]?.type, 'OPT', 'the truncated reply keeps the OPT');

  const large = decodeReply(await server.handle(makeQuery('big', 'A', { udpSize: 1232 }), UDP));
  t.false(large.flag_tc);
  t.is(large.answers?.length, 40);

  const capped = decodeReply(await server.handle(makeQuery('big', 'A', { udpSize: 65000 }), UDP));
  t.false(capped.flag_tc, 'capped at 4096, which still holds 40 A records');

  const tcp = await server.handle(makeQuery('big', 'A'), TCP);
  t.true(tcp!.length > 512);
  const whole = decodeReply(tcp);
  t.false(whole.flag_tc);
  t.is(whole.answers?.length, 40);
  t.deepEqual(addresses(whole).sort(), Array.from({ length: 40 }, (_, i) => `10.0.2.${i + 1}`).sort());
});

test('an upstream reply larger than the client UDP size is truncated; over TCP it is relayed whole', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `203.0.113.${i + 1}`);
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(0, many));
  const server = serverWith(transport);
  const udp = decodeReply(await server.handle(makeQuery('big.example', 'A', { id: 8 }), UDP));
  t.true(udp.flag_tc);
  t.is(udp.id, 8);
  t.deepEqual(udp.answers, []);
  const tcp = decodeReply(await server.handle(makeQuery('big.example', 'A', { id: 9 }), TCP));
  t.is(tcp.id, 9);
  t.is(tcp.answers?.length, 40);
  t.deepEqual(
    transport.exchanges.map((exchange) => exchange.tcp),
    [false, true],
  );
});

/** A header followed by `body`. */
function message(header: { id?: number; flags?: number; qd?: number; an?: number; ns?: number; ar?: number }, body: number[]): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt16BE(header.id ?? 0xbeef, 0);
  out.writeUInt16BE(header.flags ?? 0x0100, 2);
  out.writeUInt16BE(header.qd ?? 1, 4);
  out.writeUInt16BE(header.an ?? 0, 6);
  out.writeUInt16BE(header.ns ?? 0, 8);
  out.writeUInt16BE(header.ar ?? 0, 10);
  Buffer.from(body).copy(out, 12);
  return out;
}

const TYPE_A_CLASS_IN = [0, 1, 0, 1];

test('malformed queries get FORMERR (or NOTIMP) or are dropped, never a throw, and the server keeps answering', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(0, ['203.0.113.1']));
  const server = serverWith(transport);
  const rcodeOf = (reply: Buffer | undefined): number | undefined => (reply ? reply.readUInt16BE(2) & 0xf : undefined);
  const stillAnswers = async (label: string): Promise<void> => {
    t.deepEqual(addresses(decodeReply(await server.handle(makeQuery('web', 'A'), UDP))), ['10.0.0.2'], label);
  };

  const valid = makeQuery('web.front', 'A', { udpSize: 1232, id: 0x4321 });
  for (let length = 0; length < valid.length; length++) {
    const reply = await server.handle(valid.subarray(0, length), UDP);
    if (length < 12) {
      t.is(reply, undefined, `length ${length}`);
    } else {
      t.is(rcodeOf(reply), 1, `length ${length}`);
      t.is(reply!.readUInt16BE(0), 0x4321);
      t.true((reply!.readUInt16BE(2) & 0x8000) !== 0);
    }
  }
  await stillAnswers('after truncated queries');

  const formerr: [string, Buffer][] = [
    ['pointer loop', message({}, [0xc0, 0x0c, ...TYPE_A_CLASS_IN])],
    ['pointer beyond the end', message({}, [0xc0, 0xff, ...TYPE_A_CLASS_IN])],
    ['pointer loop in the additional section', message({ ar: 1 }, [1, 0x61, 0, ...TYPE_A_CLASS_IN, 0xc0, 0x13, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])],
    ['reserved label type', message({}, [0x40, ...TYPE_A_CLASS_IN])],
    ['qdcount 65535 with a tiny body', message({ qd: 65535 }, [0, ...TYPE_A_CLASS_IN])],
    ['arcount 65535', message({ ar: 65535 }, [0, ...TYPE_A_CLASS_IN])],
    ['no question', message({ qd: 0 }, [])],
    ['two questions', message({ qd: 2 }, [0, ...TYPE_A_CLASS_IN, 0, ...TYPE_A_CLASS_IN])],
    ['label longer than the message', message({}, [20, 0x61, 0x62])],
    ['name over 255 bytes', message({}, [...Array.from({ length: 5 }, () => [63, ...Array<number>(63).fill(0x61)]).flat(), 0, ...TYPE_A_CLASS_IN])],
  ];
  const twoOpts = decode(makeQuery('web', 'A', { udpSize: 1232 }));
  formerr.push(['two OPT records', encode({ ...twoOpts, additionals: [...twoOpts.additionals!, ...twoOpts.additionals!] })]);
  const notRoot = makeQuery('web', 'A', { udpSize: 1232 });
  formerr.push(['OPT not owned by the root', Buffer.concat([notRoot.subarray(0, -11), Buffer.from([1, 0x61, 0]), notRoot.subarray(-10)])]);
  for (const [label, query] of formerr) {
    const reply = await server.handle(query, UDP);
    t.is(rcodeOf(reply), 1, label);
    t.is(reply!.readUInt16BE(0), query.readUInt16BE(0), label);
  }

  for (const opcode of [1, 2, 4, 5, 15]) {
    const query = Buffer.from(makeQuery('web', 'A'));
    query.writeUInt16BE(query.readUInt16BE(2) | (opcode << 11), 2);
    const reply = await server.handle(query, UDP);
    t.is(rcodeOf(reply), 4, `opcode ${opcode}`);
    t.is((reply!.readUInt16BE(2) >> 11) & 0xf, opcode, 'the opcode is echoed');
  }

  const response = Buffer.from(makeQuery('web', 'A'));
  response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
  t.is(await server.handle(response, UDP), undefined, 'a response sent as a query is dropped');
  t.is(await server.handle(present(await server.handle(makeQuery('web', 'A'), UDP)), UDP), undefined, 'our own reply too');
  await stillAnswers('after the battery');

  const random = prng(20240611);
  const byte = (): number => Math.floor(random() * 256);
  for (let i = 0; i < 5000; i++) {
    const length = Math.floor(random() * 300);
    const bytes = Buffer.from(Array.from({ length }, byte));
    // Half of them get a plausible header, so the parsing behind it is exercised too.
    if (i % 2 === 1 && length >= 12) {
      bytes.writeUInt16BE(0x0100, 2);
      bytes.writeUInt16BE(1, 4);
      bytes.writeUInt16BE(0, 6);
      bytes.writeUInt16BE(0, 8);
      bytes.writeUInt16BE(Math.floor(random() * 3), 10);
    }
    const reply = await server.handle(bytes, i % 3 === 0 ? TCP : UDP);
    if (reply === undefined) {
      if (length >= 12 && (bytes.readUInt16BE(2) & 0x8000) === 0) t.fail(`case ${i}: a query with a readable header was dropped`);
      continue;
    }
    if (reply.length < 12 || reply.readUInt16BE(0) !== bytes.readUInt16BE(0) || (reply.readUInt16BE(2) & 0x8000) === 0) {
      t.fail(`case ${i}: reply is not a response with the query's ID`);
    }
    if (reply.length > 512 && i % 3 !== 0) t.fail(`case ${i}: UDP reply over 512 bytes`);
  }
  await stillAnswers('after 5000 random messages');
});

function present(reply: Buffer | undefined): Buffer {
  if (!reply) throw new Error('expected a reply');
  return reply;
}

test('stop ends forwards in flight and drops later queries', async (t) => {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', silent);
  const server = serverWith(transport, { timeoutMs: 60_000 });
  const pending = server.handle(makeQuery('slow.example', 'A'), UDP);
  await new Promise((resolve) => setImmediate(resolve));
  const started = Date.now();
  await server.stop();
  t.true(Date.now() - started < 1000);
  t.is(decodeReply(await pending).rcode, 'SERVFAIL');
  t.is(await server.handle(makeQuery('web', 'A'), UDP), undefined);
  t.is(transport.exchanges.length, 1, 'the other upstreams are not tried after close');
});
