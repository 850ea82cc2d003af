/**
 * The control plane of a cluster at scale: three simulated hosts on one etcd
 * (test/helpers/cluster.ts), each with its `netctl daemon` (of this
 * checkout, or of another one with --netctl, so one script measures both
 * sides of a change), and one overlay network grown through the API to
 * --endpoints endpoints, a sandbox each, spread round robin over the hosts,
 * CONCURRENCY operations at a time. Measures:
 * - connect latency over all connects, and over the first and the last
 *   EDGE connects, to show how it grows with the network;
 * - remote join → ping, --trials times: a sandbox on one host is created and
 *   connected (with an address chosen up front), then a sandbox of another
 *   host pings that address every 10 ms; the time from connect returning
 *   (and from connect starting) to the first reply;
 * - etcd: database size and size in use, revision, key count and live bytes
 *   (keys plus values) at full size, after churn (--churn endpoints
 *   disconnected and connected again, in --churn-rounds rounds), and after
 *   a compaction to the current revision done with etcdctl (then a mark
 *   key written and deleted twice, so etcd commits and counts the freed
 *   pages). The daemon's own compactor does the same one interval (5
 *   minutes, no flag changes it) after the churn; the code at abb8d69 has
 *   no compactor;
 * - each daemon's CPU seconds and RSS after the growth and at the end, and
 *   etcd's.
 * Prints a table and writes bench/results/scale-cluster-LABEL.json.
 *
 *   npm run bench:scale-cluster [-- --endpoints 300 --netctl ../other/bin/netctl.js --label after]
 *   (bin/netctl.js runs the compiled dist/: build the other checkout first, `npm run build` there)
 *
 * Everything made (the underlay, host and sandbox namespaces, etcd, the
 * daemons, their state directories) is removed at the end, on failure and on
 * SIGINT/SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { type Cluster, makeCluster, type SimHost } from '../test/helpers/cluster.js';
import { NETCTL_CLI } from '../test/helpers/daemon.js';
import { inNetns, run } from '../test/helpers/kernel.js';
import { type Quantiles, cpuSeconds, cpuSecondsOf, quantiles } from './measure.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const HOSTS = 3;
/** Operations in flight at once while growing and churning. */
const CONCURRENCY = 4;
/** Connects in each of the first and last groups. */
const EDGE = 30;
const SUBNET = '10.90.0.0/16';
/** Remote-join sandboxes take addresses from here, far above what the growth is handed (lowest free first). */
const TRIAL_ADDRESS_BASE = '10.90.250.';
const PING_INTERVAL_S = 0.01;
const PING_DEADLINE_S = 10;
/** Written and deleted after the compaction, outside netctl's keys, so etcd commits and counts the freed pages. */
const MARK_KEY = 'bench-scale-cluster-mark';

const { values } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '300' },
    trials: { type: 'string', default: '10' },
    churn: { type: 'string', default: '300' },
    'churn-rounds': { type: 'string', default: '2' },
    netctl: { type: 'string', default: NETCTL_CLI },
    label: { type: 'string', default: 'run' },
  },
});
const endpoints = Number(values.endpoints);
const trials = Number(values.trials);
const churn = Number(values.churn);
const churnRounds = Number(values['churn-rounds']);
if (![endpoints, trials, churn, churnRounds].every(Number.isInteger) || endpoints < HOSTS * 2 || endpoints > 60_000 || trials < 1 || trials > 250 || churn < 0 || churnRounds < 1) {
  console.error('--endpoints takes an integer from 6 to 60000, --trials 1 to 250, --churn 0 or more, --churn-rounds 1 or more');
  process.exit(2);
}
const netctl = resolve(values.netctl ?? NETCTL_CLI);
const checkout = dirname(dirname(netctl));
const label = values.label ?? 'run';
if (!/^[\w.-]+$/.test(label)) {
  console.error('--label takes letters, digits, ".", "-" and "_"');
  process.exit(2);
}

interface EtcdFigures {
  revision: number;
  dbSize: number;
  dbSizeInUse: number;
  keys: number;
  /** Bytes of every key and value at the current revision. */
  liveBytes: number;
  /** Keys by their first two path segments, the largest groups first. */
  keysByPrefix: Record<string, number>;
}

