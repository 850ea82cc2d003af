/**
 * A real dockerd (Debian's docker.io) hands its container networking to
 * netctl through the remote network and IPAM plugin protocol: each test
 * host runs `netctl daemon --docker-plugin-socket` and a dockerd that finds
 * that socket as /run/docker/plugins/netctl.sock (test/helpers/dockerd.ts
 * keeps everything dockerd makes inside the test). Containers are busybox,
 * checked with the docker CLI as a user would.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Cluster, type SimHost, makeCluster } from '../helpers/cluster.js';
import { type RunningDockerd, startDockerd } from '../helpers/dockerd.js';
import { links } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';

interface DockerHost {
  readonly host: SimHost;
  readonly dockerd: RunningDockerd;
  /** Runs the docker CLI against this host's dockerd; throws with stderr when it fails, returns stdout trimmed. */
  docker(...args: string[]): Promise<string>;
  /** The same, for a command that must fail: returns stderr. */
  dockerFails(...args: string[]): Promise<string>;
}

/** Hosts with a netctl daemon serving the plugin and a dockerd using it, busybox imported; all removed at teardown. */
async function dockerCluster(t: import('ava').ExecutionContext, count: number): Promise<{ cluster: Cluster; hosts: DockerHost[] }> {
  const pluginDirs = new Map<number, string>();
  for (let index = 1; index <= count; index++) pluginDirs.set(index, await mkdtemp(join(tmpdir(), `netctl-plugins${index}-`)));
  const running: RunningDockerd[] = [];
  let cluster: Cluster | undefined;
  t.teardown(async () => {
    for (const dockerd of running) await dockerd.stop();
    await cluster?.destroy();
    for (const dir of pluginDirs.values()) await rm(dir, { recursive: true, force: true });
  });
  cluster = await makeCluster(count, {
    daemonArgsFor: (host) => ['--docker-plugin-socket', join(pluginDirs.get(host.index) ?? '', 'netctl.sock')],
  });
  const hosts: DockerHost[] = [];
  for (const host of cluster.hosts) {
    await cluster.startDaemon(host);
    const dockerd = await startDockerd({ netns: host.name, pluginDir: pluginDirs.get(host.index) ?? '', name: `dkp${host.index}` });
    running.push(dockerd);
    await dockerd.importBusybox();
    const docker = async (...args: string[]) => {
      const result = await dockerd.docker(args);
      if (result.code !== 0) throw new Error(`docker ${args.join(' ')} (exit ${result.code}): ${result.stderr}`);
      return result.stdout.trim();
    };
    const dockerFails = async (...args: string[]) => {
      const result = await dockerd.docker(args);
      if (result.code === 0) throw new Error(`docker ${args.join(' ')} succeeded: ${result.stdout}`);
      return result.stderr;
    };
    hosts.push({ host, dockerd, docker, dockerFails });
  }
  return { cluster, hosts };
}

async function addressOf(docker: DockerHost, container: string, network: string): Promise<string> {
  return docker.docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container);
}

async function pings(docker: DockerHost, container: string, address: string): Promise<boolean> {
  const result = await docker.dockerd.docker(['exec', container, 'ping', '-c', '1', '-W', '2', address]);
  return result.code === 0;
}

