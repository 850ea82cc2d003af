/**
 * dockerode, a Docker client library as runtimes and tools use it, against
 * a real `netctl daemon` in a test host namespace: the Engine API routes
 * netctl serves answer as dockerd does, and the ones it does not say so.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import Docker from 'dockerode';
import { ApiClient } from '../../src/api/client.js';
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

interface Context {
  docker: Docker;
  netctl: ApiClient;
  stateDir: string;
  daemon: RunningDaemon;
  /** Namespaces to remove at the end: the host's and every sandbox's (a sandbox's namespace is named after it). */
  namespaces: string[];
}

const test = anyTest as TestFn<Context>;

/** What dockerode rejects with when the daemon answers an error. */
interface DockerodeError {
  statusCode: number;
  json: { message: string } | null;
}

test.before(async (t) => {
  const hostNs = uniqueName('api');
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-dockerode-'));
  t.context = { stateDir, namespaces: [hostNs] } as Context;
  const socket = join(stateDir, 'netctl.sock');
  t.context.daemon = await startDaemon({ netnsPath: await addNetns(hostNs), stateDir, socket, args: ['--dns', '127.0.0.1'] });
  t.context.docker = new Docker({ socketPath: socket });
  t.context.netctl = new ApiClient(`unix://${socket}`);
});

test.after.always(async (t) => {
  await t.context.daemon?.stop('SIGTERM');
  for (const name of t.context.namespaces ?? []) await removeNetns(name);
  if (t.context.stateDir !== undefined) await rm(t.context.stateDir, { recursive: true, force: true });
});

/** A sandbox made through netctl's own route (Docker has no call for one); its namespace is removed at the end. */
async function sandbox(t: { context: Context }): Promise<string> {
  const name = uniqueName('apis');
  t.context.namespaces.push(name);
  await t.context.netctl.createSandbox({ Name: name });
  return name;
}

async function rejection(promise: Promise<unknown>): Promise<DockerodeError> {
  try {
    await promise;
  } catch (err) {
    return err as DockerodeError;
  }
  throw new Error('the call was expected to fail');
}

test.serial("info() resolves with the daemon's host, drivers, state directory and version", async (t) => {
  const before = (await t.context.docker.info()).Containers as number;
  await sandbox(t);
  const info = await t.context.docker.info();
  t.is(info.Containers, before + 1);
  t.regex(info.ID, /^[0-9a-f]{64}$/);
  t.deepEqual([...info.Plugins.Network].sort(), ['bridge', 'host', 'null']);
  t.is(info.DockerRootDir, t.context.stateDir);
  const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.is(info.ServerVersion, version);
  t.is(info.OSType, 'linux');
  t.is(info.Swarm.LocalNodeState, 'inactive');
});

test('createNetwork, inspect, listNetworks with regular-expression filters, remove', async (t) => {
  const { docker } = t.context;
  const created = await docker.createNetwork({ Name: 'dk-front', IPAM: { Config: [{ Subnet: '10.93.0.0/24' }] }, Labels: { tier: 'web' } });
  await docker.createNetwork({ Name: 'dk-front2', Driver: 'null' });
  const inspected = await created.inspect();
  t.is(inspected.Name, 'dk-front');
  t.is(inspected.Driver, 'bridge');
  t.deepEqual(inspected.IPAM?.Config, [{ Subnet: '10.93.0.0/24', Gateway: '10.93.0.1' }]);

  const names = async (filters: Record<string, string[]>) => (await docker.listNetworks({ filters })).map((n) => n.Name).sort();
  t.deepEqual(await names({ name: ['^dk-front'] }), ['dk-front', 'dk-front2']);
  t.deepEqual(await names({ name: ['^dk-front$'] }), ['dk-front']);
  t.deepEqual(await names({ id: [`^${inspected.Id.slice(0, 10)}`] }), ['dk-front']);
  t.deepEqual(await names({ name: ['^dk-'], label: ['tier=web'] }), ['dk-front']);
  const bad = await rejection(docker.listNetworks({ filters: { name: ['dk-['] } }));
  t.is(bad.statusCode, 400);
  t.regex(bad.json?.message ?? '', /^invalid filter 'name=dk-\[': not a regular expression/);

  await created.remove();
  await docker.getNetwork('dk-front2').remove();
  const gone = await rejection(created.inspect());
  t.is(gone.statusCode, 404);
  t.is(gone.json?.message, `network ${inspected.Id} not found`);
});

