/**
 * The data plane decides a peer's liveness, not the control plane: three
 * simulated hosts, one etcd, partitions made with nftables inside one
 * host's namespace.
 */
import { spawn } from 'node:child_process';
import test from 'ava';
import { ApiClient } from '../../src/api/client.js';
import type { DockerNetwork } from '../../src/api/docker.js';
import { type Cluster, makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { inNetns, pings } from '../helpers/kernel.js';
import { until } from '../helpers/wait.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;
type Peer = NonNullable<DockerNetwork['Peers']>[number];

async function peerOf(client: ApiClient, network: string, address: string): Promise<Peer | undefined> {
  return ((await client.inspectNetwork(network)).Peers ?? []).find((peer) => peer.IP === address);
}

/** `ping -i 0.2` from a namespace until stopped; counts the sequence numbers that got no reply. */
function continuousPing(netnsPath: string, address: string) {
  const child = spawn('nsenter', [`--net=${netnsPath}`, 'ping', '-n', '-i', '0.2', address], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const replied = () => new Set([...output.matchAll(/icmp_seq=(\d+) ttl=/g)].map((m) => Number(m[1])));
  return {
    replied,
    /** Stops and returns the sequence numbers, up to the last one answered, that never were. */
    async stop(): Promise<{ answered: number; lost: number[] }> {
      if (child.exitCode === null) child.kill('SIGINT');
      await exited;
      const seen = replied();
      const last = Math.max(0, ...seen);
      const lost: number[] = [];
      // The request in flight when ping stopped is not a loss: count only up to the last answer.
      for (let seq = 1; seq <= last; seq++) if (!seen.has(seq)) lost.push(seq);
      return { answered: seen.size, lost };
    },
    kill(): void {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** The peer keys in etcd whose record names `vtep`. */
async function peerKeysOf(cluster: Cluster, vtep: string): Promise<string[]> {
  const endpoint = cluster.etcdUrl.replace(/^etcd:/, 'http:');
  const result = await inNetns(cluster.underlayNsPath, '/usr/bin/etcdctl', [`--endpoints=${endpoint}`, 'get', '--prefix', '/netctl/overlay/peers/']);
  if (result.code !== 0) throw new Error(`etcdctl: ${result.stderr}`);
  const lines = result.stdout.split('\n');
  const keys: string[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) if ((JSON.parse(lines[i + 1]!) as { vtep: string }).vtep === vtep) keys.push(lines[i]!);
  return keys;
}

test.serial('a host cut off from etcd for longer than its lease keeps its traffic: 0 pings lost both ways', async (t) => {
  const cluster = await makeCluster(3);
  t.teardown(() => cluster.destroy());
  const [h1, h2, h3] = cluster.hosts as [SimHost, SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.81.0.0/24', 'ov');
  const a = await sandboxOn(cluster, h1, 'ov', 'a');
  await sandboxOn(cluster, h2, 'ov', 'b');
  const c = await sandboxOn(cluster, h3, 'ov', 'c');
  const fromH1 = new ApiClient(`unix://${h1.socket}`);
  await until('host3 up in host1 peers', async () => ((await peerOf(fromH1, 'ov', h3.address))?.State === 'up' ? true : undefined), 10_000);
  t.true(await pings(nsPath(a.name), c.address), 'host1 → host3 before the partition');

  const there = continuousPing(nsPath(a.name), c.address);
  const back = continuousPing(nsPath(c.name), a.address);
  t.teardown(() => {
    there.kill();
    back.kill();
  });
  await until('the first replies', async () => (there.replied().size > 0 && back.replied().size > 0 ? true : undefined), 10_000);

  const heal = await cluster.dropPort(h3, 'tcp', cluster.etcdPort);
  const cut = performance.now();
  // The lease is 10 s: etcd deletes host3's records once it ends, and hosts 1 and 2 see the deletes.
  const expired = await until('host3 records gone from etcd', async () => ((await peerKeysOf(cluster, h3.address)).length === 0 ? true : undefined), 30_000);
  t.log(`host3's lease ended ${((performance.now() - cut) / 1000).toFixed(1)} s into the partition`);
  t.true(expired.value);
  // Hold the partition ~15 s in all, and check on the way that host1 still forwards to host3.
  while (performance.now() - cut < 15_000) {
    const peer = await peerOf(fromH1, 'ov', h3.address);
    t.is(peer?.State, 'up', `host3 is still a peer of host1, its data path up: ${JSON.stringify(peer)}`);
    if (peer?.State !== 'up') break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  t.regex(h1.daemon?.output() ?? '', /host3 \(.*\) lost its cluster store lease; its endpoints stay while its VTEP answers probes/);
  await heal();

  // Its store puts the records back under a new lease: everything is as before.
  await until('host3 records back in etcd', async () => ((await peerKeysOf(cluster, h3.address)).length > 0 ? true : undefined), 30_000);
  const settled = there.replied().size + 5;
  await until('five more replies', async () => (there.replied().size >= settled ? true : undefined), 10_000);
  const [toC, toA] = [await there.stop(), await back.stop()];
  t.log(`host1 → host3: ${toC.answered} answered, lost ${JSON.stringify(toC.lost)}; host3 → host1: ${toA.answered} answered, lost ${JSON.stringify(toA.lost)}`);
  t.deepEqual(toC.lost, [], 'no ping from host1 to host3 lost');
  t.deepEqual(toA.lost, [], 'no ping from host3 to host1 lost');
  t.true(toC.answered >= 75, 'the pings spanned the partition');
  t.is((await peerOf(fromH1, 'ov', h3.address))?.State, 'up');
  t.true(await pings(nsPath(a.name), c.address), 'and host1 still reaches host3');
});

test.serial("a dead data path shows: host3's peer down within 2 s of its data-path port being dropped, up within 2 s of healing", async (t) => {
  const cluster = await makeCluster(3);
  t.teardown(() => cluster.destroy());
  const [h1, h2, h3] = cluster.hosts as [SimHost, SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.82.0.0/24', 'ov');
  const a = await sandboxOn(cluster, h1, 'ov', 'a');
  await sandboxOn(cluster, h2, 'ov', 'b');
  const c = await sandboxOn(cluster, h3, 'ov', 'c');
  const fromH1 = new ApiClient(`unix://${h1.socket}`);
  await until('host3 up in host1 peers', async () => ((await peerOf(fromH1, 'ov', h3.address))?.State === 'up' ? true : undefined), 10_000);
  const before = (await peerOf(fromH1, 'ov', h3.address))!;
  t.regex(before.LastRTT ?? '', /^\d+(\.\d+)?(µs|ms)$/);
  t.is(new Date(before.Since ?? '').toISOString(), before.Since ?? 'no Since', 'Since is RFC 3339');
  t.is((await peerOf(fromH1, 'ov', h1.address))?.State, undefined, 'this host is not probed');

  const heal = await cluster.dropPort(h3, 'udp', 4789);
  const cutAt = Date.now();
  const down = await until('host3 down in host1 peers', async () => {
    const peer = await peerOf(fromH1, 'ov', h3.address);
    return peer?.State === 'down' ? peer : undefined;
  }, 10_000);
  t.log(`host1 saw host3 down ${down.ms.toFixed(0)} ms after its data-path port was dropped`);
  t.true(down.ms < 2000, `down after ${down.ms.toFixed(0)} ms`);
  t.true(Date.parse(down.value.Since ?? '') >= cutAt - 5, 'Since is when it went down');
  t.is((await peerOf(fromH1, 'ov', h2.address))?.State, 'up', 'host2 is unaffected');
  t.false(await pings(nsPath(a.name), c.address, { waitSeconds: 1 }), 'the data path is really dead');
  t.regex(h1.daemon?.output() ?? '', new RegExp(`VTEP peer ${h3.address.replaceAll('.', '\\.')} is down: no probe reply for \\d+ ms`));
  const metrics = await inNetns(h1.netnsPath, 'curl', ['-s', '--unix-socket', h1.socket, 'http://netctl/metrics']);
  t.regex(metrics.stdout, new RegExp(`netctl_vtep_peer_up\\{peer="${h3.address.replaceAll('.', '\\.')}"\\} 0`));

  await heal();
  const up = await until('host3 up again in host1 peers', async () => ((await peerOf(fromH1, 'ov', h3.address))?.State === 'up' ? true : undefined), 10_000);
  t.log(`host1 saw host3 up ${up.ms.toFixed(0)} ms after healing`);
  t.true(up.ms < 2000, `up after ${up.ms.toFixed(0)} ms`);
  t.true(await pings(nsPath(a.name), c.address), 'traffic flows again');
  t.regex(h1.daemon?.output() ?? '', new RegExp(`VTEP peer ${h3.address.replaceAll('.', '\\.')} is up \\(RTT`));
});
