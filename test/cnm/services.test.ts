/**
 * Services in the controller over in-memory stores: VIPs from the network's
 * IPAM, published ports and their claims, tasks, removal, and bad input
 * refused with nothing stored.
 */
import test from 'ava';
import { Controller, type ControllerOptions } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { keys } from '../../src/repository/keys.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';
import { silentLogger } from '../../src/log.js';

async function setup(options: Pick<ControllerOptions, 'portInUse'> = {}) {
  const store = new MemoryStore();
  const cluster = new MemoryStore();
  const host = () =>
    Controller.open({
      store: new MemoryStore(),
      globalStore: cluster,
      drivers: [new RecordingDriver('bridge', 'local'), new RecordingDriver('overlay', 'global'), new NullDriver()],
      namespaces: new MemoryNamespaces(),
      logger: silentLogger,
    });
  const controller = await Controller.open({
    store,
    globalStore: cluster,
    drivers: [new RecordingDriver('bridge', 'local'), new RecordingDriver('overlay', 'global'), new NullDriver()],
    namespaces: new MemoryNamespaces(),
    logger: silentLogger,
    ...options,
  });
  return { store, cluster, controller, host };
}

async function snapshot(...stores: MemoryStore[]) {
  const all = [];
  for (const store of stores) all.push((await store.list('')).map(({ key, value }) => ({ key, value })));
  return all;
}

test('a vip service takes the lowest free address of each network as its VIP; endpoints never get it', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.5.0.0/24' }] } });
  await controller.createSandbox({ name: 'a' });
  await controller.connect('n', 'a');
  const { service } = await controller.createService({ name: 'web', networks: ['n'], labels: { tier: 'front' } });
  t.regex(service.id, /^[0-9a-f]{64}$/);
  t.is(service.endpointMode, 'vip');
  t.is(service.scope, 'local');
  t.deepEqual(service.labels, { tier: 'front' });
  t.is(service.networks[0]?.virtualIp, '10.5.0.3/24');
  t.is((await store.get(keys.address(service.networks[0]?.networkId ?? '', '10.5.0.3')))?.value, service.id);
  await controller.createSandbox({ name: 'b' });
  t.is((await controller.connect('n', 'b')).ipv4Address, '10.5.0.4/24');
  await t.throwsAsync(controller.connect('n', 'a', {}), { code: 'Forbidden', message: 'endpoint with name a already exists in network n' });
  await controller.createSandbox({ name: 'c' });
  await t.throwsAsync(controller.connect('n', 'c', { ipv4Address: '10.5.0.3' }), { code: 'Conflict', message: /10\.5\.0\.3/ });
});

test('tasks: connect --service marks the endpoint; inspect lists it; disconnect ends it; rm keeps the endpoint and frees the VIP', async (t) => {
  const { controller } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.6.0.0/24' }] } });
  const created = await controller.createService({ name: 'web', networks: ['n'] });
  for (const name of ['a', 'b']) await controller.createSandbox({ name });
  const a = await controller.connect('n', 'a', { service: 'web' });
  t.is(a.service, created.service.id);
  await controller.connect('n', 'b', { service: created.service.id.slice(0, 10) });
  let view = await controller.inspectService('web');
  t.deepEqual(view.tasks.map((task) => task.sandboxName).sort(), ['a', 'b']);
  t.deepEqual(view.tasks.map((task) => task.endpoint.ipv4Address).sort(), ['10.6.0.3/24', '10.6.0.4/24']);

  await controller.disconnect('n', 'b');
  view = await controller.inspectService(created.service.id);
  t.deepEqual(view.tasks.map((task) => task.sandboxName), ['a']);

  await controller.removeService('web');
  t.deepEqual(await controller.listServices(), []);
  const stillThere = (await controller.inspectSandbox('a')).endpoints[0];
  t.is(stillThere?.ipv4Address, '10.6.0.3/24');
  t.is(stillThere?.service, undefined);
  // The VIP is free again, for an endpoint or the next service.
  await controller.createSandbox({ name: 'c' });
  t.is((await controller.connect('n', 'c')).ipv4Address, '10.6.0.2/24');
  t.is((await controller.createService({ name: 'web', networks: ['n'] })).service.networks[0]?.virtualIp, '10.6.0.4/24');
});

