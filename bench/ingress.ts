/**
 * The ingress routing mesh against HAProxy: the same traffic sent to a
 * service's published port on a host that runs none of its tasks, once
 * through the mesh and once through an HAProxy that runs on that host, in
 * pairs, in one run. Two simulated hosts on one etcd
 * (test/helpers/cluster.ts), one netctl daemon each, an overlay network:
 *
 * - host 1 runs every task: `web`, two tasks each running the tiny HTTP
 *   server of bench/http-task.c (keep-alive mode) on port 80, published as
 *   8080; `solo`, one task running an iperf3 server on 5201, published as
 *   5201 (one task only: iperf3 opens a control and a data connection,
 *   which a balancer with more tasks would send to different tasks);
 * - host 2 runs no task; the client, a namespace of its own on the underlay
 *   (.200 of the cluster's /24), always connects to host 2's underlay address.
 *
 * Two contenders:
 * - mesh: host 2's published ports (src/ingress/mesh-rules.ts): nft DNAT in
 *   host 2's namespace → its ingress sandbox → nft DNAT, round robin → the
 *   task's address on the `ingress` overlay → both user-space VTEPs → the
 *   task, which sees the client's address;
 * - haproxy: one HAProxy (the Debian package) started here in host 2's
 *   namespace, `mode tcp`, `balance roundrobin`, 2 threads, listening on
 *   host 2's underlay address on ports of its own (8081, 5202), each
 *   `server` line a task's address on the service's overlay network with
 *   `namespace SANDBOX`: its connections to the tasks leave from a netctl
 *   sandbox on host 2 connected to that network, so they cross the same two
 *   VTEPs. The tasks see HAProxy's address.
 *
 * Figures:
 * - requests/s with keep-alive: wrk -t 2 -c --connections, many requests on
 *   each connection (to web);
 * - connections/s: the same wrk with `Connection: close`, one request per
 *   connection, the task closing first (to web); the tasks' own counts show
 *   the spread;
 * - single-stream TCP throughput: iperf3 -t --seconds -O 1 (to solo).
 *
 * Each figure measures mesh and HAProxy back to back, the order swapped
 * every pair; the ratio mesh / HAProxy is taken within each pair and its
 * median reported. The target is a ratio of at least 1. Each sample also
 * records the share of the machine's CPUs busy and the client's SYN
 * retransmits; the run records the load average before and after, and at
 * the end host 2's and its ingress sandbox's conntrack counters and rules.
 * Writes bench/results/ingress.json and ingress.md.
 *
 *   npm run bench:ingress [-- --runs 3 --seconds 5 --connections 32]
 *
 * Needs wrk, iperf3, curl, cc, haproxy (built with namespace support, +NS
 * in `haproxy -vv`) and etcd. Everything made (namespaces, daemons, etcd,
 * HAProxy, servers, clients, temporary files) is removed at the end, on
 * failure and on SIGINT/SIGTERM; only processes this run started are ended,
 * by their PID.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, sandboxOn, type SimHost } from '../test/helpers/cluster.js';
import {
  cleanup,
  cleanUpOnSignals,
  compile,
  describeIperf,
  describeRequests,
  eventually,
  inPairs,
  type IperfSample,
  loadAverage,
  machineInfo,
  machineNote,
  makeWorkDir,
  measureIperf,
  NFT,
  nsPath,
  type Pair,
  type PairSummary,
  measureRequests,
  type RequestFigures,
  requireTools,
  runIn,
  serve,
  shortCommit,
  sleep,
  startCluster,
  summarizePairs,
  WRK_REPORT,
  writeResults,
} from './harness.js';
import { cell, type Spread } from './report.js';

/** The port web's tasks listen on, the port the mesh publishes it on, and HAProxy's. */
const HTTP_TARGET_PORT = 80;
const HTTP_PORTS: Record<Contender, number> = { mesh: 8080, haproxy: 8081 };
/** The port solo's iperf3 listens on and the mesh publishes it on, and HAProxy's. */
const IPERF_TARGET_PORT = 5201;
const IPERF_PORTS: Record<Contender, number> = { mesh: 5201, haproxy: 5202 };
const WEB_TASKS = 2;
const WRK_THREADS = 2;
/** The client's host number in the cluster's /24: no simulated host has it. */
const CLIENT_HOST_NUMBER = 200;
/** How long the mesh may take to answer: netctl attaches the tasks to the ingress network asynchronously. */
const MESH_READY_MS = 90_000;

