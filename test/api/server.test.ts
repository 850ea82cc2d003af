import { execFileSync } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { availableParallelism, hostname, machine, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import anyTest, { type TestFn } from 'ava';
import { ApiServer } from '../../src/api/server.js';
import { metricTypes, sampleValue } from '../helpers/prometheus.js';
import { type Fixture, call, startFixture } from './fixture.js';

const test = anyTest as TestFn<Fixture>;

test.beforeEach(async (t) => {
  t.context = await startFixture();
});

test.afterEach.always(async (t) => {
  await t.context.close();
});

async function createNetwork(fixture: Fixture, body: Record<string, unknown>): Promise<string> {
  const res = await call(fixture, 'POST', '/networks/create', body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  return res.json.Id as string;
}

test('_ping answers OK with the version headers, for GET and HEAD, with or without a prefix', async (t) => {
  for (const path of ['/_ping', '/v1.47/_ping', '/v1.24/_ping']) {
    const res = await call(t.context, 'GET', path);
    t.is(res.status, 200, path);
    t.is(res.text, 'OK');
    t.is(res.headers['api-version'], '1.47');
    t.is(res.headers['ostype'], 'linux');
    t.is(res.headers['server'], 'netctl/0.1.0');
  }
  const head = await call(t.context, 'HEAD', '/_ping');
  t.is(head.status, 200);
  t.is(head.text, '');
  t.is(head.headers['api-version'], '1.47');
});

test('/version has the Docker shape', async (t) => {
  const res = await call(t.context, 'GET', '/v1.47/version');
  t.is(res.status, 200);
  t.is(res.json.Version, '0.1.0');
  t.is(res.json.ApiVersion, '1.47');
  t.is(res.json.MinAPIVersion, '1.24');
  t.is(res.json.Os, 'linux');
  t.is(res.json.GoVersion, process.version);
  t.is(typeof res.json.KernelVersion, 'string');
  t.truthy(res.json.Arch);
  t.deepEqual(res.json.Components[0].Name, 'netctl');
  t.deepEqual(res.json.Components[0].Version, '0.1.0');
});

test('an API version above the maximum or below the minimum is a 400', async (t) => {
  const tooNew = await call(t.context, 'GET', '/v1.99/networks');
  t.is(tooNew.status, 400);
  t.regex(tooNew.json.message, /client version 1\.99 is too new/);
  const tooOld = await call(t.context, 'GET', '/v1.12/networks');
  t.is(tooOld.status, 400);
  t.regex(tooOld.json.message, /too old/);
});

test('create answers 201 with Id and Warning; inspect shows Docker field names', async (t) => {
  const res = await call(t.context, 'POST', '/v1.47/networks/create', {
    Name: 'front',
    Driver: 'bridge',
    CheckDuplicate: true,
    Scope: '',
    ConfigFrom: null,
    EnableIPv6: null,
    Internal: true,
    Attachable: true,
    IPAM: {
      Driver: 'default',
      Config: [{ Subnet: '10.77.0.0/16', IPRange: '10.77.1.0/24', Gateway: '10.77.0.254', AuxiliaryAddresses: { host: '10.77.0.5' } }],
      Options: {},
    },
    Options: { 'com.docker.network.driver.mtu': '1400' },
    Labels: { team: 'blue' },
  });
  t.is(res.status, 201);
  t.deepEqual(Object.keys(res.json).sort(), ['Id', 'Warning']);
  t.regex(res.json.Id, /^[0-9a-f]{64}$/);
  t.is(res.json.Warning, '');

  const inspect = await call(t.context, 'GET', '/networks/front');
  t.is(inspect.status, 200);
  const n = inspect.json;
  t.is(n.Name, 'front');
  t.is(n.Id, res.json.Id);
  t.is(n.Driver, 'bridge');
  t.is(n.Scope, 'local');
  t.true(n.Internal);
  t.true(n.Attachable);
  t.false(n.Ingress);
  t.false(n.EnableIPv6);
  t.true(n.EnableIPv4);
  t.deepEqual(n.IPAM, {
    Driver: 'default',
    Options: {},
    Config: [{ Subnet: '10.77.0.0/16', IPRange: '10.77.1.0/24', Gateway: '10.77.0.254', AuxiliaryAddresses: { host: '10.77.0.5' } }],
  });
  t.deepEqual(n.Options, { 'com.docker.network.driver.mtu': '1400' });
  t.deepEqual(n.Labels, { team: 'blue' });
  t.deepEqual(n.Containers, {});
  t.deepEqual(n.ConfigFrom, { Network: '' });
  t.regex(n.Created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);

  const byPrefix = await call(t.context, 'GET', `/networks/${res.json.Id.slice(0, 12)}?verbose=false`);
  t.is(byPrefix.json.Name, 'front');
});

test('inspect with a scope other than the network\'s is a 404', async (t) => {
  await createNetwork(t.context, { Name: 'scoped' });
  t.is((await call(t.context, 'GET', '/networks/scoped?scope=local')).status, 200);
  const other = await call(t.context, 'GET', '/networks/scoped?scope=swarm');
  t.is(other.status, 404);
  t.is(other.json.message, 'network scoped not found');
});

test('create errors: duplicate 409, bad subnet 400, unknown driver 400, missing name 400', async (t) => {
  await createNetwork(t.context, { Name: 'dup' });
  const dup = await call(t.context, 'POST', '/networks/create', { Name: 'dup' });
  t.is(dup.status, 409);
  t.is(dup.json.message, 'network with name dup already exists');
  t.deepEqual(Object.keys(dup.json), ['message']);

  const badSubnet = await call(t.context, 'POST', '/networks/create', { Name: 'bad', IPAM: { Config: [{ Subnet: '10.0.0.1/33' }] } });
  t.is(badSubnet.status, 400);
  t.truthy(badSubnet.json.message);

  const badDriver = await call(t.context, 'POST', '/networks/create', { Name: 'bad', Driver: 'nope' });
  t.is(badDriver.status, 400);
  t.regex(badDriver.json.message, /unknown network driver "nope"/);

  const noName = await call(t.context, 'POST', '/networks/create', { Driver: 'bridge' });
  t.is(noName.status, 400);
  t.is(noName.json.message, 'Name is required');

  const wrongType = await call(t.context, 'POST', '/networks/create', { Name: 'x', Internal: 'yes' });
  t.is(wrongType.status, 400);
  t.is(wrongType.json.message, 'Internal must be a boolean');
});

test('bad JSON and a non-object body are 400', async (t) => {
  const bad = await call(t.context, 'POST', '/networks/create', '{"Name": ');
  t.is(bad.status, 400);
  t.regex(bad.json.message, /^invalid JSON in request body/);
  const array = await call(t.context, 'POST', '/networks/create', '[]');
  t.is(array.status, 400);
  t.is(array.json.message, 'request body must be a JSON object');
  const empty = await call(t.context, 'POST', '/networks/create', '');
  t.is(empty.status, 400);
});

test('list returns every network; filters work as a JSON array map and as the old boolean map', async (t) => {
  await createNetwork(t.context, { Name: 'alpha', Labels: { env: 'prod' } });
  await createNetwork(t.context, { Name: 'beta', Driver: 'null' });
  const all = await call(t.context, 'GET', '/networks');
  t.is(all.status, 200);
  t.deepEqual(all.json.map((n: { Name: string }) => n.Name).sort(), ['alpha', 'beta']);

  const arrays = await call(t.context, 'GET', `/networks?filters=${encodeURIComponent('{"driver":["null"]}')}`);
  t.deepEqual(arrays.json.map((n: { Name: string }) => n.Name), ['beta']);
  const maps = await call(t.context, 'GET', `/v1.40/networks?filters=${encodeURIComponent('{"label":{"env=prod":true}}')}`);
  t.deepEqual(maps.json.map((n: { Name: string }) => n.Name), ['alpha']);

  const badKey = await call(t.context, 'GET', `/networks?filters=${encodeURIComponent('{"colour":["red"]}')}`);
  t.is(badKey.status, 400);
  t.is(badKey.json.message, "invalid filter 'colour'");
  const badJson = await call(t.context, 'GET', '/networks?filters=nope');
  t.is(badJson.status, 400);
  // A value that is not a string is refused, not dropped (a prune would widen); so is a key named __proto__.
  for (const filters of ['{"label":["env=prod",7]}', '{"name":[1]}', '{"label":{"env=prod":"yes"}}']) {
    const bad = await call(t.context, 'POST', `/networks/prune?filters=${encodeURIComponent(filters)}`);
    t.is(bad.status, 400, filters);
    t.regex(bad.json.message, /invalid filter value/);
  }
  const proto = await call(t.context, 'GET', `/networks?filters=${encodeURIComponent('{"__proto__":["x"]}')}`);
  t.is(proto.status, 400);
  t.is(proto.json.message, "invalid filter '__proto__'");
  t.deepEqual((await call(t.context, 'GET', '/networks')).json.map((n: { Name: string }) => n.Name).sort(), ['alpha', 'beta'], 'nothing was pruned');
});

test('delete answers 204, then 404 with a message', async (t) => {
  await createNetwork(t.context, { Name: 'gone' });
  const del = await call(t.context, 'DELETE', '/v1.47/networks/gone');
  t.is(del.status, 204);
  t.is(del.text, '');
  const again = await call(t.context, 'DELETE', '/networks/gone');
  t.is(again.status, 404);
  t.is(again.json.message, 'network gone not found');
  const inspect = await call(t.context, 'GET', '/networks/gone');
  t.is(inspect.status, 404);
});

test('prune removes unused networks matching the filters and reports NetworksDeleted', async (t) => {
  await createNetwork(t.context, { Name: 'keep', Labels: { keep: 'yes' } });
  await createNetwork(t.context, { Name: 'used' });
  await createNetwork(t.context, { Name: 'drop' });
  await call(t.context, 'POST', '/sandboxes/create', { Name: 'box' });
  t.is((await call(t.context, 'POST', '/networks/used/connect', { Container: 'box' })).status, 200);

  const res = await call(t.context, 'POST', `/networks/prune?filters=${encodeURIComponent('{"label!":["keep"]}')}`);
  t.is(res.status, 200);
  t.deepEqual(res.json, { NetworksDeleted: ['drop'] });
  const left = await call(t.context, 'GET', '/networks');
  t.deepEqual(left.json.map((n: { Name: string }) => n.Name).sort(), ['keep', 'used']);

  const badFilter = await call(t.context, 'POST', `/networks/prune?filters=${encodeURIComponent('{"name":["x"]}')}`);
  t.is(badFilter.status, 400);
});

test('connect and disconnect a sandbox; the network shows it under Containers', async (t) => {
  const id = await createNetwork(t.context, { Name: 'net', IPAM: { Config: [{ Subnet: '10.88.0.0/24' }] } });
  const box = await call(t.context, 'POST', '/sandboxes/create', { Name: 'box', Labels: { a: 'b' } });
  t.is(box.status, 201);

  const connect = await call(t.context, 'POST', `/networks/${id}/connect`, {
    Container: 'box',
    EndpointConfig: { IPAMConfig: { IPv4Address: '10.88.0.10' }, Aliases: ['web'], Links: null },
  });
  t.is(connect.status, 200);
  const network = (await call(t.context, 'GET', '/networks/net')).json;
  const entry = network.Containers[box.json.Id];
  t.is(entry.Name, 'box');
  t.is(entry.IPv4Address, '10.88.0.10/24');
  t.is(entry.MacAddress, '02:42:0a:58:00:0a');
  t.is(entry.IPv6Address, '');
  t.regex(entry.EndpointID, /^[0-9a-f]{64}$/);

  const sandbox = (await call(t.context, 'GET', '/sandboxes/box')).json;
  t.deepEqual(sandbox.Networks[id].Aliases, ['web']);
  t.is(sandbox.Networks[id].InterfaceName, 'eth0');
  t.is(sandbox.Networks[id].IPv4Address, '10.88.0.10/24');

  const twice = await call(t.context, 'POST', '/networks/net/connect', { Container: 'box' });
  t.is(twice.status, 403);
  t.is(twice.json.message, 'endpoint with name box already exists in network net');
  const unknownSandbox = await call(t.context, 'POST', '/networks/net/connect', { Container: 'ghost' });
  t.is(unknownSandbox.status, 404);
  t.is(unknownSandbox.json.message, 'sandbox ghost not found');
  const inUse = await call(t.context, 'DELETE', '/networks/net');
  t.is(inUse.status, 403);
  t.regex(inUse.json.message, /has active endpoints/);

  const disconnect = await call(t.context, 'POST', '/networks/net/disconnect', { Container: 'box', Force: false });
  t.is(disconnect.status, 200);
  t.deepEqual((await call(t.context, 'GET', '/networks/net')).json.Containers, {});
  const notConnected = await call(t.context, 'POST', '/networks/net/disconnect', { Container: 'box' });
  t.is(notConnected.status, 403);
  const noContainer = await call(t.context, 'POST', '/networks/net/disconnect', {});
  t.is(noContainer.status, 400);
});

test("connect takes the interface name from Docker's com.docker.network.endpoint.ifname driver option", async (t) => {
  const id = await createNetwork(t.context, { Name: 'net', IPAM: { Config: [{ Subnet: '10.89.0.0/24' }] } });
  t.is((await call(t.context, 'POST', '/sandboxes/create', { Name: 'box' })).status, 201);
  const connect = await call(t.context, 'POST', `/networks/${id}/connect`, {
    Container: 'box',
    EndpointConfig: { DriverOpts: { 'com.docker.network.endpoint.ifname': 'net7', 'com.example.other': 'ignored' } },
  });
  t.is(connect.status, 200, connect.text);
  const sandbox = (await call(t.context, 'GET', '/sandboxes/box')).json;
  t.is(sandbox.Networks[id].InterfaceName, 'net7');
  t.is(sandbox.Networks[id].HostInterfaceName, '', 'the test driver keeps no interface in the host namespace');
  t.is((await call(t.context, 'POST', '/sandboxes/create', { Name: 'other' })).status, 201);
  const invalid = await call(t.context, 'POST', `/networks/${id}/connect`, {
    Container: 'other',
    EndpointConfig: { DriverOpts: { 'com.docker.network.endpoint.ifname': 'bad name' } },
  });
  t.is(invalid.status, 400);
  t.regex(invalid.json.message, /invalid interface name "bad name"/);
  const notString = await call(t.context, 'POST', `/networks/${id}/connect`, { Container: 'other', EndpointConfig: { DriverOpts: { x: 1 } } });
  t.is(notString.status, 400);
});

test('sandbox routes: create, list, inspect, delete', async (t) => {
  t.context.namespaces.paths.add('/proc/1234/ns/net');
  const made = await call(t.context, 'POST', '/v1.47/sandboxes/create', { Name: 'one' });
  t.is(made.status, 201);
  t.is(made.json.Name, 'one');
  t.is(made.json.NetnsPath, '/var/run/netns/one');
  t.true(made.json.OwnsNetns);
  t.deepEqual(made.json.Networks, {});
  const external = await call(t.context, 'POST', '/sandboxes/create', { Name: 'two', NetnsPath: '/proc/1234/ns/net' });
  t.is(external.status, 201);
  t.false(external.json.OwnsNetns);
  const missing = await call(t.context, 'POST', '/sandboxes/create', { Name: 'three', NetnsPath: '/proc/999/ns/net' });
  t.is(missing.status, 400);
  const dup = await call(t.context, 'POST', '/sandboxes/create', { Name: 'one' });
  t.is(dup.status, 409);

  const list = await call(t.context, 'GET', '/sandboxes');
  t.deepEqual(list.json.map((s: { Name: string }) => s.Name).sort(), ['one', 'two']);
  const inspect = await call(t.context, 'GET', `/sandboxes/${made.json.Id}`);
  t.is(inspect.json.Name, 'one');
  t.deepEqual(Object.keys(inspect.json).sort(), ['Created', 'Id', 'Labels', 'Name', 'NetnsPath', 'Networks', 'OwnsNetns', 'ResolvConfPath']);

  t.is((await call(t.context, 'DELETE', '/sandboxes/one')).status, 204);
  t.false(t.context.namespaces.paths.has('/var/run/netns/one'));
  const gone = await call(t.context, 'GET', '/sandboxes/one');
  t.is(gone.status, 404);
  t.is(gone.json.message, 'sandbox one not found');
});

test("/info has Docker's SystemInfo shape: this host, its sandboxes as running containers, netctl's drivers and pools", async (t) => {
  await t.context.controller.createSandbox({ name: 'a' });
  await t.context.controller.createSandbox({ name: 'b' });
  const res = await call(t.context, 'GET', '/v1.47/info');
  t.is(res.status, 200);
  const info = res.json;
  t.is(info.ID, await t.context.controller.hostId());
  t.is(info.Name, hostname());
  t.is(info.Containers, 2);
  t.is(info.ContainersRunning, 2);
  t.is(info.ContainersStopped, 0);
  t.is(info.Images, 0);
  t.is(info.ServerVersion, '0.1.0');
  t.deepEqual(info.Plugins, { Volume: [], Network: ['null', 'bridge'], Authorization: null, Log: [] });
  t.is(info.OSType, 'linux');
  t.is(info.Architecture, machine());
  t.is(info.KernelVersion, release());
  t.is(info.NCPU, availableParallelism());
  t.is(info.MemTotal, totalmem());
  t.not(info.OperatingSystem, '');
  t.is(info.DockerRootDir, '', 'the fixture does not tell the server a state directory');
  t.is(info.Swarm.LocalNodeState, 'inactive');
  t.is(info.Swarm.NodeID, '');
  t.deepEqual(info.DefaultAddressPools[0], { Base: '172.17.0.0/16', Size: 16 });
  t.deepEqual(info.Warnings, []);
});

test('/containers routes answer for sandboxes: inspect by id, id prefix or name, 404 in Docker words, list with filters', async (t) => {
  const id = await createNetwork(t.context, { Name: 'net', IPAM: { Config: [{ Subnet: '10.87.0.0/24', Gateway: '10.87.0.254' }] } });
  await createNetwork(t.context, { Name: 'shut', Internal: true, IPAM: { Config: [{ Subnet: '10.86.0.0/24' }] } });
  const box = await t.context.controller.createSandbox({ name: 'box', labels: { role: 'db' } });
  // Creation times are in milliseconds: the list's order needs two apart.
  await setTimeout(5);
  await t.context.controller.createSandbox({ name: 'other' });
  await t.context.controller.connect('net', 'box', { ipv4Address: '10.87.0.9', aliases: ['db'] });
  const joined = await t.context.controller.connect('shut', 'box');

  for (const ref of [box.id, box.id.slice(0, 7), 'box']) {
    const res = await call(t.context, 'GET', `/v1.47/containers/${ref}/json`);
    t.is(res.status, 200, ref);
    t.is(res.json.Id, box.id);
  }
  const container = (await call(t.context, 'GET', '/containers/box/json')).json;
  t.is(container.Name, '/box');
  t.is(container.State.Status, 'running');
  t.true(container.State.Running);
  t.deepEqual(container.Config.Labels, { role: 'db' });
  t.is(container.NetworkSettings.SandboxKey, '/var/run/netns/box');
  const endpoint = (await t.context.controller.inspectSandbox('box')).endpoints.find((e) => e.networkId === id);
  t.deepEqual(container.NetworkSettings.Networks.net, {
    IPAMConfig: null,
    Links: null,
    MacAddress: endpoint?.macAddress,
    Aliases: ['db'],
    DriverOpts: null,
    NetworkID: id,
    EndpointID: endpoint?.id,
    Gateway: '10.87.0.254',
    IPAddress: '10.87.0.9',
    IPPrefixLen: 24,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    DNSNames: ['box', 'db'],
  });
  t.is(container.NetworkSettings.Networks.shut.EndpointID, joined.id);
  t.is(container.NetworkSettings.Networks.shut.Gateway, '', 'an internal network routes nothing, so Docker shows no gateway');

  const missing = await call(t.context, 'GET', '/containers/ghost/json');
  t.is(missing.status, 404);
  t.deepEqual(missing.json, { message: 'No such container: ghost' });

  const names = async (query = '') => (await call(t.context, 'GET', `/containers/json${query}`)).json.map((c: { Names: string[] }) => c.Names[0]);
  t.deepEqual(await names(), ['/other', '/box'], 'newest first');
  t.deepEqual(await names('?limit=1'), ['/other']);
  const filtered = async (filters: Record<string, string[]>) => names(`?filters=${encodeURIComponent(JSON.stringify(filters))}`);
  t.deepEqual(await filtered({ name: ['^/?b'] }), ['/box']);
  t.deepEqual(await filtered({ network: ['shut'] }), ['/box']);
  t.deepEqual(await filtered({ network: [id.slice(0, 8)] }), ['/box']);
  t.deepEqual(await filtered({ label: ['role=db'] }), ['/box']);
  t.deepEqual(await filtered({ status: ['exited'] }), []);
  const summary = (await call(t.context, 'GET', '/containers/json?filters={"name":["^box$"]}')).json[0];
  t.is(summary.Id, box.id);
  t.is(summary.State, 'running');
  t.regex(summary.Status, /^Up /);
  t.is(summary.Created, Math.floor(Date.parse(box.created) / 1000));
  t.deepEqual(summary.NetworkSettings.Networks.net, container.NetworkSettings.Networks.net);
  const badStatus = await call(t.context, 'GET', '/containers/json?filters={"status":["sleeping"]}');
  t.is(badStatus.status, 400);
  t.is(badStatus.json.message, 'Unrecognised filter value for status: sleeping');
  const badFilter = await call(t.context, 'GET', '/containers/json?filters={"ancestor":["busybox"]}');
  t.is(badFilter.status, 400);
  t.is(badFilter.json.message, "invalid filter 'ancestor'");
});

test("the rest of Docker's API is 501 with a message saying what netctl serves; images, volumes and plugins are never found", async (t) => {
  for (const [method, path] of [
    ['POST', '/v1.47/containers/create'],
    ['DELETE', '/containers/box'],
    ['POST', '/containers/box/start'],
    ['GET', '/images/json'],
    ['POST', '/exec/abc/start'],
    ['DELETE', '/volumes/data'],
    ['GET', '/events'],
  ] as const) {
    const res = await call(t.context, method, path, method === 'POST' ? {} : undefined);
    t.is(res.status, 501, `${method} ${path}`);
    t.deepEqual(res.json, { message: `netctl serves networks, not containers: ${method} ${path.replace('/v1.47', '')} is not implemented` });
  }
  // dockerd's not-found answers, which `docker inspect NAME` skips on its way to the networks.
  for (const [path, message] of [
    ['/images/library/busybox:latest/json', 'No such image: library/busybox:latest'],
    ['/volumes/data', 'get data: no such volume'],
    ['/plugins/vieux/sshfs/json', 'plugin "vieux/sshfs" not found'],
  ] as const) {
    const res = await call(t.context, 'GET', path);
    t.is(res.status, 404, path);
    t.deepEqual(res.json, { message });
  }
  const metrics = (await call(t.context, 'GET', '/metrics')).text;
  t.is(sampleValue(metrics, 'netctl_api_requests_total', { route: '/containers/*', method: 'POST', status: '501' }), 2);
});

test('unknown routes are 404 page not found; wrong methods are 405', async (t) => {
  const unknown = await call(t.context, 'GET', '/no/such/route');
  t.is(unknown.status, 404);
  t.deepEqual(unknown.json, { message: 'page not found' });
  t.is(unknown.headers['api-version'], '1.47');
  const prefixed = await call(t.context, 'GET', '/v1.47/nothing');
  t.is(prefixed.status, 404);
  const wrong = await call(t.context, 'PUT', '/networks/create');
  t.is(wrong.status, 405);
  t.is(wrong.json.message, 'method not allowed');
  t.is((await call(t.context, 'POST', '/networks/x')).status, 405);
  t.is((await call(t.context, 'DELETE', '/_ping')).status, 405);
});

test('listen makes the socket 0660, replaces a stale socket file and refuses a live one', async (t) => {
  t.is((await stat(t.context.socketPath)).mode & 0o777, 0o660);
  const second = new ApiServer(t.context.controller);
  const live = await t.throwsAsync(second.listen(t.context.socketPath));
  t.regex(live?.message ?? '', /already listening/);

  // A daemon killed with SIGKILL leaves its socket file behind with nobody listening: make one with a bind and exit.
  const stalePath = join(t.context.dir, 'stale.sock');
  execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stalePath]);
  t.true((await stat(stalePath)).isSocket());
  const revived = new ApiServer(t.context.controller);
  await revived.listen(stalePath);
  t.teardown(() => revived.close());
  const pong = await call({ ...t.context, socketPath: stalePath }, 'GET', '/_ping');
  t.is(pong.text, 'OK');

  await writeFile(join(t.context.dir, 'plain'), 'x');
  const notSocket = await t.throwsAsync(new ApiServer(t.context.controller).listen(join(t.context.dir, 'plain')));
  t.regex(notSocket?.message ?? '', /is not a socket/);
});

