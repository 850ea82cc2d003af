import test from 'ava';
import { levelLogger } from '../../src/log.js';
import type { EndpointRecord, NetworkRecord } from '../../src/records.js';
import { keys, parseLocalNameClaim, recordId } from '../../src/repository/keys.js';
import { Repository, casLoop, findByIdOrName, put } from '../../src/repository/repository.js';
import { MalformedRecord, decodeRecord, endpointRecord, serviceRecord } from '../../src/repository/schema.js';
import { MemoryStore } from '../../src/store/memory.js';
import { networkRecord } from '../helpers/records.js';

const network: NetworkRecord = networkRecord();

function setup() {
  const local = new MemoryStore();
  const warnings: string[] = [];
  const records = new Repository({ local, logger: levelLogger((_level, message) => warnings.push(message)) });
  return { local, records, warnings };
}

test('a record read back is the record written, fields a newer writer added included', (t) => {
  const endpoint: EndpointRecord = { id: 'e1', name: 'a', networkId: network.id, macAddress: '02:42:0a:00:00:02', aliases: [] };
  const written = put.endpoint(network, endpoint);
  t.is(written.key, `endpoints/${network.id}/e1`);
  t.deepEqual(decodeRecord({ ...written, modRevision: 1 }, endpointRecord), endpoint);
  const newer = JSON.stringify({ ...endpoint, futureField: 7 });
  t.deepEqual(decodeRecord({ key: written.key, value: newer, modRevision: 1 }, endpointRecord), {
    ...endpoint,
    futureField: 7,
  } as EndpointRecord);
});

test('a record that is not JSON or does not fit its schema is a MalformedRecord naming the key', (t) => {
  const kv = (value: string) => ({ key: 'endpoints/n/e', value, modRevision: 1 });
  const notJson = t.throws(() => decodeRecord(kv('{'), endpointRecord), { instanceOf: MalformedRecord });
  t.is(notJson?.code, 'StoreCorrupt');
  t.regex(notJson?.message ?? '', /^malformed record endpoints\/n\/e: not JSON/);
  const wrongType = t.throws(() => decodeRecord(kv('{"id":"e","name":1}'), endpointRecord), { instanceOf: MalformedRecord });
  t.regex(wrongType?.message ?? '', /name/);
  t.throws(() => decodeRecord(kv(JSON.stringify({ id: 'e', name: 'a', networkId: 'n', macAddress: 'm', aliases: [], pending: 'later' })), endpointRecord), {
    instanceOf: MalformedRecord,
  });
});

test('addresses in records must be addresses: what other hosts wrote reaches DNS answers and nftables scripts', (t) => {
  const endpoint = (fields: Record<string, string>) => ({
    key: 'endpoints/n/e',
    value: JSON.stringify({ id: 'e', name: 'a', networkId: 'n', macAddress: '02:42:0a:00:00:02', aliases: [], ...fields }),
    modRevision: 1,
  });
  for (const good of [{ ipv4Address: '10.0.0.2/24' }, { ipv4Address: '10.0.0.2' }, { ipv6Address: 'fd00::2/64' }, { ipv6Address: '::ffff:10.0.0.2' }]) {
    t.notThrows(() => decodeRecord(endpoint(good), endpointRecord), JSON.stringify(good));
  }
  for (const bad of [
    { ipv4Address: '10.0.0.50\nadd table ip x' },
    { ipv4Address: '10.0.0.2 }' },
    { ipv4Address: '300.0.0.2/24' },
    { ipv4Address: '10.0.0.2/33' },
    { ipv6Address: 'fd00::2; flush ruleset' },
  ]) {
    const error = t.throws(() => decodeRecord(endpoint(bad), endpointRecord), { instanceOf: MalformedRecord }, JSON.stringify(bad));
    t.regex(error?.message ?? '', /ipv[46]Address: not an IPv[46] address/);
  }
  // The routing mesh writes ingress sandboxes' MACs and tasks' interface names into nft scripts.
  for (const [bad, field] of [
    [{ macAddress: '02:42:0a:00:00:02 : 0x4e000002 } ; flush ruleset' }, 'macAddress: not a MAC address'],
    [{ macAddress: 'm' }, 'macAddress: not a MAC address'],
    [{ ifName: 'eth1" ; flush ruleset' }, 'ifName: not an interface name'],
    [{ ifName: 'a-name-too-long-for-linux' }, 'ifName: not an interface name'],
  ] as const) {
    t.throws(() => decodeRecord(endpoint(bad), endpointRecord), { instanceOf: MalformedRecord, message: new RegExp(field) }, JSON.stringify(bad));
  }
  t.notThrows(() => decodeRecord(endpoint({ ifName: 'eth0', macAddress: '0A:1b:2c:3d:4e:5f' }), endpointRecord));
  const service = (virtualIp: string) => ({
    key: 'services/s',
    value: JSON.stringify({ id: 's', name: 'web', endpointMode: 'vip', labels: {}, created: 'c', scope: 'global', networks: [{ networkId: 'n', virtualIp }] }),
    modRevision: 1,
  });
  t.notThrows(() => decodeRecord(service('10.0.0.3/24'), serviceRecord));
  t.throws(() => decodeRecord(service('10.0.0.3 : goto nat_output'), serviceRecord), { message: /virtualIp: not an IPv4 address/ });
});

