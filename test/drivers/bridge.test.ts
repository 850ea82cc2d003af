/**
 * The bridge driver against the real kernel. Each test builds a host
 * namespace (where the bridges live, standing in for the root namespace),
 * a controller over a file store, and sandboxes as named namespaces.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import { BridgeDriver } from '../../src/drivers/bridge/bridge.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { kernelNamespaces } from '../../src/host.js';
import { FileStore } from '../../src/store/file.js';
import { addNetns, addresses, inNetns, links, nftRuleset, pings, removeNetns, routes, run, uniqueName } from '../helpers/kernel.js';
import { type ComplianceEnv, driverCompliance } from './compliance.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../../src/log.js';

interface BridgeEnv extends ComplianceEnv {
  readonly hostNs: string;
  readonly hostNsPath: string;
}

async function makeEnv(): Promise<BridgeEnv> {
  const hostNs = uniqueName('h');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-bridge-'));
  const sandboxNames: string[] = [];
  let store = await FileStore.open(stateDir);
  const open = async () =>
    Controller.open({
      store,
      drivers: [new BridgeDriver({ hostNetnsPath: hostNsPath }), new NullDriver()],
      namespaces: kernelNamespaces,
      logger: silentLogger,
    });
  let controller = await open();
  return {
    hostNs,
    hostNsPath,
    get controller() {
      return controller;
    },
    driver: 'bridge',
    sandboxName(base) {
      const name = uniqueName(base);
      sandboxNames.push(name);
      return name;
    },
    async reopen() {
      await controller.close();
      await store.close();
      store = await FileStore.open(stateDir);
      controller = await open();
      return controller;
    },
    interfaceAddresses: (sandbox, ifName) => addresses(sandbox.netnsPath, ifName),
    reaches: (from, address) => pings(from.netnsPath, address),
    async cleanup() {
      await controller.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      for (const name of sandboxNames) await removeNetns(name);
      await removeNetns(hostNs);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

driverCompliance('bridge driver', makeEnv);

async function withEnv(t: { teardown: (fn: () => Promise<void>) => void }): Promise<BridgeEnv> {
  const env = await makeEnv();
  t.teardown(() => env.cleanup());
  return env;
}

test.serial('one bridge per network, gateway on the bridge, eth0 with address, default route', async (t) => {
  const env = await withEnv(t);
  const network = toDockerNetwork(await env.controller.createNetwork({ name: 'web', ipam: { config: [{ subnet: '10.44.0.0/24' }] } }));
  const sandbox = await env.controller.createSandbox({ name: env.sandboxName('s') });
  const endpoint = await env.controller.connect('web', sandbox.name);
  const bridgeName = `br-${network.Id.slice(0, 12)}`;
  const bridge = (await links(env.hostNsPath)).find((l) => l.ifname === bridgeName);
  t.is(bridge?.linkinfo?.info_kind, 'bridge');
  t.deepEqual(await addresses(env.hostNsPath, bridgeName), ['10.44.0.1/24']);
  const eth0 = (await links(sandbox.netnsPath)).find((l) => l.ifname === 'eth0');
  t.is(eth0?.address, endpoint.macAddress);
  t.is(eth0?.mtu, 1500);
  t.deepEqual(await addresses(sandbox.netnsPath, 'eth0'), ['10.44.0.2/24']);
  t.deepEqual(
    (await routes(sandbox.netnsPath)).find((r) => r.dst === 'default'),
    { dst: 'default', gateway: '10.44.0.1', dev: 'eth0', flags: [] } as never,
  );
  t.true(await pings(sandbox.netnsPath, '10.44.0.1'), 'the sandbox reaches its gateway');
  await env.controller.disconnect('web', sandbox.name);
  await env.controller.removeNetwork('web');
  t.is((await links(env.hostNsPath)).find((l) => l.ifname === bridgeName), undefined);
  t.notRegex(await nftRuleset(env.hostNsPath), /netctl_/);
});

test.serial('sandboxes on different bridge networks cannot reach each other', async (t) => {
  const env = await withEnv(t);
  const { controller } = env;
  await controller.createNetwork({ name: 'red' });
  await controller.createNetwork({ name: 'blue' });
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => controller.createSandbox({ name: env.sandboxName(n) })));
  const epA = await controller.connect('red', a!.name);
  const epB = await controller.connect('red', b!.name);
  const epC = await controller.connect('blue', c!.name);
  const ip = (cidr: string | undefined) => (cidr ?? '').split('/')[0]!;
  t.true(await pings(a!.netnsPath, ip(epB.ipv4Address)), 'same network: a reaches b');
  t.false(await pings(c!.netnsPath, ip(epA.ipv4Address), { waitSeconds: 1 }), 'other network: c does not reach a');
  t.false(await pings(a!.netnsPath, ip(epC.ipv4Address), { waitSeconds: 1 }), 'other network: a does not reach c');
});

test.serial('outbound traffic is masqueraded; an --internal network has no route out', async (t) => {
  const env = await withEnv(t);
  const outside = uniqueName('o');
  const outsidePath = await addNetns(outside);
  t.teardown(() => removeNetns(outside));
  // The "outside world": a namespace joined to the host by a veth, with addresses from 198.18.0.0/15.
  const hostEnd = uniqueName('v');
  for (const args of [
    ['-n', env.hostNs, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'up0', 'netns', outside],
    ['-n', env.hostNs, 'addr', 'add', '198.18.7.1/24', 'dev', hostEnd],
    ['-n', env.hostNs, 'link', 'set', hostEnd, 'up'],
    ['-n', outside, 'addr', 'add', '198.18.7.2/24', 'dev', 'up0'],
    ['-n', outside, 'link', 'set', 'up0', 'up'],
  ]) {
    const result = await run('ip', args);
    t.is(result.code, 0, result.stderr);
  }
  const { controller } = env;
  await controller.createNetwork({ name: 'open' });
  await controller.createNetwork({ name: 'closed', internal: true });
  const a = await controller.createSandbox({ name: env.sandboxName('a') });
  const b = await controller.createSandbox({ name: env.sandboxName('b') });
  await controller.connect('open', a.name);
  await controller.connect('closed', b.name);
  // The outside namespace has no route to the bridge subnets: a reply can only come back if the source was masqueraded.
  t.true(await pings(a.netnsPath, '198.18.7.2'), 'the open network reaches out');
  t.is((await routes(b.netnsPath)).find((r) => r.dst === 'default'), undefined, 'internal: no default route');
  t.false(await pings(b.netnsPath, '198.18.7.2', { waitSeconds: 1 }), 'internal: nothing out');
});

test.serial('from outside, a sandbox is reached only through a port the host forwards to it (DNAT), as a published port', async (t) => {
  const env = await withEnv(t);
  const outside = uniqueName('o');
  const outsidePath = await addNetns(outside);
  t.teardown(() => removeNetns(outside));
  const hostEnd = uniqueName('v');
  await env.controller.createNetwork({ name: 'pub', ipam: { config: [{ subnet: '10.46.0.0/24' }] } });
  const sandbox = await env.controller.createSandbox({ name: env.sandboxName('a') });
  await env.controller.connect('pub', sandbox.name);
  for (const args of [
    ['-n', env.hostNs, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'up0', 'netns', outside],
    ['-n', env.hostNs, 'addr', 'add', '198.18.8.1/24', 'dev', hostEnd],
    ['-n', env.hostNs, 'link', 'set', hostEnd, 'up'],
    ['-n', outside, 'addr', 'add', '198.18.8.2/24', 'dev', 'up0'],
    ['-n', outside, 'link', 'set', 'up0', 'up'],
    // A route to the bridge subnet, so a direct attempt is forwarded and meets the bridge's rules.
    ['-n', outside, 'route', 'add', '10.46.0.0/24', 'via', '198.18.8.1'],
  ]) {
    const result = await run('ip', args);
    t.is(result.code, 0, result.stderr);
  }
  const server = spawn('nsenter', [`--net=${sandbox.netnsPath}`, process.execPath, '-e', "require('http').createServer((q, s) => s.end('sandbox')).listen(8000)"], {
    stdio: 'ignore',
  });
  t.teardown(() => {
    server.kill('SIGKILL');
  });
  const fetchFromOutside = (url: string) => run('nsenter', [`--net=${outsidePath}`, 'curl', '-s', '-m', '2', url]);
  await waitFor('the sandbox listening', async () => ((await run('nsenter', [`--net=${sandbox.netnsPath}`, 'curl', '-s', '-m', '1', 'http://127.0.0.1:8000/'])).stdout === 'sandbox' ? true : undefined), 10_000);
  t.not((await fetchFromOutside('http://10.46.0.2:8000/')).stdout, 'sandbox', 'no new connection from outside straight to a sandbox');
  const dnat = await run('nsenter', [
    `--net=${env.hostNsPath}`,
    '/usr/sbin/nft',
    'add table ip published; add chain ip published pre { type nat hook prerouting priority dstnat; }; add rule ip published pre tcp dport 8080 dnat to 10.46.0.2:8000',
  ]);
  t.is(dnat.code, 0, dnat.stderr);
  t.is((await fetchFromOutside('http://198.18.8.1:8080/')).stdout, 'sandbox', 'the forwarded port reaches the sandbox');
});

test.serial('enable_icc=false: sandboxes reach the gateway but not each other', async (t) => {
  const env = await withEnv(t);
  const { controller } = env;
  await controller.createNetwork({
    name: 'noicc',
    ipam: { config: [{ subnet: '10.45.0.0/24' }] },
    options: { 'com.docker.network.bridge.enable_icc': 'false' },
  });
  const a = await controller.createSandbox({ name: env.sandboxName('a') });
  const b = await controller.createSandbox({ name: env.sandboxName('b') });
  await controller.connect('noicc', a.name);
  await controller.connect('noicc', b.name);
  t.true(await pings(a.netnsPath, '10.45.0.1'));
  t.false(await pings(a.netnsPath, '10.45.0.3', { waitSeconds: 1 }));
});

test.serial('bridge name and MTU options', async (t) => {
  const env = await withEnv(t);
  const bridgeName = uniqueName('b');
  await env.controller.createNetwork({
    name: 'opts',
    options: { 'com.docker.network.bridge.name': bridgeName, 'com.docker.network.driver.mtu': '1400' },
  });
  const sandbox = await env.controller.createSandbox({ name: env.sandboxName('s') });
  await env.controller.connect('opts', sandbox.name);
  t.is((await links(env.hostNsPath)).find((l) => l.ifname === bridgeName)?.mtu, 1400);
  t.is((await links(sandbox.netnsPath)).find((l) => l.ifname === 'eth0')?.mtu, 1400);
  await t.throwsAsync(
    env.controller.createNetwork({ name: 'again', options: { 'com.docker.network.bridge.name': bridgeName } }),
    { message: /already used/ },
  );
  await t.throwsAsync(env.controller.createNetwork({ name: 'm', options: { 'com.docker.network.driver.mtu': 'big' } }), {
    message: /invalid MTU "big"/,
  });
});

test.serial('bad input leaves the kernel as it was', async (t) => {
  const env = await withEnv(t);
  const { controller } = env;
  await controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.46.0.0/24' }] } });
  const a = await controller.createSandbox({ name: env.sandboxName('a') });
  await controller.connect('n', a.name, { ipv4Address: '10.46.0.5' });
  const b = await controller.createSandbox({ name: env.sandboxName('b') });
  // A link of another kind that a bridge name option points at is refused, and the undo leaves it alone.
  await inNetns(env.hostNsPath, 'ip', ['link', 'add', 'keepme0', 'type', 'veth', 'peer', 'name', 'keepme1']);
  const hostBefore = (await links(env.hostNsPath)).map((l) => l.ifname).sort();
  const rulesBefore = await nftRuleset(env.hostNsPath);
  await t.throwsAsync(controller.createNetwork({ name: 'x', options: { 'com.docker.network.bridge.name': 'keepme0' } }), {
    message: /cannot use keepme0 as the bridge: a veth link has that name/,
  });
  await t.throwsAsync(controller.connect('n', b.name, { ipv4Address: '10.46.0.5' }), { message: /10\.46\.0\.5/ });
  await t.throwsAsync(controller.createNetwork({ name: 'x', ipam: { config: [{ subnet: '10.46.0.0/25' }] } }), { message: /overlaps/ });
  await t.throwsAsync(controller.createNetwork({ name: 'x', options: { 'com.docker.network.bridge.enable_icc': 'maybe' } }), {
    message: /invalid value "maybe"/,
  });
  await t.throwsAsync(controller.removeNetwork('n'), { message: /active endpoints/ });
  t.deepEqual((await links(env.hostNsPath)).map((l) => l.ifname).sort(), hostBefore);
  t.is(await nftRuleset(env.hostNsPath), rulesBefore);
  t.is(await addresses(b.netnsPath, 'eth0'), undefined);
});

test.serial('IPv6: sandboxes get an IPv6 address and reach each other over it', async (t) => {
  const env = await withEnv(t);
  const { controller } = env;
  await controller.createNetwork({ name: 'v6', enableIPv6: true, ipam: { config: [{ subnet: '10.47.0.0/24' }, { subnet: 'fd00:47::/64' }] } });
  const a = await controller.createSandbox({ name: env.sandboxName('a') });
  const b = await controller.createSandbox({ name: env.sandboxName('b') });
  const epA = await controller.connect('v6', a.name);
  const epB = await controller.connect('v6', b.name);
  t.is(epA.ipv6Address, 'fd00:47::2/64');
  t.true((await addresses(a.netnsPath, 'eth0'))?.includes('fd00:47::2/64'));
  t.true(await pings(b.netnsPath, 'fd00:47::2'), `b (${epB.ipv6Address}) reaches a over IPv6`);
});

test.serial('leaving the gateway network moves the default route to the next network', async (t) => {
  const env = await withEnv(t);
  const { controller } = env;
  await controller.createNetwork({ name: 'first', ipam: { config: [{ subnet: '10.48.0.0/24' }] } });
  await controller.createNetwork({ name: 'second', ipam: { config: [{ subnet: '10.49.0.0/24' }] } });
  const sandbox = await controller.createSandbox({ name: env.sandboxName('s') });
  await controller.connect('first', sandbox.name);
  await controller.connect('second', sandbox.name);
  const defaultRoute = async () => (await routes(sandbox.netnsPath)).find((r) => r.dst === 'default');
  t.like(await defaultRoute(), { gateway: '10.48.0.1', dev: 'eth0' });
  await controller.disconnect('first', sandbox.name);
  t.like(await defaultRoute(), { gateway: '10.49.0.1', dev: 'eth1' });
  t.true(await pings(sandbox.netnsPath, '10.49.0.1'));
});

test.serial('a sandbox can register an existing namespace, which netctl then leaves in place', async (t) => {
  const env = await withEnv(t);
  const name = uniqueName('x');
  const path = await addNetns(name);
  t.teardown(() => removeNetns(name));
  await env.controller.createNetwork({ name: 'n', ipam: { config: [{ subnet: '10.50.0.0/24' }] } });
  const sandbox = await env.controller.createSandbox({ name: 'registered', netnsPath: path });
  t.false(sandbox.ownsNetns);
  await env.controller.connect('n', 'registered');
  t.deepEqual(await addresses(path, 'eth0'), ['10.50.0.2/24']);
  await env.controller.removeSandbox('registered');
  t.is(await addresses(path, 'eth0'), undefined, 'its interface is gone');
  t.deepEqual((await links(path)).map((l) => l.ifname), ['lo'], 'the namespace itself stays');
  await t.throwsAsync(env.controller.createSandbox({ name: 'y', netnsPath: '/tmp' }), { message: '/tmp is not a network namespace' });
});