interface Member {
  sandbox: string;
  host: SimHost;
  connectMs: number;
}

interface Trial {
  from: string;
  to: string;
  address: string;
  connectMs: number;
  /** First reply after connect returned, and after it was called; null when none came within PING_DEADLINE_S. */
  afterConnectMs: number | null;
  fromConnectStartMs: number | null;
}

let making: Promise<Cluster> | undefined;
const pings = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const ping of pings) ping.kill('SIGKILL');
    const cluster = await making?.catch(() => undefined);
    await cluster?.destroy();
  })();
  return cleaning;
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: removing the daemons, etcd, the sandboxes and namespaces`);
    void cleanup().finally(() => process.exit(code));
  });
}

/** Runs `work` on every item, `width` at a time, in order of the items. */
async function pool<T>(items: readonly T[], width: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < items.length; i = next++) await work(items[i] as T, i);
    }),
  );
}

async function timed(operation: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await operation();
  return performance.now() - start;
}

async function rssMiB(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

async function etcdctl(cluster: Cluster, args: readonly string[]): Promise<string> {
  const endpoint = cluster.etcdUrl.replace(/^etcd:/, 'http:');
  const result = await inNetns(cluster.underlayNsPath, 'etcdctl', [`--endpoints=${endpoint}`, '--command-timeout=60s', ...args], { timeoutMs: 90_000 });
  if (result.code !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function etcdFigures(cluster: Cluster): Promise<EtcdFigures> {
  const [status] = JSON.parse(await etcdctl(cluster, ['endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number }; dbSize: number; dbSizeInUse: number } }[];
  if (status === undefined) throw new Error('etcdctl endpoint status: no member');
  const all = JSON.parse(await etcdctl(cluster, ['get', '--from-key', '', '-w', 'json'])) as { kvs?: { key: string; value?: string }[] };
  const kvs = all.kvs ?? [];
  const byPrefix = new Map<string, number>();
  let liveBytes = 0;
  for (const kv of kvs) {
    const key = Buffer.from(kv.key, 'base64').toString('latin1');
    liveBytes += key.length + Buffer.from(kv.value ?? '', 'base64').length;
    const group = key.split('/').filter((part) => part !== '').slice(0, 2).join('/');
    byPrefix.set(group, (byPrefix.get(group) ?? 0) + 1);
  }
  return {
    revision: status.Status.header.revision,
    dbSize: status.Status.dbSize,
    dbSizeInUse: status.Status.dbSizeInUse,
    keys: kvs.length,
    liveBytes,
    keysByPrefix: Object.fromEntries([...byPrefix].sort((a, b) => b[1] - a[1])),
  };
}

/** True when etcd's history no longer reaches revision 2: someone compacted it. */
async function etcdCompacted(cluster: Cluster): Promise<boolean> {
  const endpoint = cluster.etcdUrl.replace(/^etcd:/, 'http:');
  const result = await inNetns(cluster.underlayNsPath, 'etcdctl', [`--endpoints=${endpoint}`, 'get', '--from-key', '', '--rev=2', '--count-only']);
  return result.code !== 0 && /compacted/.test(result.stderr);
}

/** etcd's PID, from the socket listening on its client port in the underlay. */
async function etcdPid(cluster: Cluster): Promise<number | undefined> {
  const result = await inNetns(cluster.underlayNsPath, 'ss', ['-ltnpH', `sport = :${cluster.etcdPort}`]);
  const pid = /pid=(\d+)/.exec(result.stdout)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

/**
 * Pings `address` from the sandbox `from` every PING_INTERVAL_S until the
 * first reply; resolves with the wall-clock time of that reply (ping -D) in
 * ms, or null when none came within PING_DEADLINE_S.
 */
function firstReply(from: string, address: string): Promise<number | null> {
  const child = spawn('nsenter', [`--net=/var/run/netns/${from}`, 'ping', '-D', '-n', '-c', '1', '-i', String(PING_INTERVAL_S), '-w', String(PING_DEADLINE_S), address], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  pings.add(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) =>
    child.once('exit', () => {
      pings.delete(child);
      const seconds = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(output)?.[1];
      resolve(seconds === undefined ? null : Number(seconds) * 1000);
    }),
  );
}

function gitCommit(dir: string): Promise<string> {
  return (async () => {
    const commit = (await run('git', ['-C', dir, 'log', '-1', '--format=%h %s'])).stdout.trim();
    const dirty = (await run('git', ['-C', dir, 'status', '--porcelain', '--', 'src', 'bin', 'native'])).stdout.trim();
    return dirty === '' ? commit : `${commit} (with uncommitted changes in src, bin or native)`;
  })();
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  const commit = await gitCommit(checkout);
  // Daemons from before 'netctl daemon ready' existed only ever say they are listening.
  const saysReady = (await readFile(join(checkout, 'src', 'cli', 'daemon.ts'), 'utf8').catch(() => '')).includes('netctl daemon ready');
  making = makeCluster(HOSTS, { cli: netctl, daemonArgs: ['--log-level', 'warn'], daemonUntil: saysReady ? 'ready' : 'listening' });
  const cluster = await making;
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  const apis = new Map(cluster.hosts.map((host) => [host, new ApiClient(`unix://${host.socket}`)]));
  const api = (host: SimHost) => apis.get(host) as ApiClient;
  const hosts = cluster.hosts;
  const [first] = hosts;
  if (first === undefined) throw new Error('no hosts');
  console.log(`netctl ${netctl} (${commit}), ${HOSTS} hosts on etcd, ${endpoints} endpoints, label ${label}`);

  const network = 'scale';
  await api(first).createNetwork({ Name: network, Driver: 'overlay', IPAM: { Config: [{ Subnet: SUBNET }] } });
  for (const host of hosts) {
    const deadline = Date.now() + 10_000;
    while ((await api(host).listNetworks({ name: [network] })).length === 0) {
      if (Date.now() > deadline) throw new Error(`host${host.index} does not see network ${network}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // 1. Growth, round robin over the hosts.
  const growStart = performance.now();
  const members: Member[] = Array.from({ length: endpoints }, (_, i) => ({ sandbox: cluster.sandboxName('s'), host: hosts[i % HOSTS] as SimHost, connectMs: NaN }));
  let done = 0;
  await pool(members, CONCURRENCY, async (member) => {
    await api(member.host).createSandbox({ Name: member.sandbox });
    member.connectMs = await timed(() => api(member.host).connect(network, member.sandbox));
    if (++done % 50 === 0) console.log(`  ${done} endpoints (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  });
  const growSeconds = (performance.now() - growStart) / 1000;
  const connects = members.map((m) => m.connectMs);
  const connectMs = { all: quantiles(connects), first: quantiles(connects.slice(0, EDGE)), last: quantiles(connects.slice(-EDGE)) };
  const cpuAfterGrow = await Promise.all(hosts.map((host) => cpuSeconds(host.daemon?.process as ChildProcess)));
  console.log(`grown in ${growSeconds.toFixed(0)} s: connect p50 ${connectMs.all.p50.toFixed(1)} ms, p95 ${connectMs.all.p95.toFixed(1)} ms`);
  const etcdAtSize = await etcdFigures(cluster);

  // 2. Remote join → ping.
  const joins: Trial[] = [];
  for (let t = 0; t < trials; t++) {
    const joining = hosts[t % HOSTS] as SimHost;
    const pinging = hosts[(t + 1) % HOSTS] as SimHost;
    const pinger = members.find((m) => m.host === pinging)?.sandbox ?? '';
    const sandbox = cluster.sandboxName('j');
    const address = `${TRIAL_ADDRESS_BASE}${t + 1}`;
    await api(joining).createSandbox({ Name: sandbox });
    const connectStart = Date.now();
    const connectTook = await timed(() => api(joining).connect(network, sandbox, { IPAMConfig: { IPv4Address: address } }));
    const connectEnd = Date.now();
    const reply = await firstReply(pinger, address);
    joins.push({
      from: `host${pinging.index}`,
      to: `host${joining.index}`,
      address,
      connectMs: connectTook,
      afterConnectMs: reply === null ? null : reply - connectEnd,
      fromConnectStartMs: reply === null ? null : reply - connectStart,
    });
    await api(joining).disconnect(network, sandbox);
    await api(joining).removeSandbox(sandbox);
  }
  const replied = joins.filter((j) => j.afterConnectMs !== null);
  const remoteJoin = {
    connectMs: quantiles(joins.map((j) => j.connectMs)),
    afterConnectMs: quantiles(replied.map((j) => j.afterConnectMs ?? NaN)),
    fromConnectStartMs: quantiles(replied.map((j) => j.fromConnectStartMs ?? NaN)),
    unanswered: joins.length - replied.length,
    trials: joins,
  };
  console.log(`remote join → first ping reply: p50 ${remoteJoin.afterConnectMs.p50.toFixed(0)} ms after connect returned, ${remoteJoin.unanswered} unanswered`);

  // 3. Churn: each round a different share of the endpoints leaves and joins again.
  const churnStart = performance.now();
  const disconnects: number[] = [];
  const reconnects: number[] = [];
  const perRound = Math.ceil(churn / churnRounds);
  for (let round = 0, left = churn; round < churnRounds && left > 0; round++) {
    const picks = Array.from({ length: Math.min(perRound, left) }, (_, j) => members[(round + j * churnRounds) % members.length] as Member);
    left -= picks.length;
    await pool(picks, CONCURRENCY, async (member) => {
      disconnects.push(await timed(() => api(member.host).disconnect(network, member.sandbox)));
      reconnects.push(await timed(() => api(member.host).connect(network, member.sandbox)));
    });
  }
  const churnSeconds = (performance.now() - churnStart) / 1000;
  const etcdAfterChurn = await etcdFigures(cluster);
  const compactedByDaemons = await etcdCompacted(cluster);
  await etcdctl(cluster, ['compact', '--physical', String(etcdAfterChurn.revision)]);
  // bbolt counts the pages a compaction freed as free only once a later write commits (etcd commits every 100 ms).
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await etcdctl(cluster, ['put', MARK_KEY, String(i)]);
    await etcdctl(cluster, ['del', MARK_KEY]);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const etcdAfterCompaction = await etcdFigures(cluster);

  // 4. The daemons' and etcd's cost.
  const pid = await etcdPid(cluster);
  const etcdProcess = pid === undefined ? null : { cpuSeconds: await cpuSecondsOf(pid), rssMiB: await rssMiB(pid) };
  const daemons = [];
  for (const [i, host] of hosts.entries()) {
    const child = host.daemon?.process as ChildProcess;
    // What it logged besides saying it listens and is ready: warnings and errors (--log-level warn).
    const logged = (host.daemon?.output() ?? '').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('netctl daemon '));
    daemons.push({
      host: `host${host.index}`,
      cpuSecondsAfterGrow: cpuAfterGrow[i] ?? NaN,
      cpuSecondsAtEnd: await cpuSeconds(child),
      rssMiB: await rssMiB(child.pid),
      logLines: logged.length,
      firstLogLines: logged.slice(0, 5),
    });
  }

  const runSeconds = (performance.now() - started) / 1000;
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg()[0] ?? 0 };
  const report: Report = {
    date: new Date().toISOString(),
    label,
    netctl,
    commit,
    machine,
    settings: { hosts: HOSTS, endpoints, concurrency: CONCURRENCY, edge: EDGE, subnet: SUBNET, trials, pingIntervalS: PING_INTERVAL_S, churn, churnRounds, daemonUntil: saysReady ? 'ready' : 'listening' },
    runSeconds,
    growSeconds,
    connectMs,
    remoteJoin,
    churn: { seconds: churnSeconds, disconnectMs: quantiles(disconnects), reconnectMs: quantiles(reconnects) },
    etcd: { atSize: etcdAtSize, afterChurn: etcdAfterChurn, compactedByDaemonsDuringRun: compactedByDaemons, afterCompaction: etcdAfterCompaction },
    daemons,
    etcdProcess,
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `scale-cluster-${label}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${table(report)}\nwritten to ${file}`);
}