type Contender = 'mesh' | 'haproxy';
const CONTENDERS = ['mesh', 'haproxy'] as const;
type Figure = 'requests' | 'connections' | 'stream';
const LABELS: Record<Contender, string> = { mesh: 'mesh', haproxy: 'HAProxy' };

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '32' },
  },
});
const runs = Number(values.runs);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
if (
  !Number.isInteger(runs) || runs < 1 || runs > 50 ||
  !Number.isInteger(seconds) || seconds < 2 || seconds > 120 ||
  !Number.isInteger(connections) || connections < WRK_THREADS || connections > 1000
) {
  console.error(`--runs takes 1 to 50, --seconds 2 to 120, --connections ${WRK_THREADS} to 1000`);
  process.exit(2);
}
requireTools({ wrk: 'wrk', iperf3: 'iperf3', curl: 'curl', cc: 'gcc', haproxy: 'haproxy', nsenter: 'util-linux' });
const haproxyVersion = (() => {
  const features = execFileSync('haproxy', ['-vv'], { encoding: 'utf8' });
  if (!/\+NS\b/.test(features)) {
    console.error('this haproxy was built without namespace support (no +NS in `haproxy -vv`): its server lines cannot leave from a sandbox');
    process.exit(2);
  }
  return (features.split('\n')[0] ?? '').trim();
})();

cleanUpOnSignals();

// ---- the setup ------------------------------------------------------------------------------

interface Task {
  name: string;
  /** Its address on the service's overlay network (HAProxy's server line). */
  address: string;
}

interface Setup {
  network: string;
  subnet: string;
  client: { name: string; netnsPath: string; address: string };
  /** Host 2's underlay address: every connection goes there. */
  entry: string;
  web: Task[];
  solo: Task;
  /** The sandbox on host 2 HAProxy's backend connections leave from. */
  haproxySandbox: Task;
  haproxyConfig: string;
  /** wrk scripts, keep-alive and one request per connection. */
  scripts: Record<'requests' | 'connections', string>;
}

/** A wrk script whose done() prints one JSON line; with `close`, every request asks the server to close. */
function wrkScript(close: boolean): string {
  return `${close ? 'wrk.headers["Connection"] = "close"\n' : ''}${WRK_REPORT}`;
}

function haproxyConfig(setup: Pick<Setup, 'entry' | 'web' | 'solo' | 'haproxySandbox'>): string {
  const server = (name: string, task: Task, port: number) => `  server ${name} ${task.address}:${port} namespace ${setup.haproxySandbox.name}`;
  return `# bench/ingress.ts: the mesh's contender, in host 2's namespace; backends through a netctl sandbox on the overlay.
global
  # Each connection holds 2 descriptors; the machine's hard limit on them is 20000 here. Far more than the clients ever open.
  nbthread 2
  maxconn 8000

defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m

frontend web
  bind ${setup.entry}:${HTTP_PORTS.haproxy}
  maxconn 8000
  default_backend web

backend web
  balance roundrobin
${setup.web.map((task, i) => server(`task${i + 1}`, task, HTTP_TARGET_PORT)).join('\n')}

frontend solo
  bind ${setup.entry}:${IPERF_PORTS.haproxy}
  maxconn 8000
  default_backend solo

backend solo
${server('solo', setup.solo, IPERF_TARGET_PORT)}
`;
}

