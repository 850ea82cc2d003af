/**
 * What the benchmarks on a simulated netctl cluster (bench/services.ts,
 * bench/ingress.ts) share: the run's cluster, work directory and processes,
 * all removed by `cleanup` (at the end, on failure and on SIGINT/SIGTERM,
 * ending only processes this run started, by their PID); the machine's
 * figures taken around each sample; and the comparison of two ways of
 * taking one figure in alternating pairs. One run per process: the
 * bookkeeping is this module's own, as bench/testbed.ts keeps its testbeds.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Cluster, makeCluster } from '../test/helpers/cluster.js';
import { run } from '../test/helpers/kernel.js';
import { type Spread, spread } from './report.js';
import { waitExit } from './testbed.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
/** By path: npm puts node_modules/.bin first in PATH, where @vercel/nft has a command of the same name. */
export const NFT = '/usr/sbin/nft';

export const nsPath = (sandbox: string) => `/var/run/netns/${sandbox}`;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exits 2 naming the Debian package of the first command not on PATH; `tools` maps each command to its package. */
export function requireTools(tools: Readonly<Record<string, string>>): void {
  for (const [tool, pkg] of Object.entries(tools)) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      console.error(`${tool} is not installed (Debian package ${pkg})`);
      process.exit(2);
    }
  }
}

// ---- everything this run starts, for the cleanup --------------------------------------------

let making: Promise<Cluster> | undefined;
let work: string | undefined;
const children = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;

/** Removes everything the run made; one cleanup however often it is asked for. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    // The processes first: one left in a namespace would keep it alive after `ip netns del`.
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const child of children) await waitExit(child, 3000);
    const cluster = await making?.catch(() => undefined);
    await cluster?.destroy();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  })();
  return cleaning;
}

/** Whether cleanup has begun: a sample failing then is the run ending, not a failed sample. */
const cleaningUp = () => cleaning !== undefined;

