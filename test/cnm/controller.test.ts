import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { HostDriver } from '../../src/drivers/host/host.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';
import { levelLogger, silentLogger } from '../../src/log.js';

async function setup() {
  const store = new MemoryStore();
  const driver = new RecordingDriver();
  const namespaces = new MemoryNamespaces();
  const open = () => Controller.open({ store, drivers: [driver, new NullDriver()], namespaces, logger: silentLogger });
  return { store, driver, namespaces, controller: await open(), open };
}

async function snapshot(store: MemoryStore) {
  return (await store.list('')).map(({ key, value }) => ({ key, value }));
}

test('full lifecycle: network, sandbox, connect, inspect, disconnect, remove', async (t) => {
  const { controller, driver } = await setup();
  const network = toDockerNetwork(await controller.createNetwork({ name: 'web', labels: { env: 'test' } }));
  t.regex(network.Id, /^[0-9a-f]{64}$/);
  t.is(network.Driver, 'bridge');
  t.is(network.Scope, 'local');
  t.is(network.IPAM.Config[0]?.Subnet, '172.17.0.0/16');
  t.is(network.IPAM.Config[0]?.Gateway, '172.17.0.1');

  const a = await controller.createSandbox({ name: 'a' });
  const b = await controller.createSandbox({ name: 'b' });
  t.is(a.netnsPath, '/var/run/netns/a');
  const epA = await controller.connect('web', 'a');
  const epB = await controller.connect('web', 'b', { aliases: ['db'] });
  t.is(epA.ipv4Address, '172.17.0.2/16');
  t.is(epB.ipv4Address, '172.17.0.3/16');
  t.is(epA.macAddress, '02:42:ac:11:00:02');
  t.is(epA.ifName, 'eth0');
  t.deepEqual(epB.aliases, ['db']);

  const inspected = toDockerNetwork(await controller.inspectNetwork(network.Id.slice(0, 12)));
  t.deepEqual(Object.keys(inspected.Containers).sort(), [a.id, b.id].sort());
  t.is(inspected.Containers[a.id]?.Name, 'a');
  t.is(inspected.Containers[a.id]?.IPv4Address, '172.17.0.2/16');

  const refused = await t.throwsAsync(controller.removeNetwork('web'));
  t.is((refused as { code?: string }).code, 'Forbidden');
  t.regex(refused?.message ?? '', /has active endpoints/);

  await controller.disconnect('web', 'a');
  t.is(driver.joined.size, 1);
  await controller.removeSandbox('b');
  t.is(driver.joined.size, 0);
  await controller.removeNetwork('web');
  t.deepEqual(await controller.listNetworks(), []);
  t.is(driver.networks.size, 0);
});

test("automatic subnets of local networks skip what the host routes; a global network's serve every host and do not", async (t) => {
  const namespaces = new MemoryNamespaces();
  namespaces.routed.push('172.17.0.1/16');
  const controller = await Controller.open({
    store: new MemoryStore(),
    globalStore: new MemoryStore(),
    drivers: [new RecordingDriver(), new RecordingDriver('overlay', 'global')],
    namespaces,
    logger: silentLogger,
  });
  t.is((await controller.createNetwork({ name: 'local' })).network.ipam.config[0]?.subnet, '172.18.0.0/16');
  namespaces.routed.push('10.0.0.0/8');
  t.is((await controller.createNetwork({ name: 'global', driver: 'overlay' })).network.ipam.config[0]?.subnet, '10.0.0.0/24');
});

test('addresses are released on disconnect and the lowest free one is reused', async (t) => {
  const { controller } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.5.0.0/24' }] } });
  for (const name of ['a', 'b', 'c']) await controller.createSandbox({ name });
  await controller.connect('n', 'a');
  await controller.connect('n', 'b');
  await controller.disconnect('n', 'a');
  const c = await controller.connect('n', 'c');
  t.is(c.ipv4Address, '10.5.0.2/24');
});

