import test from 'ava';
import { decode } from 'dns-packet';
import type { StringAnswer } from 'dns-packet';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { InvalidArgument } from '../../src/errors.js';
import { Forwarder, parseResolvConf, parseUpstream } from '../../src/dns/forwarder.js';
import { frameTcp, readTcpMessages } from '../../src/dns/tcp.js';
import { FakeTransport, makeQuery, silent, upstreamReply } from './helpers.js';
import { levelLogger } from '../../src/log.js';

const LOOPBACK = '127.0.0.1';

interface Send {
  data: Buffer;
  /** Sent from another socket than the one the query reached: a spoofing attempt. */
  spoofed?: boolean;
}

type Handler = (query: Buffer, via: 'udp' | 'tcp') => Send[];

interface Responder {
  port: number;
  queries: { via: 'udp' | 'tcp'; query: Buffer }[];
  close(): Promise<void>;
}

function bindUdp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(port, LOOPBACK, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

function listenTcp(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A tiny DNS server on 127.0.0.1, UDP and TCP on the same ephemeral port, answering through `handler`. */
async function responder(handler: Handler): Promise<Responder> {
  const spoofer = await bindUdp(0);
  for (let tries = 0; ; tries++) {
    const udp = await bindUdp(0);
    const port = udp.address().port;
    const queries: Responder['queries'] = [];
    const tcp = createServer((connection) => {
      connection.on('error', () => {});
      void (async () => {
        for await (const query of readTcpMessages(connection)) {
          queries.push({ via: 'tcp', query });
          for (const send of handler(query, 'tcp')) connection.write(frameTcp(send.data));
        }
      })().catch(() => {});
    });
    try {
      await listenTcp(tcp, port);
    } catch (error) {
      udp.close();
      if (tries < 5) continue;
      throw error;
    }
    udp.on('message', (query, from) => {
      queries.push({ via: 'udp', query });
      for (const send of handler(query, 'udp')) (send.spoofed ? spoofer : udp).send(send.data, from.port, from.address);
    });
    return {
      port,
      queries,
      close: async () => {
        udp.close();
        spoofer.close();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
      },
    };
  }
}

function aRecords(addresses: string[]) {
  return addresses.map((data) => ({ type: 'A' as const, name: 'example.com', ttl: 60, data }));
}

function addressesOf(result: Buffer | string): string[] {
  if (typeof result === 'string') throw new Error(`expected a reply, got ${result}`);
  return (decode(result).answers ?? []).map((answer) => (answer as StringAnswer).data);
}

test('UDP: the reply comes back with the client ID; the upstream saw another one', async (t) => {
  const server = await responder((query) => [{ data: upstreamReply(query, 0, aRecords(['203.0.113.1'])) }]);
  t.teardown(() => server.close());
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${server.port}`] });
  t.teardown(() => forwarder.close());
  const ids = new Set<number>();
  for (let i = 0; i < 4; i++) {
    const result = await forwarder.forward(makeQuery('example.com', 'A', { id: 0x5555 }), { tcp: false });
    t.deepEqual(addressesOf(result), ['203.0.113.1']);
    t.is((result as Buffer).readUInt16BE(0), 0x5555);
    ids.add(server.queries.at(-1)!.query.readUInt16BE(0));
  }
  t.true(server.queries.every(({ via }) => via === 'udp'));
  t.true(ids.size > 1, 'a new random ID per attempt');
});

test('UDP: replies with a wrong ID or from another port are ignored, the genuine one taken', async (t) => {
  const server = await responder((query) => {
    const forged = (address: string) => upstreamReply(query, 0, aRecords([address]));
    const wrongId = forged('198.51.100.1');
    wrongId.writeUInt16BE(wrongId.readUInt16BE(0) ^ 0x8000, 0);
    return [{ data: wrongId }, { data: forged('198.51.100.2'), spoofed: true }, { data: forged('203.0.113.9') }];
  });
  t.teardown(() => server.close());
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${server.port}`] });
  t.teardown(() => forwarder.close());
  t.deepEqual(addressesOf(await forwarder.forward(makeQuery('example.com', 'A'), { tcp: false })), ['203.0.113.9']);
});