test('getContainer(sandbox).inspect() and listContainers() show the networks, with the address the namespace has', async (t) => {
  const { docker } = t.context;
  const name = await sandbox(t);
  const network = await docker.createNetwork({ Name: 'dk-back', IPAM: { Config: [{ Subnet: '10.94.0.0/24' }] } });
  t.teardown(() => network.remove().catch(() => undefined));
  await network.connect({ Container: name, EndpointConfig: { Aliases: ['db'], IPAMConfig: { IPv4Address: '10.94.0.20' } } });
  t.teardown(() => network.disconnect({ Container: name }).catch(() => undefined));

  const container = await docker.getContainer(name).inspect();
  t.is(container.Name, `/${name}`);
  t.true(container.State.Running);
  t.is(container.NetworkSettings.SandboxKey, `/var/run/netns/${name}`);
  const settings = container.NetworkSettings.Networks['dk-back'];
  t.like(settings, { NetworkID: network.id, IPAddress: '10.94.0.20', IPPrefixLen: 24, Gateway: '10.94.0.1', Aliases: ['db'] });
  // What inspect says is what the namespace has.
  const addresses = await run('ip', ['-n', name, '-j', 'addr', 'show', 'dev', 'eth0']);
  t.is(addresses.code, 0, addresses.stderr);
  const [link] = JSON.parse(addresses.stdout) as { address: string; addr_info: { family: string; local: string; prefixlen: number }[] }[];
  t.is(link?.address, settings?.MacAddress);
  t.deepEqual(link?.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.94.0.20/24']);
  t.is((await docker.getContainer(container.Id.slice(0, 10)).inspect()).Id, container.Id, 'an id prefix finds it too');

  const listed = await docker.listContainers({ filters: { network: ['dk-back'] } });
  t.deepEqual(listed.map((c) => c.Names), [[`/${name}`]]);
  t.is(listed[0]?.State, 'running');
  t.is(listed[0]?.NetworkSettings.Networks['dk-back']?.IPAddress, '10.94.0.20');

  const missing = await rejection(docker.getContainer('dk-ghost').inspect());
  t.is(missing.statusCode, 404);
  t.is(missing.json?.message, 'No such container: dk-ghost');
});

test('connecting a sandbox twice is a 403 with Docker\'s message, and changes nothing', async (t) => {
  const { docker } = t.context;
  const name = await sandbox(t);
  const network = await docker.createNetwork({ Name: 'dk-twice', IPAM: { Config: [{ Subnet: '10.95.0.0/24' }] } });
  t.teardown(() => network.remove().catch(() => undefined));
  await network.connect({ Container: name });
  t.teardown(() => network.disconnect({ Container: name }).catch(() => undefined));
  const before = (await docker.getContainer(name).inspect()).NetworkSettings.Networks;

  const twice = await rejection(network.connect({ Container: name }));
  t.is(twice.statusCode, 403);
  t.is(twice.json?.message, `endpoint with name ${name} already exists in network dk-twice`);
  t.deepEqual((await docker.getContainer(name).inspect()).NetworkSettings.Networks, before);
});

test('createContainer and other container calls are a 501 saying netctl serves networks', async (t) => {
  const { docker } = t.context;
  const create = await rejection(docker.createContainer({ Image: 'busybox', name: 'dk-nope' }));
  t.is(create.statusCode, 501);
  t.is(create.json?.message, 'netctl serves networks, not containers: POST /containers/create is not implemented');
  const name = await sandbox(t);
  const stop = await rejection(docker.getContainer(name).stop());
  t.is(stop.statusCode, 501);
  t.is(stop.json?.message, `netctl serves networks, not containers: POST /containers/${name}/stop is not implemented`);
  const images = await rejection(docker.listImages());
  t.is(images.statusCode, 501);
});
