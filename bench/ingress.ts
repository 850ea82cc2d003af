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
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Cluster, makeCluster, type SimHost } from '../test/helpers/cluster.js';
import { run } from '../test/helpers/kernel.js';
import { type Spread, spread } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
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
const NFT = '/usr/sbin/nft';
/** How long the mesh may take to answer: netctl attaches the tasks to the ingress network asynchronously. */
const MESH_READY_MS = 90_000;

type Contender = 'mesh' | 'haproxy';
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
for (const [tool, pkg] of [['wrk', 'wrk'], ['iperf3', 'iperf3'], ['curl', 'curl'], ['cc', 'gcc'], ['haproxy', 'haproxy'], ['nsenter', 'util-linux']] as const) {
  try {
    execFileSync('which', [tool], { stdio: 'ignore' });
  } catch {
    console.error(`${tool} is not installed (Debian package ${pkg})`);
    process.exit(2);
  }
}
const haproxyVersion = (() => {
  const features = execFileSync('haproxy', ['-vv'], { encoding: 'utf8' });
  if (!/\+NS\b/.test(features)) {
    console.error('this haproxy was built without namespace support (no +NS in `haproxy -vv`): its server lines cannot leave from a sandbox');
    process.exit(2);
  }
  return (features.split('\n')[0] ?? '').trim();
})();

// ---- everything this run starts, for the cleanup --------------------------------------------

let making: Promise<Cluster> | undefined;
let work: string | undefined;
const children = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    // HAProxy, the servers and the clients first: a process left in a namespace would keep it alive after `ip netns del`.
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const child of children) await exited(child, 3000);
    const cluster = await making?.catch(() => undefined);
    await cluster?.destroy();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: removing HAProxy, the servers, daemons, etcd, sandboxes and namespaces`);
    void cleanup().finally(() => process.exit(code));
  });
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const nsPath = (sandbox: string) => `/var/run/netns/${sandbox}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Server {
  child: ChildProcess;
  output(): string;
}

/**
 * A long-lived process in a namespace (nsenter execs it, so the child's PID
 * is the process's), killed by cleanup. Resolves once it printed `marker`,
 * or, without one, once it has run for half a second without exiting.
 */
