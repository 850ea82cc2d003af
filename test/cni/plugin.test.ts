/**
 * netctl-cni run exactly as a runtime runs it: the executable found in
 * CNI_PATH, the CNI_* environment, the request configuration on stdin, the
 * answer on stdout. A `netctl daemon` runs in a host namespace of the
 * test's own; the plugin runs there too (as a runtime runs plugins in the
 * host's namespace); containers are namespaces the test makes with `ip
 * netns add`, as a runtime makes them.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, addresses, inNetns, links, namespacesWithPrefix, pings, removeNetns, routes, run, uniqueName } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';
import { type AttachmentParams, type PluginRun, type Runtime, makeRuntime } from './runtime.js';

interface Context {
  hostNs: string;
  hostNsPath: string;
  stateDir: string;
  socket: string;
  daemon: RunningDaemon;
  runtime: Runtime;
  client: ApiClient;
  /** Prefix of every namespace the tests make, to find leaks. */
  prefix: string;
}

const test = anyTest as TestFn<Context>;
const SUBNET = '10.98.0';
const SIDE_SUBNET = '10.97.0';

test.before(async (t) => {
  const hostNs = uniqueName('cnih');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-cni-'));
  const socket = join(stateDir, 'netctl.sock');
  const daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  const client = new ApiClient(`unix://${socket}`);
  await client.createNetwork({ Name: 'cninet', IPAM: { Config: [{ Subnet: `${SUBNET}.0/24` }] } });
  await client.createNetwork({ Name: 'cniside', IPAM: { Config: [{ Subnet: `${SIDE_SUBNET}.0/24` }] } });
  t.context = { hostNs, hostNsPath, stateDir, socket, daemon, runtime: await makeRuntime(hostNsPath), client, prefix: uniqueName('cni').slice(0, 11) };
});

test.after.always(async (t) => {
  const { daemon, hostNs, stateDir, runtime, prefix } = t.context;
  await daemon?.stop('SIGKILL');
  for (const name of await namespacesWithPrefix(prefix)) await removeNetns(name);
  if (hostNs !== undefined) await removeNetns(hostNs);
  if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true });
  await runtime?.close();
});

/** A container's namespace, made as a runtime makes one, removed after the test. */
async function container(t: ExecutionContext<Context>): Promise<{ id: string; netns: string; name: string }> {
  const name = `${t.context.prefix}${randomUUID().slice(0, 4)}`;
  const netns = await addNetns(name);
  t.teardown(() => removeNetns(name));
  return { id: `ctr-${randomUUID()}`, netns, name };
}

function conf(t: ExecutionContext<Context>, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: '1.1.0', name: 'cninet', type: 'netctl-cni', network: 'cninet', host: `unix://${t.context.socket}`, ...fields });
}

function cni(t: ExecutionContext<Context>, command: string, params: AttachmentParams, stdin: string, env?: Record<string, string>): Promise<PluginRun> {
  return t.context.runtime.exec('netctl-cni', command, params, stdin, env);
}

async function added(t: ExecutionContext<Context>, params: AttachmentParams, stdin = conf(t)): Promise<any> {
  const result = await cni(t, 'ADD', params, stdin);
  t.is(result.code, 0, `ADD: ${result.stdout}${result.stderr}`);
  return result.json;
}

