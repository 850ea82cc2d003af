/**
 * End to end, as an operator uses netctl: `netctl daemon` running in a host
 * namespace (started with nsenter, so the namespaces it makes are visible
 * here), driven with the `netctl` CLI and with the docker CLI, then killed
 * with SIGKILL and started again.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { NETCTL_CLI, startDaemon } from '../helpers/daemon.js';
import { addNetns, addresses, links, pings, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const cli = NETCTL_CLI;
const dnsArgs = ['--dns', '127.0.0.1'];

test.serial('netctl daemon + CLI: isolated bridge networks, docker CLI, state across kill -9', async (t) => {
  const hostNs = uniqueName('e');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-e2e-'));
  const socket = join(stateDir, 'netctl.sock');
  const sandboxes = ['a', 'b', 'c'].map((n) => uniqueName(n));
  let daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: dnsArgs });
  t.teardown(async () => {
    await daemon.stop('SIGKILL');
    for (const name of sandboxes) await removeNetns(name);
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const netctl = (...args: string[]) => run(process.execPath, [cli, '-H', `unix://${socket}`, ...args]);
  const ok = async (...args: string[]) => {
    const result = await netctl(...args);
    t.is(result.code, 0, `netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const [a, b, c] = sandboxes as [string, string, string];

  const id = (await ok('network', 'create', '--subnet', '10.60.0.0/24', '--label', 'env=e2e', 'front')).trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  await ok('network', 'create', 'back');
  for (const name of sandboxes) await ok('sandbox', 'create', name);
  await ok('network', 'connect', 'front', a);
  await ok('network', 'connect', '--ip', '10.60.0.77', 'front', b);
  await ok('network', 'connect', 'back', c);
  t.true(existsSync(`/var/run/netns/${a}`), 'the sandbox is a named namespace visible to ip netns');

  const inspected = JSON.parse(await ok('network', 'inspect', 'front')) as [
    { Id: string; IPAM: { Config: { Subnet: string; Gateway: string }[] }; Containers: Record<string, { Name: string; IPv4Address: string }>; Labels: Record<string, string> },
  ];
  t.is(inspected[0].Id, id);
  t.deepEqual(inspected[0].IPAM.Config, [{ Subnet: '10.60.0.0/24', Gateway: '10.60.0.1' }]);
  t.deepEqual(Object.values(inspected[0].Containers).map((e) => `${e.Name} ${e.IPv4Address}`).sort(), [`${a} 10.60.0.2/24`, `${b} 10.60.0.77/24`].sort());
  t.deepEqual(inspected[0].Labels, { env: 'e2e' });

  const backAddress = (await ok('network', 'inspect', '-f', '{{range .Containers}}{{.IPv4Address}}{{end}}', 'back')).trim().split('/')[0] ?? '';
  t.true(await pings(`/var/run/netns/${a}`, '10.60.0.77'), 'a reaches b on the same network');
  t.false(await pings(`/var/run/netns/${c}`, '10.60.0.2', { waitSeconds: 1 }), 'c on another network does not reach a');
  t.false(await pings(`/var/run/netns/${a}`, backAddress, { waitSeconds: 1 }), 'a does not reach c');

  // Bad input: clear message, non-zero exit, nothing changed.
  const before = await ok('network', 'inspect', 'front', 'back');
  const bad: [string[], RegExp][] = [
    [['network', 'create', '--subnet', '10.60.0.0/25', 'x'], /overlaps/],
    [['network', 'create', '--subnet', '10.61.0.0/24', '--gateway', '10.62.0.1', 'x'], /10\.62\.0\.1/],
    [['network', 'create', 'front'], /already exists/],
    [['network', 'create', '-d', 'nosuch', 'x'], /nosuch/],
    [['network', 'create', '-o', 'com.docker.network.driver.mtu=big', 'x'], /invalid MTU "big"/],
    [['network', 'rm', 'front'], /active endpoints/],
    [['network', 'connect', '--ip', '10.60.0.77', 'front', c], /10\.60\.0\.77/],
  ];
  for (const [args, message] of bad) {
    const result = await netctl(...args);
    t.not(result.code, 0, `netctl ${args.join(' ')} must fail`);
    t.regex(result.stderr, message);
  }
  t.is(await ok('network', 'inspect', 'front', 'back'), before);

  // The docker CLI talks to netctl's daemon as to Docker's.
  const dockerConfig = await mkdtemp(join(tmpdir(), 'netctl-docker-'));
  t.teardown(() => rm(dockerConfig, { recursive: true, force: true }));
  const docker = (...args: string[]) =>
    run('env', [`DOCKER_HOST=unix://${socket}`, `DOCKER_CONFIG=${dockerConfig}`, '/usr/local/bin/docker', ...args]);
  const dockerLs = await docker('network', 'ls', '--format', '{{.Name}} {{.Driver}}');
  t.is(dockerLs.code, 0, dockerLs.stderr);
  t.deepEqual(dockerLs.stdout.trim().split('\n').sort(), ['back bridge', 'front bridge']);
  t.is((await docker('network', 'create', '--subnet', '10.63.0.0/24', 'from-docker')).code, 0);
  t.is((await docker('network', 'inspect', '-f', '{{(index .IPAM.Config 0).Gateway}}', 'from-docker')).stdout.trim(), '10.63.0.1');
  const pruned = await docker('network', 'prune', '-f');
  t.regex(pruned.stdout, /from-docker/);
  t.is((await docker('network', 'rm', 'back')).code !== 0, true, 'docker network rm of a network in use fails');

  // kill -9 and start again: every network, endpoint and address is back, traffic flows, nothing doubled.
  const linksBefore = (await links(hostNsPath)).map((l) => l.ifname).sort();
  await daemon.stop('SIGKILL');
  daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: dnsArgs });
  t.is(await ok('network', 'inspect', 'front', 'back'), before);
  t.deepEqual((await links(hostNsPath)).map((l) => l.ifname).sort(), linksBefore);
  t.deepEqual(await addresses(`/var/run/netns/${b}`, 'eth0'), ['10.60.0.77/24']);
  t.true(await pings(`/var/run/netns/${a}`, '10.60.0.77'), 'a still reaches b after the restart');

  // Clean removal through the CLI.
  for (const name of sandboxes) await ok('sandbox', 'rm', name);
  for (const name of sandboxes) t.false(existsSync(`/var/run/netns/${name}`));
  await ok('network', 'rm', 'front', 'back');
  t.is((await ok('network', 'ls', '-q')).trim(), '');
  t.deepEqual((await links(hostNsPath)).map((l) => l.ifname), ['lo']);
});

test.serial('the CLI says clearly when no daemon answers', async (t) => {
  const result = await run(process.execPath, [cli, '-H', 'unix:///nonexistent/netctl.sock', 'network', 'ls']);
  t.not(result.code, 0);
  t.regex(result.stderr, /Cannot connect to the netctl daemon at unix:\/\/\/nonexistent\/netctl\.sock/);
});