test('one host: docker run on a netctl bridge network, connect and disconnect, restarts of netctl, and removal of everything', async (t) => {
  const { cluster, hosts } = await dockerCluster(t, 1);
  const [one] = hosts;
  if (one === undefined) throw new Error('no host');
  const { host } = one;

  const dockerId = await one.docker('network', 'create', '-d', 'netctl', '--subnet', '10.31.0.0/24', 'web');
  const listed = await cluster.ok(host, 'network', 'ls', '--format', '{{.Name}} {{.Driver}}');
  t.is(listed.trim(), `docker-${dockerId.slice(0, 12)} bridge`);

  await one.docker('run', '-d', '--name', 'ca', '--network', 'web', 'busybox', 'sleep', '600');
  await one.docker('run', '-d', '--name', 'cb', '--network', 'web', 'busybox', 'sleep', '600');
  const addressA = await addressOf(one, 'ca', 'web');
  const addressB = await addressOf(one, 'cb', 'web');
  t.is(addressA, '10.31.0.2');
  t.is(addressB, '10.31.0.3');
  // The interface netctl made, as dockerd renamed and addressed it, with the default route via netctl's gateway.
  const eth0 = await one.docker('exec', 'ca', 'ip', '-o', 'addr', 'show', 'eth0');
  t.regex(eth0, /inet 10\.31\.0\.2\/24/);
  t.regex(await one.docker('exec', 'ca', 'ip', 'route'), /default via 10\.31\.0\.1 dev eth0/);
  t.true(await pings(one, 'ca', addressB));
  t.true(await pings(one, 'cb', 'ca'), 'Docker\'s DNS names containers on a plugin network');
  t.true(await pings(one, 'ca', '10.31.0.1'), 'the gateway on netctl\'s bridge answers');
  // Port publishing through Docker is refused with netctl's reason, not silently ignored.
  const published = await one.dockerFails('run', '-d', '--name', 'cp', '-p', '8080:80', '--network', 'web', 'busybox', 'sleep', '600');
  t.regex(published, /netctl does not publish container ports/);
  await one.docker('rm', '-f', 'cp');
  // netctl sees Docker's endpoints with Docker's ids and addresses.
  const inspected = JSON.parse(await cluster.ok(host, 'network', 'inspect', `docker-${dockerId.slice(0, 12)}`)) as {
    Containers: Record<string, { EndpointID: string; IPv4Address: string }>;
  }[];
  const endpointA = await one.docker('inspect', '-f', '{{.NetworkSettings.Networks.web.EndpointID}}', 'ca');
  t.deepEqual(
    Object.values(inspected[0]?.Containers ?? {}).map((c) => [c.EndpointID, c.IPv4Address]).find(([id]) => id === endpointA),
    [endpointA, '10.31.0.2/24'],
  );

  // A second network from netctl's IPAM, with an MTU option: connect and disconnect a running container.
  await one.docker('network', 'create', '-d', 'netctl', '--ipam-driver', 'netctl', '-o', 'com.docker.network.driver.mtu=1400', 'side');
  await one.docker('network', 'connect', 'side', 'ca');
  const eth1 = await one.docker('exec', 'ca', 'ip', '-o', 'link', 'show', 'eth1');
  t.regex(eth1, /mtu 1400/);
  const sideAddress = await addressOf(one, 'ca', 'side');
  t.regex(sideAddress, /^\d+\.\d+\.\d+\.2$/);
  await one.docker('network', 'disconnect', 'side', 'ca');
  t.false((await one.dockerd.docker(['exec', 'ca', 'ip', 'link', 'show', 'eth1'])).code === 0, 'eth1 is gone');
  t.true(await pings(one, 'ca', addressB), 'eth0 still works');

  // netctl restarts under running containers: their traffic goes on and new containers join.
  await cluster.stopDaemon(host, 'SIGTERM');
  await cluster.startDaemon(host);
  t.true(await pings(one, 'ca', addressB));
  await one.docker('run', '-d', '--name', 'cc', '--network', 'web', 'busybox', 'sleep', '600');
  t.true(await pings(one, 'cc', addressA));

  // dockerd restarts (its containers stop, as without live-restore): it tells netctl of the endpoints it lost, and started again they are wired anew.
  await one.dockerd.restart();
  t.regex(await one.docker('network', 'ls', '--format', '{{.Name}} {{.Driver}}'), /^web netctl$/m);
  await one.docker('start', 'ca', 'cb');
  t.true(await pings(one, 'ca', await addressOf(one, 'cb', 'web')));
  await waitFor('netctl to hold the two restarted containers and nothing of before', async () =>
    (await cluster.ok(host, 'sandbox', 'ls', '-q')).trim().split('\n').length === 2 ? true : undefined);

  await one.docker('rm', '-f', 'ca', 'cb', 'cc');
  await one.docker('network', 'rm', 'web', 'side');
  t.is((await cluster.ok(host, 'network', 'ls', '-q')).trim(), '');
  t.is((await cluster.ok(host, 'sandbox', 'ls', '-q')).trim(), '');
  const leftovers = (await links(host.netnsPath)).filter((link) => /^(veth|nc)/.test(link.ifname));
  t.deepEqual(leftovers.map((link) => link.ifname), []);
  // What netctl's IPAM gave is free again: the same pool comes back.
  await one.docker('network', 'create', '-d', 'netctl', '--ipam-driver', 'netctl', 'again');
  t.is(await one.docker('network', 'inspect', '-f', '{{(index .IPAM.Config 0).Subnet}}', 'again'), sideSubnet(sideAddress));
  await one.docker('network', 'rm', 'again');
});

function sideSubnet(address: string): string {
  const [a, b] = address.split('.');
  return `${a}.${b}.0.0/16`;
}

test('two hosts: containers on two dockerds talk across netctl\'s encrypted overlay, with addresses from netctl\'s cluster-wide IPAM', async (t) => {
  const { cluster, hosts } = await dockerCluster(t, 2);
  const [one, two] = hosts;
  if (one === undefined || two === undefined) throw new Error('no hosts');
  const create = ['network', 'create', '-d', 'netctl', '--ipam-driver', 'netctl', '-o', 'netctl.driver=overlay', '-o', 'netctl.network=ov', '-o', 'encrypted', '--subnet', '10.32.0.0/24', 'ov'];
  await one.docker(...create);
  await two.docker(...create);
  t.is((await cluster.ok(one.host, 'network', 'ls', '--format', '{{.Name}} {{.Driver}} {{.Scope}}')).trim(), 'ov overlay global');

  await one.docker('run', '-d', '--name', 'ca', '--network', 'ov', 'busybox', 'sleep', '600');
  await two.docker('run', '-d', '--name', 'cb', '--network', 'ov', 'busybox', 'sleep', '600');
  const addressA = await addressOf(one, 'ca', 'ov');
  const addressB = await addressOf(two, 'cb', 'ov');
  t.not(addressA, addressB, 'one ledger for both hosts');
  // netctl's MTU for an encrypted overlay on a 1500-byte underlay: VXLAN and ESP headers taken off (src/vxlan/mtu.ts).
  t.regex(await one.docker('exec', 'ca', 'ip', '-o', 'link', 'show', 'eth0'), /mtu 1424/);
  // The peer record of b reaches host one's VTEP through etcd: wait for it, then ping across.
  await waitFor('a reaches b across the overlay', async () => ((await pings(one, 'ca', addressB)) ? true : undefined));
  t.true(await pings(two, 'cb', addressA));
  const inspected = JSON.parse(await cluster.ok(one.host, 'network', 'inspect', 'ov')) as { Options: Record<string, string>; Peers?: { IP: string }[] }[];
  t.is(inspected[0]?.Options['encrypted'], '');
  t.deepEqual(inspected[0]?.Peers?.map((peer) => peer.IP).sort(), [one.host.address, two.host.address].sort());

  await one.docker('rm', '-f', 'ca');
  await one.docker('network', 'rm', 'ov');
  t.is((await cluster.ok(two.host, 'network', 'ls', '-q')).trim().split('\n').length, 1, 'host two still uses ov');
  await two.docker('rm', '-f', 'cb');
  await two.docker('network', 'rm', 'ov');
  t.is((await cluster.ok(two.host, 'network', 'ls', '-q')).trim(), '');
});
