/**
 * The control plane at scale: one `netctl daemon` (of this checkout, or of
 * another one with --netctl, so one script measures both sides of a change)
 * in a namespace of its own, grown through the API to each size of
 * endpoints (a sandbox each, connected to a bridge network). At each size:
 * connect latency (the last 20 connects before the size was reached),
 * disconnect latency (20 endpoints disconnected and connected again), the
 * daemon's CPU time per operation, its RSS, the store's size on disk and a
 * restart (SIGTERM, start again, time until GET /networks answers and until
 * a sandbox's embedded DNS answers again). At the largest size, a sandbox
 * queries its embedded DNS every 5 ms while 100 others on its network
 * disconnect at once. Prints a table and writes bench/results/scale-LABEL.json.
 *
 *   npm run bench:scale [-- --sizes 10,100,1000,2000 --netctl ../other/bin/netctl.js --label after --cpu-prof DIR]
 *   (bin/netctl.js runs the compiled dist/: build the other checkout first, `npm run build` there)
 *
 * A Linux bridge holds at most 1024 ports (BR_MAX_PORTS), so every 1000
 * endpoints go on a new bridge network; the figures at a size are taken on
 * the network being grown. Everything made (namespaces `bs-…`, the daemon,
 * its sandboxes, the state directory) is removed at the end, on failure and
 * on SIGINT/SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../test/helpers/daemon.js';
import { addNetns, namespacesWithPrefix, removeNetns, run } from '../test/helpers/kernel.js';
import type { ProbeQuery } from './dns-probe.js';
import { type Quantiles, cpuSeconds, quantiles } from './measure.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
/** Operations timed at each size. */
const SAMPLES = 20;
/** Endpoints per bridge network: a Linux bridge takes at most 1024 ports. */
const PER_NETWORK = 1000;
/** Sandboxes that disconnect at once while the DNS is queried. */
const MASS_DISCONNECT = 100;
const DNS_INTERVAL_MS = 5;
/** DNS queries before and after the mass disconnect, for a baseline. */
const DNS_MARGIN_MS = 1000;

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10,100,1000,2000' },
    netctl: { type: 'string', default: NETCTL_CLI },
    label: { type: 'string', default: 'run' },
    'cpu-prof': { type: 'string' },
  },
});
const sizes = (values.sizes ?? '').split(',').map(Number);
if (sizes.length === 0 || sizes.some((size, i) => !Number.isInteger(size) || size < 2 || size <= (sizes[i - 1] ?? 0))) {
  console.error('--sizes takes increasing integers of at least 2, e.g. 10,100,1000');
  process.exit(2);
}
const largest = sizes.at(-1) ?? 0;
const netctl = resolve(values.netctl ?? NETCTL_CLI);
const label = values.label ?? 'run';
if (!/^[\w.-]+$/.test(label)) {
  console.error('--label takes letters, digits, ".", "-" and "_"');
  process.exit(2);
}
const profileDir = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']);

interface SizeResult {
  size: number;
  /** The network the size's operations ran on, and its endpoints then. */
  network: string;
  networkEndpoints: number;
  /** Wall time to grow from the previous size. */
  growSeconds: number;
  connectMs: Quantiles;
  disconnectMs: Quantiles;
  reconnectMs: Quantiles;
  cpuMsPerConnect: number;
  cpuMsPerDisconnect: number;
  cpuMsPerReconnect: number;
  rssMiB: number;
  /** Bytes of each store file in the state directory (store.json, or store.db and its -wal/-shm). */
  storeFiles: Record<string, number>;
  storeBytes: number;
  stateDirBytes: number;
  restart: { stopMs: number; apiMs: number; dnsBackMs: number | null };
}

interface DnsWindow {
  sandboxes: number;
  /** Wall time of the concurrent disconnects, first call to last answer. */
  disconnectMs: number;
  baseline: Quantiles & { lost: number };
  during: Quantiles & { lost: number; failed: number };
}

