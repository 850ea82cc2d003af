/** The service routes, through raw HTTP and through the API client. */
import anyTest, { type TestFn } from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { ServiceNotFound } from '../../src/errors.js';
import { type Fixture, call, startFixture } from './fixture.js';

const test = anyTest as TestFn<Fixture>;

test.beforeEach(async (t) => {
  t.context = await startFixture();
});

test.afterEach.always(async (t) => {
  await t.context.close();
});

test('create, inspect by name and id, list with filters, connect a task, remove', async (t) => {
  const net = await call(t.context, 'POST', '/networks/create', { Name: 'front', IPAM: { Config: [{ Subnet: '10.40.0.0/24' }] } });
  t.is(net.status, 201);
  const created = await call(t.context, 'POST', '/v1.47/services/create', {
    Name: 'web',
    Labels: { tier: 'front' },
    TaskTemplate: { Networks: [{ Target: 'front' }] },
    EndpointSpec: { Mode: 'vip' },
  });
  t.is(created.status, 201, created.text);
  t.deepEqual(Object.keys(created.json), ['ID']);
  const id = created.json.ID as string;

  await call(t.context, 'POST', '/sandboxes/create', { Name: 'task1' });
  const connected = await call(t.context, 'POST', '/networks/front/connect', { Container: 'task1', Service: 'web' });
  t.is(connected.status, 200, connected.text);

  const inspected = await call(t.context, 'GET', '/services/web');
  t.is(inspected.status, 200);
  const service = inspected.json;
  t.is(service.ID, id);
  t.is(service.UpdatedAt, service.CreatedAt);
  t.deepEqual(service.Spec, {
    Name: 'web',
    Labels: { tier: 'front' },
    TaskTemplate: { Networks: [{ Target: net.json.Id }] },
    EndpointSpec: { Mode: 'vip' },
  });
  t.deepEqual(service.Endpoint, { Spec: { Mode: 'vip' }, VirtualIPs: [{ NetworkID: net.json.Id, Addr: '10.40.0.2/24' }] });
  t.is(service.Tasks.length, 1);
  t.like(service.Tasks[0], { Sandbox: 'task1', NetworkID: net.json.Id, Addr: '10.40.0.3/24' });
  t.is((await call(t.context, 'GET', `/services/${id}`)).json.Spec.Name, 'web');

  await call(t.context, 'POST', '/services/create', { Name: 'db', EndpointSpec: { Mode: 'dnsrr' }, TaskTemplate: { Networks: [{ Target: 'front' }] } });
  const all = await call(t.context, 'GET', '/services');
  t.deepEqual(all.json.map((s: any) => s.Spec.Name), ['web', 'db']);
  t.deepEqual(all.json[1].Endpoint.VirtualIPs, []);
  const filtered = await call(t.context, 'GET', `/services?filters=${encodeURIComponent(JSON.stringify({ label: ['tier=front'] }))}`);
  t.deepEqual(filtered.json.map((s: any) => s.Spec.Name), ['web']);

  const removed = await call(t.context, 'DELETE', '/services/web');
  t.is(removed.status, 200);
  t.is((await call(t.context, 'GET', '/services/web')).status, 404);
  // The task stays connected.
  t.is((await call(t.context, 'GET', '/sandboxes/task1')).json.Networks[net.json.Id].IPv4Address, '10.40.0.3/24');
});

