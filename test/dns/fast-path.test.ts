/**
 * The fast path for common queries (commonQueryNameEnd, DnsServer's fast
 * path): which queries it takes, and that it answers them byte for byte as
 * the general path does, down to the observation, also when it reads the
 * query and writes the reply in place in larger buffers (answerInto).
 */
import test from 'ava';
import type { StringAnswer } from 'dns-packet';
import { Forwarder } from '../../src/dns/forwarder.js';
import { commonQueryNameEnd, encodeName } from '../../src/dns/message.js';
import { RecordTable } from '../../src/dns/records.js';
import { DnsServer } from '../../src/dns/server.js';
import type { DnsQueryObservation, DnsQueryResult, QueryContext } from '../../src/dns/server.js';
import { FakeTransport, answering, decodeReply, makeQuery, prng } from './helpers.js';

const UDP: QueryContext = { sandboxId: 'sb-client', transport: 'udp', mayForward: true };
const TCP: QueryContext = { ...UDP, transport: 'tcp' };

const A = 1;
const AAAA = 28;
const OPT = 41;

interface Opt {
  udpSize?: number;
  extendedRcode?: number;
  version?: number;
  flags?: number;
  /** Option bytes (code, length, data…) after the fixed part. */
  options?: number[];
  /** The owner name's bytes; the root by default. */
  owner?: number[];
}

function optBytes(opt: Opt = {}): Buffer {
  const owner = Buffer.from(opt.owner ?? [0]);
  const options = Buffer.from(opt.options ?? []);
  const out = Buffer.alloc(owner.length + 10 + options.length);
  owner.copy(out, 0);
  const at = owner.length;
  out.writeUInt16BE(OPT, at);
  out.writeUInt16BE(opt.udpSize ?? 1232, at + 2);
  out[at + 4] = opt.extendedRcode ?? 0;
  out[at + 5] = opt.version ?? 0;
  out.writeUInt16BE(opt.flags ?? 0, at + 6);
  out.writeUInt16BE(options.length, at + 8);
  options.copy(out, at + 10);
  return out;
}

interface Parts {
  id?: number;
  flags?: number;
  /** QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT; ARCOUNT defaults to the number of `additionals`. */
  counts?: [number, number, number, number?];
  /** The question name as text, or its wire bytes. */
  name?: string | number[];
  type?: number;
  klass?: number;
  additionals?: Buffer[];
}

/** A query message from its parts, any of which may be wrong on purpose. */
function query(parts: Parts = {}): Buffer {
  const name = typeof parts.name === 'object' ? Buffer.from(parts.name) : encodeName(parts.name ?? 'web');
  const additionals = parts.additionals ?? [];
  const [qd, an, ns, ar] = parts.counts ?? [1, 0, 0];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(parts.id ?? 0x1234, 0);
  header.writeUInt16BE(parts.flags ?? 0x0100, 2);
  header.writeUInt16BE(qd, 4);
  header.writeUInt16BE(an, 6);
  header.writeUInt16BE(ns, 8);
  header.writeUInt16BE(ar ?? additionals.length, 10);
  const typeAndClass = Buffer.alloc(4);
  typeAndClass.writeUInt16BE(parts.type ?? A, 0);
  typeAndClass.writeUInt16BE(parts.klass ?? 1, 2);
  return Buffer.concat([header, name, typeAndClass, ...additionals]);
}

/** Labels of 63, 63, 63 and `last` bytes: a name of 194 + `last` bytes with its root label. */
function longName(last: number): number[] {
  const label = (length: number) => [length, ...Array<number>(length).fill(0x61)];
  return [...label(63), ...label(63), ...label(63), ...label(last), 0];
}

