/**
 * What a service's virtual IP costs: the same traffic sent through the VIP
 * (nftables in the client's sandbox DNATs each new flow to one of the
 * service's tasks, src/ingress/vip-rules.ts) and straight to the tasks'
 * addresses, in pairs, in one run. Two simulated hosts on one etcd
 * (test/helpers/cluster.ts), one netctl daemon each:
 *
 * - overlay: the clients on host 1, the tasks on host 2, so every packet
 *   crosses both user-space VTEPs;
 * - bridge: the clients and the tasks on host 1's bridge network, so nothing
 *   but the kernel's veths and bridge is on the path and the nft cost is
 *   not hidden behind the VTEP's (bridge netfilter is off in the simulated
 *   hosts, as in bench/testbed.ts, so the host's conntrack stays out of it).
 *
 * Two client sandboxes, alike in all but their address: one sends through
 * the VIP, the other straight to the tasks. With one client for both, a
 * source port reused by the other case meets a task's TIME_WAIT left by a
 * connection whose timestamps were offset for another destination (the VIP
 * or the task's address), the task rejects the SYN (PAWS) and the client
 * waits a second to retry: the two cases would slow each other down.
 *
 * On each network two services: `web`, three tasks each running the tiny
 * HTTP server of bench/http-task.c, and `solo`, one task running the same
 * server and an iperf3 server (one task only: iperf3 opens a control and a
 * data connection, which a VIP with more tasks would send to different
 * tasks). Figures:
 *
 * - connections per second, 3 tasks: bench/conn-client.c, 3 threads,
 *   --connections in all, every request on a connection of its own (the
 *   server closes first). VIP: every connection to web's VIP, which hands
 *   each to the next task. Direct: each new connection to the next of the
 *   3 tasks' addresses, by the client itself. Both sides spread the load
 *   alike, so the figure prices the VIP with 3 tasks behind it (wrk cannot:
 *   a wrk thread has one address). The tasks' own counts show the spread;
 * - connections per second, 1 task: wrk, 3 threads, every thread to solo's
 *   VIP or to its one task: the same work on both sides but for the VIP
 *   lookup and the DNAT, so this is the figure that prices the VIP;
 * - single-stream TCP throughput: iperf3 -t --seconds to solo's VIP and to
 *   its task's address.
 *
 * Each run measures VIP and direct back to back, the order swapped every run;
 * the ratio VIP / direct is taken within each pair and its median reported.
 * The direct client still passes its sandbox's netctl_services table (its
 * hooks are there for every destination, so conntrack and a null NAT
 * binding run either way): the difference is the VIP lookup hit and the
 * DNAT itself. Each sample also records the client's SYN retransmits.
 * Writes bench/results/services.json and services.md.
 *
 *   npm run bench:services [-- --runs 5 --seconds 10 --connections 48 --only overlay,bridge]
 *
 * Needs wrk and iperf3 (Debian packages wrk, iperf3) and etcd. Everything
 * made (namespaces, daemons, etcd, servers, clients, temporary files) is
 * removed at the end, on failure and on SIGINT/SIGTERM.
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
const HTTP_PORT = 8080;
const IPERF_PORT = 5201;
const TASKS = 3;
const WRK_THREADS = 3;
const NFT = '/usr/sbin/nft';
/** The issue's target: the VIP costs less than this share of either figure. */
const TARGET = 0.1;

type Kind = 'overlay' | 'bridge';
type Path = 'vip' | 'direct';
/** web: 3 tasks; solo: 1 task. */
type Target = 'web' | 'solo';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '48' },
    only: { type: 'string', default: 'overlay,bridge' },
    server: { type: 'string', default: 'c' },
  },
});
const runs = Number(values.runs);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const kinds = (values.only ?? '').split(',').filter((k) => k !== '') as Kind[];
const serverKind = values.server;
if (
  (serverKind !== 'c' && serverKind !== 'node') ||

  !Number.isInteger(runs) || runs < 1 || runs > 50 ||
  !Number.isInteger(seconds) || seconds < 2 || seconds > 120 ||
  !Number.isInteger(connections) || connections < WRK_THREADS || connections > 1000 ||
  kinds.length === 0 || kinds.some((k) => k !== 'overlay' && k !== 'bridge')
) {
  console.error('--runs takes 1 to 50, --seconds 2 to 120, --connections 3 to 1000, --only overlay, bridge or both, --server c or node');
  process.exit(2);
}
for (const tool of ['wrk', 'iperf3', 'cc']) {
  try {
    execFileSync('which', [tool], { stdio: 'ignore' });
  } catch {
    console.error(`${tool} is not installed (Debian package ${tool === 'cc' ? 'gcc' : tool})`);
    process.exit(2);
  }
}