test('a malformed percent-encoding in a path parameter is a 400, not a 500', async (t) => {
  for (const [method, path] of [
    ['GET', '/networks/%E0%A4%A'],
    ['DELETE', '/v1.47/networks/%'],
    ['POST', '/networks/%ZZ/connect'],
    ['GET', '/sandboxes/%C0'],
  ] as const) {
    const res = await call(t.context, method, path, method === 'POST' ? { Container: 'box' } : undefined);
    t.is(res.status, 400, `${method} ${path}`);
    t.regex(res.json.message, /malformed percent-encoding/);
  }
  const encoded = await call(t.context, 'GET', `/networks/${encodeURIComponent('no such')}`);
  t.is(encoded.status, 404);
  t.is(encoded.json.message, 'network no such not found');
});

test('GET /metrics answers in the Prometheus text format; request counters and endpoint gauges move', async (t) => {
  const id = await createNetwork(t.context, { Name: 'net', IPAM: { Config: [{ Subnet: '10.89.0.0/24' }] } });
  t.is((await call(t.context, 'POST', '/sandboxes/create', { Name: 'box' })).status, 201);
  t.is((await call(t.context, 'POST', `/networks/${id}/connect`, { Container: 'box' })).status, 200);
  await call(t.context, 'GET', '/networks');
  await call(t.context, 'GET', '/v1.47/networks');
  await call(t.context, 'GET', '/networks/ghost');
  await call(t.context, 'GET', '/no/such/route');

  const res = await call(t.context, 'GET', '/metrics');
  t.is(res.status, 200);
  t.is(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.is(metricTypes(res.text).get('netctl_api_requests_total'), 'counter');
  const requests = (labels: Record<string, string>) => sampleValue(res.text, 'netctl_api_requests_total', labels);
  t.is(requests({ route: '/networks', method: 'GET', status: '200' }), 2, 'with and without a version prefix, one route');
  t.is(requests({ route: '/networks/{id}', method: 'GET', status: '404' }), 1);
  t.is(requests({ route: '/networks/create', method: 'POST', status: '201' }), 1);
  t.is(requests({ route: '/unmatched', method: 'GET', status: '404' }), undefined);
  t.is(requests({ route: 'unmatched', method: 'GET', status: '404' }), 1, 'raw paths never become labels');
  t.false(res.text.includes('ghost'));
  t.is(sampleValue(res.text, 'netctl_network_endpoints', { network: 'net' }), 1);

  t.is((await call(t.context, 'POST', `/networks/${id}/disconnect`, { Container: 'box' })).status, 200);
  const after = await call(t.context, 'GET', '/metrics');
  t.is(sampleValue(after.text, 'netctl_network_endpoints', { network: 'net' }), 0);
  t.is(sampleValue(after.text, 'netctl_api_requests_total', { route: '/metrics', status: '200' }), 1, 'the scrape before this one');
  t.is((await call(t.context, 'HEAD', '/metrics')).status, 200);
  t.is((await call(t.context, 'POST', '/metrics')).status, 405);
});