test("listings skip a malformed record and say so; changes that must see every record fail on it", async (t) => {
  const { local, records, warnings } = setup();
  await local.txn({ put: [put.network(network), { key: keys.network('bad'), value: '{"id":"bad"}' }] });
  t.deepEqual(await records.networks('skip'), [network]);
  t.is(warnings.length, 1);
  t.regex(warnings[0] ?? '', /malformed record networks\/bad/);
  await t.throwsAsync(records.networks('throw'), { instanceOf: MalformedRecord });
});

test('lookups go by full id, exact name, then a unique id prefix', (t) => {
  const items = [
    { id: 'abc1', name: 'one' },
    { id: 'abc2', name: 'abc1x' },
    { id: 'def', name: 'two' },
  ];
  const notFound = () => new Error('none');
  t.is(findByIdOrName('network', 'abc1', items, notFound).name, 'one');
  t.is(findByIdOrName('network', 'abc1x', items, notFound).id, 'abc2');
  t.is(findByIdOrName('network', 'de', items, notFound).name, 'two');
  t.throws(() => findByIdOrName('network', 'abc', items, notFound), { message: 'network abc is ambiguous (2 matches found based on ID prefix)' });
  t.throws(() => findByIdOrName('network', '', items, notFound), { message: 'none' });
  t.throws(() => findByIdOrName('network', 'x', items, notFound), { message: 'none' });
});

test('a lookup by a name two networks share picks neither', async (t) => {
  const { local, records } = setup();
  await local.txn({ put: [put.network(network), put.network({ ...network, id: 'b'.repeat(64) })] });
  await t.throwsAsync(records.findNetwork('web', 'skip'), { message: 'network web is ambiguous (2 matches found based on name)' });
});

test('casLoop retries until its compare holds and gives up with Conflict', async (t) => {
  const store = new MemoryStore();
  let attempts = 0;
  await casLoop(store, async () => {
    attempts++;
    return { compare: [{ key: 'k', modRevision: attempts === 3 ? 0 : 99 }], put: [{ key: 'k', value: 'v' }] };
  });
  t.is(attempts, 3);
  await t.throwsAsync(casLoop(store, async () => ({ compare: [{ key: 'k', modRevision: 0 }] })), {
    code: 'Conflict',
    message: 'too many concurrent changes, try again',
  });
});

test('record ids and local-name claims are read out of their keys', (t) => {
  t.is(recordId(keys.endpoint('n', 'e')), 'e');
  t.is(recordId(keys.sandbox('s')), 's');
  t.deepEqual(parseLocalNameClaim(keys.localName('web', 'host1')), { name: 'web', hostId: 'host1' });
  t.is(parseLocalNameClaim('names/local/web'), undefined);
  t.is(parseLocalNameClaim(keys.networkName('web')), undefined);
});

test('a record changed or deleted in the store is read anew, never from an older read', async (t) => {
  const { local, records } = setup();
  const endpoint: EndpointRecord = { id: 'e'.repeat(64), name: 'a', networkId: network.id, macAddress: '02:42:0a:00:00:02', aliases: [] };
  await local.txn({ put: [put.network(network), put.endpoint(network, endpoint), { key: keys.endpointName(network.id, 'a'), value: endpoint.id }] });
  t.deepEqual((await records.networkEndpoints(network, 'throw'))[0]?.aliases, []);
  await local.txn({ put: [put.endpoint(network, { ...endpoint, aliases: ['db'] })] });
  t.deepEqual((await records.networkEndpoints(network, 'throw'))[0]?.aliases, ['db']);
  t.deepEqual((await records.findEndpoint(network, 'a', 'throw')).aliases, ['db'], 'by the name key');
  t.deepEqual((await records.findEndpoint(network, endpoint.id, 'throw')).aliases, ['db'], 'by the full id');
  await local.txn({ delete: [keys.endpoint(network.id, endpoint.id)] });
  t.deepEqual(await records.networkEndpoints(network, 'throw'), []);
  await t.throwsAsync(records.findEndpoint(network, 'a', 'throw'), { message: /a/ });
});
