/**
 * What Docker accepts at network create, accepted the way Docker does:
 * options no driver reads are kept and shown (with a warning naming them),
 * IPAM options likewise, --config-only and --config-from, and --scope,
 * with netctl's refusals where it has no such thing (swarm).
 */
import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { silentLogger } from '../../src/log.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';

async function setup() {
  const store = new MemoryStore();
  const controller = await Controller.open({
    store,
    drivers: [new RecordingDriver(), new NullDriver()],
    namespaces: new MemoryNamespaces(),
    logger: silentLogger,
  });
  return { store, controller };
}

async function snapshot(store: MemoryStore) {
  return (await store.list('')).map(({ key, value }) => ({ key, value }));
}

test('an option no driver reads is stored and shown, and the create warns of it; a known one is still checked', async (t) => {
  const { controller } = await setup();
  const created = await controller.createNetwork({
    name: 'web',
    options: { 'com.docker.network.driver.mtu': '1400', 'com.example.team': 'blue' },
    ipam: { options: { 'com.example.pool': 'fast' } },
  });
  t.deepEqual(created.warnings, [
    'option "com.example.team" is not one the bridge driver acts on: it is stored and shown, and changes nothing',
    'IPAM option "com.example.pool" is not one the default IPAM driver acts on: it is stored and shown, and changes nothing',
  ]);
  const shown = toDockerNetwork(await controller.inspectNetwork('web'));
  t.deepEqual(shown.Options, { 'com.docker.network.driver.mtu': '1400', 'com.example.team': 'blue' });
  t.deepEqual(shown.IPAM.Options, { 'com.example.pool': 'fast' });
  t.deepEqual((await controller.createNetwork({ name: 'plain' })).warnings, []);
  await t.throwsAsync(controller.createNetwork({ name: 'bad', options: { 'com.docker.network.driver.mtu': 'big' } }), { message: /invalid MTU "big"/ });
});

test('a configuration-only network holds pools, options and labels that a network made --config-from it takes', async (t) => {
  const { controller } = await setup();
  // One null network at most, but a configuration-only network, of the null driver in name only, does not count.
  await controller.createNetwork({ name: 'none', driver: 'null' });
  const config = await controller.createNetwork({
    name: 'cfg',
    driver: 'bridge',
    configOnly: true,
    ipam: { config: [{ subnet: '10.44.0.0/24', gateway: '10.44.0.254', ipRange: '10.44.0.128/25' }] },
    options: { 'com.docker.network.driver.mtu': '1400' },
    labels: { team: 'blue' },
  });
  const shownConfig = toDockerNetwork(config);
  t.true(shownConfig.ConfigOnly);
  t.is(shownConfig.Driver, 'null', 'as Docker shows one');
  t.deepEqual(shownConfig.IPAM.Config, [{ Subnet: '10.44.0.0/24', Gateway: '10.44.0.254', IPRange: '10.44.0.128/25' }]);

  // Its subnet is not taken: the network made from it takes it.
  const made = await controller.createNetwork({ name: 'real', configFrom: 'cfg', labels: { app: 'web' } });
  const shown = toDockerNetwork(made);
  t.is(shown.ConfigFrom.Network, 'cfg');
  t.false(shown.ConfigOnly);
  t.is(shown.Driver, 'bridge');
  t.deepEqual(shown.IPAM.Config, [{ Subnet: '10.44.0.0/24', Gateway: '10.44.0.254', IPRange: '10.44.0.128/25' }]);
  t.deepEqual(shown.Options, { 'com.docker.network.driver.mtu': '1400' });
  t.deepEqual(shown.Labels, { team: 'blue', app: 'web' });
  await controller.createSandbox({ name: 's' });
  const endpoint = await controller.connect('real', 's');
  t.is(endpoint.ipv4Address, '10.44.0.128/24', 'from the ip range the configuration gave');

  // A second network from the same configuration clashes on the subnet, as two networks with one --subnet do.
  await t.throwsAsync(controller.createNetwork({ name: 'again', configFrom: 'cfg' }), { message: /overlaps/ });
});

test('a configuration-only network takes no endpoints and stays while a network uses it; bad combinations change nothing', async (t) => {
  const { controller, store } = await setup();
  await controller.createNetwork({ name: 'cfg', configOnly: true, ipam: { config: [{ subnet: '10.45.0.0/24' }] } });
  await controller.createNetwork({ name: 'plain', ipam: { config: [{ subnet: '10.46.0.0/24' }] } });
  await controller.createNetwork({ name: 'real', configFrom: 'cfg' });
  await controller.createSandbox({ name: 's' });
  await controller.connect('plain', 's');
  const before = await snapshot(store);

  const cases: [Promise<unknown>, string, RegExp][] = [
    [controller.connect('cfg', 's'), 'Forbidden', /network cfg is configuration-only \(--config-only\): it takes no endpoints/],
    [controller.createService({ name: 'svc', networks: ['cfg'] }), 'Forbidden', /configuration-only/],
    [controller.removeNetwork('cfg'), 'Forbidden', /configuration network cfg is in use by network real/],
    [controller.createNetwork({ name: 'x', configFrom: 'plain' }), 'InvalidArgument', /network plain is not a configuration-only network/],
    [controller.createNetwork({ name: 'x', configFrom: 'nosuch' }), 'NetworkNotFound', /nosuch/],
    [controller.createNetwork({ name: 'x', configFrom: 'cfg', ipam: { config: [{ subnet: '10.47.0.0/24' }] } }), 'Forbidden', /takes its configuration from cfg: --subnet/],
    [controller.createNetwork({ name: 'x', configFrom: 'cfg', options: { a: 'b' } }), 'Forbidden', /-o cannot be given with --config-from/],
    [controller.createNetwork({ name: 'x', configFrom: 'cfg', configOnly: true }), 'InvalidArgument', /do not go together/],
    [controller.createNetwork({ name: 'x', configOnly: true, ipam: { config: [{ subnet: 'fd00::/64' }] } }), 'InvalidArgument', /IPv6 is not enabled/],
    [controller.createNetwork({ name: 'x', scope: 'swarm' }), 'InvalidArgument', /scope "swarm" is not served: netctl runs no swarm/],
    [controller.createNetwork({ name: 'x', scope: 'global' }), 'InvalidArgument', /the bridge driver makes networks of scope local, not global/],
    [controller.createNetwork({ name: 'x', scope: 'galaxy' }), 'InvalidArgument', /invalid scope "galaxy"/],
  ];
  for (const [promise, code, message] of cases) {
    const err = await t.throwsAsync(promise);
    t.is((err as { code?: string }).code, code, err?.message);
    t.regex(err?.message ?? '', message);
  }
  t.deepEqual(await snapshot(store), before);

  // Prune keeps a configuration in use, and removes it once unused.
  t.deepEqual(await controller.pruneNetworks(), ['real']);
  t.deepEqual(await controller.pruneNetworks(), ['cfg']);
  // The driver's own scope is accepted.
  t.is((await controller.createNetwork({ name: 'loc', scope: 'local' })).network.scope, 'local');
});