/** One HTTP request from the client, asking to close; the body (the task's name). */
async function httpGet(client: Setup['client'], address: string, port: number): Promise<string> {
  const url = `http://${address}:${port}/`;
  const result = await runIn(client.netnsPath, 'curl', ['-sS', '--max-time', '3', '-H', 'Connection: close', url], 10_000);
  if (result.code !== 0) throw new Error(`curl ${url}: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

/** Requests each task served so far, asked in its own namespace (the count does not count itself). */
async function taskCounts(setup: Setup): Promise<number[]> {
  const counts: number[] = [];
  for (const task of setup.web) {
    const result = await runIn(nsPath(task.name), 'curl', ['-sS', '--max-time', '3', '-H', 'Connection: close', `http://127.0.0.1:${HTTP_TARGET_PORT}/count`], 10_000);
    counts.push(result.code === 0 ? Number(result.stdout.trim()) : NaN);
  }
  return counts;
}

/**
 * Fails with what went wrong unless `contender` answers: web through it
 * reaches every task (within a few rounds of round robin) and solo's
 * iperf3 answers through it.
 */
async function checkPath(setup: Setup, contender: Contender, timeoutMs: number): Promise<void> {
  const port = HTTP_PORTS[contender];
  const where = contender === 'mesh' ? `web's published port ${port} on host 2 (${setup.entry}), where no task runs` : `HAProxy on host 2 (${setup.entry}:${port})`;
  const names = setup.web.map((_, i) => `task${i + 1}`);
  const seen = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (seen.size < names.length) {
    try {
      const body = await httpGet(setup.client, setup.entry, port);
      if (!names.includes(body)) throw new Error(`answered ${JSON.stringify(body.slice(0, 80))}, not a task's name`);
      seen.add(body);
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (seen.size === names.length) break;
    if (Date.now() > deadline) {
      throw new Error(
        seen.size === 0
          ? `${LABELS[contender]}: no answer through ${where} after ${timeoutMs / 1000} s: ${last}`
          : `${LABELS[contender]}: requests through ${where} reached only ${[...seen].join(', ')} of ${names.join(', ')} after ${timeoutMs / 1000} s${last === '' ? '' : ` (last error: ${last})`}`,
      );
    }
    await sleep(200);
  }
  const iperfPort = IPERF_PORTS[contender];
  await eventually(
    `${LABELS[contender]}: solo's iperf3 does not answer through ${setup.entry}:${iperfPort}`,
    async () => {
      const result = await runIn(setup.client.netnsPath, 'iperf3', ['-c', setup.entry, '-p', String(iperfPort), '-t', '1', '--connect-timeout', '3000'], 20_000);
      if (result.code !== 0) throw new Error((result.stderr || result.stdout).trim().slice(-300));
    },
    Math.min(timeoutMs, 30_000),
  );
}

async function setUp(cluster: Cluster, dir: string): Promise<Setup> {
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  const network = 'bench-ingress';
  const subnet = '10.93.0.0/24';
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', subnet, network);
  for (const [service, published, target] of [['web', HTTP_PORTS.mesh, HTTP_TARGET_PORT], ['solo', IPERF_PORTS.mesh, IPERF_TARGET_PORT]] as const) {
    const created = await cluster.netctl(h1, 'service', 'create', '--network', network, '--publish', `published=${published},target=${target},protocol=tcp,mode=ingress`, service);
    if (created.code !== 0) {
      const hint = /unknown flag|publish/i.test(created.stderr) ? ' (this checkout may not have `service create --publish` yet: it comes with the ports branch)' : '';
      throw new Error(`netctl service create --publish ${published}:${target} ${service} failed${hint}: ${created.stderr.trim()}`);
    }
  }

  const httpTask = await compile(dir, 'http-task');
  const web: Task[] = [];
  for (let i = 1; i <= WEB_TASKS; i++) web.push(await sandboxOn(cluster, h1, network, `web${i}`, { service: 'web' }));
  const solo = await sandboxOn(cluster, h1, network, 'solo', { service: 'solo' });
  for (const [i, task] of web.entries()) await serve(nsPath(task.name), 'ready', httpTask, [String(HTTP_TARGET_PORT), `task${i + 1}`, 'keep-alive']);
  await serve(nsPath(solo.name), 'Server listening', 'iperf3', ['-s', '-p', String(IPERF_TARGET_PORT), '--forceflush']);

  const haproxySandbox = await sandboxOn(cluster, h2, network, 'hap');
  const prefix = h2.address.split('.').slice(0, 3).join('.');
  const clientAddress = `${prefix}.${CLIENT_HOST_NUMBER}`;
  if (cluster.hosts.some((host) => host.address === clientAddress)) throw new Error(`the client's address ${clientAddress} is a simulated host's`);
  const client = { ...(await cluster.addUnderlayHost(clientAddress)), address: clientAddress };

  const scripts = { requests: join(dir, 'keep-alive.lua'), connections: join(dir, 'close.lua') };
  await writeFile(scripts.requests, wrkScript(false));
  await writeFile(scripts.connections, wrkScript(true));
  const partial = { entry: h2.address, web, solo, haproxySandbox };
  const haproxyConfigPath = join(dir, 'haproxy.cfg');
  await writeFile(haproxyConfigPath, haproxyConfig(partial));
  const checked = await runIn(h2.netnsPath, 'haproxy', ['-c', '-q', '-f', haproxyConfigPath], 20_000);
  if (checked.code !== 0) throw new Error(`haproxy -c ${haproxyConfigPath}: ${(checked.stderr || checked.stdout).trim()}`);
  // -db: in the foreground, no fork, so the child spawned here is HAProxy itself and cleanup ends it by its PID.
  await serve(h2.netnsPath, undefined, 'haproxy', ['-f', haproxyConfigPath, '-db']);

  const setup: Setup = { network, subnet, client, ...partial, haproxyConfig: haproxyConfigPath, scripts };
  await checkPath(setup, 'haproxy', 30_000);
  try {
    await checkPath(setup, 'mesh', MESH_READY_MS);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await meshState(cluster)}`);
  }
  return setup;
}

/** What host 2 holds of the mesh, for a mesh that does not answer: the ingress network, its ingress sandbox, its published-port table. */
async function meshState(cluster: Cluster): Promise<string> {
  const h2 = cluster.hosts[1] as SimHost;
  const networks = (await cluster.netctl(h2, 'network', 'ls', '--format', '{{.Name}}')).stdout.split('\n').filter((n) => n !== '');
  const ingress = await ingressSandboxOf(cluster, h2);
  const table = await runIn(h2.netnsPath, NFT, ['list', 'table', 'ip', 'netctl_published'], 10_000);
  return [
    `host 2 knows the networks ${networks.join(', ') || '(none)'}${networks.includes('ingress') ? '' : ': no `ingress` network'}`,
    ingress === undefined ? 'host 2 has no ingress sandbox (ingress-sbox-*)' : `host 2's ingress sandbox: ${ingress.name}`,
    table.code === 0 ? `host 2's published-port table:\n${table.stdout.trim()}` : 'host 2 has no netctl_published table',
  ].join('\n');
}