test('a second network on a sandbox is eth1 and does not take the default route', async (t) => {
  const { controller, driver } = await setup();
  await controller.createNetwork({ name: 'one' });
  await controller.createNetwork({ name: 'two' });
  t.is(toDockerNetwork(await controller.inspectNetwork('two')).IPAM.Config[0]?.Subnet, '172.18.0.0/16');
  await controller.createSandbox({ name: 's' });
  await controller.connect('one', 's');
  const second = await controller.connect('two', 's');
  t.is(second.ifName, 'eth1');
  t.deepEqual([...driver.joined.values()].sort(), ['s/eth0', 's/eth1']);
});

test('connect names the interface as asked; a name in use, an invalid one or lo is refused and nothing is stored', async (t) => {
  const { controller, driver, store } = await setup();
  await controller.createNetwork({ name: 'one' });
  await controller.createNetwork({ name: 'two' });
  await controller.createNetwork({ name: 'three' });
  await controller.createSandbox({ name: 's' });
  const named = await controller.connect('one', 's', { ifName: 'net1' });
  t.is(named.ifName, 'net1');
  t.is((await controller.connect('two', 's')).ifName, 'eth0', 'the next free ethN still starts at eth0');
  const before = await snapshot(store);
  const refused: [string, string, RegExp][] = [
    ['net1', 'Conflict', /sandbox s already has an interface net1/],
    ['eth0', 'Conflict', /already has an interface eth0/],
    ['sixteen-chars-no', 'InvalidArgument', /invalid interface name "sixteen-chars-no"/],
    ['a/b', 'InvalidArgument', /invalid interface name "a\/b"/],
    ['..', 'InvalidArgument', /invalid interface name/],
    ['lo', 'InvalidArgument', /loopback/],
  ];
  for (const [ifName, code, message] of refused) {
    const err = await t.throwsAsync(controller.connect('three', 's', { ifName }));
    t.is((err as { code?: string }).code, code, ifName);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store), before);
  t.deepEqual([...driver.joined.values()].sort(), ['s/eth0', 's/net1']);
});

test('the default route moves to an ethN before a named interface', async (t) => {
  const { controller, driver } = await setup();
  for (const name of ['first', 'named', 'later']) await controller.createNetwork({ name });
  await controller.createSandbox({ name: 's' });
  await controller.connect('first', 's');
  await controller.connect('named', 's', { ifName: 'cni0' });
  await controller.connect('later', 's');
  await controller.disconnect('first', 's');
  t.is(driver.defaultRoutes.get('s'), 'later', 'eth1 takes the route before cni0');
  await controller.disconnect('later', 's');
  t.is(driver.defaultRoutes.get('s'), 'named');
});

test('the default route comes from the first network and moves when the sandbox leaves it', async (t) => {
  const { controller, driver, open } = await setup();
  await controller.createNetwork({ name: 'inner', internal: true });
  await controller.createNetwork({ name: 'first' });
  await controller.createNetwork({ name: 'second' });
  await controller.createSandbox({ name: 's' });
  await controller.connect('inner', 's');
  t.false(driver.defaultRoutes.has('s'), 'an internal network gives no default route');
  await controller.connect('first', 's');
  await controller.connect('second', 's');
  t.is(driver.defaultRoutes.get('s'), 'first');
  await controller.disconnect('first', 's');
  t.is(driver.defaultRoutes.get('s'), 'second');
  await controller.close();
  driver.defaultRoutes.clear();
  await open();
  t.is(driver.defaultRoutes.get('s'), 'second', 'a restart restores the route where it was');
});