test('commonQueryNameEnd takes one A or AAAA question of class IN, alone or with a plain OPT', (t) => {
  t.is(commonQueryNameEnd(query({ name: 'Web.Front' })), 12 + 11);
  t.is(commonQueryNameEnd(query({ type: AAAA, additionals: [optBytes({ udpSize: 4096, flags: 0x8000 })] })), 12 + 5);
  t.is(commonQueryNameEnd(makeQuery('web', 'A', { udpSize: 512 })), 17);
  t.is(
    commonQueryNameEnd(query({ additionals: [optBytes({ extendedRcode: 7, flags: 0x7fff })] })),
    17,
    'the extended rcode and the flags besides DO are not looked at, by either path',
  );
  const otherFlags = 0x0100 | 0x0400 | 0x0200 | 0x0040 | 0x0020 | 0x0010 | 0x000f;
  t.is(commonQueryNameEnd(query({ flags: otherFlags })), 17, 'flags other than QR and opcode');
  t.is(commonQueryNameEnd(query({ name: longName(61) })), 12 + 255, 'a name of 255 bytes');
  t.is(commonQueryNameEnd(query({ name: '' })), 13, 'the root name (the table has nothing for it)');
});

test('commonQueryNameEnd leaves everything else to the general path', (t) => {
  const common = query({ additionals: [optBytes()] });
  const left: [string, Buffer][] = [
    ['QR set', query({ flags: 0x8100 })],
    ['opcode 1', query({ flags: 0x0900 })],
    ['opcode 15', query({ flags: 0x7900 })],
    ['no question', query({ counts: [0, 0, 0] })],
    ['two questions', query({ counts: [2, 0, 0] })],
    ['an answer', query({ counts: [1, 1, 0] })],
    ['an authority', query({ counts: [1, 0, 1] })],
    ['two additionals', query({ additionals: [optBytes(), optBytes()] })],
    ['ARCOUNT 1 without the record', query({ counts: [1, 0, 0, 1] })],
    ['ARCOUNT 0 with an OPT after the question', query({ counts: [1, 0, 0, 0], additionals: [optBytes()] })],
    ['PTR', query({ name: '2.0.0.10.in-addr.arpa', type: 12 })],
    ['MX', query({ type: 15 })],
    ['ANY', query({ type: 255 })],
    ['class CH', query({ klass: 3 })],
    ['class IN with the QU bit', query({ klass: 0x8001 })],
    ['a compressed name', query({ name: [0xc0, 0x0c] })],
    ['a label then a pointer', query({ name: [3, 0x77, 0x65, 0x62, 0xc0, 0x0c] })],
    ['a reserved label type', query({ name: [0x40, 0] })],
    ['a label type 0x80', query({ name: [0x80, 0] })],
    ['a byte over 0x7f', query({ name: [3, 0x77, 0xc5, 0x62, 0] })],
    ['a name of 256 bytes', query({ name: longName(62) })],
    ['a byte after the question', Buffer.concat([query(), Buffer.from([0])])],
    ['a byte after the OPT', Buffer.concat([common, Buffer.from([0])])],
    ['OPT with an option', query({ additionals: [optBytes({ options: [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8] })] })],
    ['OPT with a zero-length option', query({ additionals: [optBytes({ options: [0, 12, 0, 0] })] })],
    ['EDNS version 1', query({ additionals: [optBytes({ version: 1 })] })],
    ['EDNS version 255', query({ additionals: [optBytes({ version: 255 })] })],
    ['OPT owned by a name', query({ additionals: [optBytes({ owner: [1, 0x61, 0] })] })],
    ['OPT owned by a pointer to the question', query({ additionals: [optBytes({ owner: [0xc0, 0x0c] })] })],
    ['an A record instead of an OPT', query({ additionals: [Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])] })],
    ['OPT rdlength beyond the message', Buffer.concat([common.subarray(0, -2), Buffer.from([0, 4])])],
  ];
  for (const [label, message] of left) t.is(commonQueryNameEnd(message), -1, label);
  for (let length = 0; length < common.length; length++) t.is(commonQueryNameEnd(common.subarray(0, length)), -1, `cut at ${length}`);
});

/** `message` at `offset` in a larger buffer, after and before other bytes (`after`, by default a copy of the message). */
function inside(message: Buffer, offset: number, after: Buffer = message): Buffer {
  return Buffer.concat([Buffer.alloc(offset, 0xa5), message, after]);
}