// ---- the figures ----------------------------------------------------------------------------

/** perTask counts web's tasks. */
interface WrkSample extends RequestFigures {
  perSecond: number;
}

type Sample = WrkSample | IperfSample;

function measureWrk(setup: Setup, contender: Contender, figure: 'requests' | 'connections', duration: number): Promise<WrkSample> {
  return measureRequests({
    netnsPath: setup.client.netnsPath,
    command: 'wrk',
    args: ['-t', String(WRK_THREADS), '-c', String(connections), '-d', `${duration}s`, '--timeout', '2s', '-s', setup.scripts[figure], `http://${setup.entry}:${HTTP_PORTS[contender]}/`],
    duration,
    what: `wrk ${contender}`,
    taskCounts: () => taskCounts(setup),
  });
}

function measure(setup: Setup, figure: Figure, contender: Contender, duration: number): Promise<Sample> {
  return figure === 'stream'
    ? measureIperf(setup.client.netnsPath, setup.entry, IPERF_PORTS[contender], duration, contender)
    : measureWrk(setup, contender, figure, duration);
}

const valueOf = (sample: Sample) => ('gbps' in sample ? sample.gbps : sample.perSecond);

const describe = (sample: Sample) => ('gbps' in sample ? describeIperf(sample) : describeRequests(sample.perSecond, sample));