test('UDP: a silent upstream times out and the next answers; a closed port fails fast', async (t) => {
  const silent = await bindUdp(0);
  t.teardown(() => silent.close());
  const closedPort = await bindUdp(0);
  const closed = closedPort.address().port;
  closedPort.close();
  const server = await responder((query) => [{ data: upstreamReply(query, 0, aRecords(['203.0.113.2'])) }]);
  t.teardown(() => server.close());
  const logs: string[] = [];
  const forwarder = new Forwarder({
    upstreams: [`${LOOPBACK}:${silent.address().port}`, `${LOOPBACK}:${closed}`, `${LOOPBACK}:${server.port}`],
    timeoutMs: 300,
    logger: levelLogger((_level, message) => logs.push(message)),
  });
  t.teardown(() => forwarder.close());
  const started = Date.now();
  t.deepEqual(addressesOf(await forwarder.forward(makeQuery('example.com', 'A'), { tcp: false })), ['203.0.113.2']);
  const elapsed = Date.now() - started;
  t.true(elapsed >= 290, `waited out the silent one (${elapsed} ms)`);
  t.is(logs.length, 2, logs.join('\n'));
  t.regex(logs[0]!, /did not answer within 300 ms/);
  // The closed port fails on the ICMP error, not on the timeout (no wall-clock bound: timing belongs in bench/).
  t.regex(logs[1]!, /ECONNREFUSED/);
});

test('SERVFAIL and REFUSED move on; every upstream failing gives servfail', async (t) => {
  const failing = await responder((query) => [{ data: upstreamReply(query, 2) }]);
  const refusing = await responder((query) => [{ data: upstreamReply(query, 5) }]);
  t.teardown(() => Promise.all([failing.close(), refusing.close()]));
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${failing.port}`, `${LOOPBACK}:${refusing.port}`] });
  t.teardown(() => forwarder.close());
  t.is(await forwarder.forward(makeQuery('example.com', 'A'), { tcp: false }), 'servfail');
  t.is(failing.queries.length, 1);
  t.is(refusing.queries.length, 1);
});

test('TCP: a query that came over TCP is forwarded over TCP', async (t) => {
  const server = await responder((query, via) => [{ data: upstreamReply(query, 0, aRecords([via === 'tcp' ? '203.0.113.6' : '198.51.100.6'])) }]);
  t.teardown(() => server.close());
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${server.port}`] });
  t.teardown(() => forwarder.close());
  const result = await forwarder.forward(makeQuery('example.com', 'A', { id: 31 }), { tcp: true });
  t.deepEqual(addressesOf(result), ['203.0.113.6']);
  t.is((result as Buffer).readUInt16BE(0), 31);
  t.deepEqual(server.queries.map(({ via }) => via), ['tcp']);
});

