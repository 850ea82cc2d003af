/** `netctl service …` and `network connect --service` against an in-memory daemon. */
import anyTest, { type TestFn } from 'ava';
import { type Fixture, startFixture } from '../api/fixture.js';
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
      'ID             NAME      MODE      TASKS     VIRTUAL IPS',
      `${dbId.slice(0, 12)}   db        dnsrr     0         `,
      `${id.slice(0, 12)}   web       vip       1         10.80.0.2/24`,
      '',
    ].join('\n'),
  );
  t.is(await ok(t, ['service', 'ls', '-q']), `${dbId.slice(0, 12)}\n${id.slice(0, 12)}\n`);
  t.is(await ok(t, ['service', 'ls', '-f', 'label=tier=web', '--format', '{{.Name}} {{.Label "tier"}}']), 'web web\n');
  const json = JSON.parse((await ok(t, ['service', 'ls', '--format', 'json', '-f', 'name=web'])).trim());
  t.deepEqual(Object.keys(json), ['CreatedAt', 'ID', 'Labels', 'Mode', 'Name', 'Tasks', 'VirtualIPs']);

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