test('dnsrr services get no VIP', async (t) => {
  const { controller } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.7.0.0/24' }] } });
  const { service } = await controller.createService({ name: 'db', networks: ['n'], endpointMode: 'dnsrr' });
  t.is(service.endpointMode, 'dnsrr');
  t.deepEqual(service.networks.map((on) => on.virtualIp), [undefined]);
});

test('a service on overlay networks is global: made on one host, listed, used and removed on another', async (t) => {
  const { controller: one, host } = await setup();
  const two = await host();
  await one.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.8.0.0/24' }] } });
  const { service } = await one.createService({ name: 'web', networks: ['ov'] });
  t.is(service.scope, 'global');
  t.deepEqual((await two.listServices()).map((view) => view.service.name), ['web']);
  await two.createSandbox({ name: 'far' });
  await two.connect('ov', 'far', { service: 'web' });
  t.deepEqual((await one.inspectService('web')).tasks.map((task) => task.endpoint.name), ['far']);
  await t.throwsAsync(two.createService({ name: 'web', networks: ['ov'] }), { code: 'Conflict', message: 'service with name web already exists' });
  await two.removeService('web');
  t.deepEqual(await one.listServices(), []);
  t.is((await two.inspectSandbox('far')).endpoints[0]?.service, undefined);
});

test('list filters: id and name prefixes, labels', async (t) => {
  const { controller } = await setup();
  const web = (await controller.createService({ name: 'web', labels: { env: 'prod' } })).service;
  await controller.createService({ name: 'webcache' });
  await controller.createService({ name: 'db', labels: { env: 'dev' } });
  const names = async (filters: Record<string, string[]>) => (await controller.listServices(filters)).map((view) => view.service.name).sort();
  t.deepEqual(await names({ name: ['web'] }), ['web', 'webcache']);
  t.deepEqual(await names({ label: ['env'] }), ['db', 'web']);
  t.deepEqual(await names({ label: ['env=prod'] }), ['web']);
  t.deepEqual(await names({ id: [web.id.slice(0, 8)] }), ['web']);
  await t.throwsAsync(controller.listServices({ driver: ['x'] }), { code: 'InvalidArgument', message: "invalid filter 'driver'" });
});

test('a network is not removed or pruned while a service is on it', async (t) => {
  const { controller } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.9.0.0/24' }] } });
  await controller.createService({ name: 'web', networks: ['n'] });
  await t.throwsAsync(controller.removeNetwork('n'), { code: 'Forbidden', message: /in use by service web/ });
  t.deepEqual(await controller.pruneNetworks(), []);
  await controller.removeService('web');
  await controller.removeNetwork('n');
  t.deepEqual(await controller.listNetworks(), []);
});

