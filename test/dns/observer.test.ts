/** The DNS server's `onQuery` observer: one observation per query, with how it ended. */
import test from 'ava';
import { decode } from 'dns-packet';
import { Forwarder } from '../../src/dns/forwarder.js';
import { RecordTable } from '../../src/dns/records.js';
import { DnsServer } from '../../src/dns/server.js';
import type { DnsQueryObservation, QueryContext } from '../../src/dns/server.js';
import { FakeTransport, answering, decodeReply, makeQuery } from './helpers.js';

const UDP: QueryContext = { sandboxId: 'sb-client', transport: 'udp', mayForward: true };

function observed(): { server: DnsServer; seen: DnsQueryObservation[]; transport: FakeTransport } {
  const table = new RecordTable();
  const front = { networkId: 'net-front', networkName: 'front', aliases: [] };
  table.upsertEndpoint({ ...front, endpointId: 'ep-client', sandboxId: 'sb-client', name: 'client', ipv4: '10.0.0.3' });
  table.upsertEndpoint({ ...front, endpointId: 'ep-web', sandboxId: 'sb-web', name: 'web', ipv4: '10.0.0.2' });
  const transport = new FakeTransport();
  // NXDOMAIN for missing.example, an address for anything else.
  transport.set('192.0.2.1:53', (exchange) =>
    answering(decode(exchange.query).questions?.[0]?.name === 'missing.example' ? 3 : 0, ['192.0.2.80'])(exchange),
  );
  const seen: DnsQueryObservation[] = [];
  const server = new DnsServer({
    table,
    forwarder: new Forwarder({ upstreams: ['192.0.2.1'], timeoutMs: 1000, transport }),
    onQuery: (query) => seen.push(query),
  });
  return { server, seen, transport };
}

test('each query is observed once with its result, its transport and how long it took', async (t) => {
  const { server, seen } = observed();
  t.is(decodeReply(await server.handle(makeQuery('web', 'A'), UDP)).rcode, 'NOERROR');
  await server.handle(makeQuery('web', 'MX'), { ...UDP, transport: 'tcp' });
  t.is(decodeReply(await server.handle(makeQuery('example.org', 'A'), UDP)).rcode, 'NOERROR');
  t.is(decodeReply(await server.handle(makeQuery('missing.example', 'A'), UDP)).rcode, 'NXDOMAIN');
  t.is(decodeReply(await server.handle(makeQuery('example.org', 'A'), { ...UDP, mayForward: false })).rcode, 'SERVFAIL');
  const noQuestion = makeQuery('web', 'A');
  noQuestion.writeUInt16BE(0, 4);
  t.is(decodeReply(await server.handle(noQuestion, UDP)).rcode, 'FORMERR');
  t.is(await server.handle(Buffer.alloc(5), UDP), undefined);

  t.deepEqual(
    seen.map(({ result, transport }) => `${result}/${transport}`),
    ['answered/udp', 'nodata/tcp', 'forwarded/udp', 'nxdomain/udp', 'servfail/udp', 'malformed/udp', 'dropped/udp'],
  );
  t.true(seen.every((query) => query.seconds >= 0 && query.seconds < 10));
});

test('a server without an observer answers as before', async (t) => {
  const server = new DnsServer({ table: new RecordTable() });
  t.is(decodeReply(await server.handle(makeQuery('web', 'A'), UDP)).rcode, 'SERVFAIL');
});