// Every namespace of a run is bs-TAG-…, TAG unique to the run, so a sweep of the prefix finds only its own.
const prefix = `bs-${(process.pid % 1296).toString(36)}-`;
const hostNs = `${prefix}h`;
const sandboxes: string[] = [];
const probes = new Set<ChildProcess>();
let work: string | undefined;
let daemon: RunningDaemon | undefined;
/** A daemon still starting, so an interrupt then waits for it and stops it too. */
let starting: Promise<RunningDaemon> | undefined;
let cleaning: Promise<void> | undefined;

async function stopDaemon(): Promise<void> {
  const running = daemon ?? (await starting?.catch(() => undefined));
  if (running === undefined) return;
  const killer = setTimeout(() => running.process.kill('SIGKILL'), 15_000);
  await running.stop('SIGTERM');
  clearTimeout(killer);
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const probe of probes) probe.kill('SIGKILL');
    await stopDaemon();
    const names = new Set([...sandboxes, ...(await namespacesWithPrefix(prefix))]);
    const queue = [...names];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let name = queue.pop(); name !== undefined; name = queue.pop()) await removeNetns(name);
      }),
    );
    await removeNetns(hostNs);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: removing the daemon, its sandboxes and namespaces`);
    void cleanup().finally(() => process.exit(code));
  });
}

async function daemonCpuMs(): Promise<number> {
  if (daemon === undefined) throw new Error('no daemon');
  return (await cpuSeconds(daemon.process)) * 1000;
}

async function rssMiB(): Promise<number> {
  const status = await readFile(`/proc/${daemon?.process.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

async function directoryBytes(dir: string): Promise<number> {
  let sum = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) sum += await directoryBytes(path);
    else if (entry.isFile()) sum += (await stat(path)).size;
  }
  return sum;
}

async function storeFiles(stateDir: string): Promise<Record<string, number>> {
  const files: Record<string, number> = {};
  for (const name of (await readdir(stateDir)).filter((n) => n.startsWith('store')).sort()) files[name] = (await stat(join(stateDir, name))).size;
  return files;
}

/** One operation timed, with the daemon's CPU time it took added to `cpu`. */
async function timed(operation: () => Promise<void>, cpu: { ms: number }): Promise<number> {
  const cpuBefore = await daemonCpuMs();
  const start = performance.now();
  await operation();
  const elapsed = performance.now() - start;
  cpu.ms += (await daemonCpuMs()) - cpuBefore;
  return elapsed;
}

interface Probe {
  /** Stops sending and resolves with every query once late answers had their second. */
  stop(): Promise<ProbeQuery[]>;
}

