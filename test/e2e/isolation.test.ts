/**
 * What a sandbox on a plain bridge network must not reach through netctl's
 * own NAT or at its host: the overlay data path of any host (masquerade
 * would give its datagrams the host's address, which the other VTEPs
 * trust) and the cluster store.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { type Cluster, makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import { startDaemon } from '../helpers/daemon.js';
import { inNetns, links, pings } from '../helpers/kernel.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;
const DATA_PATH_PORT = 4789;
/** EtherType for local experiments, so captures can pick our frames out. */
const ETHERTYPE = '88b5';
const ATTACKER_MAC = '02:00:00:00:00:66';

async function macOf(sandbox: string): Promise<string> {
  const mac = (await links(nsPath(sandbox))).find((link) => link.ifname === 'eth0')?.address;
  if (mac === undefined) throw new Error(`no eth0 in ${sandbox}`);
  return mac;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

/** tshark on a sandbox's eth0 for our EtherType; `sources()` lists the source MAC of every frame so far. */
async function captureFrames(t: ExecutionContext, sandbox: string): Promise<{ sources(): string[]; stop(): Promise<void> }> {
  const child = spawn(
    'nsenter',
    [`--net=${nsPath(sandbox)}`, 'tshark', '-l', '-i', 'eth0', '-f', `ether proto 0x${ETHERTYPE}`, '-a', 'duration:180', '-T', 'fields', '-e', 'eth.src'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => stopChild(child));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await waitFor(`tshark in ${sandbox} to start capturing (${stderr})`, () => {
    if (child.exitCode !== null) throw new Error(`tshark exited: ${stderr}`);
    return stderr.includes('Capturing on') || undefined;
  }, 30_000);
  return {
    sources: () => stdout.split('\n').filter((line) => line !== ''),
    stop: () => stopChild(child),
  };
}

/**
 * Python in the bridge sandbox sends VXLAN datagrams for `vni`, each with a
 * broadcast and a unicast frame: with a plain UDP socket to `target` (the
 * host's masquerade rewrites the source), or with a raw socket whose IP
 * source is `spoofedSource`, as a sandbox with CAP_NET_RAW can.
 */
const ATTACK = `
import json, socket, struct, sys
cfg = json.loads(sys.argv[1])
def frame(dst):
    return bytes.fromhex(dst.replace(':', '') + cfg['src'].replace(':', '') + cfg['ethertype']) + b'spoofed!' * 8
def vxlan(dst):
    return struct.pack('!II', 0x08000000, cfg['vni'] << 8) + frame(dst)
datagrams = [vxlan(dst) for dst in ['ff:ff:ff:ff:ff:ff', cfg['victimMac']] for _ in range(cfg['count'])]
if cfg.get('spoofedSource') is None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for d in datagrams:
        s.sendto(d, (cfg['target'], cfg['port']))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for d in datagrams:
        udp = struct.pack('!HHHH', cfg['port'], cfg['port'], 8 + len(d), 0) + d
        # The kernel fills in the IP checksum and ID of a raw IPPROTO_RAW packet.
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(cfg['spoofedSource']), socket.inet_aton(cfg['target']))
        s.sendto(ip + udp, (cfg['target'], 0))
print(len(datagrams))
`;

/** Sends broadcast frames of our EtherType from a sandbox's eth0, as ordinary overlay traffic. */
const CONTROL = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
s.send(bytes.fromhex('ffffffffffff' + sys.argv[1].replace(':', '') + sys.argv[2]) + b'control!' * 8)
`;

/** Prints what a TCP server at argv ADDRESS PORT says; fails after 3 s without an answer. */
const TCP_READ = `
const [address, port] = process.argv.slice(-2);
const socket = require('net').connect(Number(port), address);
let text = '';
socket.on('data', (chunk) => (text += chunk));
socket.on('end', () => { console.log(text.trim()); process.exit(0); });
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
setTimeout(() => { console.error('no answer within 3 s'); process.exit(2); }, 3000);
`;

test.serial('a sandbox on a bridge network reaches neither the overlay data path of any host nor etcd', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);

  // The overlay with a sandbox on each host, so each host is a VTEP the other trusts.
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.77.0.0/24', 'ov');
  const vni = Number((await cluster.ok(h2, 'network', 'inspect', '-f', '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}', 'ov')).trim());
  t.is(vni, 4096);
  const a = await sandboxOn(cluster, h1, 'ov', 'a');
  const b = await sandboxOn(cluster, h2, 'ov', 'b');
  t.true(await pings(nsPath(a.name), b.address), 'the overlay works between the hosts');

  await cluster.ok(h1, 'network', 'create', '-d', 'bridge', 'plain');
  const attacker = await sandboxOn(cluster, h1, 'plain', 'm');
  t.true(await pings(nsPath(attacker.name), h2.address), 'the bridge sandbox reaches the underlay through the masquerade');

  const [aMac, bMac] = [await macOf(a.name), await macOf(b.name)];
  const atA = await captureFrames(t, a.name);
  const atB = await captureFrames(t, b.name);
  const count = 5;
  const attacks = [
    // Forwarded by host1 and masqueraded to its address: what the campaign did.
    { target: h2.address, victimMac: bMac },
    // Addressed to host1 itself, claiming to come from host2.
    { target: h1.address, victimMac: aMac, spoofedSource: h2.address },
  ];
  for (const attack of attacks) {
    const config = { ...attack, vni, port: DATA_PATH_PORT, src: ATTACKER_MAC, ethertype: ETHERTYPE, count };
    const sent = await inNetns(nsPath(attacker.name), 'python3', ['-c', ATTACK, JSON.stringify(config)]);
    t.is(sent.code, 0, sent.stderr);
    t.is(sent.stdout.trim(), String(2 * count));
  }

  // Frames sent after the attack over the overlay itself reach each sandbox through the same VTEP socket, after
  // anything the attack got through: once they are seen, the captures are complete.
  for (const [from, fromMac, capture] of [[b.name, bMac, atA], [a.name, aMac, atB]] as const) {
    let sends = 0;
    await waitFor(`a control frame from ${from}`, async () => {
      if (capture.sources().includes(fromMac)) return true;
      sends += 1;
      const sent = await inNetns(nsPath(from), 'python3', ['-c', CONTROL, fromMac, ETHERTYPE]);
      if (sent.code !== 0) throw new Error(sent.stderr);
      return undefined;
    }, 20_000);
    t.log(`control from ${from} seen after ${sends} sends: ${capture.sources().join(' ')}`);
  }
  await atA.stop();
  await atB.stop();
  const spoofed = (capture: { sources(): string[] }) => capture.sources().filter((source) => source === ATTACKER_MAC).length;
  t.deepEqual(
    { 'sent to host2, masqueraded by host1': spoofed(atB), 'sent to host1 itself, claiming to be host2': spoofed(atA) },
    { 'sent to host2, masqueraded by host1': 0, 'sent to host1 itself, claiming to be host2': 0 },
    'spoofed frames that reached the overlay sandboxes',
  );
  for (const host of [h1, h2]) {
    const stats = (await new ApiClient(`unix://${host.socket}`).drivers()).find((driver) => driver.Name === 'overlay')?.Stats;
    t.log(`host${host.index} VTEP: ${JSON.stringify(stats)}`);
  }

  // The cluster store: the hosts reach it, the bridge sandbox does not.
  const etcd = new URL(cluster.etcdUrl.replace(/^etcd:/, 'http:'));
  const version = `http://${etcd.host}/version`;
  for (const host of [h1, h2]) {
    const ok = await inNetns(host.netnsPath, 'curl', ['-sS', '-m', '5', version]);
    t.is(ok.code, 0, `host${host.index} reaches etcd: ${ok.stderr}`);
    t.regex(ok.stdout, /etcdserver/);
  }
  const blocked = await inNetns(nsPath(attacker.name), 'curl', ['-sS', '--connect-timeout', '3', '-m', '5', version]);
  t.not(blocked.code, 0, `the bridge sandbox got an answer from etcd: ${blocked.stdout}`);
  t.log(`curl from the bridge sandbox: ${blocked.stderr.trim()}`);

  // A store port on the host itself (etcd beside the daemon, listening on every address) is closed to sandboxes too.
  const listener = spawn(
    'nsenter',
    [`--net=${h1.netnsPath}`, process.execPath, '-e', `require('net').createServer((s) => s.end('store\\n')).listen(${etcd.port}, '0.0.0.0', () => console.log('ready'))`],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  t.teardown(() => stopChild(listener));
  await new Promise<void>((resolve, reject) => {
    listener.stdout.once('data', () => resolve());
    listener.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
  });
  const gateway = (await inNetns(nsPath(attacker.name), 'ip', ['-4', '-j', 'route', 'show', 'default'])).stdout;
  const gatewayAddress = (JSON.parse(gateway) as { gateway?: string }[])[0]?.gateway ?? '';
  t.not(gatewayAddress, '');
  const local = await inNetns(h1.netnsPath, process.execPath, ['-e', TCP_READ, '127.0.0.1', String(etcd.port)]);
  t.is(local.stdout.trim(), 'store', `host1 reaches its own listener: ${local.stderr}`);
  for (const address of [h1.address, gatewayAddress]) {
    const attempt = await inNetns(nsPath(attacker.name), process.execPath, ['-e', TCP_READ, address, String(etcd.port)]);
    t.not(attempt.code, 0, `the bridge sandbox reached host1's store port at ${address}: ${attempt.stdout}`);
    t.log(`from the bridge sandbox to ${address}:${etcd.port}: ${attempt.stderr.trim()}`);
  }
});

