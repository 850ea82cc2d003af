/**
 * Two hosts sharing one cluster store: network names are unique across
 * local and global scope, and local work goes on while the cluster store is
 * out of reach.
 */
import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { Unavailable } from '../../src/errors.js';
import { LastKnownStore } from '../../src/store/last-known.js';
import { MemoryStore } from '../../src/store/memory.js';
import { CuttableStore } from '../helpers/cuttable-store.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';
import { levelLogger, silentLogger } from '../../src/log.js';

async function twoHosts() {
  const wire = new CuttableStore();
  const logs: string[] = [];
  const host = async () => {
    const cluster = await LastKnownStore.open(wire, { prefixes: ['networks/', 'endpoints/', 'ipam/', 'names/'], probeIntervalMs: 10 });
    return Controller.open({
      store: new MemoryStore(),
      globalStore: cluster,
      clusterReachability: cluster,
      drivers: [new RecordingDriver('bridge', 'local'), new RecordingDriver('overlay', 'global')],
      namespaces: new MemoryNamespaces(),
      logger: levelLogger((_level, message) => logs.push(message)),
    });
  };
  return { wire, logs, a: await host(), b: await host() };
}

test('a name is either one global network or local networks, never both, whichever host asks', async (t) => {
  const { a, b } = await twoHosts();
  await a.createNetwork({ name: 'g', driver: 'overlay', ipam: { config: [{ subnet: '10.20.0.0/24' }] } });
  await t.throwsAsync(b.createNetwork({ name: 'g', ipam: { config: [{ subnet: '10.21.0.0/24' }] } }), { message: 'network with name g already exists' });

  await b.createNetwork({ name: 'l', ipam: { config: [{ subnet: '10.22.0.0/24' }] } });
  await t.throwsAsync(a.createNetwork({ name: 'l', driver: 'overlay', ipam: { config: [{ subnet: '10.23.0.0/24' }] } }), {
    message: 'network with name l already exists',
  });
  // Local networks of different hosts may share a name, as Docker's do.
  await a.createNetwork({ name: 'l', ipam: { config: [{ subnet: '10.24.0.0/24' }] } });
  // Once no host has it locally, the name is free for a global network.
  await a.removeNetwork('l');
  await b.removeNetwork('l');
  await a.createNetwork({ name: 'l', driver: 'overlay', ipam: { config: [{ subnet: '10.25.0.0/24' }] } });
});