async function netctl(t: ExecutionContext<Context>, ...args: string[]): Promise<string> {
  const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${t.context.socket}`, ...args]);
  t.is(result.code, 0, result.stderr);
  return result.stdout;
}

const bare = (cidr: string) => cidr.split('/')[0] ?? '';

test.serial('ADD: two namespaces ping each other; the result is what ip shows; the embedded DNS answers there', async (t) => {
  const a = await container(t);
  const b = await container(t);
  const resultA = await added(t, { containerId: a.id, netns: a.netns, ifName: 'eth0' }, conf(t, { runtimeConfig: { aliases: ['alpha'] } }));
  const resultB = await added(t, { containerId: b.id, netns: b.netns, ifName: 'eth0' });

  t.is(resultA.cniVersion, '1.1.0');
  const [host, inside] = resultA.interfaces;
  const eth0 = (await links(a.netns)).find((l) => l.ifname === 'eth0');
  t.deepEqual(inside, { name: 'eth0', mac: eth0?.address, mtu: eth0?.mtu, sandbox: a.netns });
  const hostLink = (await links(t.context.hostNsPath)).find((l) => l.ifname === host.name);
  t.deepEqual(host, { name: hostLink?.ifname, mac: hostLink?.address, mtu: hostLink?.mtu }, 'the host-side veth, in the namespace the plugin ran in');
  t.regex(hostLink?.master ?? '', /^br-/);
  const [addressA] = (await addresses(a.netns, 'eth0')) ?? [];
  t.deepEqual(resultA.ips, [{ address: addressA, gateway: `${SUBNET}.1`, interface: 1 }]);
  const defaultRoute = (await routes(a.netns)).find((r) => r.dst === 'default');
  t.is(defaultRoute?.dev, 'eth0');
  t.deepEqual(resultA.routes, [{ dst: '0.0.0.0/0', gw: defaultRoute?.gateway }]);
  t.deepEqual(resultA.dns, { nameservers: ['127.0.0.11'] });

  const addressB = bare(resultB.ips[0].address);
  t.true(await pings(a.netns, addressB), 'a reaches b');
  t.true(await pings(b.netns, bare(addressA ?? '')), 'b reaches a');
  const answer = await waitFor('the embedded DNS to answer in b', async () => {
    const dig = await inNetns(b.netns, 'dig', ['+short', '+time=1', '+tries=1', '@127.0.0.11', 'alpha']);
    return dig.stdout.trim() !== '' ? dig.stdout.trim() : undefined;
  });
  t.is(answer, bare(addressA ?? ''), 'b resolves a by its alias through 127.0.0.11 in its own namespace');

  const listed = await netctl(t, 'sandbox', 'ls', '--format', '{{.Name}} {{.Netns}} {{.Networks}} {{.Labels}}');
  t.true(listed.split('\n').includes(`cni-${a.id} ${a.netns} cninet org.netctl.cni.container=${a.id}`), listed);

  for (const c of [a, b]) t.is((await cni(t, 'DEL', { containerId: c.id, netns: c.netns, ifName: 'eth0' }, conf(t))).code, 0);
});

test.serial('a 0.4.0 configuration gets a 0.4.0 result; CNI_ARGS IP picks the address', async (t) => {
  const a = await container(t);
  const result = await added(t, { containerId: a.id, netns: a.netns, ifName: 'eth0', args: `IgnoreUnknown=1;IP=${SUBNET}.77` }, conf(t, { cniVersion: '0.4.0' }));
  t.is(result.cniVersion, '0.4.0');
  t.deepEqual(result.ips, [{ version: '4', address: `${SUBNET}.77/24`, gateway: `${SUBNET}.1`, interface: 1 }]);
  t.false('mtu' in result.interfaces[1], 'mtu is 1.1.0');
  t.is((await cni(t, 'DEL', { containerId: a.id, netns: a.netns, ifName: 'eth0' }, conf(t, { cniVersion: '0.4.0' }))).code, 0);
});

test.serial('CHECK passes after ADD and fails once the interface was deleted by hand; DEL still cleans up', async (t) => {
  const a = await container(t);
  const params = { containerId: a.id, netns: a.netns, ifName: 'eth0' };
  const result = await added(t, params);
  const check = await cni(t, 'CHECK', params, conf(t, { prevResult: result }));
  t.is(check.code, 0, check.stdout);
  t.is(check.stdout, '');

  const noPrev = await cni(t, 'CHECK', params, conf(t));
  t.is(noPrev.code, 1);
  t.like(noPrev.json, { code: 7, details: 'prevResult: CHECK needs the result of the ADD' });
  const otherMac = await cni(t, 'CHECK', params, conf(t, { prevResult: { ...result, interfaces: [result.interfaces[0], { ...result.interfaces[1], mac: '02:00:00:00:00:99' }] } }));
  t.like(otherMac.json, { code: 101 });
  t.regex(otherMac.json.msg, /has MAC .* not 02:00:00:00:00:99/);

  t.is((await run('ip', ['-n', a.name, 'link', 'del', 'eth0'])).code, 0);
  const broken = await cni(t, 'CHECK', params, conf(t, { prevResult: result }));
  t.is(broken.code, 1);
  t.like(broken.json, { cniVersion: '1.1.0', code: 101, msg: `interface eth0 is missing from ${a.netns}` });

  t.is((await cni(t, 'DEL', params, conf(t, { prevResult: result }))).code, 0);
  t.deepEqual((await t.context.client.listSandboxes()).filter((s) => s.Name === `cni-${a.id}`), []);
});

test.serial('DEL removes the sandbox, the interfaces and frees the address; DEL twice, without CNI_NETNS or after the namespace went, succeeds', async (t) => {
  const a = await container(t);
  const params = { containerId: a.id, netns: a.netns, ifName: 'eth0' };
  const result = await added(t, params);
  const address = bare(result.ips[0].address);
  const hostVeth = result.interfaces[0].name;
  const del = await cni(t, 'DEL', params, conf(t, { prevResult: result }));
  t.is(del.code, 0, del.stdout);
  t.is(del.stdout, '');
  t.notRegex(await netctl(t, 'sandbox', 'ls'), new RegExp(`cni-${a.id}`));
  t.deepEqual((await links(a.netns)).map((l) => l.ifname), ['lo'], 'the interface left the namespace');
  t.is((await links(t.context.hostNsPath)).find((l) => l.ifname === hostVeth), undefined, 'the host-side veth is gone');
  t.is((await cni(t, 'DEL', params, conf(t))).code, 0, 'DEL twice');
  t.is((await cni(t, 'DEL', { containerId: a.id, ifName: 'eth0' }, conf(t))).code, 0, 'DEL without CNI_NETNS');

  // The address is free again: another container asks for it and gets it.
  const b = await container(t);
  const again = await added(t, { containerId: b.id, netns: b.netns, ifName: 'eth0', args: `IP=${address}` });
  t.is(again.ips[0].address, `${address}/24`);
  // The runtime removed the namespace before DEL (a crashed container): DEL still removes everything.
  await removeNetns(b.name);
  const late = await cni(t, 'DEL', { containerId: b.id, netns: b.netns, ifName: 'eth0' }, conf(t));
  t.is(late.code, 0, late.stdout);
  t.notRegex(await netctl(t, 'sandbox', 'ls'), new RegExp(`cni-${b.id}`));
  t.is((await links(t.context.hostNsPath)).find((l) => l.ifname === again.interfaces[0].name), undefined);
  t.deepEqual((await t.context.client.inspectNetwork('cninet')).Containers, {});
});

test.serial('two attachments of one container (eth0, net1 on another network) share its sandbox; each DEL removes its own', async (t) => {
  const a = await container(t);
  await added(t, { containerId: a.id, netns: a.netns, ifName: 'eth0' });
  const second = await added(t, { containerId: a.id, netns: a.netns, ifName: 'net1' }, conf(t, { name: 'side', network: 'cniside' }));
  t.is(second.interfaces[1].name, 'net1');
  t.deepEqual(second.routes, [], 'the default route stays with eth0');
  t.deepEqual((await addresses(a.netns, 'net1')) ?? [], [second.ips[0].address]);
  const sandbox = await t.context.client.inspectSandbox(`cni-${a.id}`);
  t.deepEqual(Object.values(sandbox.Networks).map((n) => n.InterfaceName).sort(), ['eth0', 'net1']);

  const clash = await cni(t, 'ADD', { containerId: a.id, netns: a.netns, ifName: 'net1' }, conf(t));
  t.like(clash.json, { code: 100, msg: `interface net1 already exists in ${a.netns}` });

  t.is((await cni(t, 'DEL', { containerId: a.id, netns: a.netns, ifName: 'eth0' }, conf(t))).code, 0);
  t.deepEqual(Object.values((await t.context.client.inspectSandbox(`cni-${a.id}`)).Networks).map((n) => n.InterfaceName), ['net1']);
  t.is((await cni(t, 'DEL', { containerId: a.id, netns: a.netns, ifName: 'net1' }, conf(t, { name: 'side', network: 'cniside' }))).code, 0);
  t.deepEqual((await links(a.netns)).map((l) => l.ifname), ['lo']);
  t.notRegex(await netctl(t, 'sandbox', 'ls'), new RegExp(`cni-${a.id}`));
});

test.serial('ADD refuses an interface the container already has, and leaves nothing behind', async (t) => {
  const a = await container(t);
  t.is((await run('ip', ['-n', a.name, 'link', 'add', 'eth0', 'type', 'bridge'])).code, 0);
  const refused = await cni(t, 'ADD', { containerId: a.id, netns: a.netns, ifName: 'eth0' }, conf(t));
  t.is(refused.code, 1);
  t.like(refused.json, { code: 100, msg: `interface eth0 already exists in ${a.netns}` });
  t.deepEqual((await t.context.client.listSandboxes()).filter((s) => s.Name === `cni-${a.id}`), []);
  t.is((await links(a.netns)).find((l) => l.ifname === 'eth0')?.linkinfo?.info_kind, 'bridge', "the container's own interface is untouched");
});

test.serial('STATUS: 0 while the daemon has the network, 50 when it has not', async (t) => {
  const ready = await cni(t, 'STATUS', {}, conf(t));
  t.is(ready.code, 0, ready.stdout);
  t.is(ready.stdout, '');
  const missing = await cni(t, 'STATUS', {}, conf(t, { network: 'nosuch' }));
  t.is(missing.code, 1);
  t.like(missing.json, { cniVersion: '1.1.0', code: 50, msg: 'netctl network nosuch does not exist' });
  const old = await cni(t, 'STATUS', {}, conf(t, { cniVersion: '1.0.0' }));
  t.like(old.json, { code: 1 }, 'STATUS is 1.1.0');
});

test.serial('GC removes the attachments to the network the runtime does not list, and nothing else', async (t) => {
  const [a, b, c] = [await container(t), await container(t), await container(t)];
  for (const x of [a, b, c]) await added(t, { containerId: x.id, netns: x.netns, ifName: 'eth0' });
  // b's net1 on the other network is not this configuration's to collect.
  await added(t, { containerId: b.id, netns: b.netns, ifName: 'net1' }, conf(t, { name: 'side', network: 'cniside' }));
  const gc = await cni(
    t,
    'GC',
    {},
    conf(t, { 'cni.dev/valid-attachments': [{ containerID: a.id, ifname: 'eth0' }, { containerID: c.id, ifname: 'eth0' }] }),
  );
  t.is(gc.code, 0, gc.stdout);
  t.is(gc.stdout, '');
  t.deepEqual((await links(b.netns)).map((l) => l.ifname).sort(), ['lo', 'net1'], "b's eth0 went, its net1 stayed");
  t.deepEqual((await links(a.netns)).map((l) => l.ifname).sort(), ['eth0', 'lo']);
  t.deepEqual((await links(c.netns)).map((l) => l.ifname).sort(), ['eth0', 'lo']);
  const sandboxes = (await t.context.client.listSandboxes()).map((s) => s.Name).sort();
  t.deepEqual(sandboxes, [`cni-${a.id}`, `cni-${b.id}`, `cni-${c.id}`].sort());
  // The other network's GC with an empty list takes b's last attachment and so its sandbox.
  t.is((await cni(t, 'GC', {}, conf(t, { name: 'side', network: 'cniside', 'cni.dev/valid-attachments': [] }))).code, 0);
  t.deepEqual((await t.context.client.listSandboxes()).map((s) => s.Name).sort(), [`cni-${a.id}`, `cni-${c.id}`].sort());
  t.like((await cni(t, 'GC', {}, conf(t))).json, { code: 7, details: 'cni.dev/valid-attachments: GC needs the list of attachments to keep' });
  t.like((await cni(t, 'GC', {}, conf(t, { cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] }))).json, { code: 1 });
  for (const x of [a, c]) t.is((await cni(t, 'DEL', { containerId: x.id, netns: x.netns, ifName: 'eth0' }, conf(t))).code, 0);
});

test.serial('VERSION, the about text, and bad environments or configurations: code and a message naming the problem', async (t) => {
  const version = await cni(t, 'VERSION', {}, JSON.stringify({ cniVersion: '0.4.0' }));
  t.is(version.code, 0);
  t.deepEqual(version.json, { cniVersion: '0.4.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  t.deepEqual((await cni(t, 'VERSION', {}, '')).json, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  const about = await cni(t, '', {}, '');
  t.is(about.code, 0);
  t.regex(about.stderr, /CNI protocol versions supported: 0\.4\.0, 1\.0\.0, 1\.1\.0/);

  const a = await container(t);
  const ok = { containerId: a.id, netns: a.netns, ifName: 'eth0' };
  const cases: [string, AttachmentParams, string, number, RegExp][] = [
    ['FOO', ok, conf(t), 4, /CNI_COMMAND "FOO"/],
    ['ADD', { ifName: 'eth0' }, conf(t), 4, /CNI_CONTAINERID is missing; CNI_NETNS is missing/],
    ['ADD', { ...ok, ifName: 'much-too-long-name' }, conf(t), 4, /CNI_IFNAME "much-too-long-name"/],
    ['ADD', { ...ok, netns: 'relative/path' }, conf(t), 4, /CNI_NETNS "relative\/path" is not an absolute path/],
    ['ADD', { ...ok, containerId: '-x' }, conf(t), 4, /CNI_CONTAINERID "-x"/],
    ['ADD', { ...ok, args: 'IP' }, conf(t), 4, /CNI_ARGS: "IP" is not KEY=VALUE/],
    ['ADD', { ...ok, netns: '/var/run/netns/nonexistent-cni' }, conf(t), 4, /CNI_NETNS \/var\/run\/netns\/nonexistent-cni: network namespace .* does not exist/],
    ['ADD', ok, '{"cniVersion": "1.1.0", ', 6, /JSON/],
    ['ADD', ok, conf(t, { network: undefined }), 7, /^network: is missing/],
    ['ADD', ok, conf(t, { network: 'nosuch' }), 7, /^network: netctl has no network "nosuch"/],
    ['ADD', ok, conf(t, { host: 'http://x' }), 7, /^host: "http:\/\/x" is not unix:/],
    ['ADD', ok, conf(t, { runtimeConfig: { ips: [`${SUBNET}.5`, `${SUBNET}.6`] } }), 7, /at most one IPv4/],
    ['ADD', ok, conf(t, { runtimeConfig: { ips: ['10.123.0.5'] } }), 7, /10\.123\.0\.5/],
    ['ADD', ok, conf(t, { cniVersion: '0.3.1' }), 1, /supports 0\.4\.0, 1\.0\.0, 1\.1\.0/],
    ['DEL', { netns: a.netns }, conf(t), 4, /CNI_CONTAINERID is missing; CNI_IFNAME is missing/],
  ];
  for (const [command, params, stdin, code, details] of cases) {
    const result = await cni(t, command, params, stdin);
    const label = `${command} ${JSON.stringify(params)} ${stdin}`;
    t.is(result.code, 1, label);
    t.is(result.json?.code, code, `${label}: ${result.stdout}`);
    t.regex(`${result.json?.details ?? ''}`, details, label);
    t.is(typeof result.json?.msg, 'string');
  }
  t.deepEqual((await links(a.netns)).map((l) => l.ifname), ['lo'], 'nothing was made');
});

test.serial('with its daemon stopped: ADD, DEL and CHECK say try again later (11), STATUS 51; restarted, the attachment is back and ADD works', async (t) => {
  const hostNs = uniqueName('cnid');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-cni-down-'));
  const socket = join(stateDir, 'netctl.sock');
  const start = () => startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  let daemon = await start();
  t.teardown(async () => {
    await daemon.stop('SIGKILL');
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  await new ApiClient(`unix://${socket}`).createNetwork({ Name: 'cninet', IPAM: { Config: [{ Subnet: '10.96.0.0/24' }] } });
  // The configuration names no host: NETCTL_HOST does, as a runtime's environment might.
  const stdin = conf(t, { host: undefined });
  const env = { NETCTL_HOST: `unix://${socket}` };
  const a = await container(t);
  const attached = { containerId: a.id, netns: a.netns, ifName: 'net0' };
  const first = await cni(t, 'ADD', attached, stdin, env);
  t.is(first.code, 0, first.stdout);

  await daemon.stop('SIGKILL');
  const b = await container(t);
  const params = { containerId: b.id, netns: b.netns, ifName: 'eth0' };
  for (const [command, which, input] of [
    ['ADD', params, stdin],
    ['DEL', attached, stdin],
    ['CHECK', attached, conf(t, { host: undefined, prevResult: first.json })],
  ] as const) {
    const result = await cni(t, command, which, input, env);
    t.is(result.code, 1, command);
    t.like(result.json, { cniVersion: '1.1.0', code: 11, msg: 'the netctl daemon is not reachable; try again later' }, command);
    t.regex(result.json.details, new RegExp(`Cannot connect to the netctl daemon at unix://${socket}`));
  }
  const status = await cni(t, 'STATUS', {}, stdin, env);
  t.like(status.json, { code: 51, msg: 'the netctl daemon is not reachable' });
  t.true(await pings(a.netns, '10.96.0.1'), "the bridge's kernel side still carries traffic meanwhile");

  daemon = await start();
  const check = await cni(t, 'CHECK', attached, conf(t, { host: undefined, prevResult: first.json }), env);
  t.is(check.code, 0, `the restarted daemon restored net0: ${check.stdout}`);
  const result = await cni(t, 'ADD', params, stdin, env);
  t.is(result.code, 0, result.stdout);
  t.is(result.json.ips[0].address, '10.96.0.3/24');
  for (const which of [attached, params]) t.is((await cni(t, 'DEL', which, stdin, env)).code, 0);
});
