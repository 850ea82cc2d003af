/**
 * Embedded DNS throughput and latency: dnsperf against netctl's resolver
 * (127.0.0.11 inside a sandbox) and against dnsmasq serving the same names
 * from the same sandbox, alternating, in one run. Writes
 * bench/results/dns.json and dns.md.
 *
 *   npm run bench:dns [-- --names 50 --seconds 10 --runs 3]
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
  options: { names: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' }, runs: { type: 'string', default: '3' } },
});
const nameCount = Number(values.names);
const seconds = Number(values.seconds);
const runs = Number(values.runs);

interface Sample {
  qps: number;
  avgLatencyMs: number;
  lost: number;
}

function parseDnsperf(output: string): Sample {
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(output)?.[1]);
  const avg = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(output)?.[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(output)?.[1] ?? 0);
  if (!Number.isFinite(qps) || !Number.isFinite(avg)) throw new Error(`cannot read dnsperf output:\n${output}`);
  return { qps, avgLatencyMs: avg * 1000, lost };
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
      const sample = parseDnsperf(result.stdout);
      samples[server].push(sample);
      console.log(`run ${run + 1} ${server}: ${sample.qps.toFixed(0)} q/s, ${sample.avgLatencyMs.toFixed(3)} ms average, ${sample.lost} lost`);
    }
  }
  const summarize = (server: 'netctl' | 'dnsmasq') => {
    const qps = samples[server].map((s) => s.qps);
    return {
      medianQps: median(qps),
      minQps: Math.min(...qps),
      maxQps: Math.max(...qps),
      medianAvgLatencyMs: median(samples[server].map((s) => s.avgLatencyMs)),
      runs: samples[server],
    };
  };
  const summary = { netctl: summarize('netctl'), dnsmasq: summarize('dnsmasq') };
  const ratio = summary.netctl.medianQps / summary.dnsmasq.medianQps;
  const date = new Date().toISOString();
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(
    join(root, 'bench', 'results', 'dns.json'),
    `${JSON.stringify({ date, names: nameCount, seconds, runs, dnsperf: '-c 10 -q 100', summary, ratio }, null, 2)}\n`,
  );
  const row = (server: 'netctl' | 'dnsmasq') =>
    `| ${server} | ${summary[server].medianQps.toFixed(0)} | ${summary[server].minQps.toFixed(0)}–${summary[server].maxQps.toFixed(0)} | ${summary[server].medianAvgLatencyMs.toFixed(3)} |`;
  const table = [
    `DNS, ${nameCount} A records, dnsperf -l ${seconds} -c 10 -q 100 from inside one sandbox, ${runs} runs each, alternating (${date})`,
    '',
    '| server | queries/s (median) | range | average latency ms (median) |',
    '|---|---|---|---|',
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