/** On SIGINT or SIGTERM: clean up, then exit 130 / 143. */
export function cleanUpOnSignals(): void {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: removing the processes, daemons, etcd, sandboxes and namespaces this run made`);
      void cleanup().finally(() => process.exit(code));
    });
  }
}

/** The run's temporary directory, removed by cleanup. */
export async function makeWorkDir(bench: string): Promise<string> {
  work = await mkdtemp(join(tmpdir(), `netctl-bench-${bench}-`));
  return work;
}

/** Two simulated hosts on one etcd (test/helpers/cluster.ts), a netctl daemon each, destroyed by cleanup. */
export async function startCluster(): Promise<Cluster> {
  making = makeCluster(2, { daemonArgs: ['--log-level', 'warn'] });
  const cluster = await making;
  for (const host of cluster.hosts) {
    // As bench/testbed.ts does: with bridge netfilter, frames crossing a host's bridges (netctl_gwbridge too) would walk its IP hooks and conntrack too.
    const off = await run('nsenter', [`--net=${host.netnsPath}`, 'sh', '-c', 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ ! -e "$f" ] || echo 0 > "$f"; done']);
    if (off.code !== 0) throw new Error(`bridge-nf-call in host${host.index}: ${off.stderr}`);
    await cluster.startDaemon(host);
  }
  return cluster;
}

/** bench/NAME.c compiled into `dir` with cc -O2 -Wall and `flags`; the binary's path. */
export async function compile(dir: string, name: string, flags: readonly string[] = []): Promise<string> {
  const binary = join(dir, name);
  const built = await run('cc', ['-O2', '-Wall', ...flags, '-o', binary, join(here, `${name}.c`)], { timeoutMs: 60_000 });
  if (built.code !== 0) throw new Error(`cc bench/${name}.c: ${built.stderr}`);
  return binary;
}

export interface Server {
  child: ChildProcess;
  output(): string;
}

/**
 * A long-lived process in a namespace (nsenter execs it, so the child's PID
 * is the process's), killed by cleanup. Resolves once it printed `marker`,
 * or, without one, once it has run for half a second without exiting.
 */
export async function serve(netnsPath: string, marker: string | undefined, command: string, args: readonly string[]): Promise<Server> {
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
export function runIn(netnsPath: string, command: string, args: readonly string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
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

/** Polls until `probe` succeeds (the overlay's first packets to a new peer can take a moment). */
export async function eventually<T>(what: string, probe: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
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

/** The share of the machine's CPUs busy between two readings of cpuTimes. */
const busyShare = (before: { busy: number; total: number }, after: { busy: number; total: number }) => (after.busy - before.busy) / (after.total - before.total);

/** The namespace's SYN retransmits (TcpExtTCPSynRetrans): each one a connection that waited a second or more. */
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

/** /proc/loadavg as it reads. */
export const loadAverage = async () => (await readFile('/proc/loadavg', 'utf8')).trim();

/** The checkout's short commit, or `unknown`. */
export function shortCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** The machine a run was taken on, for its results. */
export const machineInfo = () => ({ nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version });

/** The results' note on the machine and the run's load. */
export const machineNote = (machine: ReturnType<typeof machineInfo>, loadBefore: string, loadAfter: string, commit: string) =>
  `${machine.nproc} CPUs (${machine.cpu}), Linux ${machine.kernel}, Node ${machine.node}; load average before: ${loadBefore}; after: ${loadAfter}. Commit ${commit}.`;

/** Writes bench/results/NAME.json and NAME.md. */
export async function writeResults(name: string, results: unknown, table: string): Promise<void> {
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(root, 'bench', 'results', `${name}.md`), table);
}

// ---- the figures ----------------------------------------------------------------------------

/**
 * A wrk script's done(), printing one JSON line: requests, durationUs, the
 * error counts and the p50 and p99 latency in µs. bench/conn-client.c
 * prints the same line but one `errors` count for all of them.
 */
export const WRK_REPORT = `function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;

export interface RequestErrors {
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
}

/** A requests sample but for its rate, which each benchmark names its own way. */
export interface RequestFigures {
  requests: number;
  errors: RequestErrors;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Requests each task served during the sample, from its /count. */
  perTask: number[];
  /** SYNs the client sent again (TcpExtTCPSynRetrans): each one a connection that waited a second or more. */
  synRetransmits: number;
  /** Share of the machine's CPUs busy during the sample. */
  machineBusy: number;
}

export interface RequestsRun {
  /** The client's namespace. */
  netnsPath: string;
  /** wrk with a script ending in WRK_REPORT, or bench/conn-client.c, and its arguments. */
  command: string;
  args: readonly string[];
  /** Seconds the client runs. */
  duration: number;
  /** Names the run in errors. */
  what: string;
  /** Requests each task has served so far. */
  taskCounts(): Promise<number[]>;
}

/** One requests sample: the client's rate and figures, the tasks' counts and the client's SYN retransmits read before and after it. */
export async function measureRequests(r: RequestsRun): Promise<{ perSecond: number } & RequestFigures> {
  const before = await r.taskCounts();
  const synBefore = await synRetransmits(r.netnsPath);
  const cpuBefore = await cpuTimes();
  const result = await runIn(r.netnsPath, r.command, r.args, (r.duration + 30) * 1000);
  const cpuAfter = await cpuTimes();
  const line = result.stdout.split('\n').find((l) => l.startsWith('{"requests"'));
  if (result.code !== 0 || line === undefined) throw new Error(`${r.what}: exit ${result.code}: ${(result.stderr || result.stdout).trim().slice(0, 400)}`);
  const parsed = JSON.parse(line) as { requests: number; durationUs: number; errors?: number; connect?: number; read?: number; write?: number; status?: number; timeout?: number; p50Us: number; p99Us: number };
  const after = await r.taskCounts();
  const synAfter = await synRetransmits(r.netnsPath);
  return {
    perSecond: parsed.requests / (parsed.durationUs / 1e6),
    requests: parsed.requests,
    // conn-client counts every failure as one; wrk tells them apart.
    errors: { connect: parsed.connect ?? parsed.errors ?? 0, read: parsed.read ?? 0, write: parsed.write ?? 0, status: parsed.status ?? 0, timeout: parsed.timeout ?? 0 },
    latencyP50Ms: parsed.p50Us / 1000,
    latencyP99Ms: parsed.p99Us / 1000,
    perTask: after.map((count, i) => count - (before[i] ?? 0)),
    synRetransmits: synAfter - synBefore,
    machineBusy: busyShare(cpuBefore, cpuAfter),
  };
}

/** A requests sample as a log line, `rate` being its requests or connections per second. */
export function describeRequests(rate: number, s: RequestFigures): string {
  const errors = Object.entries(s.errors).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return `${rate.toFixed(0)}/s, p50 ${s.latencyP50Ms.toFixed(2)} ms, p99 ${s.latencyP99Ms.toFixed(2)} ms, per task ${s.perTask.join('/')}, ${s.synRetransmits} SYN retransmits, CPU ${(s.machineBusy * 100).toFixed(0)} %${errors.length > 0 ? `, errors: ${errors.join(', ')}` : ''}`;
}

export interface IperfSample {
  gbps: number;
  retransmits: number | null;
  /** Share of the machine's CPUs busy during the run. */
  machineBusy: number;
}

/** One single-stream iperf3 run (-O 1) from the namespace to address:port; `what` names it in errors. */
export async function measureIperf(netnsPath: string, address: string, port: number, duration: number, what: string): Promise<IperfSample> {
  const cpuBefore = await cpuTimes();
  const result = await runIn(
    netnsPath,
    'iperf3',
    ['-c', address, '-p', String(port), '-t', String(duration), '-O', '1', '--connect-timeout', '5000', '-J'],
    (duration + 30) * 1000,
  );
  const cpuAfter = await cpuTimes();
  let parsed: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    parsed = JSON.parse(result.stdout) as typeof parsed;
  } catch {
    throw new Error(`iperf3 ${what}: ${(result.stderr || result.stdout).trim().slice(0, 300) || `exit ${result.code}`}`);
  }
  if (parsed.error !== undefined) throw new Error(`iperf3 ${what}: ${parsed.error}`);
  const received = parsed.end?.sum_received?.bits_per_second;
  if (received === undefined) throw new Error(`iperf3 ${what}: no sum_received`);
  return { gbps: received / 1e9, retransmits: parsed.end?.sum_sent?.retransmits ?? null, machineBusy: busyShare(cpuBefore, cpuAfter) };
}

