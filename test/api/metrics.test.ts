import test from 'ava';
import { DaemonMetrics, parseMetricsAddress } from '../../src/api/metrics.js';
import { InvalidArgument } from '../../src/errors.js';
import type { DockerNetwork } from '../../src/api/docker.js';
import { MemoryStore } from '../../src/store/memory.js';
import { ObservedStore } from '../../src/store/observed.js';
import { StoreClosed } from '../../src/store/types.js';
import { MemoryNetwork } from '../../src/vxlan/memory.js';
import { metricTypes, parseSamples, sampleValue } from '../helpers/prometheus.js';
import { ManualTimers } from '../vxlan/clock.js';
import { HOST_A, HOST_B, VNI, frame, host, mac, publish, twoHosts } from '../vxlan/helpers.js';

function network(name: string, driver: string, endpoints: number, options: Record<string, string> = {}): DockerNetwork {
  const containers: DockerNetwork['Containers'] = {};
  for (let i = 0; i < endpoints; i++) {
    containers[`sandbox${i}`] = { Name: `s${i}`, EndpointID: `e${i}`, MacAddress: '', IPv4Address: '', IPv6Address: '' };
  }
  return {
    Name: name,
    Id: name,
    Created: '',
    Scope: driver === 'overlay' ? 'global' : 'local',
    Driver: driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: [] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: containers,
    Options: options,
    Labels: {},
  };
}

