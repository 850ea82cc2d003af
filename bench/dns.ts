/**
 * Embedded DNS throughput and latency: dnsperf against netctl's resolver
 * (127.0.0.11 inside a sandbox) and against dnsmasq serving the same names
 * from the same sandbox, alternating, in one run. Each run is two dnsperf
 * runs per server: one saturating (queries per second, average latency
 * under that load) and one at a fixed --rate below both servers' capacity
 * with every answer's latency recorded (-v), for the average, p50 and p99
 * of a load both carry. Writes bench/results/dns.json and dns.md.
 *
 *   npm run bench:dns [-- --names 50 --seconds 10 --runs 3 --rate 20000]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { startDaemon } from '../test/helpers/daemon.js';
import { addNetns, inNetns, removeNetns, uniqueName } from '../test/helpers/kernel.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: {
    names: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '20000' },
  },
});
const nameCount = Number(values.names);
const seconds = Number(values.seconds);
const runs = Number(values.runs);
const rate = Number(values.rate);

interface Sample {
  qps: number;
  avgLatencyMs: number;
  lost: number;
  /** At the fixed rate. */
  fixedAvgMs: number;
  p50Ms: number;
  p99Ms: number;
}

function parseDnsperf(output: string): Omit<Sample, 'fixedAvgMs' | 'p50Ms' | 'p99Ms'> {
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(output)?.[1]);
  const avg = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(output)?.[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(output)?.[1] ?? 0);
  if (!Number.isFinite(qps) || !Number.isFinite(avg)) throw new Error(`cannot read dnsperf output:\n${output}`);
  return { qps, avgLatencyMs: avg * 1000, lost };
}

/**
 * dnsperf -v at a fixed rate, from inside a namespace: each answer's latency
 * (lines `> RCODE NAME TYPE SECONDS`), read as a stream since a run prints
 * more than a buffered child's output may hold.
 */
