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
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

const here = dirname(fileURLToPath(import.meta.url));
const HTTP_PORT = 8080;
const IPERF_PORT = 5201;
const TASKS = 3;
const WRK_THREADS = 3;
/** The issue's target: the VIP costs less than this share of either figure. */
const TARGET = 0.1;

type Kind = 'overlay' | 'bridge';
type Path = 'vip' | 'direct';
const PATHS = ['vip', 'direct'] as const;
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
requireTools({ wrk: 'wrk', iperf3: 'iperf3', cc: 'gcc' });
cleanUpOnSignals();

/** The compiled bench/conn-client.c, once built. */
let connClient = '';

// ---- the figures ----------------------------------------------------------------------------

/** perTask counts connections: every request has a connection of its own. */
interface CpsSample extends RequestFigures {
  connectionsPerSecond: number;
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
${WRK_REPORT}`;
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
  const first = path === 'vip' ? setup[target].vip : target === 'web' ? (setup.web.tasks[0]?.address ?? '') : setup.solo.task.address;
  const [command, args] =
    target === 'web'
      ? [connClient, [String(HTTP_PORT), String(duration), String(connections), String(WRK_THREADS), ...(path === 'vip' ? [setup.web.vip] : setup.web.tasks.map((t) => t.address))]]
      : ['wrk', ['-t', String(WRK_THREADS), '-c', String(connections), '-d', `${duration}s`, '--timeout', '2s', '-s', setup.scripts[path], `http://${first}:${HTTP_PORT}/`]];
  const { perSecond, ...figures } = await measureRequests({
    netnsPath: nsPath(setup.clients[path]),
    command,
    args,
    duration,
    what: `${command} ${path}`,
    taskCounts: () => taskCounts(setup, target),
  });
  return { connectionsPerSecond: perSecond, ...figures };
}

// ---- setting a network up -------------------------------------------------------------------

const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';

/** Waits until the client's chain for `vip` DNATs to every one of `tasks` (a remote task is there once its host's VTEP is known). */
async function waitForBalancing(client: string, vip: string, tasks: readonly string[]): Promise<void> {
  const chain = `vip_${vip.replaceAll('.', '_')}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const listed = await runIn(nsPath(client), NFT, ['list', 'chain', 'ip', 'netctl_services', chain], 10_000);
    if (listed.code === 0 && tasks.every((task) => new RegExp(`\\b${task.replaceAll('.', '\\.')}\\b`).test(listed.stdout))) return;
    if (Date.now() > deadline) throw new Error(`the client's chain ${chain} does not balance to ${tasks.join(', ')} after 30 s:\n${listed.stdout}${listed.stderr}`);
    await sleep(200);
  }
}