test('renders the Prometheus text format with every family typed', async (t) => {
  const metrics = new DaemonMetrics();
  const text = await metrics.render();
  t.is(metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  t.notThrows(() => parseSamples(text));
  const types = metricTypes(text);
  t.is(types.get('netctl_api_requests_total'), 'counter');
  t.is(types.get('netctl_dns_query_duration_seconds'), 'histogram');
  t.is(types.get('netctl_network_endpoints'), 'gauge');
  t.is(types.get('netctl_vtep_peer_bytes_total'), 'counter');
  t.false([...types.keys()].some((name) => name.startsWith('process_')), 'process metrics only when asked for');
});

test('endpoints per network and the VTEP counters per network and per peer, named after the network', async (t) => {
  const net = new MemoryNetwork();
  const [a] = twoHosts(net);
  a.port().inject([frame(mac(2), mac(1), 100), frame(mac(2), mac(1), 100)]);
  await net.idle();
  const metrics = new DaemonMetrics();
  metrics.setVtep(a.vtep);
  metrics.setNetworkSource(async () => [
    network('front', 'bridge', 2),
    network('ov', 'overlay', 1, { 'com.docker.network.driver.overlay.vxlanid_list': String(VNI) }),
  ]);
  const text = await metrics.render();

  t.is(sampleValue(text, 'netctl_network_endpoints', { network: 'front', driver: 'bridge' }), 2);
  t.is(sampleValue(text, 'netctl_network_endpoints', { network: 'ov', driver: 'overlay' }), 1);
  const ov = { network: 'ov', vni: String(VNI) };
  t.is(sampleValue(text, 'netctl_vtep_network_frames_total', { ...ov, direction: 'rx' }), 2);
  t.is(sampleValue(text, 'netctl_vtep_network_datagrams_total', { ...ov, direction: 'tx' }), 2);
  t.is(sampleValue(text, 'netctl_vtep_network_bytes_total', { ...ov, direction: 'tx' }), 2 * 114);
  t.is(sampleValue(text, 'netctl_vtep_peer_datagrams_total', { ...ov, peer: HOST_B, direction: 'tx' }), 2);
  t.is(sampleValue(text, 'netctl_vtep_peer_bytes_total', { ...ov, peer: HOST_B, direction: 'tx' }), 2 * 114);
  t.is(sampleValue(text, 'netctl_vtep_peer_datagrams_total', { ...ov, peer: HOST_A }), undefined);
  t.is(sampleValue(text, 'netctl_vtep_network_drops_total', { ...ov, reason: 'unknown_sender' }), 0);
  t.is(sampleValue(text, 'netctl_vtep_drops_total', { reason: 'unknown_vni' }), 0);
  t.is(sampleValue(text, 'netctl_vtep_frames_total', { direction: 'rx' }), 2);

  // Counters are read at scrape time: the next scrape sees the next frames.
  a.port().inject([frame(mac(2), mac(1), 100)]);
  await net.idle();
  t.is(sampleValue(await metrics.render(), 'netctl_vtep_peer_datagrams_total', { ...ov, peer: HOST_B, direction: 'tx' }), 3);
});

test("each peer VTEP's data-path state and last RTT are gauges read at scrape time", async (t) => {
  let cut = false;
  const net = new MemoryNetwork({ drop: () => cut });
  const timers = new ManualTimers();
  const a = host(net, HOST_A, [VNI], { probe: { timers } });
  const b = host(net, HOST_B, [VNI], { probe: { timers } });
  publish([a, b], [
    { n: 1, at: a },
    { n: 2, at: b },
  ]);
  const metrics = new DaemonMetrics();
  metrics.setVtep(a.vtep);
  const scrape = async () => {
    const text = await metrics.render();
    return { up: sampleValue(text, 'netctl_vtep_peer_up', { peer: HOST_B }), rtt: sampleValue(text, 'netctl_vtep_peer_rtt_seconds', { peer: HOST_B }), types: metricTypes(text) };
  };
  const first = await scrape();
  t.deepEqual([first.up, first.rtt], [undefined, undefined], 'no verdict before the first probe');
  t.is(first.types.get('netctl_vtep_peer_up'), 'gauge');
  t.is(first.types.get('netctl_vtep_peer_rtt_seconds'), 'gauge');
  timers.advance(300);
  await net.idle();
  t.like(await scrape(), { up: 1, rtt: 0 });
  cut = true;
  timers.advance(1500);
  await net.idle();
  t.like(await scrape(), { up: 0, rtt: 0 });
});

test('API requests, store operations and DNS queries are counted by their labels', async (t) => {
  const metrics = new DaemonMetrics();
  metrics.observeRequest('/networks/{id}', 'GET', 404, 0.002);
  metrics.observeRequest('/networks/{id}', 'GET', 404, 0.003);
  metrics.observeRequest('/networks', 'GET', 200, 0.001);
  const store = new ObservedStore(new MemoryStore(), metrics.storeObserver('cluster'));
  await store.txn({ put: [{ key: 'k', value: 'v' }] });
  await store.get('k');
  await store.close();
  await t.throwsAsync(store.list(''), { instanceOf: StoreClosed });
  metrics.onDnsQuery({ result: 'answered', transport: 'udp', seconds: 0.0001 });
  metrics.onDnsQuery({ result: 'forwarded', transport: 'tcp', seconds: 0.2 });
  const text = await metrics.render();

  t.is(sampleValue(text, 'netctl_api_requests_total', { route: '/networks/{id}', method: 'GET', status: '404' }), 2);
  t.is(sampleValue(text, 'netctl_api_requests_total', { route: '/networks', status: '200' }), 1);
  t.is(sampleValue(text, 'netctl_api_request_duration_seconds_count', { route: '/networks/{id}', method: 'GET' }), 2);
  t.is(sampleValue(text, 'netctl_store_operation_duration_seconds_count', { store: 'cluster', operation: 'txn' }), 1);
  t.is(sampleValue(text, 'netctl_store_operation_duration_seconds_count', { store: 'cluster', operation: 'list' }), 1);
  t.is(sampleValue(text, 'netctl_store_operation_errors_total', { store: 'cluster', operation: 'list', code: 'StoreClosed' }), 1);
  t.is(sampleValue(text, 'netctl_store_operation_errors_total', { operation: 'get' }), undefined);
  t.is(sampleValue(text, 'netctl_dns_queries_total', { result: 'answered', transport: 'udp' }), 1);
  t.is(sampleValue(text, 'netctl_dns_queries_total', { result: 'forwarded', transport: 'tcp' }), 1);
  t.is(sampleValue(text, 'netctl_dns_query_duration_seconds_bucket', { result: 'forwarded', le: '0.1' }), 0);
  t.is(sampleValue(text, 'netctl_dns_query_duration_seconds_bucket', { result: 'forwarded', le: '0.25' }), 1);
});

test('two daemons in one process keep their own counts', async (t) => {
  const first = new DaemonMetrics({ processMetrics: true });
  const second = new DaemonMetrics({ processMetrics: true });
  first.observeRequest('/_ping', 'GET', 200, 0.001);
  t.is(sampleValue(await first.render(), 'netctl_api_requests_total', { route: '/_ping' }), 1);
  t.is(sampleValue(await second.render(), 'netctl_api_requests_total', { route: '/_ping' }), undefined);
  const text = await second.render();
  t.true((sampleValue(text, 'process_resident_memory_bytes') ?? 0) > 0);
  t.true((sampleValue(text, 'process_open_fds') ?? 0) > 0);
});

test('a scrape whose network list fails still renders everything else and counts the failure', async (t) => {
  const metrics = new DaemonMetrics();
  metrics.setNetworkSource(async () => {
    throw new Error('store unavailable');
  });
  metrics.observeRequest('/_ping', 'GET', 200, 0.001);
  const text = await metrics.render();
  t.is(sampleValue(text, 'netctl_metrics_network_list_errors_total'), 1);
  t.is(sampleValue(text, 'netctl_api_requests_total', { route: '/_ping' }), 1);
  t.is(sampleValue(text, 'netctl_network_endpoints'), undefined);
});

test('--metrics-addr takes IP:PORT, IPv6 in brackets, and refuses anything else clearly', (t) => {
  t.deepEqual(parseMetricsAddress('198.18.0.1:9323'), { address: '198.18.0.1', port: 9323 });
  t.deepEqual(parseMetricsAddress('[::1]:9323'), { address: '::1', port: 9323 });
  t.deepEqual(parseMetricsAddress('0.0.0.0:65535'), { address: '0.0.0.0', port: 65535 });
  for (const bad of ['', '9323', ':9323', '198.18.0.1', '198.18.0.1:', '198.18.0.1:0', '198.18.0.1:65536', 'localhost:9323', '::1:9323', '[198.18.0.1]:9323', '198.18.0.300:1', '198.18.0.1:93a']) {
    const error = t.throws(() => parseMetricsAddress(bad), { instanceOf: InvalidArgument }, bad);
    t.regex(error?.message ?? '', /--metrics-addr .*IP:PORT/);
  }
});
