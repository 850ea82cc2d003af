/**
 * Encrypted overlay networks across simulated hosts (three namespaces on an
 * underlay bridge, a daemon each, one etcd): what a user and a watcher on
 * the underlay see, what an attacker on the underlay gets, and that renewals
 * and restarts cost no connection.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { type Cluster, makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { inNetns, links, pings, run } from '../helpers/kernel.js';
import { sampleValue } from '../helpers/prometheus.js';
import { until, waitFor } from '../helpers/wait.js';

interface PeerJson {
  Name: string;
  IP: string;
  Encryption?: { OutboundSPI?: string; InboundSPIs: string[]; KeyAge?: string };
}

interface NetworkJson {
  Id: string;
  Options: Record<string, string>;
  Peers?: PeerJson[];
}

const nsPath = (name: string) => `/var/run/netns/${name}`;
/** 16 bytes that `ping -p` repeats through the payload: a watcher must never see them. */
const PATTERN = 'netctl-secret-1!';
const PATTERN_HEX = Buffer.from(PATTERN).toString('hex');

async function inspect(cluster: Cluster, host: SimHost, network: string): Promise<NetworkJson> {
  return (JSON.parse(await cluster.ok(host, 'network', 'inspect', network)) as NetworkJson[])[0]!;
}

async function vtepStats(host: SimHost): Promise<Record<string, number>> {
  const drivers = await new ApiClient(`unix://${host.socket}`).drivers();
  return drivers.find((driver) => driver.Name === 'overlay')!.Stats;
}

/** Every host's sandboxes can reach each other's: the SAs of every pair are in place. */
async function allPairsPing(t: ExecutionContext, sandboxes: { name: string; address: string }[]): Promise<void> {
  for (const from of sandboxes) {
    for (const to of sandboxes) {
      if (from !== to) t.true(await pings(nsPath(from.name), to.address, { count: 1, waitSeconds: 3 }), `${from.name} → ${to.address}`);
    }
  }
}