test('bad input is refused with a clear error and changes nothing', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'taken', ipam: { config: [{ subnet: '10.1.0.0/16' }] } });
  await controller.createSandbox({ name: 's' });
  await controller.connect('taken', 's', { ipv4Address: '10.1.0.9' });
  await controller.createSandbox({ name: 't' });
  const before = await snapshot(store);

  const cases: [Promise<unknown>, string, RegExp][] = [
    [controller.createNetwork({ name: 'taken' }), 'Conflict', /already exists/],
    [controller.createNetwork({ name: 'x', ipam: { config: [{ subnet: '10.1.2.0/24' }] } }), 'Conflict', /overlaps/],
    [controller.createNetwork({ name: 'x', ipam: { config: [{ subnet: '10.1.2.0/33' }] } }), 'InvalidArgument', /10\.1\.2\.0\/33/],
    [controller.createNetwork({ name: 'x', ipam: { config: [{ subnet: '10.9.0.0/24', gateway: '10.8.0.1' }] } }), 'InvalidArgument', /10\.8\.0\.1/],
    [controller.createNetwork({ name: 'x', driver: 'nosuch' }), 'InvalidArgument', /unknown network driver "nosuch"/],
    [controller.createNetwork({ name: 'x', options: { 'com.docker.network.driver.mtu': 'big' } }), 'InvalidArgument', /invalid MTU "big"/],
    [controller.createNetwork({ name: 'bad name!' }), 'InvalidArgument', /invalid network name/],
    [controller.createNetwork({ name: 'x', driver: 'null', enableIPv6: true }), 'InvalidArgument', /assigns no addresses/],
    [controller.connect('taken', 't', { ipv4Address: '10.1.0.9' }), 'Conflict', /10\.1\.0\.9/],
    [controller.connect('taken', 's'), 'Forbidden', /^endpoint with name s already exists in network taken$/],
    [controller.connect('taken', 'nosuch'), 'SandboxNotFound', /sandbox nosuch not found/],
    [controller.connect('nosuch', 't'), 'NetworkNotFound', /network nosuch not found/],
    [controller.removeNetwork('taken'), 'Forbidden', /active endpoints/],
    [controller.createSandbox({ name: 's' }), 'Conflict', /already exists/],
    [controller.disconnect('taken', 't'), 'Forbidden', /not connected/],
  ];
  for (const [promise, code, message] of cases) {
    const err = await t.throwsAsync(promise);
    t.is((err as { code?: string }).code, code, err?.message);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store), before);
});

test('a driver failure rolls back: no record, no address, no kernel state', async (t) => {
  const { controller, driver, store } = await setup();
  driver.failNext = 'createNetwork';
  await t.throwsAsync(controller.createNetwork({ name: 'n' }), { message: /injected createNetwork failure/ });
  t.deepEqual(await snapshot(store), []);
  t.is(driver.networks.size, 0);

  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.2.0.0/24' }] } });
  await controller.createSandbox({ name: 's' });
  const before = await snapshot(store);
  driver.failNext = 'join';
  await t.throwsAsync(controller.connect('n', 's'), { message: /injected join failure/ });
  t.deepEqual(await snapshot(store), before);
  t.is(driver.joined.size, 0);
  t.deepEqual(driver.calls.slice(-2).map((c) => c.call), ['join', 'leave']);
  // The address the failed join held is free again.
  t.is((await controller.connect('n', 's')).ipv4Address, '10.2.0.2/24');
});

test('lower-level lifecycle: create endpoint, join, leave, delete endpoint', async (t) => {
  const { controller, driver } = await setup();
  await controller.createNetwork({ name: 'n' });
  await controller.createSandbox({ name: 's' });
  const endpoint = await controller.createEndpoint('n', { name: 'ep1' });
  t.is(endpoint.sandboxId, undefined);
  await t.throwsAsync(controller.removeNetwork('n'), { message: /active endpoints/ });
  await controller.join('n', 'ep1', 's');
  await t.throwsAsync(controller.deleteEndpoint('n', 'ep1'), { message: /leave it first/ });
  await controller.leave('n', 'ep1');
  t.is(driver.joined.size, 0);
  await controller.deleteEndpoint('n', 'ep1');
  await controller.removeNetwork('n');
  t.deepEqual(await controller.listNetworks(), []);
});

