/**
 * The real docker CLI against netctl's API server: the proof that the API is
 * Docker-compatible where it claims to be.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { type Fixture, startFixture } from './fixture.js';

const DOCKER = '/usr/local/bin/docker';

interface Context {
  fixture: Fixture;
  docker(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

const test = anyTest as TestFn<Context>;

test.before(() => {
  if (!existsSync(DOCKER)) throw new Error(`the docker CLI is missing at ${DOCKER}; these tests need it`);
});

test.beforeEach(async (t) => {
  const fixture = await startFixture();
  // Inside the fixture's temp directory, so it goes when the fixture closes.
  const config = join(fixture.dir, 'docker-config');
  await mkdir(config);
  t.context = {
    fixture,
    docker: (args) =>
      new Promise((resolve) => {
        execFile(
          DOCKER,
          [...args],
          { env: { PATH: process.env['PATH'] ?? '', HOME: config, DOCKER_HOST: fixture.host, DOCKER_CONFIG: config } },
          (err, stdout, stderr) => {
            const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
            resolve({ code, stdout, stderr });
          },
        );
      }),
  };
});

test.afterEach.always(async (t) => {
  await t.context.fixture.close();
});

async function ok(t: { context: Context }, args: readonly string[]): Promise<string> {
  const result = await t.context.docker(args);
  if (result.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

test('docker version negotiates down to the API version /_ping announces', async (t) => {
  const out = await ok(t, ['version', '--format', '{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.Version}}']);
  t.is(out, '1.47 1.47 0.1.0\n');
});

test('docker network create, ls, inspect, rm', async (t) => {
  const id = (await ok(t, ['network', 'create', '--subnet', '10.80.0.0/24', '--gateway', '10.80.0.254', '--label', 'team=red', 'red'])).trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  await ok(t, ['network', 'create', '-d', 'null', '--internal', 'blue']);

  const table = await ok(t, ['network', 'ls']);
  t.regex(table, /^NETWORK ID +NAME +DRIVER +SCOPE\n/);
  t.regex(table, new RegExp(`\\n${id.slice(0, 12)} +red +bridge +local\\n`));
  t.is(await ok(t, ['network', 'ls', '--format', '{{.Name}}']), 'blue\nred\n');
  t.is(await ok(t, ['network', 'ls', '-f', 'name=re', '--format', '{{.Name}} {{.Label "team"}}']), 'red red\n');
  t.is(await ok(t, ['network', 'ls', '-f', 'driver=null', '-q']), `${toDockerNetwork(await t.context.fixture.controller.inspectNetwork('blue')).Id.slice(0, 12)}\n`);

  const [network] = JSON.parse(await ok(t, ['network', 'inspect', 'red']));
  t.is(network.Name, 'red');
  t.is(network.Id, id);
  t.is(network.Driver, 'bridge');
  t.is(network.Scope, 'local');
  t.deepEqual(network.IPAM.Config, [{ Subnet: '10.80.0.0/24', Gateway: '10.80.0.254' }]);
  t.deepEqual(network.Labels, { team: 'red' });
  t.is(await ok(t, ['network', 'inspect', '-f', '{{.Internal}} {{.Driver}}', 'blue']), 'true null\n');

  const missing = await t.context.docker(['network', 'inspect', 'nothing']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /network nothing not found/);
  const dup = await t.context.docker(['network', 'create', 'red']);
  t.is(dup.code, 1);
  t.regex(dup.stderr, /Error response from daemon: network with name red already exists/);

  t.is(await ok(t, ['network', 'rm', 'red', 'blue']), 'red\nblue\n');
  t.is(await ok(t, ['network', 'ls', '-q']), '');
});

test('docker network ls --filter name= and id= take regular expressions, as dockerd does', async (t) => {
  for (const name of ['web', 'web2', 'webby', 'db']) await ok(t, ['network', 'create', name]);
  const names = async (...filters: string[]) => ok(t, ['network', 'ls', ...filters.flatMap((f) => ['--filter', f]), '--format', '{{.Name}}']);
  t.is(await names('name=^web$'), 'web\n');
  t.is(await names('name=^web[0-9]$', 'name=^db$'), 'db\nweb2\n');
  t.is(await names('name=eb'), 'web\nweb2\nwebby\n');
  const id = (await ok(t, ['network', 'inspect', '-f', '{{.Id}}', 'webby'])).trim();
  t.is(await names(`id=^${id.slice(0, 12)}`), 'webby\n');
  // Run in linear time, as Go's RE2 runs them: a pattern that backtracks exponentially (2^40 steps here) answers at once,
  // and what needs backtracking (a backreference) is refused, as RE2 refuses it.
  await ok(t, ['network', 'create', 'a'.repeat(40)]);
  t.is(await names('name=^(a+)+b$'), '');
  t.is(await names('name=(?i)^WEB[0-9]$'), 'web2\n', 'Go\'s (?i), which the linear engine lacks as a flag, folds case');
  t.is(await names('name=^(a+)+$'), `${'a'.repeat(40)}\n`);
  const backreference = await t.context.docker(['network', 'ls', '--filter', 'name=(a)\\1']);
  t.is(backreference.code, 1);
  t.regex(backreference.stderr, /not a regular expression/);
  const bad = await t.context.docker(['network', 'ls', '--filter', 'name=web(']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^Error response from daemon: invalid filter 'name=web\(': not a regular expression \(/);
});

test('docker network connect and disconnect a sandbox', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.81.0.0/24', 'green']);
  const sandbox = await t.context.fixture.controller.createSandbox({ name: 'box' });
  await ok(t, ['network', 'connect', '--ip', '10.81.0.7', '--alias', 'db', 'green', 'box']);
  const containers = JSON.parse(await ok(t, ['network', 'inspect', '-f', '{{json .Containers}}', 'green']));
  t.is(containers[sandbox.id].Name, 'box');
  t.is(containers[sandbox.id].IPv4Address, '10.81.0.7/24');
  const twice = await t.context.docker(['network', 'connect', 'green', 'box']);
  t.is(twice.code, 1);
  t.is(twice.stderr, 'Error response from daemon: endpoint with name box already exists in network green\n');
  const inUse = await t.context.docker(['network', 'rm', 'green']);
  t.is(inUse.code, 1);
  t.regex(inUse.stderr, /has active endpoints/);
  await ok(t, ['network', 'disconnect', 'green', 'box']);
  t.is(await ok(t, ['network', 'inspect', '-f', '{{len .Containers}}', 'green']), '0\n');
});

test('docker network prune -f removes unused networks', async (t) => {
  await ok(t, ['network', 'create', 'p1']);
  await ok(t, ['network', 'create', 'p2']);
  await ok(t, ['network', 'create', '--subnet', '10.82.0.0/24', 'used']);
  await t.context.fixture.controller.createSandbox({ name: 'box' });
  await t.context.fixture.controller.connect('used', 'box');
  t.is(await ok(t, ['network', 'prune', '-f']), 'Deleted Networks:\np1\np2\n\n');
  t.is(await ok(t, ['network', 'ls', '--format', '{{.Name}}']), 'used\n');
  t.is(await ok(t, ['network', 'prune', '-f']), '');
});

test('docker network create keeps options Docker keeps, builds from --config-only networks, and refuses --scope swarm', async (t) => {
  const created = await t.context.docker(['network', 'create', '-o', 'com.example.team=blue', '--ipam-opt', 'com.example.pool=fast', 'kept']);
  t.is(created.code, 0, created.stderr);
  t.is(await ok(t, ['network', 'inspect', '-f', '{{json .Options}} {{json .IPAM.Options}}', 'kept']), '{"com.example.team":"blue"} {"com.example.pool":"fast"}\n');

  await ok(t, ['network', 'create', '--config-only', '--subnet', '10.83.0.0/24', '--gateway', '10.83.0.254', 'cfg']);
  await ok(t, ['network', 'create', '--config-from', 'cfg', 'made']);
  t.is(await ok(t, ['network', 'inspect', '-f', '{{.ConfigOnly}} {{.Driver}}', 'cfg']), 'true null\n');
  t.is(await ok(t, ['network', 'inspect', '-f', '{{.ConfigFrom.Network}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}', 'made']), 'cfg 10.83.0.0/24 10.83.0.254\n');
  const withSubnet = await t.context.docker(['network', 'create', '--config-from', 'cfg', '--subnet', '10.84.0.0/24', 'other']);
  t.is(withSubnet.code, 1);
  t.regex(withSubnet.stderr, /takes its configuration from cfg: --subnet and its pool flags cannot be given with --config-from/);
  const inUse = await t.context.docker(['network', 'rm', 'cfg']);
  t.regex(inUse.stderr, /configuration network cfg is in use by network made/);

  const swarm = await t.context.docker(['network', 'create', '--scope', 'swarm', 'sw']);
  t.is(swarm.code, 1);
  t.regex(swarm.stderr, /scope "swarm" is not served: netctl runs no swarm/);
  t.is(await ok(t, ['network', 'ls', '--format', '{{.Name}}']), 'cfg\nkept\nmade\n');
});

test('docker info prints the server part without errors', async (t) => {
  await t.context.fixture.controller.createSandbox({ name: 'box' });
  const result = await t.context.docker(['info']);
  t.is(result.code, 0, result.stderr);
  t.is(result.stderr, '');
  const server = result.stdout.slice(result.stdout.indexOf('\nServer:\n'));
  t.regex(server, /\n Containers: 1\n {2}Running: 1\n/);
  t.regex(server, /\n Server Version: 0\.1\.0\n/);
  t.regex(server, /\n {2}Network: null bridge\n/);
  t.regex(server, /\n Swarm: inactive\n/);
  t.regex(server, new RegExp(`\\n ID: ${await t.context.fixture.controller.hostId()}\\n`));
  t.regex(server, /\n Default Address Pools:\n {3}Base: 172\.17\.0\.0\/16, Size: 16\n/);
  t.is(await ok(t, ['info', '--format', '{{.OSType}} {{.Containers}} {{.Swarm.LocalNodeState}}']), 'linux 1 inactive\n');
});

test('docker inspect and docker ps show sandboxes as containers; docker inspect still finds networks', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.83.0.0/24', 'green']);
  const box = await t.context.fixture.controller.createSandbox({ name: 'box', labels: { team: 'red' } });
  await ok(t, ['network', 'connect', '--ip', '10.83.0.7', '--alias', 'db', 'green', 'box']);

  const [container] = JSON.parse(await ok(t, ['inspect', 'box']));
  t.is(container.Id, box.id);
  t.is(container.Name, '/box');
  t.is(container.State.Status, 'running');
  t.is(container.NetworkSettings.SandboxKey, '/var/run/netns/box');
  t.like(container.NetworkSettings.Networks.green, { IPAddress: '10.83.0.7', IPPrefixLen: 24, Gateway: '10.83.0.1', Aliases: ['db'], DNSNames: ['box', 'db'] });
  t.is(await ok(t, ['container', 'inspect', '-f', '{{.Name}} {{.Config.Labels.team}} {{range $name, $n := .NetworkSettings.Networks}}{{$name}}={{$n.IPAddress}}{{end}}', box.id.slice(0, 6)]), '/box red green=10.83.0.7\n');
  t.is(await ok(t, ['inspect', '-f', '{{.Driver}}', 'green']), 'bridge\n', 'a network name, past the container, image and volume lookups');
  const nothing = await t.context.docker(['inspect', 'nothing']);
  t.is(nothing.code, 1);
  t.is(nothing.stderr, 'Error: No such object: nothing\n');

  const table = await ok(t, ['ps']);
  t.regex(table, /^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES\n/);
  t.regex(table, new RegExp(`\\n${box.id.slice(0, 12)} .* Up .* box\\n$`));
  t.is(await ok(t, ['ps', '--format', '{{.Names}} {{.Networks}} {{.State}} {{.Label "team"}}']), 'box green running red\n');
  await t.context.fixture.controller.createSandbox({ name: 'boxer' });
  t.is(await ok(t, ['ps', '-q', '--no-trunc', '--filter', 'name=^box$']), `${box.id}\n`);
  t.is(await ok(t, ['ps', '--format', '{{.Names}}', '--filter', 'network=green']), 'box\n');
});

test('container commands netctl does not serve fail with its 501 message', async (t) => {
  await t.context.fixture.controller.createSandbox({ name: 'box' });
  const rm = await t.context.docker(['rm', 'box']);
  t.is(rm.code, 1);
  t.is(rm.stderr, 'Error response from daemon: netctl serves networks, not containers: DELETE /containers/box is not implemented\n');
  const images = await t.context.docker(['images']);
  t.is(images.code, 1);
  t.is(images.stderr, 'Error response from daemon: netctl serves networks, not containers: GET /images/json is not implemented\n');
  t.is((await t.context.fixture.controller.inspectSandbox('box')).name, 'box', 'the sandbox is still there');
});
