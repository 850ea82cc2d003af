import anyTest, { type TestFn } from 'ava';
import { ApiClient, DaemonUnreachable, isDaemonError } from '../../src/api/client.js';
import { Conflict, Forbidden, InvalidArgument, NetctlError, NetworkNotFound, NotFound, Unavailable } from '../../src/errors.js';
import { type Fixture, startFixture } from './fixture.js';

const test = anyTest as TestFn<Fixture>;

test.beforeEach(async (t) => {
  t.context = await startFixture();
});

test.afterEach.always(async (t) => {
  await t.context.close();
});

test('every route round-trips through the client', async (t) => {
  const client = new ApiClient(t.context.host);
  t.deepEqual(await client.ping(), { apiVersion: '1.47', server: 'netctl/0.1.0' });
  t.is((await client.version()).ApiVersion, '1.47');

  const created = await client.createNetwork({ Name: 'n1', IPAM: { Config: [{ Subnet: '10.60.0.0/24' }] }, Labels: { a: '1' } });
  await client.createNetwork({ Name: 'n2', Driver: 'null' });
  t.is((await client.inspectNetwork('n1')).Id, created.Id);
  t.deepEqual((await client.listNetworks({ label: ['a=1'] })).map((n) => n.Name), ['n1']);

  const sandbox = await client.createSandbox({ Name: 'box', Labels: { role: 'db' } });
  t.is((await client.inspectSandbox(sandbox.Id)).Labels['role'], 'db');
  await client.connect('n1', 'box', { IPAMConfig: { IPv4Address: '10.60.0.9' }, Aliases: ['db'] });
  const joined = (await client.listSandboxes())[0];
  t.is(joined?.Networks[created.Id]?.IPv4Address, '10.60.0.9/24');
  t.deepEqual(joined?.Networks[created.Id]?.Aliases, ['db']);
  await client.disconnect('n1', 'box');
  t.deepEqual((await client.inspectSandbox('box')).Networks, {});
  await client.removeSandbox('box');
  t.deepEqual(await client.listSandboxes(), []);

  t.deepEqual(await client.pruneNetworks({ label: ['a'] }), ['n1']);
  await client.removeNetwork('n2');
  t.deepEqual(await client.listNetworks(), []);
});

test('errors come back as the matching NetctlError class with the daemon\'s message', async (t) => {
  const client = new ApiClient(t.context.host);
  await client.createNetwork({ Name: 'dup', IPAM: { Config: [{ Subnet: '10.61.0.0/24' }] } });
  await client.createSandbox({ Name: 'box' });
  await client.connect('dup', 'box');

  const conflict = await t.throwsAsync(client.createNetwork({ Name: 'dup' }), { instanceOf: Conflict });
  t.is(conflict?.message, 'network with name dup already exists');
  t.true(isDaemonError(conflict));
  const notFound = await t.throwsAsync(client.inspectNetwork('ghost'), { instanceOf: NotFound });
  t.is(notFound?.message, 'network ghost not found');
  t.is((notFound as NetctlError).code, 'NetworkNotFound');
  t.true(notFound instanceof NetworkNotFound);
  await t.throwsAsync(client.createNetwork({ Name: 'bad', Driver: 'nope' }), { instanceOf: InvalidArgument });
  await t.throwsAsync(client.removeNetwork('dup'), { instanceOf: Forbidden });
  await t.throwsAsync(client.listNetworks({ colour: ['red'] }), { instanceOf: InvalidArgument, message: "invalid filter 'colour'" });
});

test('an unreachable daemon is Unavailable with docker\'s wording', async (t) => {
  const client = new ApiClient('unix:///nonexistent.sock');
  const err = await t.throwsAsync(client.listNetworks(), { instanceOf: DaemonUnreachable });
  t.is(err?.message, 'Cannot connect to the netctl daemon at unix:///nonexistent.sock. Is the daemon running?');
  t.is((err as NetctlError).code, 'DaemonUnreachable');
  t.true(err instanceof Unavailable);
  t.false(isDaemonError(err));
  t.throws(() => new ApiClient('tcp://127.0.0.1:2375'), { instanceOf: InvalidArgument });
});