function latencies(netnsPath: string, args: readonly string[]): Promise<Float64Array> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath}`, 'dnsperf', ...args, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let values = new Float64Array(1 << 16);
    let count = 0;
    let rest = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('> ')) continue;
        const seconds = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (!Number.isFinite(seconds)) continue;
        if (count === values.length) {
          const grown = new Float64Array(values.length * 2);
          grown.set(values);
          values = grown;
        }
        values[count++] = seconds * 1000;
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 && count > 0 ? resolve(values.subarray(0, count).sort()) : reject(new Error(`dnsperf -v exited ${code} with ${count} answers: ${stderr}`))));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function mean(xs: Float64Array): number {
  let sum = 0;
  for (const x of xs) sum += x;
  return sum / xs.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

const hostNs = uniqueName('bd');
const work = await mkdtemp(join(tmpdir(), 'netctl-bench-dns-'));
const sandboxes: string[] = [];
const children: ChildProcess[] = [];
let stopDaemon = async () => {};
const cleanup = async () => {
  await stopDaemon();
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const name of sandboxes) await removeNetns(name);
  await removeNetns(hostNs);
  await rm(work, { recursive: true, force: true });
};
process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));

try {
  const hostNsPath = await addNetns(hostNs);
  const socket = join(work, 'netctl.sock');
  const daemon = await startDaemon({ netnsPath: hostNsPath, stateDir: work, socket, args: ['--dns', '127.0.0.1'] });
  stopDaemon = () => daemon.stop('SIGKILL');
  const api = new ApiClient(`unix://${socket}`);
  await api.createNetwork({ Name: 'bench', IPAM: { Config: [{ Subnet: '10.85.0.0/16' }] } });
  const hosts: string[] = [];
  for (let i = 0; i < nameCount; i++) {
    const name = uniqueName('n');
    sandboxes.push(name);
    await api.createSandbox({ Name: name });
    await api.connect('bench', name);
    const ip = Object.values((await api.inspectSandbox(name)).Networks)[0]?.IPv4Address.split('/')[0] ?? '';
    hosts.push(`${ip} ${name}`);
  }
  const client = sandboxes[0] ?? '';
  const clientPath = `/var/run/netns/${client}`;
  await writeFile(join(work, 'hosts'), `${hosts.join('\n')}\n`);
  await writeFile(join(work, 'queries'), `${sandboxes.map((name) => `${name} A`).join('\n')}\n`);
  // dnsmasq in the same sandbox, on another loopback address, serving the same names.
  const dnsmasq = spawn(
    'nsenter',
    [`--net=${clientPath}`, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${join(work, 'hosts')}`, '--listen-address=127.0.0.12', '--bind-interfaces', '--pid-file=', '--cache-size=1000'],
    { stdio: 'ignore' },
  );
  children.push(dnsmasq);
  await new Promise((resolve) => setTimeout(resolve, 500));

  const samples: Record<'netctl' | 'dnsmasq', Sample[]> = { netctl: [], dnsmasq: [] };
  for (let run = 0; run < runs; run++) {
    for (const [server, address] of [['netctl', '127.0.0.11'], ['dnsmasq', '127.0.0.12']] as const) {
      const result = await inNetns(clientPath, 'dnsperf', ['-s', address, '-d', join(work, 'queries'), '-l', String(seconds), '-c', '10', '-q', '100'], {
        timeoutMs: (seconds + 30) * 1000,
      });
      if (result.code !== 0) throw new Error(`dnsperf against ${server}: ${result.stderr}${result.stdout}`);
      const saturated = parseDnsperf(result.stdout);
      const fixed = await latencies(clientPath, ['-s', address, '-d', join(work, 'queries'), '-l', String(seconds), '-c', '10', '-q', '100', '-Q', String(rate)]);
      const sample = { ...saturated, fixedAvgMs: mean(fixed), p50Ms: percentile(fixed, 50), p99Ms: percentile(fixed, 99) };
      samples[server].push(sample);
      console.log(
        `run ${run + 1} ${server}: ${sample.qps.toFixed(0)} q/s, ${sample.avgLatencyMs.toFixed(3)} ms average, ${sample.lost} lost;` +
          ` at ${rate} q/s average ${sample.fixedAvgMs.toFixed(3)} ms, p50 ${sample.p50Ms.toFixed(3)} ms, p99 ${sample.p99Ms.toFixed(3)} ms`,
      );
    }
  }
  const summarize = (server: 'netctl' | 'dnsmasq') => {
    const qps = samples[server].map((s) => s.qps);
    return {
      medianQps: median(qps),
      minQps: Math.min(...qps),
      maxQps: Math.max(...qps),
      medianAvgLatencyMs: median(samples[server].map((s) => s.avgLatencyMs)),
      medianFixedAvgMs: median(samples[server].map((s) => s.fixedAvgMs)),
      medianP50Ms: median(samples[server].map((s) => s.p50Ms)),
      medianP99Ms: median(samples[server].map((s) => s.p99Ms)),
      runs: samples[server],
    };
  };
  const summary = { netctl: summarize('netctl'), dnsmasq: summarize('dnsmasq') };
  const ratio = summary.netctl.medianQps / summary.dnsmasq.medianQps;
  const date = new Date().toISOString();
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(
    join(root, 'bench', 'results', 'dns.json'),
    `${JSON.stringify({ date, names: nameCount, seconds, runs, rate, dnsperf: '-c 10 -q 100', summary, ratio }, null, 2)}\n`,
  );
  const row = (server: 'netctl' | 'dnsmasq') =>
    `| ${server} | ${summary[server].medianQps.toFixed(0)} | ${summary[server].minQps.toFixed(0)}–${summary[server].maxQps.toFixed(0)} | ${summary[server].medianAvgLatencyMs.toFixed(3)} | ${summary[server].medianFixedAvgMs.toFixed(3)} | ${summary[server].medianP50Ms.toFixed(3)} | ${summary[server].medianP99Ms.toFixed(3)} |`;
  const table = [
    `DNS, ${nameCount} A records, dnsperf -l ${seconds} -c 10 -q 100 from inside one sandbox, ${runs} runs each, alternating (${date});`,
    `average, p50 and p99 at a fixed ${rate} q/s (-Q), medians over the runs`,
    '',
    '| server | queries/s (median) | range | average latency ms, saturated (median) | average ms, fixed rate | p50 ms | p99 ms |',
    '|---|---|---|---|---|---|---|',
    row('netctl'),
    row('dnsmasq'),
    '',
    `netctl / dnsmasq: ${(ratio * 100).toFixed(0)} % of the queries per second`,
    '',
  ].join('\n');
  await writeFile(join(root, 'bench', 'results', 'dns.md'), table);
  console.log(`\n${table}`);
} finally {
  await cleanup();
}