test('reopening the controller restores networks and joined endpoints', async (t) => {
  const { controller, driver, open } = await setup();
  await controller.createNetwork({ name: 'n' });
  await controller.createSandbox({ name: 's' });
  await controller.connect('n', 's');
  await controller.close();
  driver.networks.clear();
  driver.joined.clear();
  const reopened = await open();
  t.is(driver.networks.size, 1);
  t.deepEqual([...driver.joined.values()], ['s/eth0']);
  const network = toDockerNetwork(await reopened.inspectNetwork('n'));
  t.is(Object.values(network.Containers)[0]?.IPv4Address, '172.17.0.2/16');
});

test('a sandbox whose namespace was never made (crash in between) gets it at the next start', async (t) => {
  const { store, namespaces, open } = await setup();
  await store.txn({
    put: [
      { key: 'sandboxes/abc', value: JSON.stringify({ id: 'abc', name: 'half', netnsPath: '', ownsNetns: true, created: '', labels: {} }) },
      { key: 'names/sandboxes/half', value: 'abc' },
    ],
  });
  const controller = await open();
  t.is((await controller.inspectSandbox('half')).netnsPath, '/var/run/netns/half');
  t.true(namespaces.paths.has('/var/run/netns/half'));
});

test('list filters and prune follow docker', async (t) => {
  const { controller } = await setup();
  await controller.createNetwork({ name: 'front', labels: { tier: 'web' } });
  await controller.createNetwork({ name: 'back', labels: { tier: 'db' } });
  await controller.createNetwork({ name: 'none0', driver: 'null' });
  await controller.createSandbox({ name: 's' });
  await controller.connect('back', 's');
  const names = async (filters: Record<string, string[]>) => (await controller.listNetworks(filters)).map(toDockerNetwork).map((n) => n.Name).sort();
  t.deepEqual(await names({ name: ['ron'] }), ['front']);
  // name and id are regular expressions, as moby's filters.Args.Match reads them.
  t.deepEqual(await names({ name: ['^ba'] }), ['back']);
  t.deepEqual(await names({ name: ['^(front|none0)$'] }), ['front', 'none0']);
  t.deepEqual(await names({ name: ['^fro$'] }), []);
  t.deepEqual(await names({ name: ['(?i)^BACK$'] }), ['back']);
  const backId = (await controller.inspectNetwork('back')).network.id;
  t.deepEqual(await names({ id: [`^${backId.slice(0, 12)}`] }), ['back']);
  t.deepEqual(await names({ id: [backId.slice(20, 40)] }), ['back'], 'anywhere in the id, not only a prefix');
  await t.throwsAsync(controller.listNetworks({ name: ['web('] }), {
    code: 'InvalidArgument',
    message: /^invalid filter 'name=web\(': not a regular expression \(.*\)$/,
  });
  t.deepEqual(await names({ label: ['tier'] }), ['back', 'front']);
  t.deepEqual(await names({ label: ['tier=db'] }), ['back']);
  t.deepEqual(await names({ driver: ['null'] }), ['none0']);
  t.deepEqual(await names({ dangling: ['true'] }), ['front', 'none0']);
  t.deepEqual(await names({ type: ['builtin'] }), []);
  await t.throwsAsync(controller.listNetworks({ bogus: ['1'] }), { message: "invalid filter 'bogus'" });
  t.deepEqual(await controller.pruneNetworks({ label: ['tier=web'] }), ['front']);
  t.deepEqual((await controller.pruneNetworks()).sort(), ['none0']);
  t.deepEqual(await names({}), ['back']);
});

