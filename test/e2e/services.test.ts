/**
 * Services as sandboxes see them through the embedded DNS: `dig` against
 * 127.0.0.11 inside sandboxes, on one host's bridge network and across two
 * hosts on an overlay. Only names and VIPs; services-balancing.test.ts
 * sends traffic to them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { dig, digUntil } from '../helpers/dig.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';

test.serial('one host, a bridge network: vip and dnsrr services with two tasks each; rm takes the names and frees the VIP', async (t) => {
  const hostNs = uniqueName('sv');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-services-'));
  const socket = join(stateDir, 'netctl.sock');
  const sandboxes: string[] = [];
  let daemon: RunningDaemon | undefined;
  t.teardown(async () => {
    await daemon?.stop('SIGKILL');
    for (const name of sandboxes) await removeNetns(name);
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  // Nothing listens on 127.0.0.1:53 there: names netctl does not know fail instead of going to the machine's resolver.
  daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  const netctl = async (...args: string[]) => {
    const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
    t.is(result.code, 0, `netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const sandbox = async (base: string, ...connect: string[]) => {
    const name = uniqueName(base);
    sandboxes.push(name);
    await netctl('sandbox', 'create', name);
    await netctl('network', 'connect', ...connect, 'front', name);
    const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
    return { name, address: ipOf((await netctl('network', 'inspect', '-f', template, 'front')).trim()) };
  };

  await netctl('network', 'create', '--subnet', '10.86.0.0/24', 'front');
  await netctl('network', 'create', '--subnet', '10.87.0.0/24', 'back');
  await netctl('service', 'create', '--network', 'front', 'web');
  await netctl('service', 'create', '--network', 'front', '--endpoint-mode', 'dnsrr', 'db');
  const vip = ipOf((await netctl('service', 'inspect', '-f', '{{(index .Endpoint.VirtualIPs 0).Addr}}', 'web')).trim());
  t.is(vip, '10.86.0.2');
  const client = await sandbox('cl');
  const web = [await sandbox('w1', '--service', 'web'), await sandbox('w2', '--service', 'web')].map((s) => s.address);
  const db = [await sandbox('d1', '--service', 'db'), await sandbox('d2', '--service', 'db')].map((s) => s.address);
  t.false(web.includes(vip) || db.includes(vip), 'no endpoint got the VIP');

  t.deepEqual(await dig(client.name, 'web'), [vip]);
  t.deepEqual(await dig(client.name, 'web.front'), [vip]);
  t.deepEqual(await dig(client.name, 'tasks.web'), [...web].sort());
  t.deepEqual(await dig(client.name, 'db'), [...db].sort());
  t.deepEqual(await dig(client.name, 'db.front'), [...db].sort());
  t.deepEqual(await dig(client.name, 'tasks.db'), [...db].sort());
  t.deepEqual(await dig(client.name, '-x', vip), ['web.']);
  t.is((await netctl('service', 'inspect', '-f', '{{len .Tasks}}', 'web')).trim(), '2');

  // A sandbox on another network sees none of them.
  const outsider = uniqueName('out');
  sandboxes.push(outsider);
  await netctl('sandbox', 'create', outsider);
  await netctl('network', 'connect', 'back', outsider);
  t.deepEqual(await dig(outsider, 'web'), []);
  t.deepEqual(await dig(outsider, 'tasks.db'), []);

  // A task that disconnects leaves tasks.NAME at once.
  const w2 = sandboxes[2] ?? '';
  await netctl('network', 'disconnect', 'front', w2);
  t.deepEqual(await dig(client.name, 'tasks.web'), [web[0] ?? '']);

  await netctl('service', 'rm', 'web', 'db');
  for (const name of ['web', 'tasks.web', 'db', 'tasks.db']) t.deepEqual(await dig(client.name, name), [], name);
  t.deepEqual(await dig(client.name, '-x', vip), []);
  t.is(await netctl('service', 'ls', '-q'), '');
  // The tasks stay connected as plain endpoints, still resolvable by their names; the VIP is free again.
  t.deepEqual(await dig(client.name, sandboxes[3] ?? ''), [db[0] ?? '']);
  const next = await sandbox('n');
  t.is(next.address, vip);
});

test.serial('two hosts on an overlay: a service made on host 1 is listed and resolved on host 2; a task on host 2 is in tasks.NAME on host 1', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.88.0.0/24', 'ov');
  await cluster.ok(h1, 'service', 'create', '--network', 'ov', 'api');
  t.is((await cluster.ok(h2, 'service', 'ls', '--format', '{{.Name}} {{.VirtualIPs}}')).trim(), 'api 10.88.0.2/24');

  const near = await sandboxOn(cluster, h1, 'ov', 'near');
  const far = cluster.sandboxName('far');
  await cluster.ok(h2, 'sandbox', 'create', far);
  await cluster.ok(h2, 'network', 'connect', '--service', 'api', 'ov', far);
  const client2 = await sandboxOn(cluster, h2, 'ov', 'c2');
  const farAddress = ipOf(
    (await cluster.ok(h2, 'service', 'inspect', '-f', '{{(index .Tasks 0).Addr}}', 'api')).trim(),
  );

  t.deepEqual(await digUntil(client2.name, ['10.88.0.2'], 5000, 'api'), ['10.88.0.2'], 'host 2 resolves the service host 1 made');
  t.deepEqual(await digUntil(near.name, [farAddress], 5000, 'tasks.api'), [farAddress], 'host 1 sees the task on host 2');
  t.deepEqual(await dig(near.name, 'api.ov'), ['10.88.0.2']);
  t.deepEqual(await dig(near.name, '-x', '10.88.0.2'), ['api.']);

  await cluster.ok(h2, 'service', 'rm', 'api');
  t.deepEqual(await digUntil(near.name, [], 5000, 'tasks.api'), [], 'the removal on host 2 reaches host 1');
  t.deepEqual(await dig(near.name, 'api'), []);
  t.is((await cluster.ok(h1, 'service', 'ls', '-q')).trim(), '');
});