// ---- the run --------------------------------------------------------------------------------

const FIGURES: readonly { figure: Figure; label: string; unit: string }[] = [
  { figure: 'requests', label: 'requests/s, keep-alive', unit: '/s' },
  { figure: 'connections', label: 'connections/s, 1 request each', unit: '/s' },
  { figure: 'stream', label: 'TCP 1 stream Gbit/s', unit: 'Gbit/s' },
];

/** The figure's pairs, mesh / HAProxy, after a warm-up of both (iperf3's was the checks'). */
async function figurePairs(setup: Setup, figure: Figure, label: string, failures: string[]): Promise<Pair<Contender, Sample>[]> {
  if (figure !== 'stream') for (const contender of CONTENDERS) await measure(setup, figure, contender, 2);
  return inPairs({ label, runs, ways: CONTENDERS, names: LABELS, measure: (contender) => measure(setup, figure, contender, seconds), value: valueOf, describe, failures });
}

/** Host 2's ingress sandbox, by the name the daemon gives it, if it lists one. */
async function ingressSandboxOf(cluster: Cluster, host: SimHost): Promise<{ name: string; netnsPath: string } | undefined> {
  const listed = await cluster.netctl(host, 'sandbox', 'ls', '--format', '{{.Name}}\t{{.Netns}}');
  for (const line of listed.stdout.split('\n')) {
    const [name, netnsPath] = line.split('\t');
    if (name?.startsWith('ingress-sbox') === true) return { name, netnsPath: netnsPath !== undefined && netnsPath !== '' ? netnsPath : nsPath(name) };
  }
  return undefined;
}

/** What the kernel counted on the mesh's way through host 2, for telling where a slow path loses time. */
async function diagnostics(cluster: Cluster): Promise<Record<string, unknown>> {
  const h2 = cluster.hosts[1] as SimHost;
  const ingress = await ingressSandboxOf(cluster, h2);
  const of = async (netnsPath: string) => ({
    conntrackEntries: await runIn(netnsPath, 'conntrack', ['-C'], 10_000).then((r) => (r.code === 0 ? Number(r.stdout.trim()) : null)),
    conntrackStats: (await runIn(netnsPath, 'conntrack', ['-S'], 10_000)).stdout.trim(),
    ruleset: (await runIn(netnsPath, NFT, ['list', 'ruleset'], 10_000)).stdout,
  });
  return {
    host2: await of(h2.netnsPath),
    ingressSandbox: ingress === undefined ? null : { name: ingress.name, ...(await of(ingress.netnsPath)) },
  };
}

