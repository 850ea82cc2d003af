import test from 'ava';
import { InvalidArgument } from '../../src/errors.js';
import { RecordTable, addressFromReverseName } from '../../src/dns/records.js';
import type { EndpointEntry } from '../../src/dns/records.js';

function endpoint(overrides: Partial<EndpointEntry> & Pick<EndpointEntry, 'endpointId' | 'sandboxId' | 'name'>): EndpointEntry {
  return { networkId: 'net-front', networkName: 'front', aliases: [], ...overrides };
}

/** web (10.0.0.2, fd00::2, alias `www`) and client (10.0.0.3) on `front`; db (10.1.0.2) on `back` with web again (10.1.0.3). */
function table(): RecordTable {
  const records = new RecordTable();
  records.upsertEndpoint(endpoint({ endpointId: 'ep-web', sandboxId: 'sb-web', name: 'web', aliases: ['www'], ipv4: '10.0.0.2', ipv6: 'fd00:0:0::2' }));
  records.upsertEndpoint(endpoint({ endpointId: 'ep-client', sandboxId: 'sb-client', name: 'client', ipv4: '10.0.0.3' }));
  records.upsertEndpoint(
    endpoint({ endpointId: 'ep-db', sandboxId: 'sb-db', name: 'db', networkId: 'net-back', networkName: 'back', ipv4: '10.1.0.2' }),
  );
  records.upsertEndpoint(
    endpoint({ endpointId: 'ep-web-back', sandboxId: 'sb-web', name: 'web', networkId: 'net-back', networkName: 'back', ipv4: '10.1.0.3' }),
  );
  return records;
}

test('every name form resolves: name, alias, name.network, alias.network', (t) => {
  const records = table();
  for (const name of ['web', 'www', 'web.front', 'www.front']) {
    t.deepEqual(records.resolve('sb-client', name, 'A'), { exists: true, addresses: ['10.0.0.2'] }, name);
  }
  t.deepEqual(records.resolve('sb-client', 'web', 'AAAA'), { exists: true, addresses: ['fd00::2'] }, 'IPv6 in canonical form');
});

test('names match case-insensitively, with or without a trailing dot', (t) => {
  const records = table();
  for (const name of ['WEB', 'Web.', 'wWw.FrOnT', 'web.front.']) {
    t.deepEqual(records.resolve('sb-client', name, 'A').addresses, ['10.0.0.2'], name);
  }
  records.upsertEndpoint(endpoint({ endpointId: 'ep-caps', sandboxId: 'sb-caps', name: 'CapsName', aliases: ['Alias.'], ipv4: '10.0.0.9' }));
  t.deepEqual(records.resolve('sb-client', 'capsname', 'A').addresses, ['10.0.0.9']);
  t.deepEqual(records.resolve('sb-client', 'alias', 'A').addresses, ['10.0.0.9']);
});

test('a name only on a network the sandbox does not share does not exist', (t) => {
  const records = table();
  t.deepEqual(records.resolve('sb-client', 'db', 'A'), { exists: false, addresses: [] });
  t.deepEqual(records.resolve('sb-client', 'db.back', 'A'), { exists: false, addresses: [] });
  t.deepEqual(records.resolve('sb-client', 'web.back', 'A'), { exists: false, addresses: [] }, 'web is on back, the client is not');
  t.deepEqual(records.resolve('sb-web', 'db', 'A').addresses, ['10.1.0.2']);
  t.deepEqual(records.resolve('sb-db', 'web', 'A').addresses, ['10.1.0.3'], 'db sees web by its address on back');
  t.deepEqual(records.resolve('sb-unknown', 'web', 'A'), { exists: false, addresses: [] });
  t.deepEqual(records.resolve('sb-client', 'web.nosuchnet', 'A'), { exists: false, addresses: [] });
  t.deepEqual(records.resolve('sb-client', '', 'A'), { exists: false, addresses: [] });
});

test('name.network picks that network; a bare name answers from the first shared network in join order', (t) => {
  const records = table();
  records.upsertEndpoint(endpoint({ endpointId: 'ep-db-front', sandboxId: 'sb-db', name: 'db', ipv4: '10.0.0.4' }));
  t.deepEqual([...records.networksOf('sb-web')], ['net-front', 'net-back']);
  t.deepEqual(records.resolve('sb-web', 'db', 'A').addresses, ['10.0.0.4']);
  t.deepEqual(records.resolve('sb-web', 'db.back', 'A').addresses, ['10.1.0.2']);
  t.deepEqual(records.resolve('sb-web', 'db.front', 'A').addresses, ['10.0.0.4']);
});