test('bad input is refused with a clear error and changes nothing', async (t) => {
  const { controller, store, cluster } = await setup();
  await controller.createNetwork({ name: 'local', ipam: { config: [{ subnet: '10.10.0.0/24' }] } });
  await controller.createNetwork({ name: 'other', ipam: { config: [{ subnet: '10.11.0.0/24' }] } });
  await controller.createNetwork({ name: 'full', ipam: { config: [{ subnet: '10.12.0.0/30' }] } });
  await controller.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.13.0.0/24' }] } });
  await controller.createNetwork({ name: 'v6', enableIPv4: false, enableIPv6: true, ipam: { config: [{ subnet: 'fd00:1::/64' }] } });
  await controller.createNetwork({ name: 'none', driver: 'null' });
  await controller.createSandbox({ name: 'fill' });
  await controller.connect('full', 'fill');
  await controller.createService({ name: 'taken', networks: ['local'] });
  await controller.createSandbox({ name: 's' });
  const before = await snapshot(store, cluster);

  const cases: [Promise<unknown>, string, RegExp][] = [
    [controller.createService({ name: 'taken' }), 'Conflict', /service with name taken already exists/],
    [controller.createService({ name: 'x', networks: ['nosuch'] }), 'NetworkNotFound', /network nosuch not found/],
    [controller.createService({ name: 'x', networks: ['local', 'nosuch'] }), 'NetworkNotFound', /network nosuch not found/],
    [controller.createService({ name: 'x', networks: ['local', 'ov'] }), 'InvalidArgument', /mix scopes \(local is local, ov is global\)/],
    [controller.createService({ name: 'x', networks: ['local', 'local'] }), 'InvalidArgument', /network local is given more than once/],
    [controller.createService({ name: 'x', networks: ['other', 'full'] }), 'Conflict', /service x: no virtual IP left on network full/],
    [controller.createService({ name: 'x', networks: ['none'] }), 'InvalidArgument', /network none \(driver null\) assigns no addresses/],
    [controller.createService({ name: 'x', networks: ['v6'] }), 'InvalidArgument', /network v6 has no IPv4 subnet/],
    [controller.createService({ name: '-x' }), 'InvalidArgument', /invalid service name "-x"/],
    [controller.createService({ name: '.x' }), 'InvalidArgument', /invalid service name/],
    [controller.createService({ name: 'a b' }), 'InvalidArgument', /invalid service name/],
    [controller.createService({ name: 'x'.repeat(64) }), 'InvalidArgument', /longer than 63/],
    [controller.createService({ name: '' }), 'InvalidArgument', /must not be empty/],
    [controller.createService({ name: 'x', endpointMode: 'rr' as 'vip' }), 'InvalidArgument', /invalid endpoint mode "rr"/],
    [controller.connect('other', 's', { service: 'nosuch' }), 'ServiceNotFound', /service nosuch not found/],
    [controller.connect('other', 's', { service: 'taken' }), 'InvalidArgument', /service taken is not on network other/],
    [controller.removeService('nosuch'), 'ServiceNotFound', /service nosuch not found/],
    [controller.inspectService('nosuch'), 'ServiceNotFound', /service nosuch not found/],
  ];
  for (const [promise, code, message] of cases) {
    const err = await t.throwsAsync(promise);
    t.is((err as { code?: string }).code, code, err?.message);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store, cluster), before);
  // The failed attempts left no address believed taken: the next service gets the lowest free one.
  t.is((await controller.createService({ name: 'x', networks: ['other'] })).service.networks[0]?.virtualIp, '10.11.0.2/24');
});

test('two hosts creating one service name at once: exactly one succeeds', async (t) => {
  const { controller: one, host } = await setup();
  const two = await host();
  await one.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.14.0.0/24' }] } });
  const results = await Promise.allSettled([
    one.createService({ name: 'race', networks: ['ov'] }),
    two.createService({ name: 'race', networks: ['ov'] }),
  ]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  t.is((await one.listServices()).length, 1);
});

test('a malformed service record is left out of listings and lookups', async (t) => {
  const { controller, store } = await setup();
  await controller.createService({ name: 'good' });
  await store.txn({ put: [{ key: keys.service('f'.repeat(64)), value: '{"id":"x"}' }] });
  t.deepEqual((await controller.listServices()).map((view) => view.service.name), ['good']);
  await t.throwsAsync(controller.inspectService('f'.repeat(64)), { code: 'ServiceNotFound' });
});

test('published ports: stored with their defaults and claimed for the service; a service without ports has none', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.15.0.0/24' }] } });
  const { service } = await controller.createService({
    name: 'web',
    networks: ['n'],
    ports: [
      { targetPort: 80, publishedPort: 8080 },
      { protocol: 'udp', targetPort: 53, publishedPort: 8080, publishMode: 'host' },
    ],
  });
  const ports = [
    { protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: 'ingress' },
    { protocol: 'udp', targetPort: 53, publishedPort: 8080, publishMode: 'host' },
  ];
  t.deepEqual(service.ports, ports);
  t.deepEqual((await controller.inspectService('web')).service.ports, ports);
  t.is((await store.get(keys.publishedPort('tcp', 8080)))?.value, service.id);
  t.is((await store.get(keys.publishedPort('udp', 8080)))?.value, service.id);

  const plain = (await controller.createService({ name: 'plain', networks: ['n'] })).service;
  t.false('ports' in plain);
  t.false('ports' in JSON.parse((await store.get(keys.service(plain.id)))?.value ?? '{}'));
  // dnsrr takes ports published in host mode: they need no VIP.
  const db = await controller.createService({ name: 'db', networks: ['n'], endpointMode: 'dnsrr', ports: [{ targetPort: 5432, publishedPort: 5432, publishMode: 'host' }] });
  t.is(db.service.ports?.[0]?.publishMode, 'host');
});