test.serial('a bridge network made by a daemon without a cluster store gets the guard when the daemon restarts with one', async (t) => {
  const cluster = await makeCluster(1);
  t.teardown(() => cluster.destroy());
  const [h1] = cluster.hosts as [SimHost];
  const alone = await startDaemon({ netnsPath: h1.netnsPath, stateDir: h1.stateDir, socket: h1.socket, args: ['--dns', '127.0.0.1'] });
  t.teardown(() => alone.stop('SIGKILL'));
  const id = (await cluster.ok(h1, 'network', 'create', '-d', 'bridge', 'plain')).trim();
  const table = () => inNetns(h1.netnsPath, '/usr/sbin/nft', ['list', 'table', 'inet', `netctl_${id.slice(0, 12)}`]);
  const before = await table();
  t.is(before.code, 0, before.stderr);
  t.notRegex(before.stdout, /dport/, 'no cluster, nothing to guard');
  await alone.stop('SIGTERM');

  await cluster.startDaemon(h1);
  const etcd = new URL(cluster.etcdUrl.replace(/^etcd:/, 'http:'));
  const after = (await table()).stdout;
  t.regex(after, new RegExp(`udp dport ${DATA_PATH_PORT} drop`));
  t.regex(after, new RegExp(`ip daddr ${etcd.hostname.replaceAll('.', '\\.')} tcp dport ${etcd.port} drop`));
  t.regex(after, /hook input/);
});