test('commonQueryNameEnd reads a query inside a larger buffer, and nothing past its end', (t) => {
  const common = query({ name: 'web.front', additionals: [optBytes()] });
  t.is(commonQueryNameEnd(inside(common, 100), 100, 100 + common.length), 100 + 12 + 11);
  t.is(commonQueryNameEnd(inside(query(), 3), 3, 3 + query().length), 3 + 12 + 5);
  for (let length = 0; length < common.length; length++) {
    // The rest of the message follows the cut, as a longer datagram's bytes stay in a socket's receive memory.
    const around = inside(common.subarray(0, length), 7, common.subarray(length));
    t.is(commonQueryNameEnd(around, 7, 7 + length), -1, `cut at ${length}`);
  }
});

function table(): RecordTable {
  const records = new RecordTable();
  const front = { networkId: 'net-front', networkName: 'front', aliases: [] };
  records.upsertEndpoint({ ...front, endpointId: 'ep-client', sandboxId: 'sb-client', name: 'client', ipv4: '10.0.0.3' });
  records.upsertEndpoint({ ...front, endpointId: 'ep-web', sandboxId: 'sb-web', name: 'web', aliases: ['www'], ipv4: '10.0.0.2', ipv6: 'fd00::2' });
  for (let i = 1; i <= 3; i++) {
    const addresses = { ipv4: `10.0.1.${i}`, ipv6: `fd00::1:${i}` };
    records.upsertEndpoint({ ...front, endpointId: `ep-rr${i}`, sandboxId: `sb-rr${i}`, name: `rr${i}`, aliases: ['pool'], ...addresses });
  }
  for (let i = 1; i <= 40; i++) {
    records.upsertEndpoint({ ...front, endpointId: `ep-big${i}`, sandboxId: `sb-big${i}`, name: `big${i}`, aliases: ['big'], ipv4: `10.0.2.${i}` });
  }
  // Two names whose questions (as A) hash alike in the fast path's answer cache.
  records.upsertEndpoint({ ...front, endpointId: 'ep-twin1', sandboxId: 'sb-twin1', name: 'nxtz', ipv4: '10.0.3.1' });
  records.upsertEndpoint({ ...front, endpointId: 'ep-twin2', sandboxId: 'sb-twin2', name: 'n514a', ipv4: '10.0.3.2' });
  const back = { networkId: 'net-back', networkName: 'back', aliases: [] };
  records.upsertEndpoint({ ...back, endpointId: 'ep-client-back', sandboxId: 'sb-client', name: 'client', ipv4: '10.1.0.3' });
  records.upsertEndpoint({ ...back, endpointId: 'ep-db', sandboxId: 'sb-db', name: 'CapsDb', ipv4: '10.1.0.2', ipv6: 'fd01::2' });
  records.upsertEndpoint({ ...back, endpointId: 'ep-web-back', sandboxId: 'sb-web', name: 'web', ipv4: '10.1.0.4' });
  records.upsertService({ name: 'api', networkId: 'net-front', virtualIp: '10.0.9.9', tasks: [{ ipv4: '10.0.0.2' }, { ipv4: '10.0.1.1' }] });
  records.upsertService({ name: 'jobs', networkId: 'net-back', tasks: [{ ipv4: '10.1.0.7', ipv6: 'fd01::7' }, { ipv4: '10.1.0.8' }] });
  // Names at the edges of what the fast path takes: 255 and 256 bytes on the wire, and not ASCII.
  const long = [61, 62].map((last) => ['a', 'a', 'a', 'a'].map((letter, i) => letter.repeat(i < 3 ? 63 : last)).join('.'));
  records.upsertEndpoint({ ...front, endpointId: 'ep-edges', sandboxId: 'sb-edges', name: 'café', aliases: long, ipv4: '10.0.0.99' });
  return records;
}

interface Observed {
  server: DnsServer;
  seen: DnsQueryObservation[];
}

/** A server over `records` with a TTL other than the default, forwarding to an upstream that says NXDOMAIN, with its shuffle seeded. */
function observed(records: RecordTable, fastPath: boolean, seed = 1): Observed {
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', answering(3));
  const seen: DnsQueryObservation[] = [];
  const server = new DnsServer({
    table: records,
    forwarder: new Forwarder({ upstreams: ['192.0.2.1'], timeoutMs: 1000, transport }),
    ttl: 30,
    onQuery: (observation) => seen.push(observation),
    random: prng(seed),
    fastPath,
  });
  return { server, seen };
}