test('a name without records of the type exists (NODATA), an unknown one does not (NXDOMAIN)', (t) => {
  const records = table();
  t.deepEqual(records.resolve('sb-web', 'client', 'AAAA'), { exists: true, addresses: [] });
  t.deepEqual(records.resolve('sb-web', 'nobody', 'AAAA'), { exists: false, addresses: [] });
});

test('an alias shared by several endpoints answers with all of them', (t) => {
  const records = new RecordTable();
  for (let i = 1; i <= 3; i++) {
    records.upsertEndpoint(endpoint({ endpointId: `ep-${i}`, sandboxId: `sb-${i}`, name: `worker${i}`, aliases: ['pool'], ipv4: `10.0.0.${i}` }));
  }
  t.deepEqual(records.resolve('sb-1', 'pool', 'A').addresses.sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  records.removeEndpoint('ep-2');
  t.deepEqual(records.resolve('sb-1', 'pool', 'A').addresses.sort(), ['10.0.0.1', '10.0.0.3']);
});

test('services: the name gives the VIP if set, else task addresses; tasks.<name> gives the task addresses', (t) => {
  const records = table();
  const tasks = [{ ipv4: '10.0.0.20', ipv6: 'fd00::20' }, { ipv4: '10.0.0.21' }];
  records.upsertService({ name: 'api', networkId: 'net-front', virtualIp: '10.0.0.100', tasks });
  records.upsertService({ name: 'Worker', networkId: 'net-front', tasks });
  t.deepEqual(records.resolve('sb-client', 'api', 'A').addresses, ['10.0.0.100']);
  t.deepEqual(records.resolve('sb-client', 'api', 'AAAA'), { exists: true, addresses: [] }, 'a VIP is IPv4 only');
  t.deepEqual(records.resolve('sb-client', 'tasks.api', 'A').addresses, ['10.0.0.20', '10.0.0.21']);
  t.deepEqual(records.resolve('sb-client', 'TASKS.API.front.', 'A').addresses, ['10.0.0.20', '10.0.0.21']);
  t.deepEqual(records.resolve('sb-client', 'tasks.api', 'AAAA').addresses, ['fd00::20']);
  t.deepEqual(records.resolve('sb-client', 'worker', 'A').addresses, ['10.0.0.20', '10.0.0.21']);
  t.deepEqual(records.resolve('sb-client', 'api.front', 'A').addresses, ['10.0.0.100']);
  t.false(records.resolve('sb-db', 'api', 'A').exists, 'the service is on front only');
  t.false(records.resolve('sb-client', 'tasks.nothing', 'A').exists);

  records.removeService('API', 'net-front');
  t.false(records.resolve('sb-client', 'api', 'A').exists);
  t.false(records.resolve('sb-client', 'tasks.api', 'A').exists);
  t.true(records.resolve('sb-client', 'worker', 'A').exists);
});

test('PTR: an endpoint address on a shared network gives name.network, v4 and v6', (t) => {
  const records = table();
  t.deepEqual(records.reverse('sb-client', '2.0.0.10.in-addr.arpa'), ['web.front']);
  t.deepEqual(records.reverse('sb-client', '2.0.0.10.IN-ADDR.ARPA.'), ['web.front']);
  const v6 = `${'2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f'}.ip6.arpa.`;
  t.deepEqual(records.reverse('sb-client', v6), ['web.front']);
  t.deepEqual(records.reverse('sb-db', '3.0.1.10.in-addr.arpa'), ['web.back']);
  t.deepEqual(records.reverse('sb-client', '2.0.1.10.in-addr.arpa'), [], 'db is on a network the client does not share');
  t.deepEqual(records.reverse('sb-client', '9.0.0.10.in-addr.arpa'), []);
  t.deepEqual(records.reverse('sb-client', '0.10.in-addr.arpa'), [], 'a partial reverse name is no address');
  t.deepEqual(records.reverse('sb-client', 'web.front'), []);
});

test('reverse names parse strictly', (t) => {
  t.is(addressFromReverseName('4.3.2.1.in-addr.arpa'), '1.2.3.4');
  t.is(addressFromReverseName('256.3.2.1.in-addr.arpa'), undefined);
  t.is(addressFromReverseName('04.3.2.1.in-addr.arpa'), undefined);
  t.is(addressFromReverseName(`${'1.'.repeat(31)}g.ip6.arpa`), undefined);
  t.is(addressFromReverseName(`${'0.'.repeat(31)}1.ip6.arpa`), '1000::');
});

test('removal and replacement take effect at once', (t) => {
  const records = table();
  records.removeEndpoint('ep-web');
  t.false(records.resolve('sb-client', 'web', 'A').exists);
  t.false(records.resolve('sb-client', 'www', 'A').exists);
  t.deepEqual(records.reverse('sb-client', '2.0.0.10.in-addr.arpa'), []);
  t.deepEqual([...records.networksOf('sb-web')], ['net-back']);
  t.false(records.resolve('sb-web', 'client', 'A').exists, 'web left front, so it no longer sees front names');

  records.upsertEndpoint(endpoint({ endpointId: 'ep-client', sandboxId: 'sb-client', name: 'client', aliases: ['renamed'], ipv4: '10.0.0.30' }));
  t.deepEqual(records.resolve('sb-client', 'renamed', 'A').addresses, ['10.0.0.30']);
  t.deepEqual(records.reverse('sb-client', '3.0.0.10.in-addr.arpa'), [], 'the old address is gone');

  records.removeEndpoint('ep-client');
  records.removeEndpoint('ep-client');
  t.deepEqual([...records.networksOf('sb-client')], []);
});

test('bad addresses are refused with InvalidArgument', (t) => {
  const records = new RecordTable();
  t.throws(() => records.upsertEndpoint(endpoint({ endpointId: 'e', sandboxId: 's', name: 'n', ipv4: '10.0.0.256' })), {
    instanceOf: InvalidArgument,
  });
  t.throws(() => records.upsertService({ name: 'svc', networkId: 'n', tasks: [{ ipv6: 'fd00::g' }] }), { instanceOf: InvalidArgument });
  t.deepEqual([...records.networksOf('s')], [], 'nothing half-added');
});

test('PTR: a virtual IP on a shared network gives the service name; it goes with the service or a new VIP', (t) => {
  const records = table();
  records.upsertService({ name: 'Api', networkId: 'net-front', virtualIp: '10.0.0.50', tasks: [{ ipv4: '10.0.0.2' }] });
  t.deepEqual(records.reverse('sb-client', '50.0.0.10.in-addr.arpa'), ['Api']);
  t.deepEqual(records.reverse('sb-db', '50.0.0.10.in-addr.arpa'), [], 'db is not on front');
  t.deepEqual(records.reverse('sb-client', '2.0.0.10.in-addr.arpa'), ['web.front'], 'a task address stays the endpoint name');
  records.upsertService({ name: 'api', networkId: 'net-front', virtualIp: '10.0.0.51', tasks: [] });
  t.deepEqual(records.reverse('sb-client', '50.0.0.10.in-addr.arpa'), []);
  t.deepEqual(records.reverse('sb-client', '51.0.0.10.in-addr.arpa'), ['api']);
  records.removeService('API', 'net-front');
  t.deepEqual(records.reverse('sb-client', '51.0.0.10.in-addr.arpa'), []);
  t.deepEqual(records.resolve('sb-client', 'api', 'A'), { exists: false, addresses: [] });
});

test('the generation changes with every change to the table, and only then', (t) => {
  const records = table();
  const changes: [string, () => void][] = [
    ['endpoint added', () => records.upsertEndpoint(endpoint({ endpointId: 'ep-new', sandboxId: 'sb-new', name: 'new', ipv4: '10.0.0.7' }))],
    ['endpoint replaced', () => records.upsertEndpoint(endpoint({ endpointId: 'ep-new', sandboxId: 'sb-new', name: 'new', ipv4: '10.0.0.8' }))],
    ['endpoint removed', () => records.removeEndpoint('ep-new')],
    ['service added', () => records.upsertService({ name: 'api', networkId: 'net-front', virtualIp: '10.0.9.9', tasks: [] })],
    ['service replaced', () => records.upsertService({ name: 'api', networkId: 'net-front', tasks: [{ ipv4: '10.0.0.2' }] })],
    ['service removed', () => records.removeService('api', 'net-front')],
  ];
  for (const [label, change] of changes) {
    const before = records.generation;
    change();
    t.not(records.generation, before, label);
  }
  const settled = records.generation;
  records.resolve('sb-client', 'web', 'A');
  records.reverse('sb-client', '2.0.0.10.in-addr.arpa');
  records.networksOf('sb-client');
  records.removeEndpoint('ep-unknown');
  records.removeService('api', 'net-unknown');
  t.throws(() => records.upsertEndpoint(endpoint({ endpointId: 'ep-bad', sandboxId: 'sb-bad', name: 'bad', ipv4: '10.0.0.300' })), { instanceOf: InvalidArgument });
  t.is(records.generation, settled, 'lookups, removals of what is not there and refused changes leave it');
});
