/**
 * netctl's Docker plugin spoken to as dockerd speaks to it (POST + JSON on
 * a unix socket), over a controller with in-memory doubles. The real
 * dockerd drives it in test/e2e/docker-plugin.test.ts.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { silentLogger } from '../../src/log.js';
import { DockerPluginServer } from '../../src/plugins/docker/server.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store } from '../../src/store/types.js';
import { CuttableStore } from '../helpers/cuttable-store.js';
import { MemoryNamespaces, RecordingDriver } from '../cnm/doubles.js';

interface Reply {
  status: number;
  contentType: string | undefined;
  body: Record<string, unknown>;
}

function post(socketPath: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        try {
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
          });
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The overlay's way: its gateway is no sandbox's default route. */
class OverlayDouble extends RecordingDriver {
  override readonly providesDefaultRoute = false;
}

const newId = () => randomBytes(32).toString('hex');

/** One host: a controller over its own local store, sharing `cluster` with the others, and its plugin on a socket. */
async function host(t: import('ava').ExecutionContext, cluster: Store, localStore: Store = new MemoryStore()) {
  const bridge = new RecordingDriver('bridge');
  const overlay = new OverlayDouble('overlay', 'global');
  const namespaces = new MemoryNamespaces();
  const controller = await Controller.open({
    store: localStore,
    globalStore: cluster,
    drivers: [bridge, overlay, new NullDriver()],
    namespaces,
    logger: silentLogger,
  });
  const dir = await mkdtemp(join(tmpdir(), 'netctl-plugin-'));
  const socket = join(dir, 'netctl.sock');
  // As the daemon wires it: the plugin's IPAM skips the routes the controller skips.
  const plugin = new DockerPluginServer({ controller, localStore, clusterStore: cluster, routedSubnets: () => namespaces.routedSubnets() });
  await plugin.listen(socket);
  t.teardown(async () => {
    await plugin.close();
    await controller.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { controller, localStore, bridge, overlay, namespaces, call: (path: string, body?: unknown) => post(socket, path, body) };
}

async function pluginKeys(store: Store): Promise<string[]> {
  return (await store.list('docker-plugin/')).map((kv) => kv.key);
}

test('activation names both plugin kinds; capabilities are local with global connectivity', async (t) => {
  const { call } = await host(t, new MemoryStore());
  const activate = await call('/Plugin.Activate');
  t.is(activate.status, 200);
  t.is(activate.contentType, 'application/vnd.docker.plugins.v1+json');
  t.deepEqual(activate.body, { Implements: ['NetworkDriver', 'IpamDriver'] });
  t.deepEqual((await call('/NetworkDriver.GetCapabilities', {})).body, { Scope: 'local', ConnectivityScope: 'global' });
  t.deepEqual((await call('/IpamDriver.GetCapabilities', {})).body, { RequiresMACAddress: false, RequiresRequestReplay: false });
});

test('an unknown call is a 404 and a bad request a 500 whose Err names the field', async (t) => {
  const { call } = await host(t, new MemoryStore());
  const unknown = await call('/NetworkDriver.Teleport', {});
  t.is(unknown.status, 404);
  t.regex(String(unknown.body['Err']), /does not implement \/NetworkDriver\.Teleport/);
  const bad = await call('/NetworkDriver.CreateNetwork', { NetworkID: 'nope' });
  t.is(bad.status, 500);
  t.regex(String(bad.body['Err']), /CreateNetwork: NetworkID is not 64 lowercase hex digits/);
  const swarm = await call('/NetworkDriver.AllocateNetwork', { NetworkID: newId() });
  t.is(swarm.status, 500);
  t.regex(String(swarm.body['Err']), /swarm/);
});

test('a container on a Docker network: pool, gateway, endpoint, handoff join, leave and removal leave nothing behind', async (t) => {
  const cluster = new MemoryStore();
  const { call, controller, bridge, localStore } = await host(t, cluster);
  const pool = await call('/IpamDriver.RequestPool', { AddressSpace: 'local', Pool: '', SubPool: '', Options: {}, V6: false });
  t.is(pool.status, 200);
  t.is(pool.body['Pool'], '172.17.0.0/16');
  const poolId = String(pool.body['PoolID']);
  const gateway = await call('/IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  t.is(gateway.body['Address'], '172.17.0.1/16');
  const networkId = newId();
  const created = await call('/NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': '1400' }, 'com.docker.network.enable_ipv6': false },
    IPv4Data: [{ AddressSpace: 'local', Pool: '172.17.0.0/16', Gateway: '172.17.0.1/16', AuxAddresses: null }],
    IPv6Data: null,
  });
  t.is(created.status, 200, JSON.stringify(created.body));
  const [view] = await controller.listNetworks();
  t.is(view?.network.name, `docker-${networkId.slice(0, 12)}`);
  t.is(view?.network.options['com.docker.network.driver.mtu'], '1400');

  const address = await call('/IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
  t.is(address.body['Address'], '172.17.0.2/16');
  const endpointId = newId();
  const endpoint = await call('/NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: endpointId,
    Interface: { Address: '172.17.0.2/16', AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  t.is(endpoint.status, 200, JSON.stringify(endpoint.body));
  // Only what netctl chose comes back: dockerd refuses an answer that changes what it gave.
  t.deepEqual(endpoint.body, { Interface: { MacAddress: '02:42:ac:11:00:02' } });

  const joined = await call('/NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: {} });
  t.is(joined.status, 200, JSON.stringify(joined.body));
  t.deepEqual(joined.body, { InterfaceName: { SrcName: `nc${endpointId.slice(0, 12)}`, DstPrefix: 'eth' }, Gateway: '172.17.0.1' });
  const sandbox = await controller.inspectSandbox('docker-0123456789ab');
  t.true(sandbox.handoff);
  t.is(sandbox.netnsPath, '');
  t.is(bridge.joined.get(endpointId), `docker-0123456789ab/nc${endpointId.slice(0, 12)}`);
  t.is((await call('/NetworkDriver.EndpointOperInfo', { NetworkID: networkId, EndpointID: endpointId })).body['Value'] !== undefined, true);

  t.is((await call('/NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId })).status, 200);
  t.is(bridge.joined.size, 0);
  t.deepEqual(await controller.listSandboxes(), [], 'the handoff sandbox goes with its last endpoint');
  t.is((await call('/NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId })).status, 200);
  t.is((await call('/IpamDriver.ReleaseAddress', { PoolID: poolId, Address: '172.17.0.2/16' })).status, 200);
  t.is((await call('/NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.deepEqual(await controller.listNetworks(), []);
  t.is((await call('/IpamDriver.ReleaseAddress', { PoolID: poolId, Address: '172.17.0.1/16' })).status, 200);
  t.is((await call('/IpamDriver.ReleasePool', { PoolID: poolId })).status, 200);
  t.deepEqual(await pluginKeys(cluster), []);
  t.deepEqual(await pluginKeys(localStore), []);
  // Calls dockerd repeats after a restart find nothing and are no error.
  t.is((await call('/NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId })).status, 200);
  t.is((await call('/NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId })).status, 200);
  t.is((await call('/NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
});

test('IPAM: two hosts share a subnet and never hand out one address twice; one host cannot hold overlapping pools', async (t) => {
  const cluster = new MemoryStore();
  const a = await host(t, cluster);
  const b = await host(t, cluster);
  const request = { AddressSpace: 'local', Pool: '10.9.0.0/24', SubPool: '', Options: {}, V6: false };
  const poolA = await a.call('/IpamDriver.RequestPool', request);
  const poolB = await b.call('/IpamDriver.RequestPool', request);
  t.is(poolA.status, 200);
  t.is(poolB.status, 200);
  const overlapping = await a.call('/IpamDriver.RequestPool', { ...request, Pool: '10.9.0.0/16' });
  t.is(overlapping.status, 500);
  t.regex(String(overlapping.body['Err']), /pool 10\.9\.0\.0\/16 overlaps with pool 10\.9\.0\.0\/24 already in use/);
  const gateway = { Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } };
  t.is((await a.call('/IpamDriver.RequestAddress', { PoolID: poolA.body['PoolID'], ...gateway })).body['Address'], '10.9.0.1/24');
  t.is((await b.call('/IpamDriver.RequestAddress', { PoolID: poolB.body['PoolID'], ...gateway })).body['Address'], '10.9.0.1/24');
  const first = await a.call('/IpamDriver.RequestAddress', { PoolID: poolA.body['PoolID'], Address: '', Options: {} });
  const second = await b.call('/IpamDriver.RequestAddress', { PoolID: poolB.body['PoolID'], Address: '', Options: {} });
  t.is(first.body['Address'], '10.9.0.2/24');
  t.is(second.body['Address'], '10.9.0.3/24');
  const taken = await b.call('/IpamDriver.RequestAddress', { PoolID: poolB.body['PoolID'], Address: '10.9.0.2', Options: {} });
  t.is(taken.status, 500);
  t.regex(String(taken.body['Err']), /address 10\.9\.0\.2 is already in use/);
  // An address given to host a is a's to release: b's release of it changes nothing.
  t.is((await b.call('/IpamDriver.ReleaseAddress', { PoolID: poolB.body['PoolID'], Address: '10.9.0.2/24' })).status, 200);
  t.is((await b.call('/IpamDriver.RequestAddress', { PoolID: poolB.body['PoolID'], Address: '10.9.0.2', Options: {} })).status, 500);
  // Host a lets go: b still holds the subnet, so its addresses and the gateway stay.
  await a.call('/IpamDriver.ReleaseAddress', { PoolID: poolA.body['PoolID'], Address: '10.9.0.2/24' });
  await a.call('/IpamDriver.ReleasePool', { PoolID: poolA.body['PoolID'] });
  t.deepEqual((await pluginKeys(cluster)).filter((key) => key.includes('addresses')).length, 2);
  const unheld = await a.call('/IpamDriver.RequestAddress', { PoolID: poolA.body['PoolID'], Address: '', Options: {} });
  t.is(unheld.status, 500);
  t.regex(String(unheld.body['Err']), /not held on this host/);
  await b.call('/IpamDriver.ReleasePool', { PoolID: poolB.body['PoolID'] });
  t.deepEqual(await pluginKeys(cluster), []);
});

test('IPAM: an automatic pool skips every network netctl has, every pool held and every subnet the host routes', async (t) => {
  const cluster = new MemoryStore();
  const { call, controller, namespaces } = await host(t, cluster);
  await controller.createNetwork({ name: 'mine' });
  const auto = { AddressSpace: 'local', Pool: '', SubPool: '', Options: {}, V6: false };
  t.is((await call('/IpamDriver.RequestPool', auto)).body['Pool'], '172.18.0.0/16');
  t.is((await call('/IpamDriver.RequestPool', auto)).body['Pool'], '172.19.0.0/16');
  namespaces.routed.push('172.20.0.0/16', '172.21.3.4/24');
  t.is((await call('/IpamDriver.RequestPool', auto)).body['Pool'], '172.22.0.0/16');
  const unknownOption = await call('/IpamDriver.RequestPool', { ...auto, Options: { color: 'blue' } });
  t.is(unknownOption.status, 500);
  t.regex(String(unknownOption.body['Err']), /unknown IPAM option "color"/);
});

test('an overlay named with -o netctl.network is one netctl network for every host, removed with its last Docker network', async (t) => {
  const cluster = new MemoryStore();
  const a = await host(t, cluster);
  const b = await host(t, cluster);
  const body = (networkId: string, subnet = '10.20.0.0/24') => ({
    NetworkID: networkId,
    Options: { 'com.docker.network.generic': { 'netctl.driver': 'overlay', 'netctl.network': 'ov' } },
    IPv4Data: [{ AddressSpace: 'local', Pool: subnet, Gateway: '10.20.0.1/24', AuxAddresses: {} }],
    IPv6Data: [],
  });
  const onA = newId();
  const onB = newId();
  t.is((await a.call('/NetworkDriver.CreateNetwork', body(onA))).status, 200);
  const mismatch = await b.call('/NetworkDriver.CreateNetwork', body(newId(), '10.21.0.0/24'));
  t.is(mismatch.status, 500);
  t.regex(String(mismatch.body['Err']), /has subnets 10\.20\.0\.0\/24, not 10\.21\.0\.0\/24/);
  t.is((await b.call('/NetworkDriver.CreateNetwork', body(onB))).status, 200);
  const networks = await b.controller.listNetworks();
  t.deepEqual(networks.map((view) => [view.network.name, view.network.driver, view.network.scope]), [['ov', 'overlay', 'global']]);

  const endpointId = newId();
  const endpoint = await b.call('/NetworkDriver.CreateEndpoint', {
    NetworkID: onB,
    EndpointID: endpointId,
    Interface: { Address: '10.20.0.5/24', AddressIPv6: '', MacAddress: '02:00:00:00:00:05' },
    Options: {},
  });
  t.deepEqual(endpoint.body, { Interface: {} });
  const joined = await b.call('/NetworkDriver.Join', { NetworkID: onB, EndpointID: endpointId, SandboxKey: '/run/docker/netns/feedbeef0001', Options: {} });
  t.deepEqual(joined.body, { InterfaceName: { SrcName: `nc${endpointId.slice(0, 12)}`, DstPrefix: 'eth' } }, 'overlay gives no default route');
  t.is((await a.controller.inspectNetwork('ov')).endpoints[0]?.macAddress, '02:00:00:00:00:05');

  t.is((await a.call('/NetworkDriver.DeleteNetwork', { NetworkID: onA })).status, 200);
  t.is((await b.controller.listNetworks()).length, 1, 'b still uses it');
  await b.call('/NetworkDriver.Leave', { NetworkID: onB, EndpointID: endpointId });
  await b.call('/NetworkDriver.DeleteEndpoint', { NetworkID: onB, EndpointID: endpointId });
  t.is((await b.call('/NetworkDriver.DeleteNetwork', { NetworkID: onB })).status, 200);
  t.deepEqual(await b.controller.listNetworks(), []);
  t.deepEqual(await pluginKeys(cluster), []);
});

test('a netctl network not made for Docker is not taken over, and docker run -p is refused, not ignored', async (t) => {
  const { call, controller } = await host(t, new MemoryStore());
  await controller.createNetwork({ name: 'ops' });
  const taken = await call('/NetworkDriver.CreateNetwork', {
    NetworkID: newId(),
    Options: { 'com.docker.network.generic': { 'netctl.network': 'ops' } },
    IPv4Data: [],
    IPv6Data: [],
  });
  t.is(taken.status, 500);
  t.regex(String(taken.body['Err']), /netctl network ops exists and was not made through the Docker plugin/);
  const published = await call('/NetworkDriver.ProgramExternalConnectivity', {
    NetworkID: newId(),
    EndpointID: newId(),
    Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }] },
  });
  t.is(published.status, 500);
  t.regex(String(published.body['Err']), /does not publish container ports/);
  const exposedOnly = await call('/NetworkDriver.ProgramExternalConnectivity', { NetworkID: newId(), EndpointID: newId(), Options: { 'com.docker.network.portmap': null } });
  t.is(exposedOnly.status, 200);
  // A host network would take no container: refused when it is made, not at each join.
  const onHost = await call('/NetworkDriver.CreateNetwork', { NetworkID: newId(), Options: { 'com.docker.network.generic': { 'netctl.driver': 'host' } }, IPv4Data: [], IPv6Data: [] });
  t.is(onHost.status, 500);
  t.regex(String(onHost.body['Err']), /netctl.driver=host: netctl's host network takes no containers/);
  t.deepEqual((await controller.listNetworks()).map((view) => view.network.name), ['ops']);
});

test('Docker\'s null IPAM (0.0.0.0/0) makes a network without addresses', async (t) => {
  const { call, controller } = await host(t, new MemoryStore());
  const networkId = newId();
  const created = await call('/NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: {},
    IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0', Gateway: '', AuxAddresses: null }],
    IPv6Data: null,
  });
  t.is(created.status, 200, JSON.stringify(created.body));
  const [view] = await controller.listNetworks();
  t.false(view?.network.enableIPv4);
  t.deepEqual(view?.network.ipam.config, []);
  const endpoint = await call('/NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: newId(), Interface: { Address: '', AddressIPv6: '', MacAddress: '' }, Options: {} });
  t.is(endpoint.status, 200, JSON.stringify(endpoint.body));
  t.is((endpoint.body['Interface'] as Record<string, unknown>)['Address'], undefined, 'netctl picks no address of its own');
});

test('a join the driver fails leaves no sandbox behind', async (t) => {
  const { call, bridge, controller } = await host(t, new MemoryStore());
  const networkId = newId();
  await call('/NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: {},
    IPv4Data: [{ AddressSpace: 'local', Pool: '172.30.0.0/16', Gateway: '172.30.0.1/16', AuxAddresses: {} }],
    IPv6Data: [],
  });
  const endpointId = newId();
  await call('/NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '172.30.0.9/16' }, Options: {} });
  bridge.failNext = 'join';
  const failed = await call('/NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/aaaa', Options: {} });
  t.is(failed.status, 500);
  t.regex(String(failed.body['Err']), /injected join failure/);
  t.deepEqual(await controller.listSandboxes(), []);
  const retried = await call('/NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/aaaa', Options: {} });
  t.is(retried.status, 200);
});

/** A Docker network of `subnet` on the host's plugin, with Docker's own IPAM, and `count` endpoints on it. */
async function networkWithEndpoints(call: (path: string, body?: unknown) => Promise<Reply>, subnet: string, count: number) {
  const networkId = newId();
  const created = await call('/NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: {},
    IPv4Data: [{ AddressSpace: 'local', Pool: subnet, Gateway: subnet.replace(/0\/24$/, '1/24'), AuxAddresses: null }],
    IPv6Data: null,
  });
  if (created.status !== 200) throw new Error(JSON.stringify(created.body));
  const endpoints: string[] = [];
  for (let i = 0; i < count; i++) {
    const endpointId = newId();
    const made = await call('/NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: endpointId,
      Interface: { Address: subnet.replace(/0\/24$/, `${10 + i}/24`), AddressIPv6: '', MacAddress: '' },
      Options: {},
    });
    if (made.status !== 200) throw new Error(JSON.stringify(made.body));
    endpoints.push(endpointId);
  }
  return { networkId, endpoints };
}

test('a container leaving its last network while it joins another keeps the new one: joins and leaves of one sandbox take turns', async (t) => {
  // Stores that take turns, as SQLite and etcd do: joins and leaves interleave as they do in the daemon.
  const { call, controller, bridge } = await host(t, new CuttableStore(new MemoryStore(), true), new CuttableStore(new MemoryStore(), true));
  const first = await networkWithEndpoints(call, '10.61.0.0/24', 10);
  const second = await networkWithEndpoints(call, '10.62.0.0/24', 10);
  for (let round = 0; round < 10; round++) {
    const key = `/var/run/docker/netns/race${round}`;
    const a = first.endpoints[round] ?? '';
    const b = second.endpoints[round] ?? '';
    t.is((await call('/NetworkDriver.Join', { NetworkID: first.networkId, EndpointID: a, SandboxKey: key, Options: {} })).status, 200);
    const [left, joined] = await Promise.all([
      call('/NetworkDriver.Leave', { NetworkID: first.networkId, EndpointID: a }),
      call('/NetworkDriver.Join', { NetworkID: second.networkId, EndpointID: b, SandboxKey: key, Options: {} }),
    ]);
    t.is(left.status, 200, JSON.stringify(left.body));
    t.is(joined.status, 200, JSON.stringify(joined.body));
    const sandbox = await controller.inspectSandbox(`docker-race${round}`);
    t.deepEqual(sandbox.endpoints.map((endpoint) => endpoint.id), [b], `round ${round}: the sandbox holds the endpoint just joined`);
    t.true(bridge.joined.has(b));
  }
});

test('IPAM: pool requests side by side never hold overlapping pools on one host, and automatic ones each get their own', async (t) => {
  const { call } = await host(t, new CuttableStore(new MemoryStore(), true), new CuttableStore(new MemoryStore(), true));
  const asked = ['10.93.0.0/16', '10.93.0.0/17', '10.93.0.0/20', '10.93.1.0/24', '10.93.128.0/17', '10.93.200.0/24'];
  const replies = await Promise.all(asked.map((pool) => call('/IpamDriver.RequestPool', { AddressSpace: 'local', Pool: pool, SubPool: '', Options: {}, V6: false })));
  const held = replies.filter((reply) => reply.status === 200).map((reply) => String(reply.body['Pool']));
  t.is(held.length, 1, `one of the overlapping pools is held: ${held.join(', ')}`);
  for (const reply of replies.filter((r) => r.status !== 200)) t.regex(String(reply.body['Err']), /overlaps with pool/);

  const automatic = await Promise.all(Array.from({ length: 4 }, () => call('/IpamDriver.RequestPool', { AddressSpace: 'local', Pool: '', SubPool: '', Options: {}, V6: false })));
  t.deepEqual(automatic.map((reply) => reply.status), [200, 200, 200, 200], JSON.stringify(automatic.map((reply) => reply.body)));
  t.is(new Set(automatic.map((reply) => reply.body['Pool'])).size, 4);
});

test('IPAM: many address requests side by side on one host all get an address, each its own', async (t) => {
  const { call } = await host(t, new CuttableStore(new MemoryStore(), true), new CuttableStore(new MemoryStore(), true));
  const pool = await call('/IpamDriver.RequestPool', { AddressSpace: 'local', Pool: '10.94.0.0/24', SubPool: '', Options: {}, V6: false });
  const replies = await Promise.all(Array.from({ length: 100 }, () => call('/IpamDriver.RequestAddress', { PoolID: pool.body['PoolID'], Address: '', Options: {} })));
  t.deepEqual(replies.filter((reply) => reply.status !== 200).map((reply) => reply.body['Err']), []);
  t.is(new Set(replies.map((reply) => reply.body['Address'])).size, 100);
});