export const describeIperf = (s: IperfSample) => `${s.gbps.toFixed(2)} Gbit/s, ${s.retransmits ?? '?'} retransmits, CPU ${(s.machineBusy * 100).toFixed(0)} %`;

// ---- pairs ----------------------------------------------------------------------------------

/** One run of a figure taken both ways, back to back: `first` is the way that ran first; `ratio` is the value of `ways[0]` over that of `ways[1]`. */
export type Pair<Way extends string, Sample> = { run: number; first: Way; ratio: number } & Record<Way, Sample>;

export interface PairsOptions<Way extends string, Sample> {
  label: string;
  runs: number;
  /** The two ways, the one the ratio divides first. */
  ways: readonly [Way, Way];
  /** How the log names each way, when not by the way itself. */
  names?: Readonly<Record<Way, string>>;
  measure(way: Way): Promise<Sample>;
  value(sample: Sample): number;
  describe(sample: Sample): string;
  /** Where a failed pair is noted; the runs go on without it. */
  failures: string[];
}

/** `runs` pairs of one figure, the order of the two ways swapped every pair, so that neither always runs on a warmer machine. */
export async function inPairs<Way extends string, Sample>(o: PairsOptions<Way, Sample>): Promise<Pair<Way, Sample>[]> {
  const [a, b] = o.ways;
  const name = (way: Way) => o.names?.[way] ?? way;
  const width = Math.max(name(a).length, name(b).length);
  const pairs: Pair<Way, Sample>[] = [];
  for (let run = 0; run < o.runs; run++) {
    const order = run % 2 === 0 ? [a, b] : [b, a];
    const taken = new Map<Way, Sample>();
    try {
      for (const way of order) {
        const sample = await o.measure(way);
        taken.set(way, sample);
        console.log(`  ${o.label} run ${run + 1} ${name(way).padEnd(width)} ${o.describe(sample)}`);
      }
    } catch (err) {
      if (cleaningUp()) throw err;
      o.failures.push(`${o.label} run ${run + 1}: ${err instanceof Error ? err.message : String(err)}`);
      console.log(`  ${o.label} run ${run + 1} failed: ${o.failures.at(-1)}`);
      continue;
    }
    const first = taken.get(a) as Sample;
    const second = taken.get(b) as Sample;
    pairs.push({ run: run + 1, first: order[0] as Way, [a]: first, [b]: second, ratio: o.value(first) / o.value(second) } as Pair<Way, Sample>);
  }
  return pairs;
}

/** Median (min–max) of each way and of the ratio within each pair. */
export type PairSummary<Way extends string> = Record<Way | 'ratio', Spread | undefined>;

export function summarizePairs<Way extends string, Sample>(pairs: readonly Pair<Way, Sample>[], ways: readonly [Way, Way], value: (sample: Sample) => number): PairSummary<Way> {
  const [a, b] = ways;
  return { [a]: spread(pairs.map((p) => value(p[a]))), [b]: spread(pairs.map((p) => value(p[b]))), ratio: spread(pairs.map((p) => p.ratio)) } as PairSummary<Way>;
}