test('predefined networks are made at open when missing, cannot be removed, are kept by prune and listed as builtin', async (t) => {
  const store = new MemoryStore();
  const driver = new RecordingDriver();
  const predefinedNetworks = [
    { name: 'none', driver: 'null' },
    { name: 'host', driver: 'host' },
    { name: 'bridge', driver: 'bridge', options: { 'com.docker.network.bridge.default_bridge': 'true' } },
  ];
  const open = () => Controller.open({ store, drivers: [driver, new NullDriver(), new HostDriver()], namespaces: new MemoryNamespaces(), predefinedNetworks, logger: silentLogger });
  let controller = await open();
  const names = async (filters: Record<string, string[]> = {}) => (await controller.listNetworks(filters)).map((view) => view.network.name).sort();
  t.deepEqual(await names(), ['bridge', 'host', 'none']);
  t.is((await controller.inspectNetwork('bridge')).network.ipam.config[0]?.subnet, '172.17.0.0/16');
  const ids = (await controller.listNetworks()).map((view) => view.network.id).sort();

  await controller.createNetwork({ name: 'mine' });
  for (const name of ['bridge', 'host', 'none']) {
    await t.throwsAsync(controller.removeNetwork(name), { code: 'Forbidden', message: `${name} is a pre-defined network and cannot be removed` });
  }
  t.deepEqual(await names({ type: ['builtin'] }), ['bridge', 'host', 'none']);
  t.deepEqual(await names({ type: ['custom'] }), ['mine']);
  t.deepEqual(await controller.pruneNetworks(), ['mine']);

  // A restart finds them and makes no second one.
  await controller.close();
  controller = await open();
  t.deepEqual((await controller.listNetworks()).map((view) => view.network.id).sort(), ids);
  t.is(driver.calls.filter((call) => call.call === 'createNetwork' && call.name === 'bridge').length, 2, 'made, then restored');
});

test('a predefined network that cannot be made is logged and the controller opens all the same', async (t) => {
  const errors: string[] = [];
  const controller = await Controller.open({
    store: new MemoryStore(),
    drivers: [new RecordingDriver()],
    namespaces: new MemoryNamespaces(),
    predefinedNetworks: [{ name: 'host', driver: 'host' }, { name: 'bridge' }],
    logger: levelLogger((level, message) => level === 'error' && errors.push(message)),
  });
  t.deepEqual((await controller.listNetworks()).map((view) => view.network.name), ['bridge']);
  t.deepEqual(errors, ['predefined network host not made: unknown network driver "host" (available: bridge)']);
});

test('network lookup: full id, name, unique id prefix, ambiguity', async (t) => {
  const { controller } = await setup();
  const a = toDockerNetwork(await controller.createNetwork({ name: 'alpha' }));
  t.is(toDockerNetwork(await controller.inspectNetwork(a.Id)).Name, 'alpha');
  t.is(toDockerNetwork(await controller.inspectNetwork(a.Id.slice(0, 5))).Name, 'alpha');
  await t.throwsAsync(controller.inspectNetwork('zzz-none'), { message: 'network zzz-none not found' });
});

test('disconnect -f removes an endpoint whatever state it is in, and inspect shows it until then', async (t) => {
  const { controller, store, driver } = await setup();
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.3.0.0/24' }] } });
  await controller.createSandbox({ name: 's' });
  const joined = await controller.connect('n', 's');
  // An endpoint whose sandbox record is gone (what a crash in an older release left behind).
  await store.txn({ delete: ['sandboxes/' + (joined.sandboxId ?? ''), 'names/sandboxes/s'] });
  const detached = await controller.createEndpoint('n', { name: 'loose' });

  const inspected = toDockerNetwork(await controller.inspectNetwork('n'));
  t.deepEqual(Object.keys(inspected.Containers).sort(), [`ep-${joined.id}`, `ep-${detached.id}`].sort());
  t.is(inspected.Containers[`ep-${detached.id}`]?.Name, 'loose');

  await t.throwsAsync(controller.disconnect('n', 's'), { message: 'sandbox s not found' });
  await controller.disconnect('n', 's', { force: true });
  await controller.disconnect('n', 'loose', { force: true });
  t.deepEqual(toDockerNetwork(await controller.inspectNetwork('n')).Containers, {});
  t.is(driver.joined.size, 0);
  await controller.removeNetwork('n');
});

