/**
 * The overlay driver through the shared compliance suite, on one host: a
 * real etcd on loopback, a VTEP on a loopback UDP port, and the kernel
 * parts (overlay namespace, bridge, TAP, sandboxes) in namespaces.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { OverlayDriver } from '../../src/drivers/overlay/overlay.js';
import { kernelNamespaces } from '../../src/host.js';
import { EtcdStore } from '../../src/store/etcd.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NativeDatagramPort } from '../../src/vxlan/native.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import { type RunningEtcd, startEtcd } from '../helpers/etcd.js';
import { addresses, links, namespacesWithPrefix, pings, removeNetns, uniqueName } from '../helpers/kernel.js';
import { type ComplianceEnv, driverCompliance } from './compliance.js';
import { silentLogger } from '../../src/log.js';

let etcd: RunningEtcd | undefined;
test.before(async () => {
  etcd = await startEtcd();
});
test.after.always(async () => {
  await etcd?.stop();
});

async function openController(localStore: MemoryStore, prefix: string): Promise<Controller> {
  const globalStore = await EtcdStore.open(etcd?.url ?? '', { prefix });
  const underlay = NativeDatagramPort.open({ address: '127.0.0.1', port: 0 });
  const vtep = new Vtep({ underlay, localAddress: '127.0.0.1', logger: silentLogger });
  vtep.start();
  const driver = await OverlayDriver.start({ store: globalStore, vtep, advertiseAddress: '127.0.0.1', hostName: 'one', logger: silentLogger });
  return Controller.open({
    store: localStore,
    globalStore,
    drivers: [driver],
    namespaces: kernelNamespaces,
    defaultDriver: 'overlay',
    ownsStore: true,
    logger: silentLogger,
  });
}

async function makeEnv(): Promise<ComplianceEnv> {
  const prefix = `/netctl-test-${randomBytes(4).toString('hex')}/`;
  const localStore = new MemoryStore();
  const sandboxNames: string[] = [];
  const networkIds = new Set<string>();
  let controller = await openController(localStore, prefix);
  const track = async () => {
    for (const network of (await controller.listNetworks()).map(toDockerNetwork)) networkIds.add(network.Id.slice(0, 12));
  };
  return {
    get controller() {
      return controller;
    },
    driver: 'overlay',
    sandboxName(base) {
      const name = uniqueName(base);
      sandboxNames.push(name);
      return name;
    },
    async reopen() {
      await track();
      // Closing the controller closes its stores; the local one is kept, as a file store would be.
      const reopened = new MemoryStore();
      for (const kv of await localStore.list('')) await reopened.txn({ put: [{ key: kv.key, value: kv.value }] });
      await controller.close();
      controller = await openController(reopened, prefix);
      return controller;
    },
    interfaceAddresses: (sandbox, ifName) => addresses(sandbox.netnsPath, ifName),
    reaches: (from, address) => pings(from.netnsPath, address),
    async cleanup() {
      await track().catch(() => undefined);
      await controller.close().catch(() => undefined);
      for (const name of sandboxNames) await removeNetns(name);
      for (const name of await namespacesWithPrefix('ovl-')) {
        if ([...networkIds].some((id) => name.startsWith(`ovl-${id}-127.0.0.1`))) await removeNetns(name);
      }
    },
  };
}

driverCompliance('overlay driver', makeEnv);

test.serial('overlay: VNIs from 4096 up or as asked, MTU 1450, no default route, namespace made and removed lazily', async (t) => {
  const env = await makeEnv();
  t.teardown(() => env.cleanup());
  const { controller } = env;
  const first = toDockerNetwork(await controller.createNetwork({ name: 'one' }));
  t.is(first.Options['com.docker.network.driver.overlay.vxlanid_list'], '4096');
  t.is(first.IPAM.Config[0]?.Subnet, '10.0.0.0/24');
  t.is(first.Scope, 'global');
  const second = toDockerNetwork(await controller.createNetwork({ name: 'two', options: { 'com.docker.network.driver.overlay.vxlanid_list': '7000' } }));
  t.is(second.Options['com.docker.network.driver.overlay.vxlanid_list'], '7000');
  await t.throwsAsync(controller.createNetwork({ name: 'three', options: { 'com.docker.network.driver.overlay.vxlanid_list': '7000' } }), {
    message: /VXLAN ID 7000 is already used/,
  });
  await t.throwsAsync(controller.createNetwork({ name: 'three', options: { peers: 'not-an-ip' } }), { message: /invalid peer "not-an-ip"/ });
  await t.throwsAsync(controller.createNetwork({ name: 'three', options: { encrypted: '' } }), { message: /encrypted overlay networks are not available on this host: the overlay driver was started without an ESP table/ });

  const overlayNs = `ovl-${first.Id.slice(0, 12)}-127.0.0.1`;
  t.false((await namespacesWithPrefix('ovl-')).includes(overlayNs), 'nothing on this host before an endpoint joins');
  const sandbox = await controller.createSandbox({ name: env.sandboxName('s') });
  await controller.connect('one', sandbox.name);
  t.true((await namespacesWithPrefix('ovl-')).includes(overlayNs));
  t.is((await links(sandbox.netnsPath)).find((l) => l.ifname === 'eth0')?.mtu, 1450);
  t.deepEqual(toDockerNetwork(await controller.inspectNetwork('one')).Peers, [{ Name: 'one', IP: '127.0.0.1' }]);
  await controller.disconnect('one', sandbox.name);
  t.false((await namespacesWithPrefix('ovl-')).includes(overlayNs), 'the last leave removes it');
  await controller.removeNetwork('one');
  // The VNI is free again.
  t.is(toDockerNetwork(await controller.createNetwork({ name: 'again' })).Options['com.docker.network.driver.overlay.vxlanid_list'], '4096');
});
