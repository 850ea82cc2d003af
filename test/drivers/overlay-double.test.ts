/**
 * The overlay driver against doubles of everything under it: the kernel
 * port, an in-memory store and a VTEP on an in-memory underlay. What it asks
 * the kernel for when the first endpoint joins and the last leaves, and how
 * it closes. overlay.test.ts checks the same driver against the real kernel.
 */
import test from 'ava';
import { OverlayDriver } from '../../src/drivers/overlay/overlay.js';
import { silentLogger } from '../../src/log.js';
import type { NetworkRecord } from '../../src/records.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNetwork } from '../../src/vxlan/memory.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import { RecordingKernel, joining } from './kernel-double.js';

const SANDBOX = '/var/run/netns/sandbox';
const NETWORK_ID = 'abcdef0123456789abcdef0123456789';
const OVERLAY_NS = '/var/run/netns/ovl-abcdef012345-10.0.0.1';

async function start(kernel: RecordingKernel): Promise<{ driver: OverlayDriver; vtep: Vtep; store: MemoryStore }> {
  const store = new MemoryStore();
  const vtep = new Vtep({ underlay: new MemoryNetwork().open('10.0.0.1'), localAddress: '10.0.0.1', logger: silentLogger });
  vtep.start();
  const driver = await OverlayDriver.start({ store, vtep, advertiseAddress: '10.0.0.1', hostName: 'one', logger: silentLogger, kernel });
  return { driver, vtep, store };
}

const spec = {
  id: NETWORK_ID,
  name: 'ovl',
  driver: 'overlay',
  scope: 'global' as const,
  internal: false,
  attachable: false,
  ingress: false,
  enableIPv4: true,
  enableIPv6: false,
  ipam: { driver: 'default', options: {}, config: [{ subnet: '10.0.9.0/24', gateway: '10.0.9.1' }] },
  options: { 'com.docker.network.driver.mtu': '1400' },
  labels: {},
};

const { endpoint, sandbox } = joining(NETWORK_ID, { macAddress: '02:42:0a:00:09:02', ipv4Address: '10.0.9.2/24' }, SANDBOX);

test('the first join makes the namespace, bridge and TAP with the reserved VNI; the last leave removes them', async (t) => {
  const kernel = new RecordingKernel([SANDBOX]);
  const { driver, vtep, store } = await start(kernel);
  t.teardown(() => driver.close());
  driver.validate(spec);
  const reserved = await driver.reserve(spec, store);
  t.deepEqual(reserved.options, { 'com.docker.network.driver.overlay.vxlanid_list': '4096' });
  const network: NetworkRecord = { ...spec, options: { ...spec.options, ...reserved.options }, created: '' };
  await driver.createNetwork();
  t.deepEqual(kernel.calls, [], 'nothing is made before an endpoint joins');

  await driver.join({ network, endpoint, sandbox, ifName: 'eth0', setDefaultRoute: false });
  const tapMtu = kernel.link(OVERLAY_NS, 'vtep0')?.mtu;
  t.deepEqual(kernel.calls, [
    `${OVERLAY_NS} createNamedNetns`,
    `${OVERLAY_NS} setSysctl net.ipv6.conf.default.disable_ipv6 1`,
    `${OVERLAY_NS} setSysctl net.ipv6.conf.all.disable_ipv6 1`,
    `${OVERLAY_NS} setSysctl net.bridge.bridge-nf-call-iptables 0`,
    `${OVERLAY_NS} setSysctl net.bridge.bridge-nf-call-ip6tables 0`,
    `${OVERLAY_NS} setSysctl net.bridge.bridge-nf-call-arptables 0`,
    `${OVERLAY_NS} createBridge br0 {"mtu":1400}`,
    `${OVERLAY_NS} addAddress br0 10.0.9.1/24`,
    `${OVERLAY_NS} setUp br0`,
    `${OVERLAY_NS} deleteLink vtep0`,
    `${OVERLAY_NS} openTap vtep0 {"netnsPath":"${OVERLAY_NS}","vnetHdr":true,"offloads":7,"borrowBuffers":true}`,
    `${OVERLAY_NS} setMtu vtep0 ${tapMtu}`,
    `${OVERLAY_NS} setMaster vtep0 br0`,
    `${OVERLAY_NS} setUp vtep0`,
    `${OVERLAY_NS} deleteLink vethe1e2e3e`,
    `${SANDBOX} deleteLink eth0`,
    `${OVERLAY_NS} createVeth vethe1e2e3e vtmpe1e2e3e {"mtu":1400,"peerNetnsPath":"${SANDBOX}"}`,
    `${SANDBOX} rename vtmpe1e2e3e eth0`,
    `${SANDBOX} setMac eth0 02:42:0a:00:09:02`,
    `${OVERLAY_NS} setMaster vethe1e2e3e br0`,
    `${OVERLAY_NS} setUp vethe1e2e3e`,
    `${SANDBOX} setMtu eth0 1400`,
    `${SANDBOX} addAddress eth0 10.0.9.2/24`,
    `${SANDBOX} setUp eth0`,
  ]);
  t.true(tapMtu !== undefined && tapMtu > 1400, 'the TAP takes frames bigger than the sandboxes send');
  t.deepEqual(vtep.networkStats().map((stats) => stats.vni), [4096]);

  kernel.calls.length = 0;
  await driver.leave({ network, endpoint, sandbox, ifName: 'eth0' });
  t.deepEqual(kernel.calls, [`${OVERLAY_NS} deleteLink vethe1e2e3e`, `${OVERLAY_NS} removeNamedNetns`]);
  t.deepEqual(vtep.networkStats(), []);
  t.true(kernel.taps.get('vtep0')?.closed, 'the VTEP closed the TAP');
});

test('a second close does nothing; the first stops the VTEP', async (t) => {
  const { driver, vtep } = await start(new RecordingKernel());
  await driver.close();
  await t.notThrowsAsync(driver.close());
  t.throws(() => vtep.start(), { message: /stopped/ });
});

test('a host that cannot encrypt (AES-GCM failed its self-test) refuses encrypted networks and key renewals, saying why', async (t) => {
  const store = new MemoryStore();
  const vtep = new Vtep({ underlay: new MemoryNetwork().open('10.0.0.1'), localAddress: '10.0.0.1', logger: silentLogger });
  vtep.start();
  const driver = await OverlayDriver.start({
    store,
    vtep,
    advertiseAddress: '10.0.0.1',
    hostName: 'one',
    logger: silentLogger,
    kernel: new RecordingKernel([SANDBOX]),
    encryption: { unavailable: 'AES-256-GCM failed its self-test at daemon start' },
  });
  t.teardown(() => driver.close());
  const message = 'encrypted overlay networks are not available on this host: AES-256-GCM failed its self-test at daemon start';
  t.throws(() => driver.validate({ ...spec, options: { encrypted: '' } }), { message });
  await t.throwsAsync(driver.rotateKeys(), { message });
  driver.validate(spec);
  // Its host record says nothing of keys: the others derive none with it.
  const record = JSON.parse((await store.get('overlay/hosts/10.0.0.1'))!.value) as { esp?: unknown };
  t.is(record.esp, undefined);
});
