/**
 * The bridge driver against a double of its kernel port: what it asks the
 * kernel to do, step by step, with no namespace made. bridge.test.ts checks
 * the same driver against the real kernel.
 */
import test from 'ava';
import { BridgeDriver } from '../../src/drivers/bridge/bridge.js';
import type { NetworkRecord } from '../../src/records.js';
import { RecordingKernel, joining } from './kernel-double.js';
import { networkRecord } from '../helpers/records.js';

const HOST = '/var/run/netns/host';
const SANDBOX = '/var/run/netns/sandbox';
const NETWORK_ID = '0123456789abcdef0123456789abcdef';

function network(options: Record<string, string> = {}): NetworkRecord {
  return networkRecord({
    id: NETWORK_ID,
    ipam: { driver: 'default', options: {}, config: [{ subnet: '10.44.0.0/24', gateway: '10.44.0.1' }] },
    options,
  });
}

const { endpoint, sandbox } = joining(NETWORK_ID, { macAddress: '02:42:0a:2c:00:02', ipv4Address: '10.44.0.2/24' }, SANDBOX);

test('create, join, leave and delete ask the kernel for exactly the bridge, the veth and the rules', async (t) => {
  const kernel = new RecordingKernel([HOST, SANDBOX]);
  const driver = new BridgeDriver({ hostNetnsPath: HOST, kernel });
  const web = network({ 'com.docker.network.driver.mtu': '1400', 'com.docker.network.bridge.enable_icc': 'false' });
  driver.validate(web);
  await driver.createNetwork(web);
  t.deepEqual(kernel.calls, [
    `${HOST} createBridge br-0123456789ab {"mtu":1400}`,
    `${HOST} addAddress br-0123456789ab 10.44.0.1/24`,
    `${HOST} setUp br-0123456789ab`,
    `${HOST} setSysctl net.ipv4.ip_forward 1`,
    `${HOST} applyNft add table inet netctl_0123456789ab`,
  ]);
  t.regex(kernel.nftScripts[0] ?? '', /oifname "br-0123456789ab" iifname != "br-0123456789ab" ct state established,related accept/);
  t.regex(kernel.nftScripts[0] ?? '', /oifname "br-0123456789ab" iifname != "br-0123456789ab" ct status dnat accept/);
  t.regex(kernel.nftScripts[0] ?? '', /ip saddr 10\.44\.0\.0\/24 oifname != "br-0123456789ab" masquerade/);

  kernel.calls.length = 0;
  await driver.join({ network: web, endpoint, sandbox, ifName: 'eth0', setDefaultRoute: true });
  t.deepEqual(kernel.calls, [
    `${HOST} deleteLink vethe1e2e3e`,
    `${SANDBOX} deleteLink eth0`,
    `${HOST} createVeth vethe1e2e3e vtmpe1e2e3e {"mtu":1400,"peerNetnsPath":"${SANDBOX}"}`,
    `${SANDBOX} rename vtmpe1e2e3e eth0`,
    `${SANDBOX} setMac eth0 02:42:0a:2c:00:02`,
    `${HOST} setMaster vethe1e2e3e br-0123456789ab`,
    `${HOST} setBridgePortIsolated vethe1e2e3e true`,
    `${HOST} setUp vethe1e2e3e`,
    `${SANDBOX} setMtu eth0 1400`,
    `${SANDBOX} addAddress eth0 10.44.0.2/24`,
    `${SANDBOX} setUp eth0`,
    `${SANDBOX} addRoute {"dst":"default","gateway":"10.44.0.1","ifName":"eth0"}`,
  ]);

  kernel.calls.length = 0;
  await driver.leave({ network: web, endpoint, sandbox, ifName: 'eth0' });
  await driver.deleteNetwork(web);
  t.deepEqual(kernel.calls, [
    `${HOST} deleteLink vethe1e2e3e`,
    `${HOST} deleteNftTable netctl_0123456789ab`,
    `${HOST} deleteLink br-0123456789ab`,
  ]);
});

test('a restarted driver builds the config from the stored options and redoes only what does not persist', async (t) => {
  const kernel = new RecordingKernel([HOST, SANDBOX]);
  const web = network({ 'com.docker.network.driver.mtu': '1400' });
  const first = new BridgeDriver({ hostNetnsPath: HOST, kernel });
  first.validate(web);
  await first.createNetwork(web);
  await first.join({ network: web, endpoint, sandbox, ifName: 'eth0', setDefaultRoute: true });

  kernel.calls.length = 0;
  const restarted = new BridgeDriver({ hostNetnsPath: HOST, kernel });
  await restarted.createNetwork(web);
  await restarted.join({ network: web, endpoint, sandbox, ifName: 'eth0', setDefaultRoute: true });
  t.deepEqual(kernel.calls, [
    `${HOST} setUp br-0123456789ab`,
    `${HOST} setSysctl net.ipv4.ip_forward 1`,
    `${HOST} applyNft add table inet netctl_0123456789ab`,
    `${HOST} setMaster vethe1e2e3e br-0123456789ab`,
    `${HOST} setBridgePortIsolated vethe1e2e3e false`,
    `${HOST} setUp vethe1e2e3e`,
    `${SANDBOX} setMtu eth0 1400`,
    `${SANDBOX} setUp eth0`,
  ]);
  t.is(kernel.link(SANDBOX, 'eth0')?.mtu, 1400);
});

test('the bridge name of a network made on this host is refused to another network', async (t) => {
  const kernel = new RecordingKernel([HOST]);
  const driver = new BridgeDriver({ hostNetnsPath: HOST, kernel });
  const named = network({ 'com.docker.network.bridge.name': 'br-shared' });
  driver.validate(named);
  await driver.createNetwork(named);
  t.throws(() => driver.validate({ ...named, id: 'f'.repeat(32) }), { message: 'bridge name br-shared is already used by another network' });
  await driver.deleteNetwork(named);
  t.notThrows(() => driver.validate({ ...named, id: 'f'.repeat(32) }), 'free again once its network is gone');
});

test('removing a network tries every step and keeps each failure', async (t) => {
  const kernel = new RecordingKernel([HOST]);
  const driver = new BridgeDriver({ hostNetnsPath: HOST, kernel });
  const web = network();
  driver.validate(web);
  await driver.createNetwork(web);
  kernel.calls.length = 0;
  kernel.failing.add('deleteNftTable').add('deleteLink');
  const error = await t.throwsAsync(driver.deleteNetwork(web), {
    message: 'removing bridge network web: deleteNftTable failed; deleteLink failed',
  });
  t.is((error as { code?: string } | undefined)?.code, 'Internal');
  const cause = error?.cause;
  t.true(cause instanceof AggregateError);
  t.deepEqual(
    (cause as AggregateError).errors.map((err: Error) => err.message),
    ['deleteNftTable failed', 'deleteLink failed'],
  );
  t.deepEqual(kernel.calls, [`${HOST} deleteNftTable netctl_0123456789ab`, `${HOST} deleteLink br-0123456789ab`]);
});