test('a port and protocol another service publishes is refused, naming it, in the same store and across stores', async (t) => {
  const { controller, store, cluster } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.16.0.0/24' }] } });
  await controller.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.17.0.0/24' }] } });
  await controller.createService({ name: 'web', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8080 }] });
  await controller.createService({ name: 'mesh', networks: ['ov'], ports: [{ targetPort: 80, publishedPort: 9090 }] });
  const before = await snapshot(store, cluster);
  const cases: [Promise<unknown>, RegExp][] = [
    [controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 81, publishedPort: 8080 }] }), /^port 8080\/tcp is already published by service web$/],
    // Host mode too: the claim is on the port, whatever the mode.
    [controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 81, publishedPort: 8080, publishMode: 'host' }] }), /^port 8080\/tcp is already published by service web$/],
    [controller.createService({ name: 'api', networks: ['ov'], ports: [{ targetPort: 81, publishedPort: 8080 }] }), /^port 8080\/tcp is already published by service web$/],
    [controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 81, publishedPort: 9090 }] }), /^port 9090\/tcp is already published by service mesh$/],
    [controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 1, publishedPort: 1 }, { targetPort: 81, publishedPort: 9090 }] }), /^port 9090\/tcp is already published by service mesh$/],
  ];
  for (const [promise, message] of cases) {
    const err = await t.throwsAsync(promise);
    t.is((err as { code?: string }).code, 'Conflict');
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store, cluster), before);
  // The same number with the other protocol is another port.
  const udp = await controller.createService({ name: 'dns', networks: ['ov'], ports: [{ protocol: 'udp', targetPort: 53, publishedPort: 8080 }] });
  t.is((await cluster.get(keys.publishedPort('udp', 8080)))?.value, udp.service.id);
});

test('another host sees a global service\'s port claimed; two hosts publishing one port at once: one succeeds, the other is told who has it', async (t) => {
  const { controller: one, host } = await setup();
  const two = await host();
  await one.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.18.0.0/24' }] } });
  const results = await Promise.allSettled([
    one.createService({ name: 'a', networks: ['ov'], ports: [{ targetPort: 80, publishedPort: 8000 }] }),
    two.createService({ name: 'b', networks: ['ov'], ports: [{ targetPort: 80, publishedPort: 8000 }] }),
  ]);
  const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.service.name] : []));
  const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  t.is(won.length, 1);
  t.is(lost[0]?.message, `port 8000/tcp is already published by service ${won[0]}`);
  await t.throwsAsync(two.createService({ name: 'c', networks: ['ov'], ports: [{ targetPort: 80, publishedPort: 8000 }] }), {
    code: 'Conflict',
    message: `port 8000/tcp is already published by service ${won[0]}`,
  });
});

test('rm frees the ports: another service can publish them; a claim no longer its own is left alone', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.19.0.0/24' }] } });
  const web = (await controller.createService({ name: 'web', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8080 }, { targetPort: 443, publishedPort: 8443 }] })).service;
  await controller.removeService('web');
  t.deepEqual(await store.list('ports/'), []);
  const api = (await controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8080 }] })).service;
  t.is((await store.get(keys.publishedPort('tcp', 8080)))?.value, api.id);
  t.not(api.id, web.id);

  // A claim that changed hands (written by something else) stays with its holder.
  const old = (await controller.createService({ name: 'old', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 7000 }] })).service;
  await store.txn({ put: [{ key: keys.publishedPort('tcp', 7000), value: api.id }] });
  await controller.removeService('old');
  t.is((await store.get(keys.service(old.id))), undefined);
  t.is((await store.get(keys.publishedPort('tcp', 7000)))?.value, api.id);
});

test('a port something on this host holds is refused, after other services\' claims are checked; nothing is stored', async (t) => {
  const asked: string[] = [];
  const { controller, store } = await setup({
    portInUse: async (protocol, port) => {
      asked.push(`${port}/${protocol}`);
      return protocol === 'tcp' && port === 9000;
    },
  });
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.20.0.0/24' }] } });
  await controller.createService({ name: 'web', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8080 }] });
  t.deepEqual(asked, ['8080/tcp']);
  const before = await snapshot(store);
  await t.throwsAsync(controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8081 }, { targetPort: 80, publishedPort: 9000 }] }), {
    code: 'Conflict',
    message: 'port 9000/tcp is already in use on this host',
  });
  // Held by a service: that is what the error says, whoever holds the socket.
  await t.throwsAsync(controller.createService({ name: 'api', networks: ['n'], ports: [{ targetPort: 80, publishedPort: 8080 }] }), {
    code: 'Conflict',
    message: 'port 8080/tcp is already published by service web',
  });
  t.deepEqual(await snapshot(store), before);
  t.is((await controller.createService({ name: 'dns', networks: ['n'], ports: [{ protocol: 'udp', targetPort: 53, publishedPort: 9000 }] })).service.ports?.[0]?.publishedPort, 9000);
});

