/**
 * The embedded DNS under a TCP flood from one sandbox, on real namespaces:
 * sandbox A holds 1,100+ half-sent connections to 127.0.0.11:53 (reopening
 * those the daemon closes) and pipelines many MB of queries on one more
 * without reading; meanwhile sandbox B is answered, the API answers, and
 * the daemon's descriptors and memory stay bounded. Also: a burst of
 * forwards to a dead upstream logs one line, not one per query.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { encode } from 'dns-packet';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, inNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;

/** The daemon's defaults (src/dns/embedded.ts defaultTcpLimits). */
const MAX_PER_SANDBOX = 32;
const HALF_SENT_CONNECTIONS = 1100;
const PIPELINE_BYTES = 32 << 20;

/**
 * Run with node inside sandbox A. argv: connections, pipeline bytes, a base64
 * query. Opens the connections, each sending 3 bytes of a 300-byte frame;
 * reopens those the daemon closes, at most 100 a second; once all have
 * connected once, pipelines queries on one more connection without reading,
 * reconnecting when the daemon closes it. Prints its counters as a JSON
 * line every 200 ms; exits after 120 s whatever happens.
 */
const FLOODER = `
const net = require('net');
const [connections, pipelineBytes, queryBase64] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
const stats = { connected: 0, open: 0, closedByServer: 0, pipelineBytes: 0, pipelineConnections: 0, pipelineStalled: false };
const reopen = [];
function halfSent() {
  const socket = net.connect(53, '127.0.0.11');
  let connected = false;
  socket.on('error', () => {});
  socket.on('connect', () => {
    connected = true;
    stats.connected++;
    stats.open++;
    socket.write(Buffer.from([0x01, 0x2c, 0xab]));
    if (stats.connected === connections) pipeline();
  });
  socket.on('close', () => {
    if (connected) { stats.open--; stats.closedByServer++; }
    reopen.push(halfSent);
  });
  socket.resume();
}
setInterval(() => { for (const open of reopen.splice(0, 10)) open(); }, 100);
const query = Buffer.from(queryBase64, 'base64');
const frame = Buffer.alloc(2 + query.length);
frame.writeUInt16BE(query.length, 0);
query.copy(frame, 2);
const chunk = Buffer.concat(Array(Math.floor(65536 / frame.length)).fill(frame));
function pipeline() {
  if (stats.pipelineConnections >= 50) return;
  stats.pipelineConnections++;
  const socket = net.connect(53, '127.0.0.11');
  socket.pause();
  socket.on('error', () => {});
  socket.on('close', () => { stats.pipelineStalled = false; setTimeout(pipeline, 100); });
  let lastProgress = Date.now();
  const stall = setInterval(() => { stats.pipelineStalled = Date.now() - lastProgress > 1000; }, 100);
  socket.on('close', () => clearInterval(stall));
  let sent = 0;
  const push = () => {
    while (sent < pipelineBytes && !socket.destroyed) {
      sent += chunk.length;
      stats.pipelineBytes += chunk.length;
      lastProgress = Date.now();
      if (!socket.write(chunk)) { socket.once('drain', push); return; }
    }
  };
  socket.on('connect', push);
}
for (let i = 0; i < connections; i++) halfSent();
setInterval(() => console.log(JSON.stringify(stats)), 200);
setTimeout(() => process.exit(0), 120000);
`;

interface FloodStats {
  connected: number;
  open: number;
  closedByServer: number;
  pipelineBytes: number;
  pipelineConnections: number;
  pipelineStalled: boolean;
}

/** Polls every 100 ms for at most `timeoutMs`; returns whether the condition came to hold. */
async function eventually(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
}

