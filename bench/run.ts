/**
 * Overlay data-plane benchmark: netctl's overlay against the kernel's vxlan
 * (Docker's path, the ceiling), the bare underlay veth (the wire) and the
 * user-space tunnels people use instead (wireguard-go, tinc, OpenVPN,
 * nebula), each on a fresh two-host testbed (bench/testbed.ts), every
 * contender once per run. Writes bench/results/overlay.json (all samples),
 * overlay.md (the table) and overlay.svg (single-stream throughput).
 *
 *   npm run bench [-- --only netctl,kernel-vxlan --runs 3 --seconds 4 --round-trips 2000]
 *
 * The contenders' programs come from scripts/install-bench-deps.sh; one
 * that is missing or does not come up is listed with the reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run } from '../test/helpers/kernel.js';
import { type Contender, contenders } from './contenders.js';
import { measure, reachable } from './measure.js';
import { type ContenderResult, markdown, summarize, svgChart } from './report.js';
import { destroyAll, makeTestbed, onInterrupt } from './testbed.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '4' },
    'round-trips': { type: 'string', default: '2000' },
  },
});
const runs = Number(values.runs);
const seconds = Number(values.seconds);
const roundTrips = Number(values['round-trips']);
if (!(Number.isInteger(runs) && runs > 0 && Number.isInteger(seconds) && seconds > 0 && Number.isInteger(roundTrips) && roundTrips > 0)) {
  console.error('--runs, --seconds and --round-trips take positive integers');
  process.exit(2);
}
const wanted = values.only?.split(',').map((id) => id.trim()).filter((id) => id !== '');
const unknown = wanted?.filter((id) => !contenders.some((c) => c.id === id)) ?? [];
if (unknown.length > 0) {
  console.error(`unknown contender ${unknown.join(', ')}; known: ${contenders.map((c) => c.id).join(', ')}`);
  process.exit(2);
}
const selected = contenders.filter((c) => wanted === undefined || wanted.includes(c.id));

async function missingPrograms(contender: Contender): Promise<string[]> {
  const missing: string[] = [];
  for (const program of ['iperf3', ...contender.needs]) {
    if ((await run('sh', ['-c', `command -v ${program}`])).code !== 0) missing.push(program);
  }
  return missing;
}

function version(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]?.trim() ?? '';
  } catch {
    return 'unknown';
  }
}

onInterrupt();
// Anything else busy on the machine skews every figure; the load when the run began is kept with them.
const loadAtStart = loadavg()[0] ?? 0;
const results: ContenderResult[] = [];
try {
  for (const contender of selected) {
    const result: ContenderResult = { id: contender.id, label: contender.label, samples: [], failures: [], kernelPath: contender.needs.length === 0 && !contender.id.startsWith('netctl'), summary: {} };
    const missing = await missingPrograms(contender);
    if (missing.length > 0) result.unavailable = `not installed: ${missing.join(', ')} (scripts/install-bench-deps.sh)`;
    results.push(result);
  }
  for (let runIndex = 0; runIndex < runs; runIndex++) {
    for (const [i, contender] of selected.entries()) {
      const result = results[i] as ContenderResult;
      if (result.unavailable !== undefined) continue;
      const started = Date.now();
      const testbed = await makeTestbed({ etcd: contender.etcd === true });
      try {
        const tunnel = await contender.up(testbed);
        await reachable(tunnel);
        if (tunnel.settleMs !== undefined) await new Promise((resolve) => setTimeout(resolve, tunnel.settleMs));
        const sample = await measure(testbed, tunnel, { seconds, roundTrips });
        result.samples.push(sample);
        for (const error of sample.errors) result.failures.push(`run ${runIndex + 1}: ${error}`);
        const show = (v: number | null, unit: string) => (v === null ? 'failed' : `${v.toFixed(2)} ${unit}`);
        console.log(
          `run ${runIndex + 1} ${contender.id}: tcp1 ${show(sample.tcp1Gbps, 'Gbit/s')}, tcp4 ${show(sample.tcp4Gbps, 'Gbit/s')}, ` +
            `udp64 ${show(sample.udp64Kpps, 'kpps')}, rtt p50/p99 ${show(sample.rttP50Us, 'µs')}/${show(sample.rttP99Us, 'µs')}, ` +
            `cpu ${sample.cpuSecondsPerGB === null ? 'n/a' : `${sample.cpuSecondsPerGB.toFixed(2)} s/GB`} (${((Date.now() - started) / 1000).toFixed(0)} s)`,
        );
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        result.samples.push(null);
        result.failures.push(`run ${runIndex + 1}: ${message}`);
        console.log(`run ${runIndex + 1} ${contender.id}: failed: ${message.slice(0, 500)}`);
      } finally {
        await testbed.destroy();
      }
    }
  }
  const kernelVxlan = results.find((r) => r.id === 'kernel-vxlan' && r.unavailable === undefined);
  for (const result of results) {
    if (result.unavailable === undefined && result.samples.every((s) => s === null)) result.unavailable = result.failures[0] ?? 'no run succeeded';
    summarize(result, kernelVxlan);
  }

  const date = new Date().toISOString();
  const machine = {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: version('uname', ['-r']),
    node: process.version,
    iperf3: version('iperf3', ['--version']),
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: loadavg()[0] ?? 0,
  };
  const settings = { runs, seconds, roundTrips, only: wanted ?? null };
  const resultsDir = join(root, 'bench', 'results');
  await mkdir(resultsDir, { recursive: true });
  await writeFile(join(resultsDir, 'overlay.json'), `${JSON.stringify({ date, machine, settings, results }, null, 2)}\n`);
  const heading =
    `Overlay data plane, two hosts (network namespaces on a veth underlay, MTU 1500), ${runs} run${runs === 1 ? '' : 's'} each, ` +
    `median (min–max) — ${date.slice(0, 10)}, ${machine.nproc} CPUs, Linux ${machine.kernel}, Node ${machine.node}`;
  const notes = [
    `TCP: iperf3 -t ${seconds} -O 1 -J, received bits per second; 4 streams with -P 4.`,
    `UDP: iperf3 -u -l 64 -b 0 -t ${seconds}, datagrams received per second (sent minus lost).`,
    `RTT: ${roundTrips} TCP round trips of 64 bytes (Nagle off) after 100 warm-up ones, by bench/pingpong.ts (Node) in the two namespaces; includes Node's own turnaround on both ends.`,
    'CPU s/GB: utime+stime of the tunnel processes on both hosts (/proc/PID/stat) across the 1-stream run, per GB received; "kernel" where the kernel moves the packets.',
    'vs kernel vxlan: median over runs of the 1-stream throughput divided by the kernel vxlan\'s in the same run.',
    'Paths: plain veth = iperf3 between the host namespaces over the underlay; kernel vxlan = sandbox veth → bridge → vxlan (MTU 1450) per host, Docker\'s path; minimal C VTEP = bench/vtep-floor.c on that shape with a TAP in place of the vxlan, one read and one send per frame (the floor of any user-space VTEP); netctl = two daemons + etcd, a sandbox per host on one overlay network; ' +
      'wireguard-go (MTU 1420); tinc 1.0 switch mode (TAP; default cipher, and Cipher/Digest none), measured 12 s after it first passes a ping; ' +
      'OpenVPN 2.6 --dev tap peer-to-peer TLS (EC certificates from openssl), --data-ciphers AES-256-GCM, --disable-dco; nebula with its own CA, lighthouse on host 1, tun MTU 1300.',
    `Load average when the run began: ${loadAtStart.toFixed(2)} on ${machine.nproc} CPUs; whatever else runs on the machine skews the figures, most of all the user-space tunnels and the p99s.`,
    `Reproduce: scripts/install-bench-deps.sh, then npm run bench -- --runs ${runs}.`,
  ];
  const table = markdown(results, heading, notes);
  await writeFile(join(resultsDir, 'overlay.md'), table);
  await writeFile(
    join(resultsDir, 'overlay.svg'),
    svgChart(
      results,
      'Overlay throughput between two hosts, one TCP stream',
      `iperf3 -t ${seconds} -O 1, median of ${runs}, ${date.slice(0, 10)}, ${machine.nproc} CPUs, Linux ${machine.kernel}`,
    ),
  );
  console.log(`\n${table}`);
} finally {
  await destroyAll();
}