test('bad published ports are refused with a clear error and change nothing', async (t) => {
  const { controller, store, cluster } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.21.0.0/24' }] } });
  const before = await snapshot(store, cluster);
  const port = (fields: Record<string, unknown>) => ({ targetPort: 80, publishedPort: 8080, ...fields }) as never;
  const cases: [unknown, RegExp, ('vip' | 'dnsrr')?, string[]?][] = [
    [[port({ targetPort: 0 })], /^invalid target port 0: out of range \(1-65535\)$/],
    [[port({ targetPort: 65536 })], /^invalid target port 65536: out of range \(1-65535\)$/],
    [[port({ publishedPort: 70000 })], /^invalid published port 70000: out of range \(1-65535\)$/],
    [[port({ publishedPort: -1 })], /^invalid published port -1: out of range/],
    [[port({ publishedPort: 80.5 })], /^invalid published port 80.5: not a whole number$/],
    [[port({ targetPort: '80' })], /^invalid target port "80": not a whole number$/],
    [[port({ publishedPort: null })], /^a published port is required$/],
    [[{ targetPort: 53, publishMode: 'host' }], /^target port 53: a published port is required in host mode$/],
    [[{ publishedPort: 8080 }], /^a target port is required$/],
    [[port({ protocol: 'sctp' })], /^invalid protocol "sctp": tcp or udp$/],
    [[port({ protocol: 'TCP' })], /^invalid protocol "TCP": tcp or udp$/],
    [[port({ publishMode: 'global' })], /^invalid publish mode "global": ingress or host$/],
    [[port({}), port({ targetPort: 81 })], /^port 8080\/tcp is published more than once$/],
    [[port({}), port({ publishMode: 'host' })], /^port 8080\/tcp is published more than once$/],
    [[port({})], /^EndpointSpec: port published with ingress mode can't be used with dnsrr mode$/, 'dnsrr'],
    [[port({ publishMode: 'host' }), port({ publishedPort: 8081 })], /ingress mode can't be used with dnsrr mode$/, 'dnsrr'],
    [[port({})], /^service x: published ports need a network, which its tasks join to be reached$/, 'vip', []],
    [Array.from({ length: 31 }, (_, i) => port({ publishedPort: 8000 + i })), /^too many published ports \(31, at most 30\)$/],
    ['8080:80', /^ports must be a list of published ports$/],
    [[null], /^ports must be a list of published ports$/],
  ];
  for (const [ports, message, endpointMode, networks] of cases) {
    const err = await t.throwsAsync(controller.createService({ name: 'x', networks: networks ?? ['n'], endpointMode: endpointMode ?? 'vip', ports: ports as never }));
    t.is((err as { code?: string }).code, 'InvalidArgument', err?.message);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store, cluster), before);
  // The failed attempts left no address believed taken.
  t.is((await controller.createService({ name: 'x', networks: ['n'], ports: [port({})] })).service.networks[0]?.virtualIp, '10.21.0.2/24');
});

test('a port published without a number gets the lowest free one of 30000-32767: none claimed in either store, asked for in the request or held here', async (t) => {
  const held = new Set(['30002/tcp']);
  const { controller, store, cluster } = await setup({ portInUse: async (protocol, port) => held.has(`${port}/${protocol}`) });
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.22.0.0/24' }] } });
  await controller.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.23.0.0/24' }] } });
  const a = (await controller.createService({ name: 'a', networks: ['n'], ports: [{ targetPort: 80 }] })).service;
  t.deepEqual(a.ports, [{ protocol: 'tcp', targetPort: 80, publishedPort: 30000, publishMode: 'ingress' }]);
  await controller.createService({ name: 'b', networks: ['ov'], ports: [{ targetPort: 80, publishedPort: 30001 }] });
  const c = (
    await controller.createService({
      name: 'c',
      networks: ['n'],
      ports: [{ targetPort: 80 }, { targetPort: 81, publishedPort: 30003 }, { targetPort: 82 }, { protocol: 'udp', targetPort: 53 }],
    })
  ).service;
  t.deepEqual(c.ports?.map((port) => `${port.publishedPort}/${port.protocol}->${port.targetPort}`), ['30004/tcp->80', '30003/tcp->81', '30005/tcp->82', '30000/udp->53']);
  for (const port of c.ports ?? []) t.is((await store.get(keys.publishedPort(port.protocol, port.publishedPort)))?.value, c.id);
  // What the service was given is what it keeps: removing another frees a lower port for the next one only.
  await controller.removeService('a');
  t.is((await controller.createService({ name: 'd', networks: ['ov'], ports: [{ targetPort: 80 }] })).service.ports?.[0]?.publishedPort, 30000);
  t.deepEqual((await controller.inspectService('c')).service.ports, c.ports);
  t.is((await cluster.get(keys.publishedPort('tcp', 30000)))?.value, (await controller.inspectService('d')).service.id);
});

test('two hosts picking a port at once get different ones; none left is a conflict that changes nothing', async (t) => {
  const { controller: one, host, store, cluster } = await setup();
  const two = await host();
  await one.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.24.0.0/24' }] } });
  const [a, b] = await Promise.all([
    one.createService({ name: 'a', networks: ['ov'], ports: [{ targetPort: 80 }] }),
    two.createService({ name: 'b', networks: ['ov'], ports: [{ targetPort: 80 }] }),
  ]);
  t.deepEqual([a.service.ports?.[0]?.publishedPort, b.service.ports?.[0]?.publishedPort].sort(), [30000, 30001]);

  await one.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.25.0.0/24' }] } });
  const filler = [];
  for (let port = 30002; port <= 32767; port++) filler.push({ key: keys.publishedPort('tcp', port), value: a.service.id });
  await store.txn({ put: filler });
  const before = await snapshot(store, cluster);
  await t.throwsAsync(one.createService({ name: 'c', networks: ['n'], ports: [{ targetPort: 80 }] }), {
    code: 'Conflict',
    message: 'no tcp port left to publish in 30000-32767',
  });
  t.deepEqual(await snapshot(store, cluster), before);
  t.is((await one.createService({ name: 'c', networks: ['n'], ports: [{ protocol: 'udp', targetPort: 53 }] })).service.ports?.[0]?.publishedPort, 30000);
});

test('the ingress network: made once by the first cluster service publishing in ingress mode; host mode and local services need none; one only, an overlay', async (t) => {
  const { controller, cluster, host } = await setup();
  const ingressNetworks = async () => (await controller.listNetworks()).filter((view) => view.network.ingress);
  await controller.createNetwork({ name: 'local', ipam: { config: [{ subnet: '10.6.0.0/24' }] } });
  await controller.createService({ name: 'l', networks: ['local'], ports: [{ targetPort: 80, publishedPort: 8080 }] });
  await controller.createNetwork({ name: 'front', driver: 'overlay' });
  await controller.createService({ name: 'h', networks: ['front'], ports: [{ targetPort: 80, publishedPort: 8081, publishMode: 'host' }] });
  t.deepEqual(await ingressNetworks(), [], 'no ingress network for a local service or for host mode');
  await controller.createService({ name: 'w', networks: ['front'], ports: [{ targetPort: 80, publishedPort: 8082 }] });
  const [made] = await ingressNetworks();
  t.is(made?.network.name, 'ingress');
  t.is(made?.network.driver, 'overlay');
  t.is(made?.network.scope, 'global');
  const other = await host();
  await other.createService({ name: 'w2', networks: ['front'], ports: [{ targetPort: 80, publishedPort: 8083 }] });
  t.is((await ingressNetworks()).length, 1, 'another host finds it and makes no second');
  const before = await snapshot(cluster);
  await t.throwsAsync(controller.createNetwork({ name: 'mesh2', driver: 'overlay', ingress: true }), { code: 'Conflict', message: /ingress network ingress already exists/ });
  await t.throwsAsync(controller.createNetwork({ name: 'mesh3', driver: 'bridge', ingress: true }), { code: 'InvalidArgument', message: /overlay driver/ });
  t.deepEqual(await snapshot(cluster), before, 'nothing stored by the refused creates');
});