interface Report {
  date: string;
  label: string;
  netctl: string;
  commit: string;
  machine: { nproc: number; cpu: string; node: string; loadAverageAtStart: number; loadAverageAtEnd: number };
  settings: Record<string, string | number>;
  runSeconds: number;
  growSeconds: number;
  connectMs: { all: Quantiles; first: Quantiles; last: Quantiles };
  remoteJoin: { connectMs: Quantiles; afterConnectMs: Quantiles; fromConnectStartMs: Quantiles; unanswered: number; trials: Trial[] };
  churn: { seconds: number; disconnectMs: Quantiles; reconnectMs: Quantiles };
  etcd: { atSize: EtcdFigures; afterChurn: EtcdFigures; compactedByDaemonsDuringRun: boolean; afterCompaction: EtcdFigures };
  daemons: { host: string; cpuSecondsAfterGrow: number; cpuSecondsAtEnd: number; rssMiB: number; logLines: number }[];
  etcdProcess: { cpuSeconds: number; rssMiB: number } | null;
}

function table(report: Report): string {
  const f = (n: number | null, digits = 1) => (n === null || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits));
  const q = (x: Quantiles) => `${f(x.p50)} / ${f(x.p95)} / ${f(x.max)}`;
  const kib = (bytes: number) => f(bytes / 1024, 0);
  const { atSize, afterChurn, afterCompaction } = report.etcd;
  const etcdRow = (name: string, e: EtcdFigures) => `| ${name} | ${e.revision} | ${kib(e.dbSize)} | ${kib(e.dbSizeInUse)} | ${e.keys} | ${kib(e.liveBytes)} |`;
  const { endpoints: size } = report.settings;
  return [
    `Cluster control plane at scale, ${report.label}: ${report.commit} — ${report.machine.nproc} CPUs, load ${f(report.machine.loadAverageAtStart, 2)} → ${f(report.machine.loadAverageAtEnd, 2)}, run ${f(report.runSeconds, 0)} s`,
    '',
    '| figure | p50 / p95 / max ms |',
    '|---|---|',
    `| connect, all ${report.connectMs.all.n} (grown in ${f(report.growSeconds, 0)} s) | ${q(report.connectMs.all)} |`,
    `| connect, first ${report.connectMs.first.n} | ${q(report.connectMs.first)} |`,
    `| connect, last ${report.connectMs.last.n} | ${q(report.connectMs.last)} |`,
    `| remote join: connect | ${q(report.remoteJoin.connectMs)} |`,
    `| remote join: connect returned → first ping reply | ${q(report.remoteJoin.afterConnectMs)} |`,
    `| remote join: connect called → first ping reply | ${q(report.remoteJoin.fromConnectStartMs)} |`,
    `| churn: disconnect (${report.churn.disconnectMs.n}, ${f(report.churn.seconds, 0)} s in all) | ${q(report.churn.disconnectMs)} |`,
    `| churn: connect again | ${q(report.churn.reconnectMs)} |`,
    '',
    '| etcd | revision | db KiB | in use KiB | keys | live KiB |',
    '|---|---|---|---|---|---|',
    etcdRow(`at ${size} endpoints`, atSize),
    etcdRow(`after churn`, afterChurn),
    etcdRow(`after etcdctl compact${report.etcd.compactedByDaemonsDuringRun ? ' (a daemon had compacted before)' : ''}`, afterCompaction),
    '',
    '| process | CPU s after growth | CPU s at end | RSS MiB | log lines (warn and up) |',
    '|---|---|---|---|---|',
    ...report.daemons.map((d) => `| ${d.host} daemon | ${f(d.cpuSecondsAfterGrow)} | ${f(d.cpuSecondsAtEnd)} | ${f(d.rssMiB, 0)} | ${d.logLines} |`),
    `| etcd | | ${f(report.etcdProcess?.cpuSeconds ?? null)} | ${f(report.etcdProcess?.rssMiB ?? null, 0)} | |`,
    '',
    `${report.remoteJoin.unanswered} of ${report.remoteJoin.trials.length} remote joins unanswered within ${PING_DEADLINE_S} s. ` +
      `Operations ran ${CONCURRENCY} at a time, round robin over the hosts; remote join: a sandbox of the next host pings the new address every ${PING_INTERVAL_S * 1000} ms; ` +
      'db and in use: etcd endpoint status dbSize and dbSizeInUse; live: bytes of every key and value; the compaction is to the revision after the churn, as the daemon compactor does one interval later.',
  ].join('\n');
}

if (!existsSync(netctl)) {
  console.error(`no netctl at ${netctl}`);
  process.exit(2);
}
try {
  await main();
} finally {
  await cleanup();
}
