/**
 * Where the machine's time goes while one TCP stream crosses an overlay:
 * the bench testbed and contender (bench/contenders.ts), iperf3 for
 * `--seconds`, and `perf record -a` (cpu-clock, every CPU) over the middle
 * of it. The samples are split into the tunnel's user space, the kernel's
 * work outside iperf3 (system calls of the tunnel, softirqs, kernel threads),
 * iperf3, idle, and the kernel's payload copies (`_copy_to_iter`/`_copy_from_iter`). From the throughput it derives the
 * CPU spent per Gbit/s, and the throughput the machine's CPUs would allow
 * if the tunnel's own user-space work cost nothing: what bounds a
 * user-space data plane that moves payload through the kernel.
 *
 *   npm run bench:profile [-- --only netctl,kernel-vxlan --seconds 10 --runs 3]
 *
 * Each figure is the median over the runs (each on a fresh testbed).
 *
 * Needs perf (Debian's linux-perf, scripts/install-bench-deps.sh). Writes
 * bench/results/profile.{json,md}.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { inNetns } from '../test/helpers/kernel.js';
import { contenders } from './contenders.js';
import { reachable } from './measure.js';
import { destroyAll, makeTestbed, onInterrupt } from './testbed.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'netctl,kernel-vxlan' },
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
  },
});
const seconds = Number(values.seconds);
const runs = Number(values.runs);
if (!Number.isInteger(seconds) || seconds < 4 || !Number.isInteger(runs) || runs < 1) {
  console.error('--seconds takes an integer of at least 4, --runs a positive integer');
  process.exit(2);
}
const wanted = (values.only ?? '').split(',').map((id) => id.trim()).filter((id) => id !== '');
const selected = wanted.map((id) => {
  const contender = contenders.find((c) => c.id === id);
  if (contender === undefined) {
    console.error(`unknown contender ${id}; known: ${contenders.map((c) => c.id).join(', ')}`);
    process.exit(2);
  }
  return contender;
});

/** Kernel functions that copy payload between user memory and socket buffers. */
const COPIES = new Set(['_copy_to_iter', '_copy_from_iter']);
/** Where an idle CPU sits (in a VM: the halt hypercall). */
const IDLE = /halt|idle|mwait|poll_idle/;

interface Profile {
  id: string;
  label: string;
  gbps: number;
  /** Shares of all samples (all CPUs), in percent. */
  tunnelUser: number;
  /** Kernel samples outside iperf3 and outside the idle loop. */
  kernel: number;
  iperf: number;
  idle: number;
  other: number;
  /** Payload copies within `kernel`. */
  copies: number;
  /** CPUs busy per Gbit/s: everything, and the kernel's work alone. */
  cpusPerGbps: number;
  kernelCpusPerGbps: number;
  /** Gbit/s the machine's CPUs would allow if the tunnel's user-space work and the idle time were gone. */
  ceilingGbps: number;
}

const run = promisify(execFile);