interface Asked {
  reply: Buffer | undefined;
  result: DnsQueryResult | undefined;
  /** Answered and observed before `handle` returned: the fast path took it. */
  fast: boolean;
}

async function ask({ server, seen }: Observed, message: Buffer, ctx: QueryContext = UDP): Promise<Asked> {
  const before = seen.length;
  const pending = server.handle(message, ctx);
  const fast = seen.length > before;
  const reply = await pending;
  return { reply, result: seen.at(-1)?.result, fast };
}

/**
 * As a UDP listener asks: the query read where it lies in a larger buffer
 * (with other bytes after it) and the reply written into another at an
 * offset; what answerInto does not take goes to `handle` as a copy. Over
 * TCP, `handle` alone.
 */
async function askInPlace({ server, seen }: Observed, message: Buffer, ctx: QueryContext = UDP): Promise<Asked> {
  if (ctx.transport === 'udp') {
    const received = inside(message, 5, Buffer.from('stale bytes of a longer datagram'));
    const out = Buffer.alloc(9 + 4096, 0x5a);
    const before = seen.length;
    const length = server.answerInto(received, 5, 5 + message.length, ctx.sandboxId, out, 9);
    // A query taken is observed once, at once; one left is observed by `handle`.
    const observations = seen.length - before;
    if (observations !== (length > 0 ? 1 : 0)) throw new Error(`answerInto observed a query it ${length > 0 ? 'took' : 'left'} ${observations} times`);
    if (length > 0) return { reply: Buffer.from(out.subarray(9, 9 + length)), result: seen.at(-1)?.result, fast: true };
  }
  const reply = await server.handle(Buffer.from(message), ctx);
  return { reply, result: seen.at(-1)?.result, fast: false };
}

/** The fast path, and the general path alone, over the same table with the same seed. */
function pair(records = table(), seed = 1): { fast: Observed; general: Observed } {
  return { fast: observed(records, true, seed), general: observed(records, false, seed) };
}

test('the fast path answers common queries for table names at once, as the general path does', async (t) => {
  const { fast, general } = pair();
  const taken: [string, Buffer, QueryContext?][] = [
    ['A', query({ name: 'web' })],
    ['A with 0x20 mixed case', query({ name: 'wEb.FrONt', id: 7 })],
    ['AAAA of an alias with EDNS and DO', query({ name: 'WWW', type: AAAA, additionals: [optBytes({ flags: 0x8000 })] })],
    ['A without RD, with CD', query({ flags: 0x0010 })],
    ['a UDP size under 512', query({ additionals: [optBytes({ udpSize: 100 })] })],
    ['round robin', query({ name: 'pool' })],
    ['a service VIP', query({ name: 'api' })],
    ['task addresses', query({ name: 'tasks.jobs', type: AAAA })],
    ['a name on the second network', query({ name: 'capsdb.back' })],
    ['40 addresses within a large EDNS size', query({ name: 'big', additionals: [optBytes({ udpSize: 4096 })] })],
    ['40 addresses over TCP', query({ name: 'big' }), TCP],
    ['a name whose question hashes as another\'s', query({ name: 'nxtz' })],
    ['the other, in other case', query({ name: 'N514A' })],
    ['the first again', query({ name: 'nxtz' })],
  ];
  const inPlace = observed(table(), true);
  for (const [label, message, ctx] of taken) {
    const byFast = await ask(fast, message, ctx);
    const byGeneral = await ask(general, message, ctx);
    const byInPlace = await askInPlace(inPlace, message, ctx);
    t.true(byFast.fast, label);
    t.false(byGeneral.fast);
    t.is(byInPlace.fast, ctx?.transport !== 'tcp', label);
    t.is(byFast.result, 'answered', label);
    t.is(byGeneral.result, 'answered', label);
    t.is(byInPlace.result, 'answered', label);
    t.deepEqual(byFast.reply, byGeneral.reply, label);
    t.deepEqual(byInPlace.reply, byGeneral.reply, label);
  }
  const roomless = Buffer.alloc(16);
  const message = query({ name: 'web' });
  t.is(inPlace.server.answerInto(message, 0, message.length, UDP.sandboxId, roomless, 0), 0, 'no room for the reply: not taken');
  const mixed = decodeReply((await ask(fast, query({ name: 'wEb.FrONt' }))).reply);
  t.deepEqual(mixed.questions, [{ name: 'wEb.FrONt', type: 'A', class: 'IN' }], 'the question echoed as asked');
  t.like(mixed.answers?.[0], { name: 'wEb.FrONt', type: 'A', data: '10.0.0.2' });
});