const ratioCell = (s: Spread | undefined) => (s === undefined ? '–' : s.n === 1 ? s.median.toFixed(2) : `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
const verdict = (s: Spread | undefined) => (s === undefined ? '–' : s.median >= 1 ? 'yes' : `**no** (${((1 - s.median) * 100).toFixed(0)} % short)`);

function markdown(summary: Record<Figure, PairSummary<Contender>>, heading: string, notes: readonly string[], failures: readonly string[]): string {
  const lines = [heading, '', '| figure | mesh | HAProxy | mesh / HAProxy, per pair | mesh ≥ HAProxy |', '|---|---|---|---|---|'];
  for (const { figure, label } of FIGURES) {
    const s = summary[figure];
    lines.push(`| ${label} | ${cell(s.mesh)} | ${cell(s.haproxy)} | ${ratioCell(s.ratio)} | ${verdict(s.ratio)} |`);
  }
  lines.push('', ...notes.map((note) => `- ${note}`));
  if (failures.length > 0) lines.push('', 'Runs that failed:', ...failures.map((failure) => `- ${failure.replaceAll('\n', ' ').slice(0, 300)}`));
  return `${lines.join('\n')}\n`;
}

const loadBefore = await loadAverage();
console.log(`load average before: ${loadBefore}`);
try {
  const work = await makeWorkDir('ingress');
  const cluster = await startCluster();
  console.log('setting up: 2 hosts, the services, their tasks on host 1, HAProxy on host 2, the client');
  const setup = await setUp(cluster, work);
  console.log(
    `client ${setup.client.address} → host 2 ${setup.entry}: mesh :${HTTP_PORTS.mesh} and :${IPERF_PORTS.mesh}, HAProxy :${HTTP_PORTS.haproxy} and :${IPERF_PORTS.haproxy} ` +
      `(from sandbox ${setup.haproxySandbox.name}, ${setup.haproxySandbox.address}); web → ${setup.web.map((t) => t.address).join(', ')}; solo → ${setup.solo.address}`,
  );

  const failures: string[] = [];
  const pairs = {} as Record<Figure, Pair<Contender, Sample>[]>;
  for (const { figure, label } of FIGURES) pairs[figure] = await figurePairs(setup, figure, label, failures);
  const summary = {} as Record<Figure, PairSummary<Contender>>;
  for (const { figure } of FIGURES) summary[figure] = summarizePairs(pairs[figure], CONTENDERS, valueOf);
  const kernelCounters = await diagnostics(cluster);

  const loadAfter = await loadAverage();
  const date = new Date().toISOString();
  const commit = shortCommit();
  const machine = { ...machineInfo(), haproxy: haproxyVersion, loadavgBefore: loadBefore, loadavgAfter: loadAfter };
  const options = { runs, seconds, connections, wrkThreads: WRK_THREADS, webTasks: WEB_TASKS };
  const described = {
    network: setup.network,
    subnet: setup.subnet,
    client: setup.client.address,
    entry: setup.entry,
    ports: { http: HTTP_PORTS, iperf: IPERF_PORTS },
    webTasks: setup.web.map((t) => t.address),
    soloTask: setup.solo.address,
    haproxySandbox: setup.haproxySandbox,
    haproxyConfig: await readFile(setup.haproxyConfig, 'utf8'),
  };
  const notes = [
    `Client on the underlay (${setup.client.address}) → host 2 (${setup.entry}), which runs no task; web's ${WEB_TASKS} tasks and solo's one task on host 1, so both contenders cross both user-space VTEPs.`,
    `mesh: the published port in ingress mode (host 2's nft DNAT → its ingress sandbox → nft DNAT, round robin → the task on the ingress overlay); the task sees the client's address.`,
    `HAProxy (${haproxyVersion.replace(/ - https?:.*$/, '')}) in host 2's namespace: mode tcp, balance roundrobin, nbthread 2, no health checks, backends through \`namespace\` ${setup.haproxySandbox.name}, a netctl sandbox on host 2 on the service's overlay; the task sees HAProxy's address.`,
    `requests/s: wrk -t ${WRK_THREADS} -c ${connections} -d ${seconds}s, keep-alive, the tasks running bench/http-task.c in keep-alive mode (one thread, epoll).`,
    `connections/s: the same with \`Connection: close\`, one request per connection, the task closing first.`,
    `TCP 1 stream: iperf3 -t ${seconds} -O 1 to solo (one task running iperf3 -s).`,
    `${runs} pairs per figure, mesh and HAProxy back to back, the order swapped every pair; median (min–max); the ratio is taken within each pair. Bridge netfilter off in the simulated hosts.`,
    machineNote(machine, loadBefore, loadAfter, commit),
  ];
  const table = markdown(summary, `Ingress routing mesh against HAProxy, ${date}`, notes, failures);
  await writeResults('ingress', { date, commit, machine, options, setup: described, pairs, summary, failures, kernelCounters }, table);
  console.log(`\n${table}`);
} finally {
  await cleanup();
}
