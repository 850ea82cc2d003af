import anyTest, { type TestFn } from 'ava';
import { type Fixture, startFixture } from '../api/fixture.js';
import { type RunResult, runNetctl } from './run.js';

interface Context {
  fixture: Fixture;
  netctl(args: readonly string[], input?: string): Promise<RunResult>;
}

const test = anyTest as TestFn<Context>;

test.beforeEach(async (t) => {
  const fixture = await startFixture();
  t.context = {
    fixture,
    netctl: (args, input) => runNetctl(['-H', fixture.host, ...args], input === undefined ? {} : { input }),
  };
});

test.afterEach.always(async (t) => {
  await t.context.fixture.close();
});

async function ok(t: { context: Context }, args: readonly string[], input?: string): Promise<string> {
  const result = await t.context.netctl(args, input);
  if (result.code !== 0) throw new Error(`netctl ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

test('network create prints the full id; ls shows the docker table sorted by name', async (t) => {
  const id = (await ok(t, ['network', 'create', '--subnet', '10.70.0.0/24', 'net10'])).trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  const id2 = (await ok(t, ['network', 'create', '-d', 'null', 'net2'])).trim();
  const table = await ok(t, ['network', 'ls']);
  t.is(
    table,
    [
      'NETWORK ID     NAME      DRIVER    SCOPE',
      `${id2.slice(0, 12)}   net2      null      local`,
      `${id.slice(0, 12)}   net10     bridge    local`,
      '',
    ].join('\n'),
  );
  t.is(await ok(t, ['network', 'ls', '-q']), `${id2.slice(0, 12)}\n${id.slice(0, 12)}\n`);
  t.is(await ok(t, ['network', 'ls', '-q', '--no-trunc']), `${id2}\n${id}\n`);
  const noTrunc = await ok(t, ['network', 'ls', '--no-trunc']);
  t.true(noTrunc.includes(`${id}   net10`));
  t.is(await ok(t, ['network', 'list', '--filter', 'driver=bridge', '--format', '{{.Name}}']), 'net10\n');
  t.is(await ok(t, ['network', 'ls', '-f', 'name=net1', '-q']), `${id.slice(0, 12)}\n`);
});

test('network create keeps an option no driver reads and warns of it on stderr, one line each', async (t) => {
  const created = await t.context.netctl(['network', 'create', '-o', 'com.example.team=blue', '-o', 'com.example.tier=2', 'kept']);
  t.is(created.code, 0, created.stderr);
  t.regex(created.stdout, /^[0-9a-f]{64}\n$/);
  t.is(
    created.stderr,
    'WARNING: option "com.example.team" is not one the bridge driver acts on: it is stored and shown, and changes nothing\n' +
      'WARNING: option "com.example.tier" is not one the bridge driver acts on: it is stored and shown, and changes nothing\n',
  );
  t.is(await ok(t, ['network', 'inspect', '-f', '{{index .Options "com.example.tier"}}', 'kept']), '2\n');
});

test('network ls --format: fields, Label method, table headers, json', async (t) => {
  await ok(t, ['network', 'create', '--label', 'env=prod', '--label', 'team=blue', '--ipv6', '--internal', 'lab']);
  t.is(await ok(t, ['network', 'ls', '--format', '{{.Name}} {{.Labels}} {{.Label "env"}} {{.IPv6}} {{.Internal}}']), 'lab env=prod,team=blue prod true true\n');
  const table = await ok(t, ['network', 'ls', '--format', 'table {{.Name}}\t{{.Driver}}\t{{.IPv6}}']);
  t.is(table, 'NAME      DRIVER    IPV6\nlab       bridge    true\n');
  const json = JSON.parse(await ok(t, ['network', 'ls', '--format', 'json']));
  t.is(json.Name, 'lab');
  t.is(json.Labels, 'env=prod,team=blue');
  t.is(json.ID.length, 12);
  t.regex(json.CreatedAt, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC$/);
  t.deepEqual(Object.keys(json), ['CreatedAt', 'Driver', 'ID', 'IPv4', 'IPv6', 'Internal', 'Labels', 'Name', 'Scope']);
  // -q only replaces the default format.
  t.is(await ok(t, ['network', 'ls', '-q', '--format', '{{.Driver}}']), 'bridge\n');
});

test('network create pairs gateways, ranges and aux addresses with their subnets', async (t) => {
  await ok(t, [
    'network', 'create',
    '--subnet', '10.71.0.0/24', '--subnet', '10.72.0.0/24',
    '--gateway', '10.72.0.254', '--gateway', '10.71.0.254',
    '--ip-range', '10.72.0.128/25',
    '--aux-address', 'printer=10.71.0.9',
    '-o', 'com.docker.network.driver.mtu=1400',
    '--attachable',
    'paired',
  ]);
  const [network] = JSON.parse(await ok(t, ['network', 'inspect', 'paired']));
  t.deepEqual(network.IPAM.Config, [
    { Subnet: '10.71.0.0/24', Gateway: '10.71.0.254', AuxiliaryAddresses: { printer: '10.71.0.9' } },
    { Subnet: '10.72.0.0/24', IPRange: '10.72.0.128/25', Gateway: '10.72.0.254' },
  ]);
  t.deepEqual(network.Options, { 'com.docker.network.driver.mtu': '1400' });
  t.true(network.Attachable);

  const noMatch = await t.context.netctl(['network', 'create', '--subnet', '10.73.0.0/24', '--gateway', '10.74.0.1', 'x']);
  t.is(noMatch.code, 1);
  t.is(noMatch.stderr, 'no matching subnet for gateway 10.74.0.1\n');
  const twoGateways = await t.context.netctl(['network', 'create', '--gateway', '10.74.0.1', 'x']);
  t.is(twoGateways.stderr, 'every ip-range or gateway must have a corresponding subnet\n');
  const badSubnet = await t.context.netctl(['network', 'create', '--subnet', '10.75.0.0/40', 'x']);
  t.is(badSubnet.code, 1);
  t.is(badSubnet.stderr, 'invalid subnet: invalid CIDR address: 10.75.0.0/40\n');
  const hostBits = await t.context.netctl(['network', 'create', '--subnet', '10.75.0.1/24', 'x']);
  t.is(hostBits.code, 1);
  t.regex(hostBits.stderr, /^Error response from daemon: .*10\.75\.0\.1\/24/);
});

test('network create errors come back as docker prints them', async (t) => {
  await ok(t, ['network', 'create', 'dup']);
  const dup = await t.context.netctl(['network', 'create', 'dup']);
  t.is(dup.code, 1);
  t.is(dup.stdout, '');
  t.is(dup.stderr, 'Error response from daemon: network with name dup already exists\n');
  const driver = await t.context.netctl(['network', 'create', '-d', 'macvlan', 'm']);
  t.is(driver.code, 1);
  t.regex(driver.stderr, /^Error response from daemon: unknown network driver "macvlan"/);
  const noName = await t.context.netctl(['network', 'create']);
  t.is(noName.code, 1);
  t.true(noName.stderr.startsWith('"netctl network create" requires exactly 1 argument.\nSee \'netctl network create --help\'.\n\nUsage:  netctl network create [OPTIONS] NETWORK\n'));
});

test('unknown flags, commands and a missing daemon', async (t) => {
  const flag = await t.context.netctl(['network', 'ls', '--foo']);
  t.is(flag.code, 1);
  t.is(flag.stderr, "unknown flag: --foo\nSee 'netctl network ls --help'.\n");
  const short = await t.context.netctl(['network', 'ls', '-x']);
  t.is(short.stderr, "unknown shorthand flag: 'x' in -x\nSee 'netctl network ls --help'.\n");
  const needsValue = await t.context.netctl(['network', 'create', 'n', '--subnet']);
  t.is(needsValue.stderr, "flag needs an argument: --subnet\nSee 'netctl network create --help'.\n");
  const command = await t.context.netctl(['network', 'frobnicate']);
  t.is(command.code, 1);
  t.is(command.stderr, "netctl network: 'frobnicate' is not a netctl network command.\nSee 'netctl network --help'\n");

  const down = await runNetctl(['-H', 'unix:///nonexistent.sock', 'network', 'ls']);
  t.is(down.code, 1);
  t.is(down.stderr, 'Cannot connect to the netctl daemon at unix:///nonexistent.sock. Is the daemon running?\n');
  const viaEnv = await runNetctl(['network', 'ls'], { env: { NETCTL_HOST: 'unix:///nonexistent.sock' } });
  t.is(viaEnv.stderr, down.stderr);
  const fromEnv = await runNetctl(['network', 'ls', '-q'], { env: { NETCTL_HOST: t.context.fixture.host } });
  t.is(fromEnv.code, 0);
  const badHost = await runNetctl(['-H', 'tcp://1.2.3.4:2375', 'network', 'ls']);
  t.is(badHost.code, 1);
  t.is(badHost.stderr, 'invalid host "tcp://1.2.3.4:2375": only unix:///path is supported\n');
});

test('network inspect: 4-space JSON array, -f templates with Go maps, missing names', async (t) => {
  const id = (await ok(t, ['network', 'create', '--subnet', '10.76.0.0/16', '--label', 'tier=web', 'web'])).trim();
  await ok(t, ['network', 'create', 'db']);
  const out = await ok(t, ['network', 'inspect', 'web', 'db']);
  t.true(out.startsWith('[\n    {\n        "Name": "web",\n        "Id": "'));
  const parsed = JSON.parse(out);
  t.deepEqual(parsed.map((n: { Name: string }) => n.Name), ['web', 'db']);
  t.is(parsed[0].Id, id);

  t.is(await ok(t, ['network', 'inspect', '-f', '{{.Name}} {{.Driver}} {{(index .IPAM.Config 0).Subnet}}', 'web']), 'web bridge 10.76.0.0/16\n');
  t.is(await ok(t, ['network', 'inspect', '--format', '{{index .Labels "tier"}}|{{index .Labels "none"}}|{{json .Labels}}', 'web']), 'web||{"tier":"web"}\n');
  t.is(await ok(t, ['network', 'inspect', '-f', '{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}{{len .Containers}}', id.slice(0, 8)]), 'tier=web;0\n');

  const missing = await t.context.netctl(['network', 'inspect', '-f', '{{.Name}}', 'web', 'ghost', 'db']);
  t.is(missing.code, 1);
  t.is(missing.stdout, 'web\ndb\n');
  t.is(missing.stderr, 'Error: No such network: ghost\n');
  const onlyMissing = await t.context.netctl(['network', 'inspect', 'ghost']);
  t.is(onlyMissing.stdout, '[]\n');
  t.is(onlyMissing.code, 1);

  const badTemplate = await t.context.netctl(['network', 'inspect', '-f', '{{.Nope}}', 'web']);
  t.is(badTemplate.code, 1);
  t.regex(badTemplate.stderr, /can't evaluate field Nope/);
});

test('network rm prints each removed name and reports failures', async (t) => {
  await ok(t, ['network', 'create', 'a']);
  await ok(t, ['network', 'create', 'b']);
  const result = await t.context.netctl(['network', 'rm', 'a', 'ghost', 'b']);
  t.is(result.code, 1);
  t.is(result.stdout, 'a\nb\n');
  t.is(result.stderr, 'Error response from daemon: network ghost not found\n');
  t.is(await ok(t, ['network', 'ls', '-q']), '');
  const forced = await t.context.netctl(['network', 'remove', '-f', 'ghost']);
  t.is(forced.code, 0);
});

test("connect --driver-opt com.docker.network.endpoint.ifname names the sandbox's interface", async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.78.0.0/24', 'lan']);
  await ok(t, ['sandbox', 'create', 'box']);
  t.is(await ok(t, ['network', 'connect', '--driver-opt', 'com.docker.network.endpoint.ifname=lan0', 'lan', 'box']), '');
  t.is(await ok(t, ['sandbox', 'inspect', '-f', '{{range .Networks}}{{.InterfaceName}}{{end}}', 'box']), 'lan0\n');
});

test('connect, disconnect and the sandbox commands', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.77.0.0/24', 'front']);
  const boxId = (await ok(t, ['sandbox', 'create', '--label', 'app=shop', 'box'])).trim();
  t.regex(boxId, /^[0-9a-f]{64}$/);
  t.is(await ok(t, ['network', 'connect', '--ip', '10.77.0.50', '--alias', 'shop', '--alias', 'store', 'front', 'box']), '');

  const containers = JSON.parse(await ok(t, ['network', 'inspect', '-f', '{{json .Containers}}', 'front']));
  t.is(containers[boxId].Name, 'box');
  t.is(containers[boxId].IPv4Address, '10.77.0.50/24');
  const sandbox = JSON.parse(await ok(t, ['sandbox', 'inspect', 'box']))[0];
  const endpoint = Object.values(sandbox.Networks)[0] as { Aliases: string[]; InterfaceName: string };
  t.deepEqual(endpoint.Aliases, ['shop', 'store']);
  t.is(endpoint.InterfaceName, 'eth0');
  t.is(await ok(t, ['sandbox', 'inspect', '-f', '{{.Name}} {{index .Labels "app"}}', 'box']), 'box shop\n');

  t.is(
    await ok(t, ['sandbox', 'ls']),
    `SANDBOX ID     NAME      NETNS                NETWORKS\n${boxId.slice(0, 12)}   box       /var/run/netns/box   front\n`,
  );
  t.is(await ok(t, ['sandbox', 'ls', '-q']), `${boxId.slice(0, 12)}\n`);
  t.is(await ok(t, ['sandbox', 'ls', '--format', '{{.Name}}:{{.Networks}}:{{.Label "app"}}']), 'box:front:shop\n');

  const taken = await t.context.netctl(['network', 'connect', '--ip', '10.77.0.50', 'front', 'box']);
  t.is(taken.code, 1);
  t.regex(taken.stderr, /^Error response from daemon: /);
  const inUse = await t.context.netctl(['network', 'rm', 'front']);
  t.is(inUse.code, 1);
  t.regex(inUse.stderr, /^Error response from daemon: error while removing network: network front has active endpoints/);

  t.is(await ok(t, ['network', 'disconnect', 'front', 'box']), '');
  const again = await t.context.netctl(['network', 'disconnect', 'front', 'box']);
  t.is(again.code, 1);
  t.is(again.stderr, 'Error response from daemon: sandbox box is not connected to network front\n');
  t.is(await ok(t, ['sandbox', 'ls', '--format', '{{.Name}}:{{.Networks}}']), 'box:\n');
  t.is(await ok(t, ['sandbox', 'rm', 'box']), 'box\n');
  const gone = await t.context.netctl(['sandbox', 'inspect', 'box']);
  t.is(gone.stderr, 'Error: No such sandbox: box\n');
});

test('network prune asks first, honours filters, and lists what it deleted', async (t) => {
  await ok(t, ['network', 'create', '--label', 'keep=1', 'kept']);
  await ok(t, ['network', 'create', 'old1']);
  await ok(t, ['network', 'create', 'old2']);
  const declined = await t.context.netctl(['network', 'prune'], 'n\n');
  t.is(declined.code, 0);
  t.is(declined.stdout, 'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ');
  t.is((await ok(t, ['network', 'ls', '-q'])).split('\n').filter(Boolean).length, 3);

  const noInput = await t.context.netctl(['network', 'prune']);
  t.is(noInput.code, 0);
  t.is((await ok(t, ['network', 'ls', '-q'])).split('\n').filter(Boolean).length, 3);

  const confirmed = await t.context.netctl(['network', 'prune', '--filter', 'label!=keep'], 'y\n');
  t.is(confirmed.code, 0);
  t.true(confirmed.stdout.endsWith('[y/N] Deleted Networks:\nold1\nold2\n\n'));
  t.is(await ok(t, ['network', 'ls', '--format', '{{.Name}}']), 'kept\n');
  t.is(await ok(t, ['network', 'prune', '-f', '--filter', 'label!=keep']), '');
  const badFilter = await t.context.netctl(['network', 'prune', '-f', '--filter', 'nonsense']);
  t.is(badFilter.code, 1);
  t.is(badFilter.stderr, 'bad format of filter (expected name=value): "nonsense"\n');
});

test('help and version', async (t) => {
  const top = await runNetctl(['--help']);
  t.is(top.code, 0);
  t.regex(top.stdout, /Usage: {2}netctl \[OPTIONS\] COMMAND/);
  t.regex(top.stdout, /network {2,}Manage networks/);
  t.regex(top.stdout, /-H, --host string/);
  const group = await runNetctl(['network']);
  t.regex(group.stdout, /Usage: {2}netctl network COMMAND/);
  t.regex(group.stdout, /prune +Remove all unused networks/);
  const create = await runNetctl(['network', 'create', '--help']);
  t.is(create.code, 0);
  t.regex(create.stdout, /Usage: {2}netctl network create \[OPTIONS\] NETWORK/);
  t.regex(create.stdout, /-d, --driver string +Driver to manage the Network \(default "bridge"\)/);
  t.regex(create.stdout, / {6}--subnet strings/);
  t.is((await runNetctl(['help', 'network', 'create'])).stdout, create.stdout);
  const ls = await runNetctl(['network', 'ls', '--help']);
  t.regex(ls.stdout, /Aliases:\n {2}netctl network ls, netctl network list/);

  const version = await t.context.netctl(['version']);
  t.is(version.code, 0);
  t.regex(version.stdout, /^Client:\n Version: +0\.1\.0\n API version: +1\.47\n/);
  t.regex(version.stdout, /Server:\n Version: +0\.1\.0\n API version: +1\.47 \(minimum version 1\.24\)/);
  const noDaemon = await runNetctl(['-H', 'unix:///nonexistent.sock', 'version']);
  t.is(noDaemon.code, 1);
  t.regex(noDaemon.stdout, /^Client:/);
  t.regex(noDaemon.stderr, /Cannot connect to the netctl daemon/);
});

test('output into a pipe whose reader has gone ends quietly, without a stack trace', async (t) => {
  const { spawn } = await import('node:child_process');
  const { NETCTL_BIN } = await import('./run.js');
  // `true` exits without reading, so netctl writes into a closed pipe (EPIPE), as under `| head`.
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${NETCTL_BIN}" network create --help | true`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
  t.is(result.stderr, '');
  t.is(result.code, 0);
});