test('the fast path leaves NODATA, other names and types, truncation and unusual EDNS to the general path', async (t) => {
  const { fast, general } = pair();
  const left: [string, Buffer, DnsQueryResult | undefined, QueryContext?][] = [
    ['NODATA', query({ name: 'client', type: AAAA }), 'nodata'],
    ['a name not in the table', query({ name: 'example.com' }), 'nxdomain'],
    ['a name of a network the sandbox does not share', query({ name: 'web' }), 'nxdomain', { ...UDP, sandboxId: 'sb-elsewhere' }],
    ['not in the table, no forwarding', query({ name: 'example.com' }), 'servfail', { ...UDP, mayForward: false }],
    ['MX of a table name', query({ type: 15 }), 'nodata'],
    ['PTR', query({ name: '2.0.0.10.in-addr.arpa', type: 12 }), 'answered'],
    ['40 addresses in 512 bytes', query({ name: 'big' }), 'answered'],
    ['40 addresses in a 600-byte EDNS size', query({ name: 'big', additionals: [optBytes({ udpSize: 600 })] }), 'answered'],
    ['OPT with an option', query({ additionals: [optBytes({ options: [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8] })] }), 'answered'],
    ['EDNS version 1', query({ additionals: [optBytes({ version: 1 })] }), 'malformed'],
    ['two OPTs', query({ additionals: [optBytes(), optBytes()] }), 'malformed'],
    ['a compressed name', query({ name: [0xc0, 0x0c] }), 'malformed'],
    ['a dot inside a label (the upstream reply names another question)', query({ name: [7, ...Buffer.from('web.fro'), 0] }), 'servfail'],
    ['a byte after the question', Buffer.concat([query(), Buffer.from([0])]), 'answered'],
    ['a name of 256 bytes', query({ name: longName(62) }), 'malformed'],
    ['a response', query({ flags: 0x8100 }), 'dropped'],
  ];
  const inPlace = observed(table(), true);
  for (const [label, message, result, ctx] of left) {
    const byFast = await ask(fast, message, ctx);
    const byGeneral = await ask(general, message, ctx);
    const byInPlace = await askInPlace(inPlace, message, ctx);
    t.false(byInPlace.fast, label);
    t.is(byInPlace.result, result, label);
    t.deepEqual(byInPlace.reply, byGeneral.reply, label);
    t.false(byFast.fast, label);
    t.is(byFast.result, result, label);
    t.is(byGeneral.result, result, label);
    t.deepEqual(byFast.reply, byGeneral.reply, label);
  }
});

test('the fast path sees every table change from the next query on', async (t) => {
  const records = table();
  const { fast } = pair(records);
  const addressesOf = async (name: string, ctx = UDP) => {
    const asked = await ask(fast, query({ name }), ctx);
    return { fast: asked.fast, addresses: (decodeReply(asked.reply).answers ?? []).map((answer) => (answer as StringAnswer).data) };
  };
  t.deepEqual(await addressesOf('web'), { fast: true, addresses: ['10.0.0.2'] });
  t.deepEqual(await addressesOf('web'), { fast: true, addresses: ['10.0.0.2'] }, 'again, from what was kept');

  const web = { networkId: 'net-front', networkName: 'front', endpointId: 'ep-web', sandboxId: 'sb-web', name: 'web' };
  records.upsertEndpoint({ ...web, aliases: ['www', 'site'], ipv4: '10.0.0.20' });
  t.deepEqual(await addressesOf('WEB'), { fast: true, addresses: ['10.0.0.20'] }, 'a new address');
  t.deepEqual(await addressesOf('site'), { fast: true, addresses: ['10.0.0.20'] }, 'a new alias');
  records.removeEndpoint('ep-web');
  t.deepEqual(await addressesOf('web'), { fast: true, addresses: ['10.1.0.4'] }, 'the next network in join order');
  records.removeEndpoint('ep-web-back');
  t.deepEqual(await addressesOf('web'), { fast: false, addresses: [] }, 'gone: the general path forwards it');

  records.upsertService({ name: 'api', networkId: 'net-front', virtualIp: '10.0.9.10', tasks: [] });
  t.deepEqual(await addressesOf('api'), { fast: true, addresses: ['10.0.9.10'] }, 'a new VIP');
  records.removeService('api', 'net-front');
  t.deepEqual(await addressesOf('api'), { fast: false, addresses: [] });

  t.deepEqual(await addressesOf('client', { ...UDP, sandboxId: 'sb-web' }), { fast: false, addresses: [] }, 'sb-web has left every network');
  t.deepEqual(await addressesOf('client', { ...UDP, sandboxId: 'sb-db' }), { fast: true, addresses: ['10.1.0.3'] }, 'answers are per sandbox');
});

