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

test('null networks have no IPAM and endpoints no addresses', async (t) => {
  const controller = await Controller.open({
    store: new MemoryStore(),
    drivers: [new NullDriver()],
    namespaces: new MemoryNamespaces(),
    logger: silentLogger,
  });
  const network = toDockerNetwork(await controller.createNetwork({ name: 'none', driver: 'null' }));
  t.deepEqual(network.IPAM.Config, []);
  await controller.createSandbox({ name: 's' });
  const endpoint = await controller.connect('none', 's');
  t.is(endpoint.ipv4Address, undefined);
  t.is(toDockerNetwork(await controller.inspectNetwork('none')).Containers[endpoint.sandboxId ?? '']?.IPv4Address, '');
  // Kept as Docker keeps it, with a warning; asking for encryption is refused, as it would change nothing.
  t.deepEqual((await controller.createNetwork({ name: 'x', driver: 'null', options: { a: 'b' } })).warnings, [
    'option "a" is not one the null driver acts on: it is stored and shown, and changes nothing',
  ]);
  await t.throwsAsync(controller.createNetwork({ name: 'y', driver: 'null', options: { encrypted: '' } }), {
    message: /option "encrypted" is for overlay networks/,
  });
});

test('endpoints without an IPv4 address get distinct random MACs outside the 02:42 range', async (t) => {
  const controller = await Controller.open({
    store: new MemoryStore(),
    drivers: [new NullDriver()],
    namespaces: new MemoryNamespaces(),
    logger: silentLogger,
  });
  await controller.createNetwork({ name: 'none', driver: 'null' });
  const macs = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const endpoint = await controller.createEndpoint('none', { name: `e${i}` });
    t.regex(endpoint.macAddress, /^02:(?!42)[0-9a-f]{2}(:[0-9a-f]{2}){4}$/);
    macs.add(endpoint.macAddress);
  }
  t.is(macs.size, 50);
});
