/**
 * The figures taken on one tunnel: iperf3 TCP with 1 and 4 streams, iperf3
 * UDP with 64-byte datagrams (received packets per second), TCP
 * request/response round trips (bench/pingpong.ts), and the CPU time the
 * tunnel's processes spend per gigabyte of the single-stream run. Each
 * figure is taken on its own; one that fails is null with its reason kept.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inNetns } from '../test/helpers/kernel.js';
import type { Tunnel } from './contenders.js';
import type { Spawned, Testbed } from './testbed.js';

const here = dirname(fileURLToPath(import.meta.url));
/** /proc/PID/stat counts CPU time in these. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const PINGPONG_PORT = 7707;

export interface Sample {
  tcp1Gbps: number | null;
  tcp4Gbps: number | null;
  udp64Kpps: number | null;
  /** What the UDP sender managed, to tell a slow sender from a lossy path. */
  udp64SentKpps: number | null;
  rttP50Us: number | null;
  rttP99Us: number | null;
  /** Both ends' CPU seconds per GB received in the 1-stream run; null for kernel paths. */
  cpuSecondsPerGB: number | null;
  errors: string[];
}

export interface MeasureOptions {
  readonly seconds: number;
  readonly roundTrips: number;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bytes: number; bits_per_second: number };
    sum?: { packets?: number; lost_packets?: number; seconds?: number };
  };
}

async function iperf(tunnel: Tunnel, args: readonly string[], seconds: number): Promise<IperfJson> {
  const result = await inNetns(tunnel.clientNsPath, 'iperf3', ['-c', tunnel.serverAddress, '--connect-timeout', '5000', '-J', ...args], {
    timeoutMs: (seconds + 30) * 1000,
  });
  let parsed: IperfJson;
  try {
    parsed = JSON.parse(result.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 ${args.join(' ')}: ${(result.stderr || result.stdout).trim().slice(0, 300) || `exit ${result.code}`}`);
  }
  if (parsed.error !== undefined) throw new Error(`iperf3 ${args.join(' ')}: ${parsed.error}`);
  return parsed;
}

/** Count, median, 95th percentile and maximum of a set of timings (nearest rank). */
export interface Quantiles {
  n: number;
  p50: number;
  p95: number;
  max: number;
}

export function quantiles(values: readonly number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), max: sorted.at(-1) ?? NaN };
}

/** utime + stime of a process, all its threads, in seconds. */
export function cpuSeconds(child: ChildProcess): Promise<number> {
  return cpuSecondsOf(child.pid);
}

/** cpuSeconds of a process this one did not start, by PID. */
export async function cpuSecondsOf(pid: number | undefined): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function totalCpu(processes: readonly Spawned[]): Promise<number> {
  let sum = 0;
  for (const spawned of processes) sum += await cpuSeconds(spawned.child);
  return sum;
}

/** Polls ping until the overlay carries a packet. */
export async function reachable(tunnel: Tunnel, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await inNetns(tunnel.clientNsPath, 'ping', ['-c', '1', '-W', '1', '-q', tunnel.serverAddress]);
    if (result.code === 0) return;
    if (Date.now() > deadline) throw new Error(`${tunnel.serverAddress} not reachable after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function waitForOutput(spawned: Spawned, marker: string, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!spawned.output().includes(marker)) {
    if (spawned.exited()) throw new Error(`${what} exited: ${spawned.output().slice(-300)}`);
    if (Date.now() > deadline) throw new Error(`${what} did not start: ${spawned.output().slice(-300)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function attempt<T>(errors: string[], what: string, take: () => Promise<T>): Promise<T | null> {
  try {
    return await take();
  } catch (err) {
    errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  }
}

export async function measure(testbed: Testbed, tunnel: Tunnel, options: MeasureOptions): Promise<Sample> {
  const { seconds } = options;
  const errors: string[] = [];
  const iperfServer = testbed.spawnIn(tunnel.serverNsPath, 'iperf3', ['-s', '--forceflush']);
  await waitForOutput(iperfServer, 'Server listening', 'iperf3 server');
  const tsx = import.meta.resolve('tsx');
  const echo = testbed.spawnIn(tunnel.serverNsPath, process.execPath, ['--import', tsx, join(here, 'pingpong.ts'), 'server', String(PINGPONG_PORT)]);
  await waitForOutput(echo, 'ready', 'pingpong server');

  let cpuSecondsPerGB: number | null = null;
  const tcp1Gbps = await attempt(errors, 'TCP 1 stream', async () => {
    const before = tunnel.processes.length > 0 ? await totalCpu(tunnel.processes) : 0;
    const result = await iperf(tunnel, ['-t', String(seconds), '-O', '1'], seconds);
    const received = result.end?.sum_received;
    if (received === undefined) throw new Error('no sum_received in iperf3 output');
    if (tunnel.processes.length > 0) {
      // The omitted first second moved bytes too but is not in sum_received: count it at the same rate.
      const spent = (await totalCpu(tunnel.processes)) - before;
      const bytes = (received.bits_per_second / 8) * (seconds + 1);
      cpuSecondsPerGB = spent / (bytes / 1e9);
    }
    return received.bits_per_second / 1e9;
  });
  const tcp4Gbps = await attempt(errors, 'TCP 4 streams', async () => {
    const result = await iperf(tunnel, ['-t', String(seconds), '-O', '1', '-P', '4'], seconds);
    const received = result.end?.sum_received;
    if (received === undefined) throw new Error('no sum_received in iperf3 output');
    return received.bits_per_second / 1e9;
  });
  const udp = await attempt(errors, 'UDP 64 B', async () => {
    const result = await iperf(tunnel, ['-u', '-l', '64', '-b', '0', '-t', String(seconds)], seconds);
    const sum = result.end?.sum;
    if (sum?.packets === undefined || sum.lost_packets === undefined || sum.seconds === undefined) throw new Error('no UDP sum in iperf3 output');
    return { received: (sum.packets - sum.lost_packets) / sum.seconds / 1000, sent: sum.packets / sum.seconds / 1000 };
  });
  const rtt = await attempt(errors, 'round trips', async () => {
    const result = await inNetns(
      tunnel.clientNsPath,
      process.execPath,
      ['--import', tsx, join(here, 'pingpong.ts'), 'client', tunnel.serverAddress, String(PINGPONG_PORT), String(options.roundTrips)],
      { timeoutMs: 60_000 },
    );
    if (result.code !== 0) throw new Error(result.stderr.trim().slice(0, 300));
    return JSON.parse(result.stdout) as { p50Us: number; p99Us: number };
  });
  for (const [i, spawned] of tunnel.processes.entries()) {
    if (spawned.exited()) errors.push(`tunnel process ${i + 1} exited during the run: ${spawned.output().slice(-300)}`);
  }
  return {
    tcp1Gbps,
    tcp4Gbps,
    udp64Kpps: udp?.received ?? null,
    udp64SentKpps: udp?.sent ?? null,
    rttP50Us: rtt?.p50Us ?? null,
    rttP99Us: rtt?.p99Us ?? null,
    cpuSecondsPerGB,
    errors,
  };
}
