/**
 * Prometheus metrics of real daemons: scraped from the API socket and from
 * `--metrics-addr` inside the daemon's namespace (with curl, as Prometheus
 * would), and the VTEP's per-network and per-peer counters across two hosts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { type SimHost, makeCluster } from '../helpers/cluster.js';
import { NETCTL_CLI, startDaemon } from '../helpers/daemon.js';
import { addNetns, inNetns, pings, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import { metricTypes, sampleValue } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const METRICS_ADDRESS = '198.19.0.1';
const METRICS_PORT = '9323';

async function scrapeSocket(socket: string): Promise<string> {
  const result = await run('curl', ['-sS', '--fail', '--unix-socket', socket, 'http://netctl/metrics']);
  if (result.code !== 0) throw new Error(`curl --unix-socket ${socket}: ${result.stderr}`);
  return result.stdout;
}

test.serial('a daemon serves /metrics on its socket and on --metrics-addr in its namespace', async (t) => {
  const hostNs = uniqueName('m');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-metrics-'));
  const socket = join(stateDir, 'netctl.sock');
  const sandbox = uniqueName('s');
  let stopDaemon = async () => {};
  t.teardown(async () => {
    await stopDaemon();
    await removeNetns(sandbox);
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  // The metrics address exists inside the host namespace only (this kernel has no dummy links: loopback holds it).
  const added = await run('ip', ['-n', hostNs, 'addr', 'add', `${METRICS_ADDRESS}/32`, 'dev', 'lo']);
  t.is(added.code, 0, added.stderr);
  const daemon = await startDaemon({
    netnsPath: hostNsPath,
    stateDir,
    socket,
    args: ['--dns', '127.0.0.1', '--metrics-addr', `${METRICS_ADDRESS}:${METRICS_PORT}`],
  });
  stopDaemon = () => daemon.stop('SIGTERM');
  await waitFor('the metrics line', async () => (daemon.output().includes('serving metrics') ? true : undefined));
  t.regex(daemon.output(), new RegExp(`serving metrics on http://${METRICS_ADDRESS.replaceAll('.', '\\.')}:${METRICS_PORT}/metrics`));

  const ok = async (...args: string[]) => {
    const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
    t.is(result.code, 0, `netctl ${args.join(' ')}: ${result.stderr}`);
  };
  await ok('network', 'create', '--subnet', '10.64.0.0/24', 'front');
  await ok('network', 'create', '--subnet', '10.65.0.0/24', 'empty');
  await ok('sandbox', 'create', sandbox);
  await ok('network', 'connect', 'front', sandbox);

  const tcpUrl = `http://${METRICS_ADDRESS}:${METRICS_PORT}/metrics`;
  const overTcp = await inNetns(hostNsPath, 'curl', ['-sS', '--fail', '-D', '-', tcpUrl]);
  t.is(overTcp.code, 0, overTcp.stderr);
  t.regex(overTcp.stdout, /^content-type: text\/plain; version=0\.0\.4; charset=utf-8\r?$/im);
  const fromSocket = await scrapeSocket(socket);
  for (const text of [overTcp.stdout.slice(overTcp.stdout.indexOf('\r\n\r\n') + 4), fromSocket]) {
    t.is(sampleValue(text, 'netctl_network_endpoints', { network: 'front', driver: 'bridge' }), 1);
    t.is(sampleValue(text, 'netctl_network_endpoints', { network: 'empty' }), 0);
    t.is(sampleValue(text, 'netctl_api_requests_total', { route: '/networks/create', method: 'POST', status: '201' }), 2);
    t.is(sampleValue(text, 'netctl_api_requests_total', { route: '/networks/{id}/connect', method: 'POST', status: '200' }), 1);
    t.true((sampleValue(text, 'netctl_store_operation_duration_seconds_count', { store: 'local', operation: 'txn' }) ?? 0) >= 3);
    t.true((sampleValue(text, 'process_open_fds') ?? 0) > 0);
    t.is(metricTypes(text).get('netctl_dns_queries_total'), 'counter');
  }

  // The TCP listener serves /metrics only: never the API.
  const api = await inNetns(hostNsPath, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${METRICS_ADDRESS}:${METRICS_PORT}/networks`]);
  t.is(api.stdout, '404');
  const post = await inNetns(hostNsPath, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', tcpUrl]);
  t.is(post.stdout, '405');

  // DNS queries are counted by how they ended, each once: also those the addon answered again with a stored reply.
  const answered = async () => sampleValue(await scrapeSocket(socket), 'netctl_dns_queries_total', { result: 'answered', transport: 'udp' }) ?? 0;
  const before = await answered();
  for (let i = 0; i < 3; i++) {
    const dig = await inNetns(`/var/run/netns/${sandbox}`, 'dig', ['+short', '+noedns', '+tries=1', '+time=5', '@127.0.0.11', sandbox]);
    t.is(dig.stdout.trim(), '10.64.0.2');
  }
  t.is((await answered()) - before, 3);
  // Sandboxes cannot reach the metrics port through their gateway, at either of the host's addresses.
  for (const address of [METRICS_ADDRESS, '10.64.0.1']) {
    const fromSandbox = await inNetns(`/var/run/netns/${sandbox}`, 'curl', ['-sS', '--max-time', '2', `http://${address}:${METRICS_PORT}/metrics`]);
    t.not(fromSandbox.code, 0, `the sandbox reached the metrics port at ${address}`);
  }

  // After SIGTERM the port is closed.
  await daemon.stop('SIGTERM');
  const closed = await inNetns(hostNsPath, 'curl', ['-sS', '--max-time', '5', tcpUrl]);
  t.not(closed.code, 0);
});

test.serial('a malformed --metrics-addr is refused before the daemon starts', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-metrics-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  for (const value of ['9323', 'localhost:9323', '198.19.0.1:70000']) {
    const result = await run(process.execPath, [NETCTL_CLI, 'daemon', '--state-dir', stateDir, '--socket', join(stateDir, 'netctl.sock'), '--metrics-addr', value]);
    t.not(result.code, 0, value);
    t.regex(result.stderr, new RegExp(`invalid --metrics-addr "${value}": IP:PORT`));
  }
});

test.serial('a ping across the overlay moves the VTEP counters of its network and of the peer on both hosts', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.71.0.0/24', 'ovm');
  const sandboxes: { host: SimHost; name: string }[] = [];
  for (const host of [h1, h2]) {
    const name = cluster.sandboxName(`v${host.index}`);
    await cluster.ok(host, 'sandbox', 'create', name);
    await cluster.ok(host, 'network', 'connect', '--ip', `10.71.0.${10 + host.index}`, 'ovm', name);
    sandboxes.push({ host, name });
  }
  const vni = (await cluster.ok(h1, 'network', 'inspect', '-f', '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}', 'ovm')).trim();
  const onNetwork = { network: 'ovm', vni };
  const counters = async (host: SimHost, peer: SimHost) => {
    const text = await scrapeSocket(host.socket);
    const value = (name: string, labels: Record<string, string>) => sampleValue(text, name, { ...onNetwork, ...labels }) ?? 0;
    return {
      networkTx: value('netctl_vtep_network_datagrams_total', { direction: 'tx' }),
      networkRx: value('netctl_vtep_network_datagrams_total', { direction: 'rx' }),
      networkTapRx: value('netctl_vtep_network_frames_total', { direction: 'rx' }),
      peerTx: value('netctl_vtep_peer_datagrams_total', { peer: peer.address, direction: 'tx' }),
      peerRx: value('netctl_vtep_peer_datagrams_total', { peer: peer.address, direction: 'rx' }),
      peerTxBytes: value('netctl_vtep_peer_bytes_total', { peer: peer.address, direction: 'tx' }),
      peerRxBytes: value('netctl_vtep_peer_bytes_total', { peer: peer.address, direction: 'rx' }),
      endpoints: sampleValue(text, 'netctl_network_endpoints', { network: 'ovm' }),
    };
  };
  const before1 = await counters(h1, h2);
  const before2 = await counters(h2, h1);
  t.is(before1.endpoints, 1, "only this host's sandbox counts on each host");

  // The peer's endpoint reaches h1's VTEP through the store: wait for the ping to pass, not for a clock.
  const from = `/var/run/netns/${sandboxes[0]!.name}`;
  await waitFor('a ping from host1 to host2 across the overlay', async () => ((await pings(from, '10.71.0.12')) ? true : undefined), 60_000);

  const after1 = await counters(h1, h2);
  const after2 = await counters(h2, h1);
  t.true(after1.networkTapRx > before1.networkTapRx, 'host1 read the echo request from its TAP');
  t.true(after1.networkTx > before1.networkTx && after1.peerTx > before1.peerTx, 'host1 sent to host2');
  t.true(after1.peerTxBytes >= before1.peerTxBytes + 98, 'at least one echo request (98 bytes of frame)');
  t.true(after1.peerRx > before1.peerRx && after1.networkRx > before1.networkRx, 'host1 got the reply from host2');
  t.true(after2.peerRx > before2.peerRx && after2.peerRxBytes >= before2.peerRxBytes + 98, 'host2 got the request from host1');
  t.true(after2.peerTx > before2.peerTx, 'host2 replied to host1');
  t.is(sampleValue(await scrapeSocket(h1.socket), 'netctl_vtep_peer_datagrams_total', { ...onNetwork, peer: h1.address, direction: 'tx' }), undefined, 'no counters for itself');
});
