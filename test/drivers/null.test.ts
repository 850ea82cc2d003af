import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces } from '../cnm/doubles.js';
import { driverCompliance } from './compliance.js';
import { silentLogger } from '../../src/log.js';

driverCompliance('null driver', async () => {
  const store = new MemoryStore();
  const namespaces = new MemoryNamespaces();
  const open = () => Controller.open({ store, drivers: [new NullDriver()], namespaces, defaultDriver: 'null', logger: silentLogger });
  let controller = await open();
  return {
    get controller() {
      return controller;
    },
    driver: 'null',
    noInterface: true,
    sandboxName: (base) => base,
    async reopen() {
      await controller.close();
      controller = await open();
      return controller;
    },
    async cleanup() {
      await controller.close();
    },
  };
});

/** A controller with only the null driver, in memory. */
function nullController(): Promise<Controller> {
  return Controller.open({ store: new MemoryStore(), drivers: [new NullDriver()], namespaces: new MemoryNamespaces(), logger: silentLogger });
}

test('null networks have no IPAM and endpoints no addresses', async (t) => {
  const controller = await nullController();
  // Asking for encryption is refused, as it would change nothing; another option is kept as Docker keeps it, with a warning.
  await t.throwsAsync(controller.createNetwork({ name: 'x', driver: 'null', options: { encrypted: '' } }), {
    message: /option "encrypted" is for overlay networks/,
  });
  const created = await controller.createNetwork({ name: 'none', driver: 'null', options: { a: 'b' } });
  t.deepEqual(created.warnings, ['option "a" is not one the null driver acts on: it is stored and shown, and changes nothing']);
  const network = toDockerNetwork(created);
  t.deepEqual(network.IPAM.Config, []);
  await controller.createSandbox({ name: 's' });
  const endpoint = await controller.connect('none', 's');
  t.is(endpoint.ipv4Address, undefined);
  t.is(toDockerNetwork(await controller.inspectNetwork('none')).Containers[endpoint.sandboxId ?? '']?.IPv4Address, '');
});

test('null endpoints get no interface name, and asking for one is refused', async (t) => {
  const controller = await nullController();
  await controller.createNetwork({ name: 'none', driver: 'null' });
  await controller.createSandbox({ name: 's' });
  await controller.createSandbox({ name: 'named' });
  t.is((await controller.connect('none', 's')).ifName, undefined);
  t.deepEqual((await controller.inspectSandbox('s')).endpoints.map((endpoint) => endpoint.ifName), [undefined]);
  await t.throwsAsync(controller.connect('none', 'named', { ifName: 'eth0' }), {
    code: 'InvalidArgument',
    message: 'network none (driver null) puts no interface in the sandbox: an interface name does not apply',
  });
  t.deepEqual((await controller.inspectSandbox('named')).endpoints, []);
});

test('only one null network may exist, as in Docker', async (t) => {
  const controller = await nullController();
  await controller.createNetwork({ name: 'none', driver: 'null' });
  await t.throwsAsync(controller.createNetwork({ name: 'other', driver: 'null' }), {
    code: 'Forbidden',
    message: 'only one instance of "null" network is allowed',
  });
  await controller.removeNetwork('none');
  await controller.createNetwork({ name: 'other', driver: 'null' });
  t.deepEqual((await controller.listNetworks()).map((view) => view.network.name), ['other']);
});

test('endpoints without an IPv4 address get distinct random MACs outside the 02:42 range', async (t) => {
  const controller = await nullController();
  await controller.createNetwork({ name: 'none', driver: 'null' });
  const macs = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const endpoint = await controller.createEndpoint('none', { name: `e${i}` });
    t.regex(endpoint.macAddress, /^02:(?!42)[0-9a-f]{2}(:[0-9a-f]{2}){4}$/);
    macs.add(endpoint.macAddress);
  }
  t.is(macs.size, 50);
});