/** The DNS client of bench/dns-probe.ts in a sandbox, querying `name` every DNS_INTERVAL_MS. */
async function startProbe(sandbox: string, name: string): Promise<Probe> {
  const child = spawn(
    'nsenter',
    [`--net=/var/run/netns/${sandbox}`, process.execPath, '--import', import.meta.resolve('tsx'), join(here, 'dns-probe.ts'), '127.0.0.11', name, String(DNS_INTERVAL_MS)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  probes.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 20_000;
  while (!output.startsWith('ready\n')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`DNS probe did not start: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      probes.delete(child);
      const line = output.split('\n')[1] ?? '';
      try {
        return JSON.parse(line) as ProbeQuery[];
      } catch {
        throw new Error(`DNS probe output unreadable: ${output.slice(0, 500)}`);
      }
    },
  };
}

const answered = (query: ProbeQuery) => query.latencyMs !== null;

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  work = await mkdtemp(join(tmpdir(), 'netctl-bench-scale-'));
  const stateDir = join(work, 'state');
  const socket = join(work, 'netctl.sock');
  const hostNsPath = await addNetns(hostNs);
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir];
  // A restart at 2,000 endpoints takes longer than startDaemon's default 30 s.
  const daemonOptions = { netnsPath: hostNsPath, stateDir, socket, cli: netctl, nodeArgs, args: ['--dns', '127.0.0.1', '--log-level', 'warn'], timeoutMs: 600_000 };
  starting = startDaemon(daemonOptions);
  daemon = await starting;
  const api = new ApiClient(`unix://${socket}`);
  const commit = (await run('git', ['-C', dirname(dirname(netctl)), 'log', '-1', '--format=%h %s'])).stdout.trim();
  console.log(`netctl ${netctl} (${commit}), sizes ${sizes.join(', ')}, label ${label}`);
  if (largest > PER_NETWORK) console.log(`past ${PER_NETWORK} endpoints a second bridge network takes the rest (a Linux bridge holds at most 1024 ports)`);

  const networks: string[] = [];
  /** Sandboxes in the order they were made, each with its network. */
  const members: { sandbox: string; network: string }[] = [];
  const onNetwork = (network: string) => members.filter((m) => m.network === network).map((m) => m.sandbox);
  const results: SizeResult[] = [];
  for (const size of sizes) {
    const growStart = performance.now();
    const connects: number[] = [];
    const connectCpu = { ms: 0 };
    while (members.length < size) {
      if (members.length % PER_NETWORK === 0) {
        const network = `scale${networks.length + 1}`;
        await api.createNetwork({ Name: network, IPAM: { Config: [{ Subnet: `10.${200 + networks.length}.0.0/16` }] } });
        networks.push(network);
      }
      const network = networks.at(-1) ?? '';
      const sandbox = `${prefix}${members.length}`;
      sandboxes.push(sandbox);
      await api.createSandbox({ Name: sandbox });
      const elapsed = await timed(() => api.connect(network, sandbox), connectCpu);
      members.push({ sandbox, network });
      if (members.length > size - SAMPLES) connects.push(elapsed);
      else connectCpu.ms = 0;
      if (members.length % 250 === 0) console.log(`  ${members.length} endpoints (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }
    const growSeconds = (performance.now() - growStart) / 1000;
    const network = networks.at(-1) ?? '';
    const grown = onNetwork(network);
    // Spread over the network, so old and new endpoints both count; each goes and comes back, so the size holds.
    const picks = Array.from({ length: SAMPLES }, (_, i) => grown[Math.floor((i * grown.length) / SAMPLES) % grown.length] ?? '');
    const disconnects: number[] = [];
    const reconnects: number[] = [];
    const disconnectCpu = { ms: 0 };
    const reconnectCpu = { ms: 0 };
    for (const sandbox of picks) {
      disconnects.push(await timed(() => api.disconnect(network, sandbox), disconnectCpu));
      reconnects.push(await timed(() => api.connect(network, sandbox), reconnectCpu));
    }
    const rss = await rssMiB();
    const files = await storeFiles(stateDir);
    const stateDirBytes = await directoryBytes(stateDir);

    // Restart: the probe in the first sandbox tells when its DNS answers again.
    const probe = await startProbe(members[0]?.sandbox ?? '', members[1]?.sandbox ?? '');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stopStart = performance.now();
    await stopDaemon();
    daemon = undefined;
    const stopMs = performance.now() - stopStart;
    const spawnedAt = performance.timeOrigin + performance.now();
    starting = startDaemon(daemonOptions);
    let startFailed = false;
    starting.catch(() => (startFailed = true));
    let apiMs: number | undefined;
    // startDaemon polls the output every 50 ms; the API is polled more often for the figure.
    while (apiMs === undefined && !startFailed) {
      try {
        await api.listNetworks();
        apiMs = performance.timeOrigin + performance.now() - spawnedAt;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    daemon = await starting;
    if (apiMs === undefined) throw new Error('the restarted daemon did not answer');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const queries = await probe.stop();
    const back = queries.find((q) => q.sentAt > spawnedAt && answered(q));
    const dnsBackMs = back === undefined || back.latencyMs === null ? null : back.sentAt + back.latencyMs - spawnedAt;

    const result: SizeResult = {
      size,
      network,
      networkEndpoints: grown.length,
      growSeconds,
      connectMs: quantiles(connects),
      disconnectMs: quantiles(disconnects),
      reconnectMs: quantiles(reconnects),
      cpuMsPerConnect: connectCpu.ms / connects.length,
      cpuMsPerDisconnect: disconnectCpu.ms / disconnects.length,
      cpuMsPerReconnect: reconnectCpu.ms / reconnects.length,
      rssMiB: rss,
      storeFiles: files,
      storeBytes: Object.values(files).reduce((a, b) => a + b, 0),
      stateDirBytes,
      restart: { stopMs, apiMs, dnsBackMs },
    };
    results.push(result);
    console.log(
      `${size} endpoints: connect p50 ${result.connectMs.p50.toFixed(1)} ms, disconnect p50 ${result.disconnectMs.p50.toFixed(1)} ms, ` +
        `cpu/connect ${result.cpuMsPerConnect.toFixed(1)} ms, rss ${rss.toFixed(0)} MiB, store ${(result.storeBytes / 1024).toFixed(0)} KiB, ` +
        `restart ${apiMs.toFixed(0)} ms (grown in ${growSeconds.toFixed(0)} s)`,
    );
  }

  // DNS while MASS_DISCONNECT sandboxes of the querier's network disconnect at once.
  const network = networks.at(-1) ?? '';
  const [querier = '', target = '', ...others] = onNetwork(network);
  const leaving = others.slice(-MASS_DISCONNECT);
  const probe = await startProbe(querier, target);
  await new Promise((resolve) => setTimeout(resolve, DNS_MARGIN_MS));
  const windowStart = performance.timeOrigin + performance.now();
  await Promise.all(leaving.map((sandbox) => api.disconnect(network, sandbox)));
  const windowEnd = performance.timeOrigin + performance.now();
  await new Promise((resolve) => setTimeout(resolve, DNS_MARGIN_MS));
  const queries = await probe.stop();
  const baselineQueries = queries.filter((q) => q.sentAt < windowStart);
  const duringQueries = queries.filter((q) => q.sentAt >= windowStart && q.sentAt <= windowEnd);
  const latencies = (qs: ProbeQuery[]) => qs.flatMap((q) => (q.latencyMs === null ? [] : [q.latencyMs]));
  const dns: DnsWindow = {
    sandboxes: leaving.length,
    disconnectMs: windowEnd - windowStart,
    baseline: { ...quantiles(latencies(baselineQueries)), lost: baselineQueries.filter((q) => !answered(q)).length },
    during: {
      ...quantiles(latencies(duringQueries)),
      lost: duringQueries.filter((q) => !answered(q)).length,
      failed: duringQueries.filter((q) => answered(q) && (q.rcode !== 0 || q.answers === 0)).length,
    },
  };

  const first = results[0];
  const last = results.at(-1);
  const ratio = (pick: (r: SizeResult) => number) => (first === undefined || last === undefined ? NaN : pick(last) / pick(first));
  const ratios = {
    of: `${last?.size} vs ${first?.size} endpoints`,
    connectP50: ratio((r) => r.connectMs.p50),
    disconnectP50: ratio((r) => r.disconnectMs.p50),
    cpuPerConnect: ratio((r) => r.cpuMsPerConnect),
    cpuPerDisconnect: ratio((r) => r.cpuMsPerDisconnect),
    restartApi: ratio((r) => r.restart.apiMs),
  };
  const runSeconds = (performance.now() - started) / 1000;
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg()[0] ?? 0 };
  const report = {
    date: new Date().toISOString(),
    label,
    netctl,
    commit,
    machine,
    settings: { sizes, samples: SAMPLES, perNetwork: PER_NETWORK, massDisconnect: MASS_DISCONNECT, dnsIntervalMs: DNS_INTERVAL_MS, cpuProfile: profileDir !== undefined },
    runSeconds,
    sizes: results,
    ratios,
    dnsDuringMassDisconnect: dns,
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `scale-${label}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${table(report)}\nwritten to ${file}`);
}

function table(report: { label: string; commit: string; runSeconds: number; machine: { nproc: number; loadAverageAtStart: number; loadAverageAtEnd: number }; sizes: SizeResult[]; ratios: Record<string, string | number>; dnsDuringMassDisconnect: DnsWindow }): string {
  const f = (n: number | null, digits = 1) => (n === null || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits));
  const lines = [
    `Control plane at scale, ${report.label}: ${report.commit} — ${report.machine.nproc} CPUs, load ${f(report.machine.loadAverageAtStart, 2)} → ${f(report.machine.loadAverageAtEnd, 2)}, run ${f(report.runSeconds, 0)} s`,
    '',
    '| endpoints | network (its endpoints) | connect p50/p95 ms | disconnect p50/p95 ms | reconnect p50/p95 ms | CPU ms per connect/disconnect | RSS MiB | store KiB | restart: stop / API / DNS ms |',
    '|---|---|---|---|---|---|---|---|---|',
    ...report.sizes.map(
      (r) =>
        `| ${r.size} | ${r.network} (${r.networkEndpoints}) | ${f(r.connectMs.p50)} / ${f(r.connectMs.p95)} | ${f(r.disconnectMs.p50)} / ${f(r.disconnectMs.p95)} | ` +
        `${f(r.reconnectMs.p50)} / ${f(r.reconnectMs.p95)} | ${f(r.cpuMsPerConnect)} / ${f(r.cpuMsPerDisconnect)} | ${f(r.rssMiB, 0)} | ${f(r.storeBytes / 1024, 0)} | ` +
        `${f(r.restart.stopMs, 0)} / ${f(r.restart.apiMs, 0)} / ${f(r.restart.dnsBackMs, 0)} |`,
    ),
    '',
    `Ratios (${report.ratios['of']}): ${Object.entries(report.ratios)
      .filter(([key]) => key !== 'of')
      .map(([key, value]) => `${key} ${f(Number(value), 2)}×`)
      .join(', ')}`,
  ];
  lines.push(
    `connect: the last ${SAMPLES} connects before the size; disconnect and reconnect: ${SAMPLES} endpoints of that network, each disconnected and connected again; ` +
      "CPU: the daemon's utime+stime over those operations; store: store.json, or store.db with its -wal and -shm; " +
      'restart: SIGTERM to exit / new daemon to GET /networks answering / new daemon to the first DNS answer in a sandbox (the API answers during the restore; the DNS starts after it).',
  );
  if (report.sizes.some((r) => r.size > PER_NETWORK)) {
    lines.push(`Past ${PER_NETWORK} endpoints the figures are taken on a second bridge network, which is being grown (a Linux bridge holds at most 1024 ports).`);
  }
  const dns = report.dnsDuringMassDisconnect;
  lines.push(
    `DNS every ${DNS_INTERVAL_MS} ms from a sandbox while ${dns.sandboxes} others on its network disconnect at once (${f(dns.disconnectMs, 0)} ms): ` +
      `p50 ${f(dns.during.p50, 2)} ms, p95 ${f(dns.during.p95, 2)} ms, max ${f(dns.during.max, 2)} ms, ${dns.during.lost} of ${dns.during.n + dns.during.lost} lost, ${dns.during.failed} without the address; ` +
      `before it: p50 ${f(dns.baseline.p50, 2)} ms, p95 ${f(dns.baseline.p95, 2)} ms, ${dns.baseline.lost} lost`,
  );
  return lines.join('\n');
}

// The cleanup sweeps the prefix: namespaces of another run must not be there for it to find.
if ((await namespacesWithPrefix(prefix)).length > 0) {
  console.error(`namespaces ${prefix}* exist already; is another run of this bench going?`);
  process.exit(1);
}
try {
  await main();
} finally {
  await cleanup();
}
if (profileDir !== undefined) console.log(await profileSummary(profileDir));

/** The functions with the most self time in each CPU profile the daemons wrote. */
async function profileSummary(dir: string): Promise<string> {
  interface ProfileNode {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }
  const lines: string[] = [];
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.cpuprofile')).sort()) {
    const profile = JSON.parse(await readFile(join(dir, name), 'utf8')) as { nodes: ProfileNode[]; samples: number[]; startTime: number; endTime: number };
    const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
    const self = new Map<string, number>();
    for (const id of profile.samples) {
      const frame = byNode.get(id)?.callFrame;
      if (frame === undefined) continue;
      const key = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${frame.lineNumber + 1}`;
      self.set(key, (self.get(key) ?? 0) + 1);
    }
    const total = profile.samples.length;
    lines.push(`\n${name}: ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s, top self time:`);
    for (const [key, count] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`  ${((100 * count) / total).toFixed(1).padStart(5)} %  ${key}`);
  }
  return lines.join('\n');
}
