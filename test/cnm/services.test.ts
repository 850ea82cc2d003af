/**
 * Services in the controller over in-memory stores: VIPs from the network's
 * IPAM, tasks, removal, and bad input refused with nothing stored.
 */
import test from 'ava';
import { Controller } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { keys } from '../../src/repository/keys.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';
import { silentLogger } from '../../src/log.js';

async function setup() {
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
  await t.throwsAsync(controller.connect('n', 'a', {}), { code: 'Conflict' });
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
