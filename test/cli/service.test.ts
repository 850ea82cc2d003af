/** `netctl service …` and `network connect --service` against an in-memory daemon; `--publish` and the PORTS column on their own. */
import anyTest, { type TestFn } from 'ava';
import { type Fixture, startFixture } from '../api/fixture.js';
import { UsageError } from '../../src/cli/args.js';
import { parsePublish, portsColumn } from '../../src/cli/ports.js';
import { type RunResult, runNetctl } from './run.js';

interface Context {
  fixture: Fixture;
  netctl(args: readonly string[]): Promise<RunResult>;
}

const test = anyTest as TestFn<Context>;

test.beforeEach(async (t) => {
  const fixture = await startFixture();
  t.context = { fixture, netctl: (args) => runNetctl(['-H', fixture.host, ...args]) };
});

test.afterEach.always(async (t) => {
  await t.context.fixture.close();
});

async function ok(t: { context: Context }, args: readonly string[]): Promise<string> {
  const result = await t.context.netctl(args);
  if (result.code !== 0) throw new Error(`netctl ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

test('service create prints the id; ls, inspect, connect --service, rm', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.80.0.0/24', 'front']);
  const id = (await ok(t, ['service', 'create', '--network', 'front', '--label', 'tier=web', 'web'])).trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  const dbId = (await ok(t, ['service', 'create', '--network', 'front', '--endpoint-mode', 'dnsrr', 'db'])).trim();
  await ok(t, ['sandbox', 'create', 'task1']);
  await ok(t, ['network', 'connect', '--service', 'web', 'front', 'task1']);

  t.is(
    await ok(t, ['service', 'ls']),
    [
      'ID             NAME      MODE      TASKS     VIRTUAL IPS    PORTS',
      `${dbId.slice(0, 12)}   db        dnsrr     0                        `,
      `${id.slice(0, 12)}   web       vip       1         10.80.0.2/24   `,
      '',
    ].join('\n'),
  );
  t.is(await ok(t, ['service', 'ls', '-q']), `${dbId.slice(0, 12)}\n${id.slice(0, 12)}\n`);
  t.is(await ok(t, ['service', 'ls', '-f', 'label=tier=web', '--format', '{{.Name}} {{.Label "tier"}}']), 'web web\n');
  const json = JSON.parse((await ok(t, ['service', 'ls', '--format', 'json', '-f', 'name=web'])).trim());
  t.deepEqual(Object.keys(json), ['CreatedAt', 'ID', 'Labels', 'Mode', 'Name', 'Ports', 'Tasks', 'VirtualIPs']);

  const [inspected] = JSON.parse(await ok(t, ['service', 'inspect', 'web']));
  t.is(inspected.ID, id);
  t.is(inspected.Endpoint.VirtualIPs[0].Addr, '10.80.0.2/24');
  t.is(inspected.Tasks[0].Sandbox, 'task1');
  t.is(
    await ok(t, ['service', 'inspect', '-f', '{{.Spec.Name}} {{.Spec.EndpointSpec.Mode}} {{index .Spec.Labels "tier"}} {{(index .Tasks 0).Addr}}', 'web']),
    'web vip web 10.80.0.3/24\n',
  );
  const missing = await t.context.netctl(['service', 'inspect', '-f', '{{.Spec.Name}}', 'web', 'ghost']);
  t.is(missing.code, 1);
  t.is(missing.stdout, 'web\n');
  t.is(missing.stderr, 'Error: No such service: ghost\n');

  const removed = await t.context.netctl(['service', 'rm', 'web', 'ghost', 'db']);
  t.is(removed.code, 1);
  t.is(removed.stdout, 'web\ndb\n');
  t.is(removed.stderr, 'Error response from daemon: service ghost not found\n');
  t.is(await ok(t, ['service', 'ls', '-q']), '');
});

test('service errors come back as docker prints them', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.81.0.0/24', 'front']);
  await ok(t, ['network', 'create', '--subnet', '10.82.0.0/24', 'back']);
  await ok(t, ['service', 'create', '--network', 'front', 'web']);
  await ok(t, ['sandbox', 'create', 's']);
  const cases: [string[], string][] = [
    [['service', 'create', 'web'], 'Error response from daemon: service with name web already exists\n'],
    [['service', 'create', '--network', 'ghost', 'x'], 'Error response from daemon: network ghost not found\n'],
    [['service', 'create', '--endpoint-mode', 'rr', 'x'], 'invalid endpoint mode "rr": vip or dnsrr\n'],
    [['network', 'connect', '--service', 'web', 'back', 's'], 'Error response from daemon: service web is not on network back; a task must join one of its networks\n'],
    [['network', 'connect', '--service', 'ghost', 'front', 's'], 'Error response from daemon: service ghost not found\n'],
    [['network', 'rm', 'front'], 'Error response from daemon: error while removing network: network front is in use by service web\n'],
  ];
  for (const [args, stderr] of cases) {
    const result = await t.context.netctl(args);
    t.is(result.code, 1, args.join(' '));
    t.is(result.stderr, stderr);
  }
  const noName = await t.context.netctl(['service', 'create']);
  t.is(noName.code, 1);
  t.true(noName.stderr.startsWith('"netctl service create" requires exactly 1 argument.'));
  t.is(await ok(t, ['service', 'ls', '--format', '{{.Name}}']), 'web\n');
});

test('--publish: the short and the long form, with docker\'s defaults', (t) => {
  const port = (Protocol: string, TargetPort: number, PublishedPort: number, PublishMode: string) => ({ Protocol, TargetPort, PublishedPort, PublishMode });
  const cases: [string, ReturnType<typeof port>][] = [
    ['8080:80', port('tcp', 80, 8080, 'ingress')],
    ['8080:80/tcp', port('tcp', 80, 8080, 'ingress')],
    ['5353:53/udp', port('udp', 53, 5353, 'ingress')],
    ['8080:80/', port('tcp', 80, 8080, 'ingress')],
    ['published=8080,target=80', port('tcp', 80, 8080, 'ingress')],
    ['target=53,published=5353,protocol=udp', port('udp', 53, 5353, 'ingress')],
    ['mode=host,protocol=udp,target=53,published=5353', port('udp', 53, 5353, 'host')],
    ['published=8080,target=80,mode=ingress', port('tcp', 80, 8080, 'ingress')],
    // docker lower-cases the long form and takes the last of a key.
    ['Published=8080,TARGET=80,Protocol=UDP', port('udp', 80, 8080, 'ingress')],
    ['published=1,target=80,published=65535', port('tcp', 80, 65535, 'ingress')],
  ];
  for (const [spec, expected] of cases) t.deepEqual(parsePublish(spec), expected, spec);
  // Without a published port, the daemon picks one.
  const picked = (Protocol: string, TargetPort: number) => ({ Protocol, TargetPort, PublishMode: 'ingress' });
  for (const [spec, expected] of [
    ['80', picked('tcp', 80)],
    [':80', picked('tcp', 80)],
    ['53/udp', picked('udp', 53)],
    ['target=80', picked('tcp', 80)],
    ['protocol=udp,target=53,mode=ingress', picked('udp', 53)],
  ] as const) {
    t.deepEqual(parsePublish(spec), expected, spec);
  }
});

test('--publish: every bad spec is a usage error naming the problem', (t) => {
  const cases: [string, string][] = [
    ['published=8080,target=80,proto=udp', "unknown field 'proto': published, target, protocol or mode"],
    ['published=8080,target=80,', "invalid field '': KEY=VALUE"],
    ['published=8080,target', "invalid field 'target': KEY=VALUE"],
    ['published=8080', "missing mandatory field 'target'"],
    ['target=53,mode=host', 'target port 53: a published port is required in host mode'],
    ['published=8080,target=http', 'invalid target port "http": not a whole number'],
    ['published=80a,target=80', 'invalid published port "80a": not a whole number'],
    ['published=8080,target=0', 'invalid target port 0: out of range (1-65535)'],
    ['published=70000,target=80', 'invalid published port 70000: out of range (1-65535)'],
    ['published=8080,target=80,protocol=sctp', 'invalid protocol "sctp": tcp or udp'],
    ['published=8080,target=80,mode=global', 'invalid publish mode "global": ingress or host'],
    ['8080:', 'a target port is required: [PUBLISHED:]TARGET'],
    ['/udp', 'a target port is required: [PUBLISHED:]TARGET'],
    ['127.0.0.1:8080:80', 'a host address is not supported: a service publishes on every address'],
    ['http:80', 'invalid published port "http": not a whole number'],
    ['8080:80.5', 'invalid target port "80.5": not a whole number'],
    ['8080:-1', 'invalid target port "-1": not a whole number'],
    ['8000-8001:80-81', 'invalid target port "80-81": port ranges are not supported'],
    ['8080:99999', 'invalid target port 99999: out of range (1-65535)'],
    ['8080:80/sctp', 'invalid protocol "sctp": tcp or udp'],
    ['8080:80/TCP', 'invalid protocol "TCP": tcp or udp'],
  ];
  for (const [spec, reason] of cases) {
    const err = t.throws(() => parsePublish(spec), { instanceOf: UsageError }, spec);
    t.is(err?.message, `invalid argument "${spec}" for "-p, --publish" flag: ${reason}`);
  }
});

test('the PORTS column as docker prints it: ingress ports only, by protocol and port, consecutive ones as ranges', (t) => {
  const port = (Protocol: 'tcp' | 'udp', TargetPort: number, PublishedPort: number, PublishMode: 'ingress' | 'host' = 'ingress') => ({ Protocol, TargetPort, PublishedPort, PublishMode });
  t.is(portsColumn([]), '');
  t.is(portsColumn([port('tcp', 80, 8080)]), '*:8080->80/tcp');
  t.is(portsColumn([port('tcp', 80, 8080, 'host')]), '');
  // docker/cli's TestServiceContext_Ports, without its sctp ports.
  const docker = [
    port('tcp', 80, 81), port('tcp', 80, 80), port('tcp', 95, 95), port('tcp', 90, 90), port('tcp', 91, 91), port('tcp', 92, 92),
    port('tcp', 93, 93), port('tcp', 94, 94), port('udp', 95, 95), port('udp', 90, 90), port('udp', 96, 96), port('udp', 91, 91),
    port('udp', 92, 92), port('udp', 93, 93), port('udp', 94, 94), port('tcp', 60, 60), port('tcp', 61, 61), port('tcp', 61, 62),
    port('tcp', 7000, 7000, 'host'),
  ];
  t.is(portsColumn(docker), '*:60-61->60-61/tcp, *:62->61/tcp, *:80-81->80/tcp, *:90-95->90-95/tcp, *:90-96->90-96/udp');
  t.is(docker[0]?.PublishedPort, 81, 'the caller\'s list is not reordered');
});

test('service create --publish: ls shows PORTS, inspect shows the ports where Docker has them; rm frees them', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.83.0.0/24', 'front']);
  const id = (await ok(t, ['service', 'create', '--network', 'front', '-p', '8080:80', '--publish', 'published=8081,target=81', '-p', '5353:53/udp', '-p', 'published=9000,target=9000,mode=host', 'web'])).trim();
  await ok(t, ['service', 'create', '--network', 'front', 'plain']);
  t.is(
    await ok(t, ['service', 'ls']),
    [
      'ID             NAME      MODE      TASKS     VIRTUAL IPS    PORTS',
      `${(await ok(t, ['service', 'ls', '-q', '-f', 'name=plain'])).trim()}   plain     vip       0         10.83.0.3/24   `,
      `${id.slice(0, 12)}   web       vip       0         10.83.0.2/24   *:8080-8081->80-81/tcp, *:5353->53/udp`,
      '',
    ].join('\n'),
  );
  t.is(await ok(t, ['service', 'ls', '--format', '{{.Name}}={{.Ports}}']), 'plain=\nweb=*:8080-8081->80-81/tcp, *:5353->53/udp\n');

  const [inspected] = JSON.parse(await ok(t, ['service', 'inspect', 'web']));
  const ports = [
    { Protocol: 'tcp', TargetPort: 80, PublishedPort: 8080, PublishMode: 'ingress' },
    { Protocol: 'tcp', TargetPort: 81, PublishedPort: 8081, PublishMode: 'ingress' },
    { Protocol: 'udp', TargetPort: 53, PublishedPort: 5353, PublishMode: 'ingress' },
    { Protocol: 'tcp', TargetPort: 9000, PublishedPort: 9000, PublishMode: 'host' },
  ];
  t.deepEqual(inspected.Spec.EndpointSpec, { Mode: 'vip', Ports: ports });
  t.deepEqual(inspected.Endpoint.Spec, { Mode: 'vip', Ports: ports });
  t.deepEqual(inspected.Endpoint.Ports, ports);
  t.is(await ok(t, ['service', 'inspect', '-f', '{{range .Endpoint.Ports}}{{.PublishedPort}}/{{.Protocol}} {{end}}', 'web']), '8080/tcp 8081/tcp 5353/udp 9000/tcp \n');
  const [plain] = JSON.parse(await ok(t, ['service', 'inspect', 'plain']));
  t.false('Ports' in plain.Endpoint);
  t.false('Ports' in plain.Spec.EndpointSpec);

  const taken = await t.context.netctl(['service', 'create', '--network', 'front', '-p', '8081:80', 'api']);
  t.is(taken.code, 1);
  t.is(taken.stderr, 'Error response from daemon: port 8081/tcp is already published by service web\n');
  await ok(t, ['service', 'rm', 'web']);
  await ok(t, ['service', 'create', '--network', 'front', '-p', '8081:80', '-p', '443', 'api']);
  t.is(await ok(t, ['service', 'ls', '--format', '{{.Name}} {{.Ports}}', '-f', 'name=api']), 'api *:8081->80/tcp, *:30000->443/tcp\n');
});

test('service create --publish errors: usage errors for bad specs, the daemon\'s for the rest; nothing made', async (t) => {
  await ok(t, ['network', 'create', '--subnet', '10.84.0.0/24', 'front']);
  const bad = await t.context.netctl(['service', 'create', '--network', 'front', '-p', '8080:80', '-p', 'published=8081,target=80,proto=udp', 'web']);
  t.is(bad.code, 1);
  t.is(bad.stderr, `invalid argument "published=8081,target=80,proto=udp" for "-p, --publish" flag: unknown field 'proto': published, target, protocol or mode\nSee 'netctl service create --help'.\n`);
  const cases: [string[], string][] = [
    [['-p', '8080:80', '-p', 'published=8080,target=81', 'web'], 'Error response from daemon: port 8080/tcp is published more than once\n'],
    [['-p', '8080:80', '--endpoint-mode', 'dnsrr', 'web'], "Error response from daemon: EndpointSpec: port published with ingress mode can't be used with dnsrr mode\n"],
  ];
  for (const [args, stderr] of cases) {
    const result = await t.context.netctl(['service', 'create', '--network', 'front', ...args]);
    t.is(result.code, 1, args.join(' '));
    t.is(result.stderr, stderr);
  }
  const noNetwork = await t.context.netctl(['service', 'create', '-p', '8080:80', 'web']);
  t.is(noNetwork.stderr, 'Error response from daemon: service web: published ports need a network, which its tasks join to be reached\n');
  t.is(await ok(t, ['service', 'ls', '-q']), '');
  // dnsrr with a port in host mode is what Docker accepts too.
  await ok(t, ['service', 'create', '--network', 'front', '--endpoint-mode', 'dnsrr', '-p', 'published=5432,target=5432,mode=host', 'db']);
});