test('a sandbox may not take the namespace the host lives in', async (t) => {
  const store = new MemoryStore();
  const namespaces = new MemoryNamespaces();
  namespaces.paths.add('/proc/self/ns/net');
  namespaces.paths.add('/proc/4242/ns/net');
  const controller = await Controller.open({
    store,
    drivers: [new RecordingDriver()],
    namespaces,
    reservedNamespaces: ['/proc/self/ns/net'],
    logger: silentLogger,
  });
  await t.throwsAsync(controller.createSandbox({ name: 'host', netnsPath: '/proc/self/ns/net' }), {
    message: /host's own network namespace/,
  });
  t.deepEqual(await store.list(''), []);
  t.is((await controller.createSandbox({ name: 'runtime', netnsPath: '/proc/4242/ns/net' })).netnsPath, '/proc/4242/ns/net');
});

test('a namespace is one sandbox: a second sandbox on it is refused, naming the first, and nothing is stored', async (t) => {
  const store = new MemoryStore();
  const namespaces = new MemoryNamespaces();
  namespaces.paths.add('/proc/4242/ns/net');
  const controller = await Controller.open({ store, drivers: [new RecordingDriver()], namespaces, logger: silentLogger });
  await controller.createSandbox({ name: 'first', netnsPath: '/proc/4242/ns/net' });
  const before = await store.list('');
  await t.throwsAsync(controller.createSandbox({ name: 'second', netnsPath: '/proc/4242/ns/net' }), {
    message: '/proc/4242/ns/net is already the namespace of sandbox first: connect that sandbox to more networks instead',
  });
  t.deepEqual(await store.list(''), before);
  await controller.removeSandbox('first');
  t.is((await controller.createSandbox({ name: 'second', netnsPath: '/proc/4242/ns/net' })).name, 'second', 'free again once the first is gone');
});

test('two networks of one name are ambiguous by name, never picked one of', async (t) => {
  const { controller, store } = await setup();
  const first = toDockerNetwork(await controller.createNetwork({ name: 'dup', ipam: { config: [{ subnet: '10.4.0.0/24' }] } }));
  // What two hosts creating the same name while the cluster store was away can leave.
  const record = JSON.parse((await store.get(`networks/${first.Id}`))?.value ?? '{}') as { id: string };
  const twinId = 'f'.repeat(64);
  await store.txn({ put: [{ key: `networks/${twinId}`, value: JSON.stringify({ ...record, id: twinId }) }] });
  await t.throwsAsync(controller.removeNetwork('dup'), { message: 'network dup is ambiguous (2 matches found based on name)' });
  t.is(toDockerNetwork(await controller.inspectNetwork(first.Id)).Id, first.Id);
});

test('labels, options and aliases are bounded and checked', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'n' });
  await controller.createSandbox({ name: 's' });
  const before = await snapshot(store);
  const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
  const cases: [Promise<unknown>, RegExp][] = [
    [controller.createNetwork({ name: 'x', labels: { big: 'v'.repeat(4097) } }), /labels: the value of "big" is longer than 4096 bytes/],
    [controller.createNetwork({ name: 'x', labels: many }), /too many labels: 65 \(at most 64\)/],
    [controller.createNetwork({ name: 'x', options: { ['k'.repeat(300)]: '1' } }), /driver options: key "k+…" is longer than 256 bytes/],
    [controller.createSandbox({ name: 'y', labels: { big: 'v'.repeat(5000) } }), /labels: the value of "big"/],
    [controller.connect('n', 's', { aliases: ['a b'] }), /invalid alias "a b"/],
    [controller.connect('n', 's', { aliases: [''] }), /invalid alias ""/],
    [controller.connect('n', 's', { aliases: ['ok', 'x..y'] }), /invalid alias "x\.\.y"/],
    [controller.connect('n', 's', { aliases: ['a\u0000'] }), /invalid alias/],
  ];
  for (const [promise, message] of cases) {
    const err = await t.throwsAsync(promise);
    t.is((err as { code?: string }).code, 'InvalidArgument', err?.message);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store), before);
  t.deepEqual((await controller.connect('n', 's', { aliases: ['db', 'db.internal', 'my_db-1'] })).aliases, ['db', 'db.internal', 'my_db-1']);
});