/** `perf report` rows: percent and the sort keys, split on runs of spaces. */
async function report(file: string, sort: string): Promise<{ percent: number; keys: string[] }[]> {
  const { stdout } = await run('perf', ['report', '-i', file, '--no-children', '--sort', sort, '-q', '-g', 'none', '--stdio'], {
    maxBuffer: 64 << 20,
  });
  return stdout
    .split('\n')
    .map((line) => line.trim().match(/^([\d.]+)%\s+(.*)$/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => ({ percent: Number(m[1]), keys: (m[2] ?? '').split(/\s{2,}/) }));
}

async function profile(id: string): Promise<Profile> {
  const contender = contenders.find((c) => c.id === id)!;
  const testbed = await makeTestbed({ etcd: contender.etcd === true });
  const dir = await mkdtemp(join(tmpdir(), 'netctl-profile-'));
  try {
    const tunnel = await contender.up(testbed);
    await reachable(tunnel);
    if (tunnel.settleMs !== undefined) await new Promise((resolve) => setTimeout(resolve, tunnel.settleMs));
    testbed.spawnIn(tunnel.serverNsPath, 'iperf3', ['-s', '--forceflush']);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const data = join(dir, 'perf.data');
    const client = inNetns(tunnel.clientNsPath, 'iperf3', ['-c', tunnel.serverAddress, '-t', String(seconds), '-J'], {
      timeoutMs: (seconds + 30) * 1000,
    });
    // Skip the first second (slow start) and stop a second before the end.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const perf = spawn('perf', ['record', '-a', '-g', '-F', '999', '-o', data, '--', 'sleep', String(seconds - 2)], { stdio: 'ignore' });
    const recorded = new Promise<number | null>((resolve, reject) => {
      perf.once('error', reject);
      perf.once('exit', resolve);
    });
    const result = await client;
    const code = await recorded;
    if (code !== 0) throw new Error(`perf record exited with ${code}`);
    const gbps = ((JSON.parse(result.stdout) as { end?: { sum_received?: { bits_per_second: number } } }).end?.sum_received?.bits_per_second ?? NaN) / 1e9;
    if (!Number.isFinite(gbps)) throw new Error(`iperf3: ${result.stderr.trim() || result.stdout.slice(0, 300)}`);

    const share = { tunnelUser: 0, kernel: 0, iperf: 0, idle: 0, other: 0, copies: 0 };
    for (const { percent, keys } of await report(data, 'comm,dso,sym')) {
      const [comm = '', dso = '', sym = ''] = keys;
      const kernel = dso.includes('kernel');
      const symbol = sym.replace(/^\[[k.]\]\s*/, '');
      if (comm === 'iperf3') share.iperf += percent;
      // The store and perf itself are not the data path.
      else if (comm === 'etcd' || comm === 'perf' || comm.startsWith('perf-')) share.other += percent;
      else if (comm === 'swapper' && IDLE.test(symbol)) share.idle += percent;
      else if (!kernel) share.tunnelUser += percent;
      else {
        share.kernel += percent;
        if (COPIES.has(symbol)) share.copies += percent;
      }
    }
    const busy = 100 - share.idle - share.other;
    const cpu = cpus().length;
    const kernelWork = share.kernel + share.iperf;
    return {
      id,
      label: contender.label,
      gbps,
      ...share,
      cpusPerGbps: ((busy / 100) * cpu) / gbps,
      kernelCpusPerGbps: ((kernelWork / 100) * cpu) / gbps,
      ceilingGbps: cpu / (((kernelWork / 100) * cpu) / gbps),
    };
  } finally {
    await testbed.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

function markdown(profiles: readonly Profile[], date: string): string {
  const f = (v: number, digits = 1) => v.toFixed(digits);
  const rows = profiles.map(
    (p) =>
      `| ${p.label} | ${f(p.gbps, 2)} | ${f(p.tunnelUser)} | ${f(p.kernel)} | ${f(p.copies)} | ${f(p.iperf)} | ${f(p.idle)} | ${f(p.cpusPerGbps, 3)} | ${f(p.kernelCpusPerGbps, 3)} | ${f(p.ceilingGbps)} |`,
  );
  return [
    `Where the CPU goes, one TCP stream (iperf3 ${seconds} s, perf record -a over the middle ${seconds - 2} s), median of ${runs} runs, ${date.slice(0, 10)}, ${cpus().length} CPUs`,
    '',
    '| path | Gbit/s | tunnel user space % | kernel outside iperf3 % | of which payload copies % | iperf3 % | idle % | CPUs per Gbit/s | kernel and iperf3 CPUs per Gbit/s | Gbit/s with free user space |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    '- Percentages are of all samples on all CPUs. "tunnel user space": user-space samples of every process but iperf3, etcd and perf (the netctl daemons). "kernel outside iperf3": kernel samples in any other context that are not the idle loop: the tunnel\'s system calls, softirqs, kernel threads.',
    '- "Gbit/s with free user space": the CPUs divided by the CPU per Gbit/s of everything but the tunnel\'s user space and the idle time; no user-space data plane that moves the payload through the kernel this way can pass it on this machine.',
    '- Reproduce: npm run bench:profile (needs perf, from scripts/install-bench-deps.sh).',
    '',
  ].join('\n');
}

/** Field by field, the median of the runs' profiles. */
function median(samples: readonly Profile[]): Profile {
  const first = samples[0]!;
  const result: Profile = { ...first };
  for (const key of Object.keys(first) as (keyof Profile)[]) {
    if (typeof first[key] !== 'number') continue;
    const sorted = samples.map((sample) => sample[key] as number).sort((a, b) => a - b);
    (result[key] as number) = sorted[Math.floor(sorted.length / 2)]!;
  }
  return result;
}

try {
  await run('perf', ['--version']);
} catch {
  console.error('perf is not installed: bash scripts/install-bench-deps.sh (Debian package linux-perf)');
  process.exit(2);
}

onInterrupt();
try {
  const samples = new Map<string, Profile[]>(selected.map((c) => [c.id, []]));
  for (let i = 0; i < runs; i++) {
    for (const contender of selected) {
      const result = await profile(contender.id);
      console.log(
        `run ${i + 1} ${result.id}: ${result.gbps.toFixed(2)} Gbit/s; tunnel user ${result.tunnelUser.toFixed(1)} %, kernel ${result.kernel.toFixed(1)} % ` +
          `(copies ${result.copies.toFixed(1)} %), iperf3 ${result.iperf.toFixed(1)} %, idle ${result.idle.toFixed(1)} %; ` +
          `ceiling with free user space ${result.ceilingGbps.toFixed(1)} Gbit/s`,
      );
      samples.get(contender.id)!.push(result);
    }
  }
  const profiles = selected.map((c) => median(samples.get(c.id)!));
  const date = new Date().toISOString();
  const dir = join(root, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'profile.json'), `${JSON.stringify({ date, seconds, runs, profiles, samples: Object.fromEntries(samples) }, null, 2)}\n`);
  const table = markdown(profiles, date);
  await writeFile(join(dir, 'profile.md'), table);
  console.log(`\n${table}`);
} finally {
  await destroyAll();
}