/** Case-flips every letter with probability ½ (DNS 0x20, as resolvers that want spoofing resistance send names). */
function mixCase(name: string, random: () => number): string {
  return [...name].map((char) => (random() < 0.5 ? char.toUpperCase() : char)).join('');
}

const NAMES = [
  'web', 'www', 'web.front', 'www.front', 'web.back', 'client', 'client.back', 'pool', 'rr2.front', 'big', 'big7', 'capsdb',
  'CapsDb.back', 'api', 'api.front', 'tasks.api', 'jobs', 'tasks.jobs.back', 'nosuch', 'nosuch.example', 'front', '',
];

/**
 * A random query: mostly common ones for names in and out of the table,
 * the rest near misses of every kind the fast path must leave alone, and
 * some plain noise.
 */
function randomQuery(random: () => number): Buffer {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const chance = (p: number) => random() < p;
  const byte = () => Math.floor(random() * 256);
  if (chance(0.03)) return Buffer.from(Array.from({ length: Math.floor(random() * 80) }, byte));

  const parts: Parts = { id: Math.floor(random() * 0x10000), name: mixCase(pick(NAMES), random) };
  parts.flags = chance(0.8) ? pick([0x0100, 0x0000, 0x0110]) : Math.floor(random() * 0x10000) & (chance(0.7) ? 0x07ff : 0xffff);
  if (chance(0.1)) parts.type = pick([12, 15, 16, 255, 5, Math.floor(random() * 0x10000)]);
  else parts.type = chance(0.6) ? A : AAAA;
  if (chance(0.05)) parts.klass = pick([3, 255, 0x8001, 0]);

  const additionals: Buffer[] = [];
  const plainOpt = (): Opt => ({
    udpSize: pick([0, 100, 511, 512, 600, 1232, 4096, 65535, Math.floor(random() * 0x10000)]),
    flags: chance(0.3) ? 0x8000 : chance(0.1) ? Math.floor(random() * 0x10000) : 0,
    ...(chance(0.1) ? { extendedRcode: byte() } : {}),
  });
  if (chance(0.5)) additionals.push(optBytes(plainOpt()));
  if (chance(0.15)) {
    const nearMisses: (() => void)[] = [
      () => additionals.push(optBytes({ ...plainOpt(), options: [0, 10, 0, 8, byte(), byte(), byte(), byte(), byte(), byte(), byte(), byte()] })),
      () => additionals.push(optBytes({ ...plainOpt(), options: [0, pick([8, 12, 15]), 0, 0] })),
      () => additionals.push(optBytes({ ...plainOpt(), version: 1 + Math.floor(random() * 255) })),
      () => additionals.push(optBytes(plainOpt()), optBytes(plainOpt())),
      () => additionals.push(optBytes({ ...plainOpt(), owner: pick([[0xc0, 0x0c], [1, 0x61, 0], [0xc0, 0x11]]) })),
      () => additionals.push(Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1])),
      () => (parts.name = pick([[0xc0, 0x0c], [3, 0x77, 0x65, 0x62, 0xc0, 0x0c], [0x40, 0], [0x80, 0], [0xc0, 0x12]])),
      () => (parts.name = [3, 0x77, byte() | 0x80, 0x62, 0]),
      // café in UTF-8 (c3 a9), its capital (c3 89), and bytes that fold to the same if case were folded byte by byte.
      () => (parts.name = [5, ...Buffer.from(mixCase('caf', random)), pick([0xc3, 0xe3]), pick([0xa9, 0x89]), 0]),
      () => (parts.name = [7, ...Buffer.from('web.fro'), 0]),
      () => (parts.name = longName(59 + Math.floor(random() * 4))),
      () => (parts.counts = [pick([0, 1, 2]), pick([0, 1]), pick([0, 1]), pick([0, 1, 2, 3])]),
      () => (parts.flags = (parts.flags ?? 0) | pick([0x8000, 0x0800, 0x1000, 0x7800])),
    ];
    pick(nearMisses)();
  }
  parts.additionals = additionals;
  let message = query(parts);
  if (chance(0.05)) message = message.subarray(0, Math.floor(random() * message.length));
  if (chance(0.03)) message = Buffer.concat([message, Buffer.from([byte()])]);
  if (chance(0.03) && message.length > 0) {
    message = Buffer.from(message);
    message[Math.floor(random() * message.length)] = byte();
  }
  return message;
}