test('errors: status codes and messages, nothing made', async (t) => {
  await call(t.context, 'POST', '/networks/create', { Name: 'n', IPAM: { Config: [{ Subnet: '10.41.0.0/30' }] } });
  await call(t.context, 'POST', '/networks/create', { Name: 'plain', Driver: 'null' });
  await call(t.context, 'POST', '/services/create', { Name: 'taken' });
  await call(t.context, 'POST', '/sandboxes/create', { Name: 's' });
  const cases: [unknown, number, RegExp][] = [
    [{ Name: 'taken' }, 409, /service with name taken already exists/],
    [{ Name: 'x', TaskTemplate: { Networks: [{ Target: 'ghost' }] } }, 404, /network ghost not found/],
    [{ Name: 'x', TaskTemplate: { Networks: [{ Target: 'plain' }] } }, 400, /assigns no addresses/],
    [{ Name: 'x', TaskTemplate: { Networks: [{}] } }, 400, /Target is required/],
    [{ Name: 'x', EndpointSpec: { Mode: 'rr' } }, 400, /invalid endpoint mode "rr"/],
    [{ Name: '-x' }, 400, /invalid service name/],
    [{}, 400, /Name is required/],
  ];
  for (const [body, status, message] of cases) {
    const res = await call(t.context, 'POST', '/services/create', body);
    t.is(res.status, status, res.text);
    t.regex(res.json.message, message);
  }
  // A /30 has one address left after the gateway: the first service takes it, the second is refused.
  t.is((await call(t.context, 'POST', '/services/create', { Name: 'one', TaskTemplate: { Networks: [{ Target: 'n' }] } })).status, 201);
  const full = await call(t.context, 'POST', '/services/create', { Name: 'two', TaskTemplate: { Networks: [{ Target: 'n' }] } });
  t.is(full.status, 409);
  t.regex(full.json.message, /no virtual IP left on network n/);
  const notOn = await call(t.context, 'POST', '/networks/n/connect', { Container: 's', Service: 'taken' });
  t.is(notOn.status, 400);
  t.is(notOn.json.message, 'service taken is not on network n; a task must join one of its networks');
  t.is((await call(t.context, 'DELETE', '/services/ghost')).status, 404);
  t.deepEqual((await call(t.context, 'GET', '/services')).json.map((s: any) => s.Spec.Name), ['taken', 'one']);
});

test('the client: typed errors and every service method', async (t) => {
  const client = new ApiClient(t.context.host);
  await client.createNetwork({ Name: 'n', IPAM: { Config: [{ Subnet: '10.42.0.0/24' }] } });
  const { ID } = await client.createService({ Name: 'api', TaskTemplate: { Networks: [{ Target: 'n' }] } });
  await client.createSandbox({ Name: 'a' });
  await client.connect('n', 'a', {}, 'api');
  const service = await client.inspectService('api');
  t.is(service.ID, ID);
  t.is(service.Tasks[0]?.Sandbox, 'a');
  t.deepEqual((await client.listServices({ name: ['ap'] })).map((s) => s.Spec.Name), ['api']);
  await client.removeService(ID);
  const err = await t.throwsAsync(client.inspectService('api'));
  t.true(err instanceof ServiceNotFound);
  t.is((err as ServiceNotFound).code, 'ServiceNotFound');
});

test('published ports: EndpointSpec.Ports in, Spec.EndpointSpec.Ports, Endpoint.Spec.Ports and Endpoint.Ports out; none when none', async (t) => {
  const net = await call(t.context, 'POST', '/networks/create', { Name: 'front', IPAM: { Config: [{ Subnet: '10.43.0.0/24' }] } });
  const created = await call(t.context, 'POST', '/services/create', {
    Name: 'web',
    TaskTemplate: { Networks: [{ Target: 'front' }] },
    // As the docker CLI sends them: Go's zero values for what is not set.
    EndpointSpec: {
      Mode: 'vip',
      Ports: [
        { Name: '', Protocol: 'tcp', TargetPort: 80, PublishedPort: 8080, PublishMode: 'ingress' },
        { Protocol: 'udp', TargetPort: 53, PublishedPort: 5353, PublishMode: 'host' },
        { Protocol: '', TargetPort: 443, PublishedPort: 8443, PublishMode: null },
      ],
    },
  });
  t.is(created.status, 201, created.text);
  const ports = [
    { Protocol: 'tcp', TargetPort: 80, PublishedPort: 8080, PublishMode: 'ingress' },
    { Protocol: 'udp', TargetPort: 53, PublishedPort: 5353, PublishMode: 'host' },
    { Protocol: 'tcp', TargetPort: 443, PublishedPort: 8443, PublishMode: 'ingress' },
  ];
  const service = (await call(t.context, 'GET', '/services/web')).json;
  t.deepEqual(service.Spec.EndpointSpec, { Mode: 'vip', Ports: ports });
  t.deepEqual(service.Endpoint, {
    Spec: { Mode: 'vip', Ports: ports },
    Ports: ports,
    VirtualIPs: [{ NetworkID: net.json.Id, Addr: '10.43.0.2/24' }],
  });
  t.deepEqual((await call(t.context, 'GET', '/services')).json[0].Endpoint.Ports, ports);

  await call(t.context, 'POST', '/services/create', { Name: 'plain', TaskTemplate: { Networks: [{ Target: 'front' }] }, EndpointSpec: { Ports: [] } });
  const plain = (await call(t.context, 'GET', '/services/plain')).json;
  t.deepEqual(plain.Spec.EndpointSpec, { Mode: 'vip' });
  t.deepEqual(Object.keys(plain.Endpoint), ['Spec', 'VirtualIPs']);
  t.deepEqual(plain.Endpoint.Spec, { Mode: 'vip' });

  // Removing the service frees its ports.
  t.is((await call(t.context, 'DELETE', '/services/web')).status, 200);
  const again = await call(t.context, 'POST', '/services/create', {
    Name: 'again',
    TaskTemplate: { Networks: [{ Target: 'front' }] },
    EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: 8080 }] },
  });
  t.is(again.status, 201, again.text);

  // Without a PublishedPort (or with Go's 0), the daemon picks one, shown wherever the ports are.
  const picked = await call(t.context, 'POST', '/services/create', {
    Name: 'picked',
    TaskTemplate: { Networks: [{ Target: 'front' }] },
    EndpointSpec: { Ports: [{ TargetPort: 80 }, { Protocol: 'tcp', TargetPort: 81, PublishedPort: 0, PublishMode: 'ingress' }] },
  });
  t.is(picked.status, 201, picked.text);
  const pickedPorts = [
    { Protocol: 'tcp', TargetPort: 80, PublishedPort: 30000, PublishMode: 'ingress' },
    { Protocol: 'tcp', TargetPort: 81, PublishedPort: 30001, PublishMode: 'ingress' },
  ];
  const inspected = (await call(t.context, 'GET', '/services/picked')).json;
  t.deepEqual(inspected.Endpoint.Ports, pickedPorts);
  t.deepEqual(inspected.Spec.EndpointSpec.Ports, pickedPorts);
});