test.serial('a TCP flood from one sandbox leaves the daemon bounded and the others served', async (t) => {
  const hostNs = uniqueName('l');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-dns-limits-'));
  const socket = join(stateDir, 'netctl.sock');
  const sandboxes: string[] = [];
  let daemon: RunningDaemon | undefined;
  let flooder: ChildProcess | undefined;
  t.teardown(async () => {
    if (flooder?.pid !== undefined && flooder.exitCode === null && flooder.signalCode === null) {
      const exited = new Promise((resolve) => flooder?.once('exit', resolve));
      flooder.kill('SIGKILL');
      await exited;
    }
    await daemon?.stop('SIGKILL');
    for (const name of sandboxes) await removeNetns(name);
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });

  // The upstream is the daemon namespace's own loopback, where nothing listens: forwards fail at once, and stay inside.
  daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  const pid = daemon.process.pid ?? Number.NaN;
  // nsenter execs the daemon in place: the child is the daemon.
  t.regex(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /netctl\.js\0daemon\0/);
  const netctl = async (...args: string[]) => {
    const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
    t.is(result.code, 0, `netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  await netctl('network', 'create', '--subnet', '10.86.0.0/24', 'flood');
  const [a, b] = [uniqueName('a'), uniqueName('b')];
  for (const name of [a, b]) {
    sandboxes.push(name);
    await netctl('sandbox', 'create', name);
    await netctl('network', 'connect', 'flood', name);
  }
  const dig = async (sandbox: string, ...args: string[]): Promise<string> => {
    const result = await inNetns(nsPath(sandbox), 'dig', ['@127.0.0.11', '+tries=1', '+time=3', '+short', ...args]);
    return result.code === 0 ? result.stdout.trim() : `dig failed (${result.code}): ${result.stdout}${result.stderr}`;
  };
  const aIp = await dig(b, a);
  t.regex(aIp, /^10\.86\.0\.\d+$/);
  t.is(await dig(b, '+tcp', a), aIp);

  // A burst of forwards to the dead upstream: one log line (and later a summary), not one per query.
  const burst =
    "const s=require('dgram').createSocket('udp4');const q=Buffer.from(process.argv[1],'base64');let got=0;" +
    "s.on('message',()=>{if(++got===300)done()});const done=()=>{console.log(got);s.close();clearTimeout(t)};const t=setTimeout(done,2000);" +
    'for(let i=0;i<300;i++){q.writeUInt16BE(i,0);s.send(q,53,\'127.0.0.11\')}';
  const external = encode({ type: 'query', id: 1, flags: 0x0100, questions: [{ type: 'A', name: 'nowhere.test', class: 'IN' }] });
  const burstResult = await inNetns(nsPath(a), process.execPath, ['-e', burst, external.toString('base64')]);
  t.is(burstResult.code, 0, burstResult.stderr);
  const upstreamLines = daemon.output().split('\n').filter((line) => /^[A-Z]+ +dns: upstream 127\.0\.0\.1:53/.test(line));
  t.log(`${burstResult.stdout.trim()} of 300 forwards answered; daemon log lines about the upstream: ${upstreamLines.length}`);
  // One per distinct failure (ECONNREFUSED; a timeout would be another), never the same one twice.
  t.true(upstreamLines.length >= 1 && upstreamLines.length <= 3, upstreamLines.slice(0, 5).join('\n'));
  t.is(new Set(upstreamLines).size, upstreamLines.length, 'no line twice');

  const fdsBefore = openFds(pid);
  const rssBefore = rssKiB(pid);

  const query = encode({ type: 'query', id: 7, flags: 0x0100, questions: [{ type: 'A', name: b, class: 'IN' }] });
  flooder = spawn('nsenter', [`--net=${nsPath(a)}`, process.execPath, '-e', FLOODER, String(HALF_SENT_CONNECTIONS), String(PIPELINE_BYTES), query.toString('base64')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stats: FloodStats | undefined;
  let pending = '';
  flooder.stdout?.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop() ?? '';
    const last = lines.at(-1);
    if (last !== undefined) stats = JSON.parse(last) as FloodStats;
  });
  const flooding = await eventually(
    // The pipeline is in place once it stalled on the daemon's back-pressure, or the daemon closed it for that.
    () => stats !== undefined && stats.connected >= HALF_SENT_CONNECTIONS && (stats.pipelineStalled || stats.pipelineConnections >= 2),
    60_000,
  );
  t.true(flooding, `the flood is in place: ${JSON.stringify(stats)}`);

  // While the flood goes on (A reopens what the daemon closes), for at least 3 rounds and 3 s.
  let maxFds = 0;
  let maxRss = 0;
  const started = Date.now();
  for (let round = 0; round < 20 && (round < 3 || Date.now() - started < 3000); round++) {
    maxFds = Math.max(maxFds, openFds(pid));
    maxRss = Math.max(maxRss, rssKiB(pid));
    t.is(await dig(b, a), aIp, `round ${round}: B is answered over UDP`);
    t.is(await dig(b, '+tcp', a), aIp, `round ${round}: and over TCP`);
    t.regex(await netctl('network', 'ls'), /flood/, `round ${round}: the API answers`);
  }
  const during = stats;
  t.log(`flood: ${JSON.stringify(during)}`);
  t.log(`daemon fds ${fdsBefore} → at most ${maxFds}; RSS ${rssBefore} kB → at most ${maxRss} kB`);
  t.true(during !== undefined && during.closedByServer >= HALF_SENT_CONNECTIONS - MAX_PER_SANDBOX, 'the daemon closed what went over its cap');
  // A's connections are capped at 32; the slack covers one of B's TCP queries, an API connection, the moment between
  // accepting a connection over the cap and closing the one it replaces, and the baseline's own ±2 (seen: +33…+34).
  // Without the cap it is A's 1,100 and more.
  t.true(maxFds <= fdsBefore + MAX_PER_SANDBOX + 16, `open fds stayed bounded (${fdsBefore} → ${maxFds})`);
  // 32 connections' stream buffers (16 KiB each way, one reply over) are about 1.5 MiB; the rest is the heap V8
  // grows while answering queries at full speed (seen: +22…+25 MiB). Unbounded, every pipelined answer stays in
  // the daemon (about 190 bytes each, 32 MiB of queries being 900,000 of them): hundreds of MiB.
  t.true(maxRss - rssBefore < 64 * 1024, `RSS grew by less than 64 MiB (${rssBefore} → ${maxRss} kB)`);

  // The flood ends: A is served again and the daemon gives back its descriptors.
  const exited = new Promise((resolve) => flooder?.once('exit', resolve));
  flooder.kill('SIGKILL');
  await exited;
  t.is(await dig(a, '+tcp', b), await dig(a, b), 'A itself is answered once it stops');
  t.true(await eventually(() => openFds(pid) <= fdsBefore + 2, 15_000), `fds back to ${fdsBefore} (now ${openFds(pid)})`);
  t.false(/EMFILE|TCP listener/.test(daemon.output()), daemon.output());
});