test('close closes every driver and the store though one fails, reports the failures together, and a second close does nothing', async (t) => {
  const closed: string[] = [];
  class ClosingDriver extends RecordingDriver {
    constructor(
      name: string,
      private readonly failure?: string,
    ) {
      super(name);
    }
    async close(): Promise<void> {
      closed.push(this.name);
      if (this.failure !== undefined) throw new Error(this.failure);
    }
  }
  const store = new MemoryStore();
  const controller = await Controller.open({
    store,
    drivers: [new ClosingDriver('bridge', 'bridge stuck'), new ClosingDriver('other'), new ClosingDriver('third', 'third stuck')],
    namespaces: new MemoryNamespaces(),
    ownsStore: true,
    logger: silentLogger,
  });
  const error = await t.throwsAsync(controller.close());
  t.is((error as { code?: string }).code, 'Internal');
  t.is(error?.message, 'closing the controller failed: driver bridge: bridge stuck; driver third: third stuck');
  t.true(error?.cause instanceof AggregateError);
  t.deepEqual((error?.cause as AggregateError).errors.map((e: Error) => e.message), ['bridge stuck', 'third stuck']);
  t.deepEqual(closed, ['bridge', 'other', 'third']);
  await t.throwsAsync(store.get('x'), { message: 'store is closed' });
  await t.notThrowsAsync(controller.close());
  t.deepEqual(closed, ['bridge', 'other', 'third'], 'nothing is closed twice');
  await t.throwsAsync(controller.createNetwork({ name: 'late' }), { message: 'controller is closed' });
});

test('an endpoint change writes its own keys only: the network-wide value is never rewritten', async (t) => {
  const { controller, store } = await setup();
  const { network } = await controller.createNetwork({ name: 'web', ipam: { config: [{ subnet: '10.9.0.0/24' }] } });
  const stateKey = `network-state/${network.id}`;
  const before = (await store.get(stateKey))?.modRevision;
  for (const name of ['a', 'b', 'c']) {
    await controller.createSandbox({ name });
    await controller.connect('web', name);
  }
  await controller.disconnect('web', 'b');
  t.is((await store.get(stateKey))?.modRevision, before);
  t.deepEqual(
    (await store.list(`ipam/addresses/${network.id}/`)).map((kv) => kv.key.split('/').at(-1)),
    ['10.9.0.2', '10.9.0.4'],
  );
  t.deepEqual((await store.list(`names/endpoints/${network.id}/`)).map((kv) => kv.key.split('/').at(-1)), ['a', 'c']);
  // The freed address and name are free again.
  await controller.connect('web', 'b');
  t.is((await controller.inspectNetwork('web')).endpoints.find((e) => e.name === 'b')?.ipv4Address, '10.9.0.3/24');
  await controller.disconnect('web', 'a');
  await controller.disconnect('web', 'b');
  await controller.disconnect('web', 'c');
  await controller.removeNetwork('web');
  t.deepEqual((await store.list('ipam/')).concat(await store.list('names/endpoints/')), [], 'removal leaves no claim behind');
});

test('a store from before per-record IPAM is moved to a key per address and name when the controller opens', async (t) => {
  const { controller, store, open } = await setup();
  const { network } = await controller.createNetwork({ name: 'web', ipam: { config: [{ subnet: '10.9.0.0/24' }] } });
  await controller.createSandbox({ name: 'a' });
  await controller.createSandbox({ name: 'b' });
  const a = await controller.connect('web', 'a');
  await controller.connect('web', 'b');
  await controller.disconnect('web', 'b');
  await controller.close();
  // As the older netctl kept it: one value with the allocator and the endpoint names, no claim keys.
  const claims = [...(await store.list('ipam/')), ...(await store.list('names/endpoints/'))].map((kv) => kv.key);
  const legacy = { allocator: { allocated: { '10.9.0.0/24': ['10.9.0.2'] } }, endpoints: { [a.id]: 'a' } };
  await store.txn({ put: [{ key: `network-state/${network.id}`, value: JSON.stringify(legacy) }], delete: claims });

  const reopened = await open();
  t.deepEqual(JSON.parse((await store.get(`network-state/${network.id}`))?.value ?? ''), {});
  t.deepEqual((await store.list(`ipam/addresses/${network.id}/`)).map((kv) => [kv.key.split('/').at(-1), kv.value]), [['10.9.0.2', a.id]]);
  await t.throwsAsync(reopened.connect('web', 'a'), { message: /endpoint with name a already exists in network web/ });
  const b = await reopened.connect('web', 'b');
  t.is(b.ipv4Address, '10.9.0.3/24', 'the migrated address stays taken');
});