test('published ports: bad ones are 400, taken ones 409, with messages naming the problem; nothing made', async (t) => {
  await call(t.context, 'POST', '/networks/create', { Name: 'n', IPAM: { Config: [{ Subnet: '10.44.0.0/24' }] } });
  await call(t.context, 'POST', '/services/create', { Name: 'web', TaskTemplate: { Networks: [{ Target: 'n' }] }, EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: 8080 }] } });
  const withPorts = (ports: unknown, more: Record<string, unknown> = {}) => ({ Name: 'x', TaskTemplate: { Networks: [{ Target: 'n' }] }, EndpointSpec: { Ports: ports, ...more } });
  const cases: [unknown, number, string][] = [
    [withPorts([{ PublishedPort: 8081 }]), 400, 'EndpointSpec.Ports[0].TargetPort is required'],
    [withPorts([{ TargetPort: 0, PublishedPort: 8081 }]), 400, 'EndpointSpec.Ports[0].TargetPort is required'],
    [withPorts([{ TargetPort: 53, PublishMode: 'host' }]), 400, 'target port 53: a published port is required in host mode'],
    [withPorts([{ TargetPort: 80, PublishedPort: '8081' }]), 400, 'EndpointSpec.Ports[0].PublishedPort must be a number'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081, Protocol: 6 }]), 400, 'EndpointSpec.Ports[0].Protocol must be a string'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081 }, 'x']), 400, 'EndpointSpec.Ports[1] must be a JSON object'],
    [withPorts({ TargetPort: 80 }), 400, 'Ports must be an array'],
    [withPorts([{ TargetPort: 80, PublishedPort: 70000 }]), 400, 'invalid published port 70000: out of range (1-65535)'],
    [withPorts([{ TargetPort: 80.5, PublishedPort: 8081 }]), 400, 'invalid target port 80.5: not a whole number'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081, Protocol: 'sctp' }]), 400, 'invalid protocol "sctp": tcp or udp'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081, PublishMode: 'global' }]), 400, 'invalid publish mode "global": ingress or host'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081 }, { TargetPort: 81, PublishedPort: 8081, Protocol: 'tcp' }]), 400, 'port 8081/tcp is published more than once'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8081 }], { Mode: 'dnsrr' }), 400, "EndpointSpec: port published with ingress mode can't be used with dnsrr mode"],
    [{ Name: 'x', EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: 8081 }] } }, 400, 'service x: published ports need a network, which its tasks join to be reached'],
    [withPorts([{ TargetPort: 80, PublishedPort: 8080 }]), 409, 'port 8080/tcp is already published by service web'],
  ];
  for (const [body, status, message] of cases) {
    const res = await call(t.context, 'POST', '/services/create', body);
    t.is(res.status, status, res.text);
    t.is(res.json.message, message);
  }
  t.deepEqual((await call(t.context, 'GET', '/services')).json.map((s: any) => s.Spec.Name), ['web']);
});
