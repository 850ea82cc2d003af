import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { HostDriver } from '../../src/drivers/host/host.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from '../cnm/doubles.js';
import { silentLogger } from '../../src/log.js';

async function open() {
  const bridge = new RecordingDriver();
  const controller = await Controller.open({ store: new MemoryStore(), drivers: [bridge, new HostDriver()], namespaces: new MemoryNamespaces(), logger: silentLogger });
  return { controller, bridge };
}

const HOST_NETWORK_CONFLICT = 'container cannot be disconnected from host network or connected to host network';

test('the host network is local, has no IPAM, acts on no option, and there is only one', async (t) => {
  const { controller } = await open();
  await t.throwsAsync(controller.createNetwork({ name: 'x', driver: 'host', options: { encrypted: '' } }), { message: /option "encrypted" is for overlay networks/ });
  await t.throwsAsync(controller.createNetwork({ name: 'x', driver: 'host', ipam: { config: [{ subnet: '10.1.0.0/24' }] } }), {
    message: /the host driver assigns no addresses/,
  });
  const created = await controller.createNetwork({ name: 'host', driver: 'host', options: { a: 'b' } });
  t.deepEqual(created.warnings, ['option "a" is not one the host driver acts on: it is stored and shown, and changes nothing']);
  const network = toDockerNetwork(created);
  t.is(network.Scope, 'local');
  t.deepEqual(network.IPAM.Config, []);
  await t.throwsAsync(controller.createNetwork({ name: 'host2', driver: 'host' }), {
    code: 'Forbidden',
    message: 'only one instance of "host" network is allowed',
  });
});

test('no sandbox connects to or disconnects from the host network, with Docker\'s words, and nothing is stored', async (t) => {
  const { controller, bridge } = await open();
  await controller.createNetwork({ name: 'host', driver: 'host' });
  await controller.createNetwork({ name: 'web' });
  await controller.createSandbox({ name: 's' });
  await controller.connect('web', 's');
  const before = await controller.inspectSandbox('s');
  await t.throwsAsync(controller.connect('host', 's'), { code: 'InvalidArgument', message: HOST_NETWORK_CONFLICT });
  await t.throwsAsync(controller.disconnect('host', 's'), { code: 'InvalidArgument', message: HOST_NETWORK_CONFLICT });
  await t.throwsAsync(controller.disconnect('host', 's', { force: true }), { code: 'InvalidArgument', message: HOST_NETWORK_CONFLICT });
  t.deepEqual(await controller.inspectSandbox('s'), before);
  t.deepEqual(toDockerNetwork(await controller.inspectNetwork('host')).Containers, {});
  t.is(bridge.joined.size, 1);
});