test('a truncated UDP reply is asked again over TCP from the same upstream', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `203.0.113.${i + 1}`);
  const server = await responder((query, via) => [
    { data: via === 'udp' ? upstreamReply(query, 0, [], 0x0200) : upstreamReply(query, 0, aRecords(many)) },
  ]);
  t.teardown(() => server.close());
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${server.port}`] });
  t.teardown(() => forwarder.close());
  const result = await forwarder.forward(makeQuery('example.com', 'A'), { tcp: false });
  t.deepEqual(addressesOf(result), many);
  t.deepEqual(server.queries.map(({ via }) => via), ['udp', 'tcp']);
});

test('close ends forwards in flight with servfail, and later ones contact nobody', async (t) => {
  const server = await responder(() => []);
  t.teardown(() => server.close());
  const forwarder = new Forwarder({ upstreams: [`${LOOPBACK}:${server.port}`], timeoutMs: 60_000 });
  const pending = forwarder.forward(makeQuery('example.com', 'A'), { tcp: false });
  const pendingTcp = forwarder.forward(makeQuery('example.com', 'A'), { tcp: true });
  while (server.queries.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  await forwarder.close();
  t.is(await pending, 'servfail');
  t.is(await pendingTcp, 'servfail');
  t.is(await forwarder.forward(makeQuery('example.com', 'A'), { tcp: false }), 'servfail');
  t.is(server.queries.length, 2);
});

test('at most three upstreams are used; a fourth is ignored with a log line', (t) => {
  const logs: string[] = [];
  const forwarder = new Forwarder({ upstreams: ['192.0.2.1', '192.0.2.2', '[2001:db8::0:1]:5353', '192.0.2.4'], logger: levelLogger((_level, m) => logs.push(m)) });
  t.deepEqual(forwarder.upstreams, [
    { address: '192.0.2.1', port: 53 },
    { address: '192.0.2.2', port: 53 },
    { address: '2001:db8::1', port: 5353 },
  ]);
  t.is(logs.length, 1);
  t.regex(logs[0]!, /first 3/);
});

test('parseUpstream takes IP, IP:port and [IPv6]:port and refuses the rest', (t) => {
  t.deepEqual(parseUpstream('10.0.0.1'), { address: '10.0.0.1', port: 53 });
  t.deepEqual(parseUpstream('10.0.0.1:5353'), { address: '10.0.0.1', port: 5353 });
  t.deepEqual(parseUpstream('2001:db8::53'), { address: '2001:db8::53', port: 53 });
  t.deepEqual(parseUpstream('[2001:db8::53]:54'), { address: '2001:db8::53', port: 54 });
  for (const bad of ['dns.example', '10.0.0.1:0', '10.0.0.1:70000', '[10.0.0.1]:x', '', '10.0.0.256', 'fe80::1%eth0']) {
    t.throws(() => parseUpstream(bad), { instanceOf: InvalidArgument }, bad);
  }
});

test('parseResolvConf keeps nameservers in order, loopback stubs included, and skips zone-scoped ones and junk', (t) => {
  const text = [
    '# generated',
    'search corp.example',
    'nameserver 127.0.0.53',
    'nameserver 10.0.0.2 # office',
    'nameserver   2001:db8::2',
    '  nameserver 127.0.1.1',
    'nameserver ::1',
    'nameserver 0:0::1',
    'nameserver fe80::1%eth0',
    'nameserver',
    ';nameserver 10.9.9.9',
    'nameserver 192.0.2.53',
    'options ndots:2',
  ].join('\n');
  t.deepEqual(parseResolvConf(text), ['127.0.0.53', '10.0.0.2', '2001:db8::2', '127.0.1.1', '::1', '0:0::1', '192.0.2.53']);
  t.deepEqual(parseResolvConf('nameserver 127.0.0.53\noptions edns0 trust-ad\n'), ['127.0.0.53']);
});

test('many forwards in flight add no listener per attempt to a shared signal', async (t) => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const transport = new FakeTransport();
  transport.set('192.0.2.1:53', silent);
  const forwarder = new Forwarder({ upstreams: ['192.0.2.1'], timeoutMs: 60_000, maxConcurrent: 1000, transport });
  const pending = Array.from({ length: 200 }, (_, i) => forwarder.forward(makeQuery(`n${i}.example`, 'A'), { tcp: false }));
  while (transport.exchanges.length < pending.length) await new Promise((resolve) => setImmediate(resolve));
  await forwarder.close();
  t.deepEqual(new Set(await Promise.all(pending)), new Set(['servfail']), 'close still ends every attempt');
  t.true(transport.exchanges.every((exchange) => exchange.signal.aborted));
  // Node emits process warnings on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(warnings, []);
});