test("a sandbox's endpoints are found through its index, which the controller rebuilds at open and whose stale entries mislead nobody", async (t) => {
  const { controller, store, open } = await setup();
  await controller.createNetwork({ name: 'one', ipam: { config: [{ subnet: '10.7.0.0/24' }] } });
  await controller.createNetwork({ name: 'two', ipam: { config: [{ subnet: '10.8.0.0/24' }] } });
  const sandbox = await controller.createSandbox({ name: 's' });
  await controller.connect('one', 's');
  const second = await controller.connect('two', 's');
  t.deepEqual((await store.list(`sandbox-endpoints/${sandbox.id}/`)).length, 2);
  await controller.close();
  // A store written before the index, with one entry that points at nothing.
  const index = (await store.list('sandbox-endpoints/')).map((kv) => kv.key);
  await store.txn({ delete: index, put: [{ key: `sandbox-endpoints/${sandbox.id}/${'0'.repeat(64)}`, value: 'gone' }] });

  const reopened = await open();
  t.deepEqual((await reopened.inspectSandbox('s')).endpoints.map((e) => e.ifName).sort(), ['eth0', 'eth1']);
  t.deepEqual((await store.list(`sandbox-endpoints/${sandbox.id}/`)).length, 2, 'rebuilt, the stale entry gone');
  await reopened.disconnect('two', 's');
  t.deepEqual((await reopened.inspectSandbox('s')).endpoints.map((e) => e.id).includes(second.id), false);
  const third = await reopened.connect('two', 's');
  t.is(third.ifName, 'eth1', 'the free interface name is found again');
  await reopened.removeSandbox('s');
  t.deepEqual(await store.list('sandbox-endpoints/'), [], 'removing the sandbox removes its index');
});

test('subscribers hear every change once it is done, and nothing of a change that failed', async (t) => {
  const { controller, driver } = await setup();
  const heard: string[] = [];
  const unsubscribe = controller.subscribe((event) => {
    const subject = event.type === 'network' ? event.network.name : event.type === 'sandbox' ? event.sandbox.name : `${event.endpoint.name}@${event.network.name}`;
    heard.push(`${event.type} ${event.action} ${subject}`);
    t.true(event.time instanceof Date);
  });
  controller.subscribe(() => {
    throw new Error('a faulty listener');
  });
  await controller.createNetwork({ name: 'web' });
  await controller.createSandbox({ name: 'a' });
  await controller.connect('web', 'a');
  driver.failNext = 'join';
  await controller.createSandbox({ name: 'b' });
  await t.throwsAsync(controller.connect('web', 'b'));
  await controller.createEndpoint('web', { name: 'spare' });
  await controller.join('web', 'spare', 'b');
  await controller.leave('web', 'spare');
  await controller.deleteEndpoint('web', 'spare');
  await controller.disconnect('web', 'a');
  await controller.connect('web', 'b');
  await controller.removeSandbox('b');
  await controller.removeNetwork('web');
  unsubscribe();
  await controller.createNetwork({ name: 'unheard' });
  t.deepEqual(heard, [
    'network create web',
    'sandbox create a',
    'endpoint create a@web',
    'endpoint join a@web',
    'sandbox create b',
    'endpoint create spare@web',
    'endpoint join spare@web',
    'endpoint leave spare@web',
    'endpoint remove spare@web',
    'endpoint leave a@web',
    'endpoint remove a@web',
    'endpoint create b@web',
    'endpoint join b@web',
    'endpoint leave b@web',
    'endpoint remove b@web',
    'sandbox remove b',
    'network remove web',
  ]);
});