/** Starts a capture of the underlay's data-path port into a file; the returned function stops it and gives the file. */
async function captureUnderlay(cluster: Cluster, dir: string, name: string): Promise<() => Promise<string>> {
  const file = join(dir, `${name}.pcapng`);
  const capture = spawn('nsenter', [`--net=${cluster.underlayNsPath}`, 'dumpcap', '-q', '-i', 'ul0', '-f', 'udp port 4789', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  capture.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // dumpcap says "File: …" once it captures.
  await waitFor('dumpcap to start', () => (stderr.includes('File:') ? true : capture.exitCode !== null ? Promise.reject(new Error(stderr)) : undefined), 15_000);
  return async () => {
    capture.kill('SIGINT');
    await new Promise((resolve) => capture.once('exit', resolve));
    return file;
  };
}

/** IP fragments the host's namespace made (`FragCreates` of /proc/net/snmp): the underlay must never need one. */
async function fragCreates(host: SimHost): Promise<number> {
  const lines = (await inNetns(host.netnsPath, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((line) => line.startsWith('Ip:'));
  const [names, values] = lines.map((line) => line.split(/\s+/));
  return Number(values?.[names?.indexOf('FragCreates') ?? -1]);
}

function occurrences(haystack: Buffer, needle: string): number {
  let count = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + 1)) count++;
  return count;
}

test.serial('an encrypted network beside a plain one: every pair talks, the underlay shows only ESP, never the payload; MTU and inspect as documented', async (t) => {
  const cluster = await makeCluster(3);
  t.teardown(() => cluster.destroy());
  const [h1, h2, h3] = cluster.hosts as [SimHost, SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  const dir = await mkdtemp(join(tmpdir(), 'netctl-enc-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '-o', 'encrypted', '--subnet', '10.80.0.0/24', 'secret');
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.81.0.0/24', 'plain');
  t.is((await inspect(cluster, h2, 'secret')).Options['encrypted'], '', 'inspect shows the option as Docker does');
  t.is((await inspect(cluster, h2, 'plain')).Options['encrypted'], undefined);

  const secret = [await sandboxOn(cluster, h1, 'secret', 's1'), await sandboxOn(cluster, h2, 'secret', 's2'), await sandboxOn(cluster, h3, 'secret', 's3')];
  const plain = [await sandboxOn(cluster, h1, 'plain', 'p1'), await sandboxOn(cluster, h2, 'plain', 'p2')];
  t.is((await links(nsPath(secret[0]!.name))).find((l) => l.ifname === 'eth0')?.mtu, 1424, '1500 less IPv4, UDP, ESP and the inner Ethernet header');
  t.is((await links(nsPath(plain[0]!.name))).find((l) => l.ifname === 'eth0')?.mtu, 1450);

  await allPairsPing(t, secret);
  await allPairsPing(t, plain);

  // TCP on every pair of hosts, a full-sized stream each way.
  for (const [from, to] of [[0, 1], [1, 2], [2, 0]] as const) {
    const server = spawn('nsenter', [`--net=${nsPath(secret[to]!.name)}`, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
    t.teardown(() => {
      if (server.exitCode === null) server.kill('SIGKILL');
    });
    const client = await until(
      `iperf3 ${from} → ${to}`,
      async () => {
        const result = await inNetns(nsPath(secret[from]!.name), 'iperf3', ['-c', secret[to]!.address, '-t', '1', '-J'], { timeoutMs: 30_000 });
        // Before the server listens, iperf3 reports "Connection refused" in its JSON.
        return result.code === 0 && !result.stdout.includes('"error"') ? result : undefined;
      },
      15_000,
    );
    const received = (JSON.parse(client.value.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
    t.true(received > 1_000_000, `iperf3 host${from + 1} → host${to + 1} moved ${received} bytes`);
  }

  // Full-sized packets fit the underlay sealed: the largest with DF passes, one byte more is refused in the sandbox itself.
  t.is((await inNetns(nsPath(secret[0]!.name), 'ping', ['-c', '2', '-M', 'do', '-s', String(1424 - 28), '-q', secret[1]!.address])).code, 0);
  t.not((await inNetns(nsPath(secret[0]!.name), 'ping', ['-c', '1', '-M', 'do', '-s', String(1424 - 28 + 1), '-q', secret[1]!.address])).code, 0);
  for (const host of cluster.hosts) t.is(await fragCreates(host), 0, `host${host.index} made no IP fragment`);

  // What a watcher on the underlay sees: the pattern of the plain network's pings, none of the encrypted one's.
  const stop = await captureUnderlay(cluster, dir, 'both');
  const ping = (sandbox: { name: string }, address: string) => inNetns(nsPath(sandbox.name), 'ping', ['-c', '5', '-i', '0.2', '-s', '1000', '-p', PATTERN_HEX, '-q', address]);
  t.is((await ping(secret[0]!, secret[1]!.address)).code, 0);
  t.is((await ping(secret[2]!, secret[0]!.address)).code, 0);
  t.is((await ping(plain[0]!, plain[1]!.address)).code, 0);
  const file = await stop();
  const bytes = await readFile(file);
  t.true(occurrences(bytes, PATTERN) > 100, 'the plain network carries the pattern in clear: the capture works');

  // Every data datagram on the encrypted network is ESP with an SPI inspect lists; the rest is the plain VNI
  // and the VTEPs' probes (first word below 256).
  const spis = new Set<number>();
  for (const host of cluster.hosts) {
    for (const peer of (await inspect(cluster, host, 'secret')).Peers ?? []) {
      if (peer.IP === host.address) continue;
      t.truthy(peer.Encryption?.OutboundSPI, `host${host.index} has an outbound SA to ${peer.IP}`);
      t.regex(peer.Encryption?.KeyAge ?? '', /^\d+(s|m\d+s)$/);
      for (const spi of [peer.Encryption?.OutboundSPI ?? '', ...(peer.Encryption?.InboundSPIs ?? [])]) spis.add(Number(spi));
    }
  }
  const fields = await run('tshark', ['-n', '-r', file, '-T', 'fields', '-e', 'udp.payload']);
  t.is(fields.code, 0, fields.stderr);
  const plainVni = Number((await inspect(cluster, h1, 'plain')).Options['com.docker.network.driver.overlay.vxlanid_list']);
  let sealed = 0;
  for (const line of fields.stdout.trim().split('\n')) {
    const payload = Buffer.from(line.replace(/:/g, ''), 'hex');
    const first = payload.readUInt32BE(0);
    if (first < 256) continue;
    if (first === 0x08000000 || first === 0x08200000) {
      t.is(payload.readUIntBE(4, 3), plainVni, 'plain VXLAN only for the plain network');
      continue;
    }
    t.true(spis.has(first), `an ESP datagram with SPI 0x${first.toString(16)} that inspect lists`);
    t.false(payload.includes(PATTERN));
    sealed++;
  }
  t.true(sealed >= 20, `${sealed} sealed datagrams seen`);

  for (const host of cluster.hosts) {
    const stats = await vtepStats(host);
    t.like(stats, { dropCleartext: 0, dropUnexpectedSealed: 0, espDropBadIcv: 0, espDropReplayed: 0 }, `host${host.index}`);
    t.true(stats['espSealedDatagrams']! > 0 && stats['espOpenedDatagrams']! > 0);
  }
});

test.serial('bad input: -o encrypted with another driver or with peers=, a value that reads as off; nothing is made', async (t) => {
  const cluster = await makeCluster(1);
  t.teardown(() => cluster.destroy());
  const [h1] = cluster.hosts as [SimHost];
  await cluster.startDaemon(h1);
  const refused = async (args: string[], message: RegExp) => {
    const result = await cluster.netctl(h1, 'network', 'create', ...args);
    t.not(result.code, 0, args.join(' '));
    t.regex(result.stderr, message);
  };
  await refused(['-d', 'bridge', '-o', 'encrypted', 'b1'], /"encrypted" is for overlay networks/);
  await refused(['-d', 'null', '-o', 'encrypted', 'n1'], /"encrypted" is for overlay networks/);
  await refused(['-d', 'overlay', '-o', 'encrypted=false', 'o1'], /invalid value "false" for option encrypted/);
  await refused(['-d', 'overlay', '-o', 'encrypted', '-o', 'peers=198.18.9.9', 'o2'], /cannot go together/);
  await refused(['-d', 'overlay', '-o', 'encrypted', '-o', 'com.docker.network.driver.mtu=1450', 'o3'], /at most 1424/);
  t.is((await cluster.ok(h1, 'network', 'ls', '-q', '-f', 'driver=overlay')).trim(), '');
  // Docker's long spelling works too.
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--opt', 'encrypted=true', 'o4');
  t.is((await inspect(cluster, h1, 'o4')).Options['encrypted'], 'true');
});

test.serial('tshark opens a capture of the underlay with the keylog (the inner ICMP echo), and without it sees nothing inside', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-keylog-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const keylog = join(dir, 'esp_sa');
  const cluster = await makeCluster(2, { daemonArgs: ['--esp-keylog', keylog] });
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  t.regex(h1.daemon!.output(), /--esp-keylog: the keys of every encrypted network are written/);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '-o', 'encrypted', '--subnet', '10.82.0.0/24', 'secret');
  const a = await sandboxOn(cluster, h1, 'secret', 'a');
  const b = await sandboxOn(cluster, h2, 'secret', 'b');
  t.true(await pings(nsPath(a.name), b.address, { waitSeconds: 3 }));

  const stop = await captureUnderlay(cluster, dir, 'keylog');
  t.is((await inNetns(nsPath(a.name), 'ping', ['-c', '3', '-i', '0.2', '-p', PATTERN_HEX, '-q', b.address])).code, 0);
  const file = await stop();

  const lines = (await readFile(keylog, 'utf8')).trim().split('\n');
  t.true(lines.length >= 2);
  for (const line of lines) t.regex(line, /^"IPv4","198\.18\.\d+\.\d+","198\.18\.\d+\.\d+","0x[0-9a-f]{8}","AES-GCM with 16 octet ICV \[RFC4106\]","0x[0-9a-f]{72}","NULL",""$/);
  const tshark = async (config: string) => {
    const result = await run(
      'tshark',
      ['-n', '-r', file, '-o', 'esp.enable_encryption_decode:TRUE', '-d', 'udp.port==4789,udpencap', '-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type', '-e', 'ip.dst', '-e', 'data.data'],
      { env: { ...process.env, XDG_CONFIG_HOME: config } },
    );
    t.is(result.code, 0, result.stderr);
    return result.stdout.trim().split('\n').filter((line) => line !== '');
  };
  const config = join(dir, 'config');
  await mkdir(join(config, 'wireshark'), { recursive: true });
  await writeFile(join(config, 'wireshark', 'esp_sa'), await readFile(keylog));
  const decoded = await tshark(config);
  t.true(decoded.some((line) => line.startsWith('8\t') && line.includes(b.address) && line.includes(PATTERN_HEX.slice(0, 16))), decoded.join('\n'));
  const empty = join(dir, 'empty');
  await mkdir(empty);
  t.deepEqual(await tshark(empty), [], 'without the keys no ICMP is found inside');
});

/** Sends each hex payload as one UDP datagram from `netnsPath` to `address`:4789 (from an ephemeral port). */
async function sendRaw(netnsPath: string, address: string, payloads: string[]): Promise<void> {
  const script = 'import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor h in sys.argv[2:]: s.sendto(bytes.fromhex(h),(sys.argv[1],4789))';
  const result = await inNetns(netnsPath, 'python3', ['-c', script, address, ...payloads]);
  if (result.code !== 0) throw new Error(`python3: ${result.stderr}`);
}

test.serial('forged, replayed, truncated, unknown-SPI, cleartext and resent-from-elsewhere datagrams are dropped and counted by reason while traffic goes on', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  const dir = await mkdtemp(join(tmpdir(), 'netctl-forge-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '-o', 'encrypted', '--subnet', '10.83.0.0/24', 'secret');
  const a = await sandboxOn(cluster, h1, 'secret', 'a');
  const b = await sandboxOn(cluster, h2, 'secret', 'b');
  t.true(await pings(nsPath(a.name), b.address, { waitSeconds: 3 }));

  // Real sealed datagrams from host1 to host2, as an attacker on the underlay would record them.
  const stop = await captureUnderlay(cluster, dir, 'forge');
  t.is((await inNetns(nsPath(a.name), 'ping', ['-c', '6', '-i', '0.2', '-q', b.address])).code, 0);
  const file = await stop();
  const fields = await run('tshark', ['-n', '-r', file, '-Y', `ip.src == ${h1.address} && ip.dst == ${h2.address}`, '-T', 'fields', '-e', 'udp.payload']);
  const recorded = fields.stdout
    .trim()
    .split('\n')
    .map((line) => line.replace(/:/g, ''))
    .filter((hex) => hex.length > 100 && Buffer.from(hex, 'hex').readUInt32BE(0) >= 256);
  t.true(recorded.length >= 3, `recorded ${recorded.length} sealed datagrams`);
  const sealed = Buffer.from(recorded[0]!, 'hex');
  // A sequence number far ahead (a copy would be a replay, checked first, RFC 4303 §3.4.3): taken, it would move the window.
  const forged = Buffer.from(sealed);
  forged.writeUInt32BE(0x7fff0000, 4);
  forged[40] = forged[40]! ^ 0x01;
  const unknownSpi = Buffer.from(sealed);
  unknownSpi.writeUInt32BE(0x7777aaaa, 0);
  const vni = Number((await inspect(cluster, h1, 'secret')).Options['com.docker.network.driver.overlay.vxlanid_list']);
  // Plain VXLAN with the encrypted network's VNI, carrying a broadcast frame: taken, it would reach b.
  const cleartext = Buffer.alloc(8 + 60);
  cleartext.writeUInt32BE(0x08000000, 0);
  cleartext.writeUInt32BE(vni << 8, 4);
  cleartext.fill(0xff, 8, 14);

  const before = await vtepStats(h2);
  // A recorded datagram sent again from another machine on the underlay: its SA takes datagrams from host1's address only.
  const elsewhere = await cluster.addUnderlayHost(h1.address.replace(/\.\d+$/, '.200'));
  await sendRaw(elsewhere.netnsPath, h2.address, [recorded[1]!]);
  // From host1's own address: the datagrams claim to be its VTEP's.
  await sendRaw(h1.netnsPath, h2.address, [
    ...recorded.slice(0, 3),
    forged.toString('hex'),
    sealed.subarray(0, 20).toString('hex'),
    unknownSpi.toString('hex'),
    cleartext.toString('hex'),
  ]);
  const counted = (stats: Record<string, number>, name: string) => stats[name]! - before[name]!;
  const all = (stats: Record<string, number>) =>
    counted(stats, 'espDropReplayed') >= 3 && counted(stats, 'espDropBadIcv') >= 1 && counted(stats, 'espDropTruncated') >= 1 &&
    counted(stats, 'espDropUnknownSpi') >= 1 && counted(stats, 'dropCleartext') >= 1 && counted(stats, 'espDropWrongSender') >= 1;
  // Waited for, then asserted one by one: a kind that is never counted shows by name.
  const after = await waitFor('host2 to count the five kinds', async () => {
    const stats = await vtepStats(h2);
    return all(stats) ? stats : undefined;
  }, 10_000).catch(() => vtepStats(h2));
  const grew = (name: string) => after[name]! - before[name]!;
  t.is(grew('espDropReplayed'), 3);
  t.is(grew('espDropBadIcv'), 1);
  t.is(grew('espDropTruncated'), 1);
  t.is(grew('espDropUnknownSpi'), 1);
  t.is(grew('dropCleartext'), 1);
  t.is(grew('espDropWrongSender'), 1);
  // The same counts in the metrics a scraper reads.
  const metrics = await run('curl', ['-sS', '--fail', '--unix-socket', h2.socket, 'http://netctl/metrics']);
  t.is(sampleValue(metrics.stdout, 'netctl_esp_drops_total', { reason: 'replayed' }), after['espDropReplayed']);
  t.is(sampleValue(metrics.stdout, 'netctl_esp_drops_total', { reason: 'bad_icv' }), after['espDropBadIcv']);
  t.is(sampleValue(metrics.stdout, 'netctl_vtep_drops_total', { reason: 'cleartext' }), after['dropCleartext']);
  t.true(sampleValue(metrics.stdout, 'netctl_esp_datagrams_total', { direction: 'opened' })! > 0);
  t.true(await pings(nsPath(a.name), b.address, { count: 2 }), 'traffic goes on');
  t.true(await pings(nsPath(b.name), a.address, { count: 2 }));
});

/**
 * `netctl network rotate-keys` as an operator runs it: a host refuses a
 * renewal within 3 s of its last one (its peers are still taking that up)
 * and says when to ask again; ask then. Back-to-back renewals of one host
 * met that refusal when the renewals between them took under 3 s.
 */
async function renewKeys(cluster: Cluster, host: SimHost): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const result = await cluster.netctl(host, 'network', 'rotate-keys');
    if (result.code === 0) return result.stdout;
    const again = /renew again in (\d+) s/.exec(result.stderr);
    if (again === null || attempt === 5) throw new Error(`host${host.index}: netctl network rotate-keys failed: ${result.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, Number(again[1]) * 1000));
  }
}

test.serial('key renewals on both hosts during a running iperf3 lose no connection and no datagram to a missing key; a restarted host is reachable again', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '-o', 'encrypted', '--subnet', '10.84.0.0/24', 'secret');
  const a = await sandboxOn(cluster, h1, 'secret', 'a');
  const b = await sandboxOn(cluster, h2, 'secret', 'b');
  t.true(await pings(nsPath(a.name), b.address, { waitSeconds: 3 }));
  const outboundSpi = async (host: SimHost, peer: SimHost) => (await inspect(cluster, host, 'secret')).Peers?.find((p) => p.IP === peer.address)?.Encryption?.OutboundSPI;
  const firstSpi = await outboundSpi(h1, h2);
  t.truthy(firstSpi);
  const before = [await vtepStats(h1), await vtepStats(h2)];

  const server = spawn('nsenter', [`--net=${nsPath(b.name)}`, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  await waitFor('iperf3 server', async () => ((await inNetns(nsPath(b.name), 'ss', ['-ltnH', 'sport = :5201'])).stdout.trim() !== '' ? true : undefined), 10_000);
  const client = inNetns(nsPath(a.name), 'iperf3', ['-c', b.address, '-t', '15', '-J'], { timeoutMs: 60_000 });
  // Renewals one after the other while the stream runs: each host's own, the peer's, and both again.
  const spis = new Set([firstSpi]);
  for (const host of [h1, h2, h1, h2]) {
    const printed = await renewKeys(cluster, host);
    t.regex(printed, /^overlay: new keys of epoch \d+, made \S+\n$/);
    // A renewal on either side changes the SA host1 seals with (the info of its derivation names both epochs).
    // Generous: under a full suite with a CPU hog, iperf3 keeps both daemons' loops busy and the watch that brings the peer's epoch lags.
    spis.add(await waitFor('a new outbound SA', async () => {
      const spi = await outboundSpi(h1, h2);
      return spi !== undefined && !spis.has(spi) ? spi : undefined;
    }, 30_000));
  }
  const result = await client;
  t.is(result.code, 0, `iperf3 ended without error: ${result.stderr}${result.stdout.slice(-300)}`);
  const received = (JSON.parse(result.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
  t.true(received > 1_000_000, `iperf3 moved ${received} bytes`);
  t.is(spis.size, 5, 'four renewals, five SAs in turn');
  for (const [i, host] of [h1, h2].entries()) {
    const stats = await vtepStats(host);
    for (const name of ['dropNoKey', 'espDropUnknownSpi', 'espDropBadIcv', 'espDropReplayed']) {
      t.is(stats[name]! - before[i]![name]!, 0, `host${host.index} ${name}: the old keys stayed until the new ones were in place`);
    }
    t.true(stats['espRotations']! >= 2);
  }

  // A daemon that restarts (kept state, new keys) and one that is killed: each is reachable again.
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    await cluster.stopDaemon(h2, signal);
    await cluster.startDaemon(h2);
    await waitFor(`host2 reachable after ${signal}`, async () => ((await pings(nsPath(a.name), b.address, { waitSeconds: 1 })) ? true : undefined), 30_000);
    t.true(await pings(nsPath(b.name), a.address, { waitSeconds: 2 }), `and back after ${signal}`);
  }
});