// ---- everything this run starts, for the cleanup --------------------------------------------

let making: Promise<Cluster> | undefined;
/** The compiled bench/conn-client.c, once built. */
let connClient = '';
let work: string | undefined;
const children = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    // The servers and clients first: a process left in a namespace would keep it alive after `ip netns del`.
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
    console.error(`\n${signal}: removing the servers, daemons, etcd, sandboxes and namespaces`);
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

interface Server {
  child: ChildProcess;
  output(): string;
}

/** A long-lived process in a namespace (nsenter execs it), killed by cleanup. Resolves once it printed `marker`. */
async function serve(netnsPath: string, marker: string, command: string, args: readonly string[]): Promise<Server> {
  const child = spawn('nsenter', [`--net=${netnsPath}`, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const keep = (chunk: Buffer) => void (output = (output + chunk.toString()).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (err) => keep(Buffer.from(String(err))));
  const deadline = Date.now() + 15_000;
  while (!output.includes(marker)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${command} exited: ${output.slice(-300)}`);
    if (Date.now() > deadline) throw new Error(`${command} did not start: ${output.slice(-300)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
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

// ---- the machine ----------------------------------------------------------------------------

/** Busy and total jiffies of all CPUs, from /proc/stat. */
async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** The client's TCP counters that tell a slow path from connections that had to try again. */
async function tcpCounters(sandboxName: string): Promise<{ synRetrans: number }> {
  const result = await runIn(nsPath(sandboxName), 'cat', ['/proc/net/netstat'], 10_000);
  const lines = result.stdout.split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = (lines[i] ?? '').split(/\s+/);
    const values = (lines[i + 1] ?? '').split(/\s+/);
    if (names[0] !== 'TcpExt:') continue;
    return { synRetrans: Number(values[names.indexOf('TCPSynRetrans')] ?? NaN) };
  }
  return { synRetrans: NaN };
}

const loadavgText = async () => (await readFile('/proc/loadavg', 'utf8')).trim();

// ---- the figures ----------------------------------------------------------------------------

interface CpsSample {
  connectionsPerSecond: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Connections each task served during the run, from its /count. */
  perTask: number[];
  /** SYNs the client sent again (TcpExtTCPSynRetrans): each one a connection that waited a second or more. */
  synRetransmits: number;
  /** Share of both CPUs busy during the run. */
  machineBusy: number;
}

interface IperfSample {
  gbps: number;
  retransmits: number | null;
  machineBusy: number;
}

/** A wrk script: thread i connects to addresses[i mod n]; every request asks to close; done() prints JSON. */
function wrkScript(addresses: readonly string[]): string {
  return `local addrs = { ${addresses.map((a) => `"${a}"`).join(', ')} }
local n = 0
function setup(thread)
  n = n + 1
  thread.addr = wrk.lookup(addrs[(n - 1) % #addrs + 1], "${HTTP_PORT}")[1]
end
wrk.headers["Connection"] = "close"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;
}

async function httpGet(clientNs: string, address: string, path = '/'): Promise<string> {
  const result = await runIn(clientNs, 'curl', ['-sS', '--max-time', '3', `http://${address}:${HTTP_PORT}${path}`], 10_000);
  if (result.code !== 0) throw new Error(`curl http://${address}:${HTTP_PORT}${path}: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

interface Setup {
  kind: Kind;
  network: string;
  subnet: string;
  /** One client sandbox per path, same host, same network, same rules: see the header. */
  clients: Record<Path, string>;
  web: { vip: string; tasks: { name: string; address: string }[] };
  solo: { vip: string; task: { name: string; address: string } };
  /** wrk scripts of the 1-task figure, by path. */
  scripts: Record<Path, string>;
}

async function taskCounts(setup: Setup, target: Target): Promise<number[]> {
  const counts: number[] = [];
  for (const task of target === 'web' ? setup.web.tasks : [setup.solo.task]) counts.push(Number(await httpGet(nsPath(setup.clients.direct), task.address, '/count')));
  return counts;
}

/**
 * One connections/s sample. The 1-task figure runs wrk. The 3-task one runs
 * bench/conn-client.c, which hands each new connection to the next address
 * of its list as the VIP hands it to the next task: one address (the VIP)
 * or the 3 tasks', so both sides spread the load alike and only the path
 * differs (a wrk thread has one address).
 */
async function measureCps(setup: Setup, target: Target, path: Path, duration: number): Promise<CpsSample> {
  const before = await taskCounts(setup, target);
  const cpuBefore = await cpuTimes();
  const first = path === 'vip' ? setup[target].vip : target === 'web' ? (setup.web.tasks[0]?.address ?? '') : setup.solo.task.address;
  const tcpBefore = await tcpCounters(setup.clients[path]);
  const [command, args] =
    target === 'web'
      ? [connClient, [String(HTTP_PORT), String(duration), String(connections), String(WRK_THREADS), ...(path === 'vip' ? [setup.web.vip] : setup.web.tasks.map((t) => t.address))]]
      : ['wrk', ['-t', String(WRK_THREADS), '-c', String(connections), '-d', `${duration}s`, '--timeout', '2s', '-s', setup.scripts[path], `http://${first}:${HTTP_PORT}/`]];
  const result = await runIn(nsPath(setup.clients[path]), command, args, (duration + 30) * 1000);
  const cpuAfter = await cpuTimes();
  const line = result.stdout.split('\n').find((l) => l.startsWith('{"requests"'));
  if (result.code !== 0 || line === undefined) throw new Error(`${command} ${path}: exit ${result.code}: ${(result.stderr || result.stdout).trim().slice(0, 400)}`);
  const parsed = JSON.parse(line) as { requests: number; durationUs: number; errors?: number; connect?: number; read?: number; write?: number; status?: number; timeout?: number; p50Us: number; p99Us: number };
  const after = await taskCounts(setup, target);
  const tcpAfter = await tcpCounters(setup.clients[path]);
  return {
    connectionsPerSecond: parsed.requests / (parsed.durationUs / 1e6),
    requests: parsed.requests,
    // conn-client counts every failure as one; wrk tells them apart.
    errors: { connect: parsed.connect ?? parsed.errors ?? 0, read: parsed.read ?? 0, write: parsed.write ?? 0, status: parsed.status ?? 0, timeout: parsed.timeout ?? 0 },
    latencyP50Ms: parsed.p50Us / 1000,
    latencyP99Ms: parsed.p99Us / 1000,
    perTask: after.map((count, i) => count - (before[i] ?? 0)),
    synRetransmits: tcpAfter.synRetrans - tcpBefore.synRetrans,
    machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
  };
}

async function measureIperf(setup: Setup, path: Path, duration: number): Promise<IperfSample> {
  const target = path === 'vip' ? setup.solo.vip : setup.solo.task.address;
  const cpuBefore = await cpuTimes();
  const result = await runIn(
    nsPath(setup.clients[path]),
    'iperf3',
    ['-c', target, '-p', String(IPERF_PORT), '-t', String(duration), '-O', '1', '--connect-timeout', '5000', '-J'],
    (duration + 30) * 1000,
  );
  const cpuAfter = await cpuTimes();
  let parsed: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    parsed = JSON.parse(result.stdout) as typeof parsed;
  } catch {
    throw new Error(`iperf3 ${path}: ${(result.stderr || result.stdout).trim().slice(0, 300) || `exit ${result.code}`}`);
  }
  if (parsed.error !== undefined) throw new Error(`iperf3 ${path}: ${parsed.error}`);
  const received = parsed.end?.sum_received?.bits_per_second;
  if (received === undefined) throw new Error(`iperf3 ${path}: no sum_received`);
  return {
    gbps: received / 1e9,
    retransmits: parsed.end?.sum_sent?.retransmits ?? null,
    machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
  };
}

// ---- setting a network up -------------------------------------------------------------------

const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';

async function sandbox(cluster: Cluster, host: SimHost, network: string, base: string, service?: string): Promise<{ name: string; address: string }> {
  const name = cluster.sandboxName(base);
  await cluster.ok(host, 'sandbox', 'create', name);
  await cluster.ok(host, 'network', 'connect', ...(service !== undefined ? ['--service', service] : []), network, name);
  const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
  const address = ipOf((await cluster.ok(host, 'network', 'inspect', '-f', template, network)).trim());
  if (address === '') throw new Error(`no address for ${name} on ${network}`);
  return { name, address };
}

/** Waits until the client's chain for `vip` DNATs to every one of `tasks` (a remote task is there once its host's VTEP is known). */
async function waitForBalancing(client: string, vip: string, tasks: readonly string[]): Promise<void> {
  const chain = `vip_${vip.replaceAll('.', '_')}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const listed = await runIn(nsPath(client), NFT, ['list', 'chain', 'ip', 'netctl_services', chain], 10_000);
    if (listed.code === 0 && tasks.every((task) => new RegExp(`\\b${task.replaceAll('.', '\\.')}\\b`).test(listed.stdout))) return;
    if (Date.now() > deadline) throw new Error(`the client's chain ${chain} does not balance to ${tasks.join(', ')} after 30 s:\n${listed.stdout}${listed.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Polls until `probe` succeeds (the overlay's first packets to a new peer can take a moment). */
async function eventually<T>(what: string, probe: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** bench/conn-client.c compiled into `dir`: the client of the 3-task figure. */
async function buildConnClient(dir: string): Promise<string> {
  const binary = join(dir, 'conn-client');
  const built = await run('cc', ['-O2', '-Wall', '-pthread', '-o', binary, join(here, 'conn-client.c')], { timeoutMs: 60_000 });
  if (built.code !== 0) throw new Error(`cc bench/conn-client.c: ${built.stderr}`);
  return binary;
}

/** The command that runs a task's HTTP server: the C one compiled into `dir`, or the Node one. */
async function httpServerCommand(dir: string): Promise<(port: number, name: string) => [string, string[]]> {
  if (serverKind === 'node') {
    const tsx = import.meta.resolve('tsx');
    return (port, name) => [process.execPath, ['--import', tsx, join(here, 'http-task.ts'), String(port), name]];
  }
  const binary = join(dir, 'http-task');
  const built = await run('cc', ['-O2', '-Wall', '-o', binary, join(here, 'http-task.c')], { timeoutMs: 60_000 });
  if (built.code !== 0) throw new Error(`cc bench/http-task.c: ${built.stderr}`);
  return (port, name) => [binary, [String(port), name]];
}

async function setUp(cluster: Cluster, kind: Kind, dir: string, httpServer: (port: number, name: string) => [string, string[]]): Promise<Setup> {
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  const taskHost = kind === 'overlay' ? h2 : h1;
  const network = kind === 'overlay' ? 'bench-ov' : 'bench-br';
  const subnet = kind === 'overlay' ? '10.91.0.0/24' : '10.92.0.0/24';
  const tag = kind === 'overlay' ? 'ov' : 'br';
  await cluster.ok(h1, 'network', 'create', ...(kind === 'overlay' ? ['-d', 'overlay'] : []), '--subnet', subnet, network);
  const vipOf = async (service: string) => {
    await cluster.ok(h1, 'service', 'create', '--network', network, service);
    return ipOf((await cluster.ok(h1, 'service', 'inspect', '-f', '{{(index .Endpoint.VirtualIPs 0).Addr}}', service)).trim());
  };
  const webVip = await vipOf(`web-${tag}`);
  const soloVip = await vipOf(`solo-${tag}`);
  const clients: Record<Path, string> = { vip: (await sandbox(cluster, h1, network, `cv${tag}`)).name, direct: (await sandbox(cluster, h1, network, `cd${tag}`)).name };
  const tasks: { name: string; address: string }[] = [];
  for (let i = 1; i <= TASKS; i++) tasks.push(await sandbox(cluster, taskHost, network, `w${tag}${i}`, `web-${tag}`));
  const solo = await sandbox(cluster, taskHost, network, `s${tag}`, `solo-${tag}`);

  for (const [i, task] of tasks.entries()) await serve(nsPath(task.name), 'ready', ...httpServer(HTTP_PORT, `task${i + 1}`));
  await serve(nsPath(solo.name), 'ready', ...httpServer(HTTP_PORT, 'solo'));
  await serve(nsPath(solo.name), 'Server listening', 'iperf3', ['-s', '-p', String(IPERF_PORT), '--forceflush']);

  for (const client of Object.values(clients)) {
    await waitForBalancing(client, webVip, tasks.map((t) => t.address));
    await waitForBalancing(client, soloVip, [solo.address]);
    await eventually(`task ${solo.address} from ${client}`, () => httpGet(nsPath(client), solo.address));
    for (const [i, task] of tasks.entries()) {
      const body = await eventually(`task ${task.address} from ${client}`, () => httpGet(nsPath(client), task.address));
      if (body !== `task${i + 1}`) throw new Error(`task ${task.address} answered ${body}`);
    }
    // Round robin: 2 × TASKS connections in a row to the VIP reach every task.
    const seen = new Set<string>();
    for (let i = 0; i < TASKS * 2; i++) seen.add(await eventually(`the VIP ${webVip} from ${client}`, () => httpGet(nsPath(client), webVip)));
    if (seen.size !== TASKS) throw new Error(`${TASKS * 2} requests to the VIP ${webVip} reached only ${[...seen].join(', ')}`);
  }

  const scripts: Record<Path, string> = { vip: join(dir, `${tag}-solo-vip.lua`), direct: join(dir, `${tag}-solo-direct.lua`) };
  const threads = (address: string) => Array.from({ length: WRK_THREADS }, () => address);
  await writeFile(scripts.vip, wrkScript(threads(soloVip)));
  await writeFile(scripts.direct, wrkScript(threads(solo.address)));
  return {
    kind,
    network,
    subnet,
    clients,
    web: { vip: webVip, tasks },
    solo: { vip: soloVip, task: solo },
    scripts,
  };
}

// ---- the run --------------------------------------------------------------------------------

interface Pair<T> {
  run: number;
  first: Path;
  vip: T;
  direct: T;
  /** VIP / direct. */
  ratio: number;
}

interface Summary {
  vip: Spread | undefined;
  direct: Spread | undefined;
  ratio: Spread | undefined;
}

interface KindResult {
  kind: Kind;
  setup: { network: string; subnet: string; clients: Record<Path, string>; clientHost: number; taskHost: number; webVip: string; webTasks: string[]; soloVip: string; soloTask: string };
  /** Connections per second to web (3 tasks) and to solo (1 task). */
  cps: Record<Target, Pair<CpsSample>[]>;
  iperf: Pair<IperfSample>[];
  failures: string[];
  summary: {
    cps3Tasks: Summary;
    cps1Task: Summary;
    tcp1Gbps: Summary;
  };
  /** The VIP client's conntrack table at the end, and its ruleset (the direct client's is the same). */
  conntrack: { clientEntriesAtEnd: number | null; clientStats: string };
  clientRuleset: string;
}

async function inPairs<T>(label: string, measure: (path: Path) => Promise<T>, value: (sample: T) => number, failures: string[], show: (sample: T) => string): Promise<Pair<T>[]> {
  const pairs: Pair<T>[] = [];
  for (let run = 0; run < runs; run++) {
    const order: Path[] = run % 2 === 0 ? ['vip', 'direct'] : ['direct', 'vip'];
    const taken: Partial<Record<Path, T>> = {};
    try {
      for (const path of order) {
        taken[path] = await measure(path);
        console.log(`  ${label} run ${run + 1} ${path.padEnd(6)} ${show(taken[path] as T)}`);
      }
    } catch (err) {
      if (cleaning !== undefined) throw err;
      failures.push(`${label} run ${run + 1}: ${err instanceof Error ? err.message : String(err)}`);
      console.log(`  ${label} run ${run + 1} failed: ${failures.at(-1)}`);
      continue;
    }
    const vip = taken.vip as T;
    const direct = taken.direct as T;
    pairs.push({ run: run + 1, first: order[0] as Path, vip, direct, ratio: value(vip) / value(direct) });
  }
  return pairs;
}

async function benchKind(cluster: Cluster, kind: Kind, dir: string, httpServer: (port: number, name: string) => [string, string[]]): Promise<KindResult> {
  console.log(`\n${kind}: setting up`);
  const setup = await setUp(cluster, kind, dir, httpServer);
  console.log(`${kind}: clients ${setup.clients.vip} (VIP), ${setup.clients.direct} (direct); web VIP ${setup.web.vip} → ${setup.web.tasks.map((t) => t.address).join(', ')}; solo VIP ${setup.solo.vip} → ${setup.solo.task.address}`);
  const failures: string[] = [];
  // Each figure starts with a warm-up of both paths, not counted: the first connections through a fresh path (ARP, peer lookups).
  const showCps = (s: CpsSample) => {
    const errors = Object.entries(s.errors).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
    return `${s.connectionsPerSecond.toFixed(0)}/s, p50 ${s.latencyP50Ms.toFixed(2)} ms, p99 ${s.latencyP99Ms.toFixed(2)} ms, per task ${s.perTask.join('/')}, ${s.synRetransmits} SYN retransmits, CPU ${(s.machineBusy * 100).toFixed(0)} %${errors.length > 0 ? `, errors: ${errors.join(', ')}` : ''}`;
  };
  const cps = {} as Record<Target, Pair<CpsSample>[]>;
  for (const target of ['web', 'solo'] as const) {
    for (const path of ['vip', 'direct'] as const) await measureCps(setup, target, path, 2);
    cps[target] = await inPairs(
      `connections/s ${target === 'web' ? '3 tasks' : '1 task '}`,
      (path) => measureCps(setup, target, path, seconds),
      (s) => s.connectionsPerSecond,
      failures,
      showCps,
    );
  }
  const iperf = await inPairs(
    'TCP 1 stream',
    (path) => measureIperf(setup, path, seconds),
    (s) => s.gbps,
    failures,
    (s) => `${s.gbps.toFixed(2)} Gbit/s, ${s.retransmits ?? '?'} retransmits, CPU ${(s.machineBusy * 100).toFixed(0)} %`,
  );
  const clientNs = nsPath(setup.clients.vip);
  const count = await runIn(clientNs, 'conntrack', ['-C'], 10_000);
  const stats = await runIn(clientNs, 'conntrack', ['-S'], 10_000);
  const ruleset = await runIn(clientNs, NFT, ['list', 'ruleset'], 10_000);
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  return {
    kind,
    setup: {
      network: setup.network,
      subnet: setup.subnet,
      clients: setup.clients,
      clientHost: h1.index,
      taskHost: (kind === 'overlay' ? h2 : h1).index,
      webVip: setup.web.vip,
      webTasks: setup.web.tasks.map((t) => t.address),
      soloVip: setup.solo.vip,
      soloTask: setup.solo.task.address,
    },
    cps,
    iperf,
    failures,
    summary: {
      cps3Tasks: { vip: spread(cps.web.map((p) => p.vip.connectionsPerSecond)), direct: spread(cps.web.map((p) => p.direct.connectionsPerSecond)), ratio: spread(cps.web.map((p) => p.ratio)) },
      cps1Task: { vip: spread(cps.solo.map((p) => p.vip.connectionsPerSecond)), direct: spread(cps.solo.map((p) => p.direct.connectionsPerSecond)), ratio: spread(cps.solo.map((p) => p.ratio)) },
      tcp1Gbps: { vip: spread(iperf.map((p) => p.vip.gbps)), direct: spread(iperf.map((p) => p.direct.gbps)), ratio: spread(iperf.map((p) => p.ratio)) },
    },
    conntrack: { clientEntriesAtEnd: count.code === 0 ? Number(count.stdout.trim()) : null, clientStats: stats.stdout.trim() },
    clientRuleset: ruleset.stdout,
  };
}

function digits(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

const cell = (s: Spread | undefined) => (s === undefined ? '–' : s.n === 1 ? digits(s.median) : `${digits(s.median)} (${digits(s.min)}–${digits(s.max)})`);
const pct = (s: Spread | undefined) =>
  s === undefined ? '–' : s.n === 1 ? `${(s.median * 100).toFixed(1)} %` : `${(s.median * 100).toFixed(1)} % (${(s.min * 100).toFixed(1)}–${(s.max * 100).toFixed(1)})`;
const verdict = (s: Spread | undefined) => (s === undefined ? '–' : 1 - s.median < TARGET ? `yes (costs ${((1 - s.median) * 100).toFixed(1)} %)` : `**no** (costs ${((1 - s.median) * 100).toFixed(1)} %)`);

function markdown(results: readonly KindResult[], heading: string, notes: readonly string[]): string {
  const lines = [
    heading,
    '',
    '| network | figure | through the VIP | straight to the task(s) | VIP / direct, per pair | VIP costs < 10 % |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const where = r.kind === 'overlay' ? 'overlay, 2 hosts' : 'bridge, 1 host';
    lines.push(`| ${where} | connections/s, 1 task | ${cell(r.summary.cps1Task.vip)} | ${cell(r.summary.cps1Task.direct)} | ${pct(r.summary.cps1Task.ratio)} | ${verdict(r.summary.cps1Task.ratio)} |`);
    lines.push(`| ${where} | connections/s, 3 tasks | ${cell(r.summary.cps3Tasks.vip)} | ${cell(r.summary.cps3Tasks.direct)} | ${pct(r.summary.cps3Tasks.ratio)} | ${verdict(r.summary.cps3Tasks.ratio)} |`);
    lines.push(`| ${where} | TCP 1 stream Gbit/s | ${cell(r.summary.tcp1Gbps.vip)} | ${cell(r.summary.tcp1Gbps.direct)} | ${pct(r.summary.tcp1Gbps.ratio)} | ${verdict(r.summary.tcp1Gbps.ratio)} |`);
  }
  lines.push('', ...notes.map((note) => `- ${note}`));
  const failed = results.filter((r) => r.failures.length > 0);
  if (failed.length > 0) {
    lines.push('', 'Runs that failed:');
    for (const r of failed) for (const failure of r.failures) lines.push(`- ${r.kind}: ${failure.replaceAll('\n', ' ').slice(0, 300)}`);
  }
  return `${lines.join('\n')}\n`;
}

const loadBefore = await loadavgText();
console.log(`load average before: ${loadBefore}`);
const results: KindResult[] = [];
try {
  work = await mkdtemp(join(tmpdir(), 'netctl-bench-services-'));
  making = makeCluster(2, { daemonArgs: ['--log-level', 'warn'] });
  const cluster = await making;
  for (const host of cluster.hosts) {
    // As bench/testbed.ts does: with br_netfilter loaded, the bridge's frames would walk the host's IP hooks and conntrack too.
    const off = await run('nsenter', [`--net=${host.netnsPath}`, 'sh', '-c', 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ ! -e "$f" ] || echo 0 > "$f"; done']);
    if (off.code !== 0) throw new Error(`bridge-nf-call in host${host.index}: ${off.stderr}`);
    await cluster.startDaemon(host);
  }
  const httpServer = await httpServerCommand(work);
  connClient = await buildConnClient(work);
  for (const kind of kinds) results.push(await benchKind(cluster, kind, work, httpServer));

  const loadAfter = await loadavgText();
  const date = new Date().toISOString();
  const commit = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version, loadavgBefore: loadBefore, loadavgAfter: loadAfter };
  const options = { runs, seconds, connections, wrkThreads: WRK_THREADS, tasks: TASKS, server: serverKind };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'services.json'), `${JSON.stringify({ date, commit, machine, options, results }, null, 2)}\n`);
  const notes = [
    `connections/s: wrk -t ${WRK_THREADS} -c ${connections} -d ${seconds}s, one request per connection (\`Connection: close\`, the server closes first), the tasks running ${serverKind === 'c' ? 'bench/http-task.c (one thread, epoll)' : 'bench/http-task.ts (Node)'}.`,
    '1 task: every wrk thread to a one-task service\'s VIP, or to that task: the same work but for the VIP lookup and the DNAT, so this row prices the VIP.',
    `3 tasks: bench/conn-client.c, ${WRK_THREADS} threads, ${connections} connections, the same requests: to the VIP, or to the 3 tasks' addresses in turn (each new connection to the next, as the VIP hands them out), so both sides spread the load alike.`,
    `TCP 1 stream: iperf3 -t ${seconds} -O 1 to the one-task service (through its VIP, and straight to its address).`,
    'overlay: the clients on host 1, the tasks on host 2 (both user-space VTEPs on the path); bridge: clients and tasks on host 1\'s bridge network, bridge netfilter off in the simulated hosts.',
    'Two client sandboxes alike but for their address, one for the VIP and one for direct, so neither case meets the other\'s TIME_WAITs in the tasks (see the header of bench/services.ts).',
    `${runs} pairs per figure, VIP and direct back to back, the order swapped every pair; median (min–max); the ratio is taken within each pair.`,
    'The direct client passes its netctl_services table too (its nat and filter hooks are there for every destination, so conntrack and a null NAT binding run either way): what the ratio prices is the VIP match and the DNAT.',
    `${machine.nproc} CPUs (${machine.cpu}), Linux ${machine.kernel}, Node ${machine.node}; load average before: ${loadBefore}; after: ${loadAfter}. Commit ${commit}.`,
  ];
  const table = markdown(results, `Service VIP against direct, ${date}`, notes);
  await writeFile(join(root, 'bench', 'results', 'services.md'), table);
  console.log(`\n${table}`);
} finally {
  await cleanup();
}