test('a global and a local network of one name made at the same moment: exactly one is made', async (t) => {
  for (let round = 0; round < 10; round++) {
    const { a, b } = await twoHosts();
    const results = await Promise.allSettled([
      a.createNetwork({ name: 'race', driver: 'overlay', ipam: { config: [{ subnet: '10.30.0.0/24' }] } }),
      b.createNetwork({ name: 'race', ipam: { config: [{ subnet: '10.31.0.0/24' }] } }),
    ]);
    t.is(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
    t.is((await b.listNetworks({ name: ['race'] })).length, 1, `round ${round}: host b sees one network named race`);
  }
});

test('with the cluster store out of reach, local networks work and global ones are listed as last seen', async (t) => {
  const { wire, a, b, logs } = await twoHosts();
  await a.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.40.0.0/24' }] } });
  await b.createSandbox({ name: 's' });
  await b.connect('ov', 's');
  wire.down = true;

  const names = (await b.listNetworks()).map(toDockerNetwork).map((n) => n.Name);
  t.deepEqual(names, ['ov']);
  t.false(b.clusterStatus()?.reachable);
  await b.createNetwork({ name: 'local', ipam: { config: [{ subnet: '10.41.0.0/24' }] } });
  // The overlay's subnet still counts, from memory.
  await t.throwsAsync(b.createNetwork({ name: 'clash', ipam: { config: [{ subnet: '10.40.0.0/25' }] } }), { message: /overlaps/ });
  const endpoint = await b.connect('local', 's');
  t.is(endpoint.ifName, 'eth1', 'the overlay endpoint, known from memory, keeps eth0');
  await b.disconnect('local', 's');
  await b.connect('local', 's');
  await t.throwsAsync(b.createNetwork({ name: 'ov2', driver: 'overlay' }), { instanceOf: Unavailable });

  // Meanwhile another host took the name cluster-wide (its store was reachable): when b is back, it says so.
  wire.down = false;
  await wire.inner.txn({ put: [{ key: 'names/networks/local', value: 'f'.repeat(64) }] });
  for (let i = 0; i < 500 && b.clusterStatus()?.reachable !== true; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  for (let i = 0; i < 500 && !logs.some((l) => /exists on this host and across the cluster/.test(l)); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.true(logs.some((l) => /network local exists on this host and across the cluster/.test(l)), logs.join('\n'));
});

test('a local network made while the cluster was away is claimed when it is back', async (t) => {
  const { wire, a, b } = await twoHosts();
  await a.createNetwork({ name: 'seen', driver: 'overlay', ipam: { config: [{ subnet: '10.50.0.0/24' }] } });
  wire.down = true;
  await b.listNetworks();
  await b.createNetwork({ name: 'offline', ipam: { config: [{ subnet: '10.51.0.0/24' }] } });
  wire.down = false;
  for (let i = 0; i < 500 && (await wire.inner.list('names/local/offline/')).length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await t.throwsAsync(a.createNetwork({ name: 'offline', driver: 'overlay', ipam: { config: [{ subnet: '10.52.0.0/24' }] } }), {
    message: 'network with name offline already exists',
  });
});

class OverlayDouble extends RecordingDriver {
  override readonly providesDefaultRoute = false;
  readonly needsGatewayBridge = true;
  constructor() {
    super('overlay', 'global');
  }
}

test('a sandbox on an overlay gets its way out through the gateway bridge, unless the overlay is internal', async (t) => {
  const bridge = new RecordingDriver('bridge', 'local');
  const overlay = new OverlayDouble();
  const controller = await Controller.open({
    store: new MemoryStore(),
    globalStore: new MemoryStore(),
    drivers: [bridge, overlay],
    namespaces: new MemoryNamespaces(),
    logger: silentLogger,
  });
  await controller.createNetwork({ name: 'ov', driver: 'overlay', ipam: { config: [{ subnet: '10.60.0.0/24' }] } });
  await controller.createNetwork({ name: 'secret', driver: 'overlay', internal: true, ipam: { config: [{ subnet: '10.61.0.0/24' }] } });
  await controller.createSandbox({ name: 's' });
  await controller.createSandbox({ name: 'q' });

  await controller.connect('secret', 'q');
  t.deepEqual((await controller.listNetworks()).map(toDockerNetwork).map((n) => n.Name).sort(), ['ov', 'secret'], 'an internal overlay needs no way out');

  await controller.connect('ov', 's');
  const gateway = toDockerNetwork(await controller.inspectNetwork('netctl_gwbridge'));
  t.deepEqual(Object.keys(gateway.Containers), [(await controller.inspectSandbox('s')).id]);
  t.is(gateway.Options['com.docker.network.bridge.enable_icc'], 'false');
  t.is(bridge.defaultRoutes.get('s'), 'netctl_gwbridge');
  t.deepEqual([...bridge.joined.values()], ['s/eth1']);

  await controller.disconnect('ov', 's');
  t.deepEqual(toDockerNetwork(await controller.inspectNetwork('netctl_gwbridge')).Containers, {}, 'no overlay left, no way out needed');
  t.is(bridge.joined.size, 0);

  // A sandbox that already has a default route from a bridge network keeps it and gets no gateway endpoint.
  await controller.createNetwork({ name: 'br', ipam: { config: [{ subnet: '10.62.0.0/24' }] } });
  await controller.connect('br', 's');
  await controller.connect('ov', 's');
  t.deepEqual(toDockerNetwork(await controller.inspectNetwork('netctl_gwbridge')).Containers, {});
  // When that bridge network goes, the overlay still needs a way out.
  await controller.disconnect('br', 's');
  t.is(Object.keys(toDockerNetwork(await controller.inspectNetwork('netctl_gwbridge')).Containers).length, 1);
  t.is(bridge.defaultRoutes.get('s'), 'netctl_gwbridge');
});

test('addresses another host takes or frees meanwhile: no address is handed out twice, and freed ones come back', async (t) => {
  const shared = new MemoryStore();
  const host = () =>
    Controller.open({
      store: new MemoryStore(),
      globalStore: shared,
      drivers: [new RecordingDriver('overlay', 'global')],
      defaultDriver: 'overlay',
      namespaces: new MemoryNamespaces(),
      logger: silentLogger,
    });
  const a = await host();
  const b = await host();
  // Gateway 10.40.0.1: 10.40.0.2 to .6 are handed out.
  await a.createNetwork({ name: 'ov', ipam: { config: [{ subnet: '10.40.0.0/29' }] } });
  const connect = async (controller: Controller, name: string, ipv4Address?: string) => {
    await controller.createSandbox({ name });
    return (await controller.connect('ov', name, ipv4Address !== undefined ? { ipv4Address } : {})).ipv4Address;
  };
  t.is(await connect(a, 'a1'), '10.40.0.2/29');
  t.is(await connect(b, 'b1'), '10.40.0.3/29');
  t.is(await connect(a, 'a2'), '10.40.0.4/29', 'host a learns that b took .3 when its claim fails');
  await b.disconnect('ov', 'b1');
  t.is(await connect(a, 'a3'), '10.40.0.5/29');
  t.is(await connect(a, 'a4'), '10.40.0.6/29');
  t.is(await connect(a, 'a5'), '10.40.0.3/29', 'the pool looked full to host a: it reads the keys and finds .3 freed by b');
  await t.throwsAsync(connect(a, 'a6'), { message: /no available IPv4 addresses in 10.40.0.0\/29/ });

  await b.createSandbox({ name: 'b2' });
  await t.throwsAsync(b.connect('ov', 'b2', { ipv4Address: '10.40.0.2' }), { message: 'address 10.40.0.2 is already in use' });
  await a.disconnect('ov', 'a1');
  t.is((await b.connect('ov', 'b2', { ipv4Address: '10.40.0.2' })).ipv4Address, '10.40.0.2/29', 'freed by a, requested on b');
  const taken = (await a.inspectNetwork('ov')).endpoints.map((endpoint) => endpoint.ipv4Address);
  t.is(new Set(taken).size, taken.length);
});
