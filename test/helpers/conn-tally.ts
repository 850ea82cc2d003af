/**
 * Who answers a service, as the e2e tests count it: tasks run a small
 * server that answers each TCP connection and UDP datagram with its name
 * (and, when asked, the address the connection came from); a client makes
 * connections one after the other, each a new flow, and the test tallies who
 * answered and what failed. Both are Python scripts run in the sandbox's
 * or client's namespace with nsenter.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { inNetns } from './kernel.js';
import { until } from './wait.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;
/** Not pyenv's shim: the same interpreter whatever PATH the test runs with. */
const PYTHON = '/usr/bin/python3';

/** What a task answers: its name, or `NAME@PEER_ADDRESS` to show the address it saw the connection come from. */
export type Answer = 'name' | 'name@peer';

/** A task: argv = name port answer; answers each TCP connection and each UDP datagram on the port. */
const TASK_SERVER = `
import socket, sys, threading
name, port, with_peer = sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'name@peer'
def answer(peer):
    return ('%s@%s' % (name, peer[0]) if with_peer else name).encode()
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(('0.0.0.0', port))
tcp.listen(256)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(('0.0.0.0', port))
def answer_udp():
    while True:
        _, peer = udp.recvfrom(2048)
        udp.sendto(answer(peer), peer)
threading.Thread(target=answer_udp, daemon=True).start()
print('listening', flush=True)
while True:
    conn, peer = tcp.accept()
    try:
        conn.sendall(answer(peer))
    except OSError:
        pass
    conn.close()
`;

/**
 * The client: argv = proto (tcp|udp) address port count timeout max-failures [source-port].
 * One line per attempt: `ok START END ANSWER`, or `fail START END ERROR ERRNO`,
 * START and END on CLOCK_MONOTONIC (process.hrtime's clock), in ns; it
 * stops after max-failures failures. A count of 0 goes on until stdin
 * closes. Each attempt is a fresh socket (a new flow); with a source port,
 * the UDP socket binds it, so attempts share one flow.
 */
const CLIENT = `
import select, socket, sys, time
proto, address, port, count, timeout, max_failures = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
source_port = int(sys.argv[7]) if len(sys.argv) > 7 else 0
now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)
failures = 0
attempts = 0
while count == 0 or attempts < count:
    if count == 0:
        # Paced, not flat out: it runs beside three daemons on a small machine.
        if select.select([sys.stdin], [], [], 0.005)[0] and sys.stdin.read() == '':
            break
    attempts += 1
    start = now()
    s = None
    try:
        if proto == 'tcp':
            s = socket.create_connection((address, port), timeout=timeout)
            chunks = []
            while True:
                chunk = s.recv(256)
                if not chunk:
                    break
                chunks.append(chunk)
            answer = b''.join(chunks).decode()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(timeout)
            if source_port:
                s.bind(('0.0.0.0', source_port))
            s.connect((address, port))
            s.send(b'who')
            answer = s.recv(256).decode()
        print('ok', start, now(), answer or '-', flush=True)
    except OSError as e:
        failures += 1
        print('fail', start, now(), type(e).__name__, e.errno, flush=True)
        if failures >= max_failures:
            break
    finally:
        if s is not None:
            s.close()
`;

/** One attempt of the client. */
export interface Attempt {
  /** The task's name, or undefined when it failed. */
  readonly answer: string | undefined;
  /** The address the task saw the connection come from, when its server tells it. */
  readonly peer: string | undefined;
  /** `ERROR ERRNO SECONDS` when it failed. */
  readonly failure: string | undefined;
  /** When it began and ended, on CLOCK_MONOTONIC (process.hrtime's clock), in ns. */
  readonly start: bigint;
  readonly end: bigint;
}

function parseAttempts(stdout: string): Attempt[] {
  const attempts: Attempt[] = [];
  // Whole lines only: the last may still be on its way.
  for (const line of stdout.split('\n').slice(0, -1)) {
    const words = line.split(' ');
    const [kind, start = '0', end = '0'] = words;
    if (kind === 'ok' && words.length === 4) {
      const [answer, peer] = (words[3] ?? '').split('@');
      attempts.push({ answer, peer, failure: undefined, start: BigInt(start), end: BigInt(end) });
    } else if (kind === 'fail' && words.length === 5) {
      const seconds = (Number(BigInt(end) - BigInt(start)) / 1e9).toFixed(3);
      attempts.push({ answer: undefined, peer: undefined, failure: `${words[3]} ${words[4]} ${seconds}`, start: BigInt(start), end: BigInt(end) });
    } else {
      throw new Error(`the client printed ${JSON.stringify(line)}`);
    }
  }
  return attempts;
}

export interface Tally {
  /** Answers per task name (any answer, even one no task should give). */
  readonly counts: Map<string, number>;
  /** Every peer address the tasks reported, with how often. */
  readonly peers: Map<string, number>;
  /** The attempts that failed (`ERROR ERRNO SECONDS`). */
  readonly failures: string[];
  readonly attempts: number;
}

export function tallyOf(attempts: readonly Attempt[]): Tally {
  const counts = new Map<string, number>();
  const peers = new Map<string, number>();
  const failures: string[] = [];
  for (const { answer, peer, failure } of attempts) {
    if (answer !== undefined) counts.set(answer, (counts.get(answer) ?? 0) + 1);
    if (peer !== undefined) peers.set(peer, (peers.get(peer) ?? 0) + 1);
    if (failure !== undefined) failures.push(failure);
  }
  return { counts, peers, failures, attempts: attempts.length };
}