/** The command that runs a task's HTTP server: the C one compiled into `dir`, or the Node one. */
async function httpServerCommand(dir: string): Promise<(port: number, name: string) => [string, string[]]> {
  if (serverKind === 'node') {
    const tsx = import.meta.resolve('tsx');
    return (port, name) => [process.execPath, ['--import', tsx, join(here, 'http-task.ts'), String(port), name]];
  }
  const binary = await compile(dir, 'http-task');
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
  const clients: Record<Path, string> = { vip: (await sandboxOn(cluster, h1, network, `cv${tag}`)).name, direct: (await sandboxOn(cluster, h1, network, `cd${tag}`)).name };
  const tasks: { name: string; address: string }[] = [];
  for (let i = 1; i <= TASKS; i++) tasks.push(await sandboxOn(cluster, taskHost, network, `w${tag}${i}`, { service: `web-${tag}` }));
  const solo = await sandboxOn(cluster, taskHost, network, `s${tag}`, { service: `solo-${tag}` });

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

interface KindResult {
  kind: Kind;
  setup: { network: string; subnet: string; clients: Record<Path, string>; clientHost: number; taskHost: number; webVip: string; webTasks: string[]; soloVip: string; soloTask: string };
  /** Connections per second to web (3 tasks) and to solo (1 task); the ratios VIP / direct. */
  cps: Record<Target, Pair<Path, CpsSample>[]>;
  iperf: Pair<Path, IperfSample>[];
  failures: string[];
  summary: {
    cps3Tasks: PairSummary<Path>;
    cps1Task: PairSummary<Path>;
    tcp1Gbps: PairSummary<Path>;
  };
  /** The VIP client's conntrack table at the end, and its ruleset (the direct client's is the same). */
  conntrack: { clientEntriesAtEnd: number | null; clientStats: string };
  clientRuleset: string;
}

async function benchKind(cluster: Cluster, kind: Kind, dir: string, httpServer: (port: number, name: string) => [string, string[]]): Promise<KindResult> {
  console.log(`\n${kind}: setting up`);
  const setup = await setUp(cluster, kind, dir, httpServer);
  console.log(`${kind}: clients ${setup.clients.vip} (VIP), ${setup.clients.direct} (direct); web VIP ${setup.web.vip} → ${setup.web.tasks.map((t) => t.address).join(', ')}; solo VIP ${setup.solo.vip} → ${setup.solo.task.address}`);
  const failures: string[] = [];
  // Each figure starts with a warm-up of both paths, not counted: the first connections through a fresh path (ARP, peer lookups).
  const cpsOf = (s: CpsSample) => s.connectionsPerSecond;
  const cps = {} as Record<Target, Pair<Path, CpsSample>[]>;
  for (const target of ['web', 'solo'] as const) {
    for (const path of PATHS) await measureCps(setup, target, path, 2);
    cps[target] = await inPairs({
      label: `connections/s ${target === 'web' ? '3 tasks' : '1 task '}`,
      runs,
      ways: PATHS,
      measure: (path) => measureCps(setup, target, path, seconds),
      value: cpsOf,
      describe: (s) => describeRequests(s.connectionsPerSecond, s),
      failures,
    });
  }
  const gbpsOf = (s: IperfSample) => s.gbps;
  const iperf = await inPairs({
    label: 'TCP 1 stream',
    runs,
    ways: PATHS,
    measure: (path) => measureIperf(nsPath(setup.clients[path]), path === 'vip' ? setup.solo.vip : setup.solo.task.address, IPERF_PORT, seconds, path),
    value: gbpsOf,
    describe: describeIperf,
    failures,
  });
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
      cps3Tasks: summarizePairs(cps.web, PATHS, cpsOf),
      cps1Task: summarizePairs(cps.solo, PATHS, cpsOf),
      tcp1Gbps: summarizePairs(iperf, PATHS, gbpsOf),
    },
    conntrack: { clientEntriesAtEnd: count.code === 0 ? Number(count.stdout.trim()) : null, clientStats: stats.stdout.trim() },
    clientRuleset: ruleset.stdout,
  };
}

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

const loadBefore = await loadAverage();
console.log(`load average before: ${loadBefore}`);
const results: KindResult[] = [];
try {
  const work = await makeWorkDir('services');
  const cluster = await startCluster();
  const httpServer = await httpServerCommand(work);
  // The client of the 3-task figure.
  connClient = await compile(work, 'conn-client', ['-pthread']);
  for (const kind of kinds) results.push(await benchKind(cluster, kind, work, httpServer));

  const loadAfter = await loadAverage();
  const date = new Date().toISOString();
  const commit = shortCommit();
  const machine = { ...machineInfo(), loadavgBefore: loadBefore, loadavgAfter: loadAfter };
  const options = { runs, seconds, connections, wrkThreads: WRK_THREADS, tasks: TASKS, server: serverKind };
  const notes = [
    `connections/s: wrk -t ${WRK_THREADS} -c ${connections} -d ${seconds}s, one request per connection (\`Connection: close\`, the server closes first), the tasks running ${serverKind === 'c' ? 'bench/http-task.c (one thread, epoll)' : 'bench/http-task.ts (Node)'}.`,
    '1 task: every wrk thread to a one-task service\'s VIP, or to that task: the same work but for the VIP lookup and the DNAT, so this row prices the VIP.',
    `3 tasks: bench/conn-client.c, ${WRK_THREADS} threads, ${connections} connections, the same requests: to the VIP, or to the 3 tasks' addresses in turn (each new connection to the next, as the VIP hands them out), so both sides spread the load alike.`,
    `TCP 1 stream: iperf3 -t ${seconds} -O 1 to the one-task service (through its VIP, and straight to its address).`,
    'overlay: the clients on host 1, the tasks on host 2 (both user-space VTEPs on the path); bridge: clients and tasks on host 1\'s bridge network, bridge netfilter off in the simulated hosts.',
    'Two client sandboxes alike but for their address, one for the VIP and one for direct, so neither case meets the other\'s TIME_WAITs in the tasks (see the header of bench/services.ts).',
    `${runs} pairs per figure, VIP and direct back to back, the order swapped every pair; median (min–max); the ratio is taken within each pair.`,
    'The direct client passes its netctl_services table too (its nat and filter hooks are there for every destination, so conntrack and a null NAT binding run either way): what the ratio prices is the VIP match and the DNAT.',
    machineNote(machine, loadBefore, loadAfter, commit),
  ];
  const table = markdown(results, `Service VIP against direct, ${date}`, notes);
  await writeResults('services', { date, commit, machine, options, results }, table);
  console.log(`\n${table}`);
} finally {
  await cleanup();
}