async function serve(netnsPath: string, marker: string | undefined, command: string, args: readonly string[]): Promise<Server> {
  const child = spawn('nsenter', [`--net=${netnsPath}`, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const keep = (chunk: Buffer) => void (output = (output + chunk.toString()).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (err) => keep(Buffer.from(String(err))));
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${command} exited: ${output.slice(-300)}`);
    if (marker === undefined ? Date.now() - started > 500 : output.includes(marker)) break;
    if (Date.now() - started > 15_000) throw new Error(`${command} did not start: ${output.slice(-300)}`);
    await sleep(50);
  }
  return { child, output: () => output };
}

/** Runs a command to its end in a namespace, killed by cleanup or after timeoutMs. */
function runIn(netnsPath: string, command: string, args: readonly string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('nsenter', [`--net=${netnsPath}`, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => void (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => void (stderr += String(err)));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: code ?? (signal !== null ? 128 : 1), stdout, stderr: signal !== null ? `${stderr}(killed by ${signal})` : stderr });
    });
  });
}

/** Polls until `probe` succeeds. */
async function eventually<T>(what: string, probe: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      await sleep(250);
    }
  }
}

// ---- the machine ----------------------------------------------------------------------------

/** Busy and total jiffies of all CPUs, from /proc/stat. */
async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** The client's SYN retransmits (TcpExtTCPSynRetrans): each one a connection that waited a second or more. */
async function synRetransmits(netnsPath: string): Promise<number> {
  const result = await runIn(netnsPath, 'cat', ['/proc/net/netstat'], 10_000);
  const lines = result.stdout.split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = (lines[i] ?? '').split(/\s+/);
    const counts = (lines[i + 1] ?? '').split(/\s+/);
    if (names[0] === 'TcpExt:') return Number(counts[names.indexOf('TCPSynRetrans')] ?? NaN);
  }
  return NaN;
}

const loadavgText = async () => (await readFile('/proc/loadavg', 'utf8')).trim();

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

const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';

async function sandbox(cluster: Cluster, host: SimHost, network: string, base: string, service?: string): Promise<Task> {
  const name = cluster.sandboxName(base);
  await cluster.ok(host, 'sandbox', 'create', name);
  await cluster.ok(host, 'network', 'connect', ...(service !== undefined ? ['--service', service] : []), network, name);
  const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
  const address = ipOf((await cluster.ok(host, 'network', 'inspect', '-f', template, network)).trim());
  if (address === '') throw new Error(`no address for ${name} on ${network}`);
  return { name, address };
}

/** A wrk script whose done() prints one JSON line; with `close`, every request asks the server to close. */
function wrkScript(close: boolean): string {
  return `${close ? 'wrk.headers["Connection"] = "close"\n' : ''}function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;
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

/** bench/http-task.c compiled into `dir`. */
async function buildHttpTask(dir: string): Promise<string> {
  const binary = join(dir, 'http-task');
  const built = await run('cc', ['-O2', '-Wall', '-o', binary, join(here, 'http-task.c')], { timeoutMs: 60_000 });
  if (built.code !== 0) throw new Error(`cc bench/http-task.c: ${built.stderr}`);
  return binary;
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

  const httpTask = await buildHttpTask(dir);
  const web: Task[] = [];
  for (let i = 1; i <= WEB_TASKS; i++) web.push(await sandbox(cluster, h1, network, `web${i}`, 'web'));
  const solo = await sandbox(cluster, h1, network, 'solo', 'solo');
  for (const [i, task] of web.entries()) await serve(nsPath(task.name), 'ready', httpTask, [String(HTTP_TARGET_PORT), `task${i + 1}`, 'keep-alive']);
  await serve(nsPath(solo.name), 'Server listening', 'iperf3', ['-s', '-p', String(IPERF_TARGET_PORT), '--forceflush']);

  const haproxySandbox = await sandbox(cluster, h2, network, 'hap');
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

interface WrkSample {
  perSecond: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Requests each web task served during the sample, from its /count. */
  perTask: number[];
  synRetransmits: number;
  /** Share of the machine's CPUs busy during the sample. */
  machineBusy: number;
}

interface IperfSample {
  gbps: number;
  retransmits: number | null;
  machineBusy: number;
}

type Sample = WrkSample | IperfSample;

async function measureWrk(setup: Setup, contender: Contender, figure: 'requests' | 'connections', duration: number): Promise<WrkSample> {
  const before = await taskCounts(setup);
  const synBefore = await synRetransmits(setup.client.netnsPath);
  const cpuBefore = await cpuTimes();
  const result = await runIn(
    setup.client.netnsPath,
    'wrk',
    ['-t', String(WRK_THREADS), '-c', String(connections), '-d', `${duration}s`, '--timeout', '2s', '-s', setup.scripts[figure], `http://${setup.entry}:${HTTP_PORTS[contender]}/`],
    (duration + 30) * 1000,
  );
  const cpuAfter = await cpuTimes();
  const line = result.stdout.split('\n').find((l) => l.startsWith('{"requests"'));
  if (result.code !== 0 || line === undefined) throw new Error(`wrk ${contender}: exit ${result.code}: ${(result.stderr || result.stdout).trim().slice(0, 400)}`);
  const parsed = JSON.parse(line) as { requests: number; durationUs: number; connect: number; read: number; write: number; status: number; timeout: number; p50Us: number; p99Us: number };
  const after = await taskCounts(setup);
  const synAfter = await synRetransmits(setup.client.netnsPath);
  return {
    perSecond: parsed.requests / (parsed.durationUs / 1e6),
    requests: parsed.requests,
    errors: { connect: parsed.connect, read: parsed.read, write: parsed.write, status: parsed.status, timeout: parsed.timeout },
    latencyP50Ms: parsed.p50Us / 1000,
    latencyP99Ms: parsed.p99Us / 1000,
    perTask: after.map((count, i) => count - (before[i] ?? 0)),
    synRetransmits: synAfter - synBefore,
    machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
  };
}

async function measureIperf(setup: Setup, contender: Contender, duration: number): Promise<IperfSample> {
  const cpuBefore = await cpuTimes();
  const result = await runIn(
    setup.client.netnsPath,
    'iperf3',
    ['-c', setup.entry, '-p', String(IPERF_PORTS[contender]), '-t', String(duration), '-O', '1', '--connect-timeout', '5000', '-J'],
    (duration + 30) * 1000,
  );
  const cpuAfter = await cpuTimes();
  let parsed: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    parsed = JSON.parse(result.stdout) as typeof parsed;
  } catch {
    throw new Error(`iperf3 ${contender}: ${(result.stderr || result.stdout).trim().slice(0, 300) || `exit ${result.code}`}`);
  }
  if (parsed.error !== undefined) throw new Error(`iperf3 ${contender}: ${parsed.error}`);
  const received = parsed.end?.sum_received?.bits_per_second;
  if (received === undefined) throw new Error(`iperf3 ${contender}: no sum_received`);
  return {
    gbps: received / 1e9,
    retransmits: parsed.end?.sum_sent?.retransmits ?? null,
    machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
  };
}

function measure(setup: Setup, figure: Figure, contender: Contender, duration: number): Promise<Sample> {
  return figure === 'stream' ? measureIperf(setup, contender, duration) : measureWrk(setup, contender, figure, duration);
}

const valueOf = (sample: Sample) => ('gbps' in sample ? sample.gbps : sample.perSecond);

function show(sample: Sample): string {
  const cpu = `CPU ${(sample.machineBusy * 100).toFixed(0)} %`;
  if ('gbps' in sample) return `${sample.gbps.toFixed(2)} Gbit/s, ${sample.retransmits ?? '?'} retransmits, ${cpu}`;
  const errors = Object.entries(sample.errors).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return `${sample.perSecond.toFixed(0)}/s, p50 ${sample.latencyP50Ms.toFixed(2)} ms, p99 ${sample.latencyP99Ms.toFixed(2)} ms, per task ${sample.perTask.join('/')}, ${sample.synRetransmits} SYN retransmits, ${cpu}${errors.length > 0 ? `, errors: ${errors.join(', ')}` : ''}`;
}

// ---- the run --------------------------------------------------------------------------------

interface Pair {
  run: number;
  first: Contender;
  mesh: Sample;
  haproxy: Sample;
  /** mesh / HAProxy. */
  ratio: number;
}

interface Summary {
  mesh: Spread | undefined;
  haproxy: Spread | undefined;
  ratio: Spread | undefined;
}

const FIGURES: readonly { figure: Figure; label: string; unit: string }[] = [
  { figure: 'requests', label: 'requests/s, keep-alive', unit: '/s' },
  { figure: 'connections', label: 'connections/s, 1 request each', unit: '/s' },
  { figure: 'stream', label: 'TCP 1 stream Gbit/s', unit: 'Gbit/s' },
];

async function inPairs(setup: Setup, figure: Figure, label: string, failures: string[]): Promise<Pair[]> {
  // A warm-up of both paths, not counted: iperf3 was warmed up by the checks.
  if (figure !== 'stream') for (const contender of ['mesh', 'haproxy'] as const) await measure(setup, figure, contender, 2);
  const pairs: Pair[] = [];
  for (let run = 0; run < runs; run++) {
    const order: Contender[] = run % 2 === 0 ? ['mesh', 'haproxy'] : ['haproxy', 'mesh'];
    const taken: Partial<Record<Contender, Sample>> = {};
    try {
      for (const contender of order) {
        const sample = await measure(setup, figure, contender, seconds);
        taken[contender] = sample;
        console.log(`  ${label} run ${run + 1} ${LABELS[contender].padEnd(7)} ${show(sample)}`);
      }
    } catch (err) {
      if (cleaning !== undefined) throw err;
      failures.push(`${label} run ${run + 1}: ${err instanceof Error ? err.message : String(err)}`);
      console.log(`  ${label} run ${run + 1} failed: ${failures.at(-1)}`);
      continue;
    }
    const mesh = taken.mesh as Sample;
    const haproxy = taken.haproxy as Sample;
    pairs.push({ run: run + 1, first: order[0] as Contender, mesh, haproxy, ratio: valueOf(mesh) / valueOf(haproxy) });
  }
  return pairs;
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

function digits(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

const cell = (s: Spread | undefined) => (s === undefined ? '–' : s.n === 1 ? digits(s.median) : `${digits(s.median)} (${digits(s.min)}–${digits(s.max)})`);
const ratioCell = (s: Spread | undefined) => (s === undefined ? '–' : s.n === 1 ? s.median.toFixed(2) : `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
const verdict = (s: Spread | undefined) => (s === undefined ? '–' : s.median >= 1 ? 'yes' : `**no** (${((1 - s.median) * 100).toFixed(0)} % short)`);

function markdown(summary: Record<Figure, Summary>, heading: string, notes: readonly string[], failures: readonly string[]): string {
  const lines = [heading, '', '| figure | mesh | HAProxy | mesh / HAProxy, per pair | mesh ≥ HAProxy |', '|---|---|---|---|---|'];
  for (const { figure, label } of FIGURES) {
    const s = summary[figure];
    lines.push(`| ${label} | ${cell(s.mesh)} | ${cell(s.haproxy)} | ${ratioCell(s.ratio)} | ${verdict(s.ratio)} |`);
  }
  lines.push('', ...notes.map((note) => `- ${note}`));
  if (failures.length > 0) lines.push('', 'Runs that failed:', ...failures.map((failure) => `- ${failure.replaceAll('\n', ' ').slice(0, 300)}`));
  return `${lines.join('\n')}\n`;
}

const loadBefore = await loadavgText();
console.log(`load average before: ${loadBefore}`);
try {
  work = await mkdtemp(join(tmpdir(), 'netctl-bench-ingress-'));
  making = makeCluster(2, { daemonArgs: ['--log-level', 'warn'] });
  const cluster = await making;
  for (const host of cluster.hosts) {
    // As bench/services.ts does: with bridge netfilter, frames crossing a host's bridges (netctl_gwbridge too) would walk its IP hooks a second time.
    const off = await run('nsenter', [`--net=${host.netnsPath}`, 'sh', '-c', 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ ! -e "$f" ] || echo 0 > "$f"; done']);
    if (off.code !== 0) throw new Error(`bridge-nf-call in host${host.index}: ${off.stderr}`);
    await cluster.startDaemon(host);
  }
  console.log('setting up: 2 hosts, the services, their tasks on host 1, HAProxy on host 2, the client');
  const setup = await setUp(cluster, work);
  console.log(
    `client ${setup.client.address} → host 2 ${setup.entry}: mesh :${HTTP_PORTS.mesh} and :${IPERF_PORTS.mesh}, HAProxy :${HTTP_PORTS.haproxy} and :${IPERF_PORTS.haproxy} ` +
      `(from sandbox ${setup.haproxySandbox.name}, ${setup.haproxySandbox.address}); web → ${setup.web.map((t) => t.address).join(', ')}; solo → ${setup.solo.address}`,
  );

  const failures: string[] = [];
  const pairs = {} as Record<Figure, Pair[]>;
  for (const { figure, label } of FIGURES) pairs[figure] = await inPairs(setup, figure, label, failures);
  const summary = {} as Record<Figure, Summary>;
  for (const { figure } of FIGURES) {
    summary[figure] = {
      mesh: spread(pairs[figure].map((p) => valueOf(p.mesh))),
      haproxy: spread(pairs[figure].map((p) => valueOf(p.haproxy))),
      ratio: spread(pairs[figure].map((p) => p.ratio)),
    };
  }
  const kernelCounters = await diagnostics(cluster);

  const loadAfter = await loadavgText();
  const date = new Date().toISOString();
  const commit = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version, haproxy: haproxyVersion, loadavgBefore: loadBefore, loadavgAfter: loadAfter };
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
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'ingress.json'), `${JSON.stringify({ date, commit, machine, options, setup: described, pairs, summary, failures, kernelCounters }, null, 2)}\n`);
  const notes = [
    `Client on the underlay (${setup.client.address}) → host 2 (${setup.entry}), which runs no task; web's ${WEB_TASKS} tasks and solo's one task on host 1, so both contenders cross both user-space VTEPs.`,
    `mesh: the published port in ingress mode (host 2's nft DNAT → its ingress sandbox → nft DNAT, round robin → the task on the ingress overlay); the task sees the client's address.`,
    `HAProxy (${haproxyVersion.replace(/ - https?:.*$/, '')}) in host 2's namespace: mode tcp, balance roundrobin, nbthread 2, no health checks, backends through \`namespace\` ${setup.haproxySandbox.name}, a netctl sandbox on host 2 on the service's overlay; the task sees HAProxy's address.`,
    `requests/s: wrk -t ${WRK_THREADS} -c ${connections} -d ${seconds}s, keep-alive, the tasks running bench/http-task.c in keep-alive mode (one thread, epoll).`,
    `connections/s: the same with \`Connection: close\`, one request per connection, the task closing first.`,
    `TCP 1 stream: iperf3 -t ${seconds} -O 1 to solo (one task running iperf3 -s).`,
    `${runs} pairs per figure, mesh and HAProxy back to back, the order swapped every pair; median (min–max); the ratio is taken within each pair. Bridge netfilter off in the simulated hosts.`,
    `${machine.nproc} CPUs (${machine.cpu}), Linux ${machine.kernel}, Node ${machine.node}; load average before: ${loadBefore}; after: ${loadAfter}. Commit ${commit}.`,
  ];
  const table = markdown(summary, `Ingress routing mesh against HAProxy, ${date}`, notes, failures);
  await writeFile(join(root, 'bench', 'results', 'ingress.md'), table);
  console.log(`\n${table}`);
} finally {
  await cleanup();
}