export const show = (tally: Tally) =>
  JSON.stringify({ answers: Object.fromEntries(tally.counts), ...(tally.peers.size > 0 ? { peers: Object.fromEntries(tally.peers) } : {}), failures: tally.failures });

export interface ClientOptions {
  readonly port: number;
  readonly timeoutSeconds?: number;
  readonly maxFailures?: number;
  readonly sourcePort?: number;
}

function clientArgs(proto: 'tcp' | 'udp', address: string, count: number, options: ClientOptions): string[] {
  const args = ['-c', CLIENT, proto, address, String(options.port), String(count), String(options.timeoutSeconds ?? 3), String(options.maxFailures ?? 5)];
  if (options.sourcePort !== undefined) args.push(String(options.sourcePort));
  return args;
}

/** Runs the client in the namespace: `count` attempts to address:port (3 s each; it stops after 5 failures). */
export async function runClient(netnsPath: string, proto: 'tcp' | 'udp', address: string, count: number, options: ClientOptions): Promise<Tally> {
  const result = await inNetns(netnsPath, PYTHON, clientArgs(proto, address, count, options), { timeoutMs: 180_000 });
  if (result.code !== 0) throw new Error(`client in ${netnsPath} exited ${result.code}: ${result.stderr}`);
  return tallyOf(parseAttempts(result.stdout));
}

/** The client making TCP connections one after the other until stopped; `attempts()` reads what it printed so far. */
export function connectionStream(netnsPath: string, address: string, port: number) {
  const child = spawn('nsenter', [`--net=${netnsPath}`, PYTHON, ...clientArgs('tcp', address, 0, { port, maxFailures: 1000 })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    attempts: () => parseAttempts(stdout),
    /** Closes its stdin and waits for it to finish its attempt under way. */
    async stop(): Promise<Attempt[]> {
      child.stdin.end();
      await exited;
      if (child.exitCode !== 0) throw new Error(`the client in ${netnsPath} exited ${child.exitCode}: ${stderr}`);
      return parseAttempts(stdout);
    },
    kill(): void {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    },
  };
}

/**
 * A UDP source port of the client whose flow to address:port goes to one of
 * `wanted`: each try is a fresh flow, which the round robin sends to the
 * next task. Tries ports from `base` on.
 */
export async function pinnedFlow<Task extends { readonly name: string }>(
  netnsPath: string,
  address: string,
  port: number,
  wanted: readonly Task[],
  base: number,
): Promise<{ sourcePort: number; task: Task }> {
  const tried: string[] = [];
  for (let sourcePort = base; sourcePort < base + 12; sourcePort++) {
    const tally = await runClient(netnsPath, 'udp', address, 1, { port, sourcePort, maxFailures: 1 });
    const answer = [...tally.counts.keys()][0];
    const task = wanted.find((w) => w.name === answer);
    if (task !== undefined) return { sourcePort, task };
    tried.push(`${sourcePort}: ${show(tally)}`);
  }
  throw new Error(`no flow from ${netnsPath} to ${address}:${port} reached ${wanted.map((w) => w.name).join(' or ')}: ${tried.join('; ')}`);
}

/** Every attempt answered, only by `allowed` tasks; with `client`, each of them saw the client's own address. */
export function allAnsweredBy(t: ExecutionContext, tally: Tally, count: number, allowed: readonly { readonly name: string }[], what: string, client?: string): void {
  const names = new Set(allowed.map((task) => task.name));
  const answered = [...tally.counts].filter(([name]) => names.has(name)).reduce((sum, [, n]) => sum + n, 0);
  t.is(answered, count, `${what}: all ${count} answered by ${[...names].join(', ')}: ${show(tally)}`);
  if (client !== undefined) {
    t.deepEqual([...tally.peers.keys()], tally.attempts === tally.failures.length ? [] : [client], `${what}: every task saw the client's address ${client}: ${show(tally)}`);
  }
}

/** Every attempt answered (as allAnsweredBy), and each task got at least `share` of them. */
export function balanced(t: ExecutionContext, tally: Tally, count: number, tasks: readonly { readonly name: string }[], share: number, what: string, client?: string): void {
  allAnsweredBy(t, tally, count, tasks, what, client);
  for (const task of tasks) {
    t.true((tally.counts.get(task.name) ?? 0) >= share * count, `${what}: ${task.name} got at least ${share * 100} %: ${show(tally)}`);
  }
}

/** Every attempt refused at once: a closed port, not a hang. */
export function refused(t: ExecutionContext, tally: Tally, count: number, what: string): void {
  t.deepEqual(
    tally.failures.map((failure) => failure.split(' ')[0]),
    Array.from({ length: count }, () => 'ConnectionRefusedError'),
    `${what}: refused, not answered nor timed out: ${show(tally)}`,
  );
}

/** The task servers of a test, killed by PID in teardown. */
export class Servers {
  private readonly children: ChildProcess[] = [];

  /** Servers listening on `port` and answering as `answer` says. */
  constructor(
    private readonly port: number,
    private readonly answer: Answer,
  ) {}

  /** Starts the server in the sandbox's namespace, named after the sandbox, and resolves once it listens. */
  async start(sandbox: string): Promise<void> {
    const child = spawn('nsenter', [`--net=${nsPath(sandbox)}`, PYTHON, '-c', TASK_SERVER, sandbox, String(this.port), this.answer], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    await until(`the server in ${sandbox}`, () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server in ${sandbox} exited: ${output}`);
      return output.includes('listening') ? true : undefined;
    }, 30_000);
  }

  async killAll(): Promise<void> {
    for (const child of this.children) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
  }
}