test('differential: on random queries the fast path gives the general path\'s replies and results', async (t) => {
  const records = table();
  const { fast, general } = pair(records, 0x5eed);
  // As a UDP listener asks, in place; seeded alike, it draws for the shuffle as the fast path does.
  const inPlace = observed(records, true, 0x5eed);
  const random = prng(20260611);
  const contexts: QueryContext[] = [
    UDP,
    TCP,
    { ...UDP, mayForward: false },
    { ...UDP, sandboxId: 'sb-db' },
    { ...UDP, sandboxId: 'sb-elsewhere' },
  ];
  const cases = 20_000;
  let taken = 0;
  const results = new Map<DnsQueryResult | undefined, number>();
  let failures = 0;
  for (let i = 0; i < cases && failures < 5; i++) {
    // Now and then the table changes under both servers, as joins and leaves change it.
    if (i % 1000 === 999) {
      const k = Math.floor(i / 1000);
      records.upsertEndpoint({
        networkId: 'net-front',
        networkName: 'front',
        endpointId: 'ep-web',
        sandboxId: 'sb-web',
        name: 'web',
        aliases: k % 2 === 0 ? ['www'] : ['www', 'pool'],
        ipv4: `10.0.0.${20 + k}`,
        ...(k % 3 === 0 ? {} : { ipv6: `fd00::${20 + k}` }),
      });
    }
    const message = randomQuery(random);
    const ctx = contexts[Math.floor(random() * contexts.length)]!;
    const byFast = await ask(fast, message, ctx);
    const byGeneral = await ask(general, message, ctx);
    const byInPlace = await askInPlace(inPlace, message, ctx);
    if (byFast.fast) taken++;
    results.set(byFast.result, (results.get(byFast.result) ?? 0) + 1);
    const sameAsGeneral = (asked: Asked) =>
      (asked.reply === undefined || byGeneral.reply === undefined ? asked.reply === byGeneral.reply : asked.reply.equals(byGeneral.reply)) &&
      asked.result === byGeneral.result;
    // Over UDP the listener's in-place path takes exactly what the fast path takes.
    const same = sameAsGeneral(byFast) && sameAsGeneral(byInPlace) && byInPlace.fast === (byFast.fast && ctx.transport === 'udp');
    if (!same) {
      failures++;
      t.fail(
        `case ${i} (${ctx.transport}, ${ctx.sandboxId}): query ${message.toString('hex')}\n` +
          `fast (${byFast.fast ? 'taken' : 'left'}): ${byFast.result} ${byFast.reply?.toString('hex')}\n` +
          `in place (${byInPlace.fast ? 'taken' : 'left'}): ${byInPlace.result} ${byInPlace.reply?.toString('hex')}\n` +
          `general: ${byGeneral.result} ${byGeneral.reply?.toString('hex')}`,
      );
    }
  }
  t.log(`${taken} of ${cases} taken by the fast path; results ${JSON.stringify(Object.fromEntries(results))}`);
  t.true(taken > cases / 4, 'the fast path took a good share');
  t.true(taken < cases * 0.75, 'and the general path a good share');
  for (const result of ['answered', 'nodata', 'nxdomain', 'servfail', 'malformed', 'dropped'] as const) t.true((results.get(result) ?? 0) > 50, result);
});
