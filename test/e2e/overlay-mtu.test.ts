/**
 * The overlay MTU follows the underlay: hosts whose underlay veths have MTU
 * 1400 (or less), one netctl daemon each. No underlay fragment is ever
 * made; packets too big for a path are answered as a router would.
 */
import { spawn } from 'node:child_process';
import test from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { type Cluster, makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { inNetns, links, run } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;

async function mtuOf(netnsPath: string, ifName: string): Promise<number | undefined> {
  return (await links(netnsPath)).find((l) => l.ifname === ifName)?.mtu;
}

/** IPv4 fragments made in a namespace (Ip: FragCreates in /proc/net/snmp). */
async function fragCreates(netnsPath: string): Promise<number> {
  const snmp = await inNetns(netnsPath, 'cat', ['/proc/net/snmp']);
  const [names, values] = snmp.stdout.split('\n').filter((line) => line.startsWith('Ip:'));
  return Number(values!.split(' ')[names!.split(' ').indexOf('FragCreates')]);
}

async function vtepStats(host: SimHost): Promise<Record<string, number>> {
  return (await new ApiClient(`unix://${host.socket}`).drivers()).find((d) => d.Name === 'overlay')?.Stats ?? {};
}

test.serial('on an underlay of MTU 1400 sandboxes get 1350; too big with DF gets frag needed (mtu = 1350); TCP adapts and no host fragments', async (t) => {
  const cluster = await makeCluster(2, { underlayMtu: 1400 });
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);

  const refused = await cluster.netctl(h1, 'network', 'create', '-d', 'overlay', '-o', 'com.docker.network.driver.mtu=1400', 'big');
  t.not(refused.code, 0);
  t.regex(refused.stderr, /MTU 1400 for option com\.docker\.network\.driver\.mtu is more than the underlay allows: at most 1350/);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.81.0.0/24', 'ov');
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.82.0.0/24', '-o', 'com.docker.network.driver.mtu=1300', 'small');
  const a = await sandboxOn(cluster, h1, 'ov', 'a');
  const b = await sandboxOn(cluster, h2, 'ov', 'b');
  t.is(await mtuOf(nsPath(a.name), 'eth0'), 1350);
  t.is(await mtuOf(nsPath(b.name), 'eth0'), 1350);
  const s = await sandboxOn(cluster, h2, 'small', 's');
  t.is(await mtuOf(nsPath(s.name), 'eth0'), 1300, 'the option may lower the MTU');
  const fits = await inNetns(nsPath(a.name), 'ping', ['-M', 'do', '-s', '1322', '-c', '1', '-W', '2', b.address]);
  t.is(fits.code, 0, `a 1350-byte packet with DF crosses: ${fits.stdout}`);

  // Raised by hand (a's both veth ends, b's eth0 so that it offers a 1460-byte MSS): only the VTEP now knows the path is smaller.
  const network = JSON.parse(await cluster.ok(h1, 'network', 'inspect', 'ov')) as { Id: string }[];
  const overlayNs = `ovl-${network[0]!.Id.slice(0, 12)}-${h1.address}`;
  const bridgeSide = (await links(nsPath(overlayNs))).filter((l) => l.master === 'br0' && l.ifname !== 'vtep0');
  t.is(bridgeSide.length, 1);
  for (const [ns, ifName] of [[overlayNs, bridgeSide[0]!.ifname], [a.name, 'eth0'], [b.name, 'eth0']] as const) {
    const raised = await run('ip', ['-n', ns, 'link', 'set', ifName, 'mtu', '1500']);
    t.is(raised.code, 0, raised.stderr);
  }
  const ping = await inNetns(nsPath(a.name), 'ping', ['-M', 'do', '-s', '1372', '-c', '1', '-W', '2', b.address]);
  t.regex(ping.stdout, /Frag needed and DF set \(mtu = 1350\)/, ping.stdout + ping.stderr);

  // A TCP stream from a 1500-byte interface, the learnt path MTU forgotten: the VTEP's answers must bring it to 1350.
  const flushed = await inNetns(nsPath(a.name), 'ip', ['route', 'flush', 'cache']);
  t.is(flushed.code, 0, flushed.stderr);
  t.notRegex((await inNetns(nsPath(a.name), 'ip', ['-4', 'route', 'get', b.address])).stdout, /mtu/);
  const before = await vtepStats(h1);
  const server = spawn('nsenter', [`--net=${nsPath(b.name)}`, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  await waitFor('iperf3 listening', async () => ((await inNetns(nsPath(b.name), 'ss', ['-Hltn', 'sport = :5201'])).stdout.trim() !== '' ? true : undefined), 10_000);
  const namespaces = [h1.netnsPath, h2.netnsPath, cluster.underlayNsPath, nsPath(a.name), nsPath(b.name)];
  const fragmentsBefore = await Promise.all(namespaces.map(fragCreates));
  const client = await inNetns(nsPath(a.name), 'iperf3', ['-c', b.address, '-t', '3', '-J'], { timeoutMs: 30_000 });
  t.is(client.code, 0, client.stderr + client.stdout.slice(0, 500));
  const end = (JSON.parse(client.stdout) as { end: { sum_received: { bits_per_second: number } } }).end;
  t.log(`iperf3 through the overlay: ${(end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
  t.true(end.sum_received.bits_per_second > 100e6, `${end.sum_received.bits_per_second} bit/s`);
  t.deepEqual(await Promise.all(namespaces.map(fragCreates)), fragmentsBefore);
  t.deepEqual(fragmentsBefore.slice(0, 3), [0, 0, 0], 'no host namespace ever fragmented');
  const route = await inNetns(nsPath(a.name), 'ip', ['-4', 'route', 'get', b.address]);
  t.regex(route.stdout, /mtu 1350/, 'the sandbox learnt the path MTU');
  const after = await vtepStats(h1);
  t.true((after['tooBigAnswered'] ?? 0) > (before['tooBigAnswered'] ?? 0), 'TCP met the VTEP answers');
  t.log(JSON.stringify({ dropTooBig: after['dropTooBig'], tooBigAnswered: after['tooBigAnswered'], fragmented: after['fragmented'] }));
});

test.serial('a host with a smaller underlay joining later: new sandboxes get its MTU, and frames too big for it are answered', async (t) => {
  const cluster = await makeCluster(3, { underlayMtu: [1400, 1400, 1300] });
  t.teardown(() => cluster.destroy());
  const [h1, h2, h3] = cluster.hosts as [SimHost, SimHost, SimHost];
  await cluster.startDaemon(h1);
  await cluster.startDaemon(h2);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.83.0.0/24', 'ov');
  const a = await sandboxOn(cluster, h1, 'ov', 'a');
  const b = await sandboxOn(cluster, h2, 'ov', 'b');
  t.is(await mtuOf(nsPath(a.name), 'eth0'), 1350);

  await cluster.startDaemon(h3);
  const c = await sandboxOn(cluster, h3, 'ov', 'c');
  t.is(await mtuOf(nsPath(c.name), 'eth0'), 1250);
  // Host1 learns host3's record through the store: its next sandbox gets the smallest MTU.
  const d = await waitFor('a sandbox on host1 with MTU 1250', async () => {
    const sandbox = await sandboxOn(cluster, h1, 'ov', 'd');
    const mtu = await mtuOf(nsPath(sandbox.name), 'eth0');
    if (mtu === 1250) return sandbox;
    await cluster.ok(h1, 'network', 'disconnect', 'ov', sandbox.name);
    return undefined;
  }, 10_000);
  t.truthy(d);

  const namespaces = [h1.netnsPath, h2.netnsPath, h3.netnsPath];
  const toB = await inNetns(nsPath(a.name), 'ping', ['-M', 'do', '-s', '1322', '-c', '1', '-W', '2', b.address]);
  t.is(toB.code, 0, `host2 still takes 1350: ${toB.stdout}`);
  const toC = await inNetns(nsPath(a.name), 'ping', ['-M', 'do', '-s', '1322', '-c', '1', '-W', '2', c.address]);
  t.regex(toC.stdout, /Frag needed and DF set \(mtu = 1250\)/, toC.stdout + toC.stderr);
  const smaller = await inNetns(nsPath(a.name), 'ping', ['-M', 'do', '-s', '1222', '-c', '1', '-W', '2', c.address]);
  t.is(smaller.code, 0, smaller.stdout);
  t.deepEqual(await Promise.all(namespaces.map(fragCreates)), [0, 0, 0]);
});
