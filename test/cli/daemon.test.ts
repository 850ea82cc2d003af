/**
 * `netctl daemon` for real: file store, bridge driver, the API on a socket.
 * Each daemon runs under `unshare --net`, so its bridges live in a private
 * namespace that vanishes with the process; the root namespace is untouched.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parseDuration } from '../../src/cli/daemon.js';
import { NETCTL_BIN, runNetctl } from './run.js';

interface Daemon {
  readonly child: ChildProcessWithoutNullStreams;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
}

/** Starts a daemon and waits for its "listening" line (or its exit); without predefined networks, the lists are the test's own. */
async function startDaemon(stateDir: string, socketPath: string): Promise<Daemon> {
  const child = spawn('unshare', [
    '--net',
    process.execPath,
    NETCTL_BIN,
    'daemon',
    '--state-dir',
    stateDir,
    '--socket',
    socketPath,
    '--dns',
    '127.0.0.1',
    '--predefined-networks=false',
  ]);
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('\n')) resolve();
    });
    void exited.then(() => resolve());
  });
  if (!stdout.includes(`netctl daemon listening on unix://${socketPath}`)) {
    child.kill('SIGKILL');
    throw new Error(`daemon did not start: ${stdout}${stderr}`);
  }
  return { child, stderr: () => stderr, exited };
}

test('the daemon serves the API, keeps state across restarts, and stops on SIGTERM', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-daemon-'));
  const running = new Set<Daemon>();
  t.teardown(async () => {
    for (const daemon of running) daemon.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  const stateDir = join(dir, 'state');
  const socketPath = join(dir, 'run', 'netctl.sock');
  const host = ['-H', `unix://${socketPath}`];

  const first = await startDaemon(stateDir, socketPath);
  running.add(first);
  const id = (await runNetctl([...host, 'network', 'create', '--subnet', '10.91.0.0/24', 'nct-keep'])).stdout.trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  t.is((await runNetctl([...host, 'network', 'create', '-d', 'null', 'nct-null'])).code, 0);

  const refused = await startDaemon(stateDir, socketPath).catch((err: Error) => err);
  t.true(refused instanceof Error);
  t.regex((refused as Error).message, /already listening/);
  // Another socket does not make another daemon on the same state welcome.
  const sameState = await startDaemon(stateDir, join(dir, 'run', 'other.sock')).catch((err: Error) => err);
  t.true(sameState instanceof Error);
  t.regex((sameState as Error).message, new RegExp(`another netctl daemon \\(pid \\d+\\) is using the state directory ${stateDir}`));

  first.child.kill('SIGTERM');
  t.is(await first.exited, 0);
  running.delete(first);
  t.regex(first.stderr(), /SIGTERM received, shutting down/);
  t.false(existsSync(socketPath));
  const down = await runNetctl([...host, 'network', 'ls']);
  t.is(down.stderr, `Cannot connect to the netctl daemon at unix://${socketPath}. Is the daemon running?\n`);

  // A daemon killed outright leaves its socket behind; the next one replaces it and has the same networks.
  const second = await startDaemon(stateDir, socketPath);
  running.add(second);
  t.is((await runNetctl([...host, 'network', 'ls', '--format', '{{.Name}} {{.Driver}}'])).stdout, 'nct-keep bridge\nnct-null null\n');
  second.child.kill('SIGKILL');
  await second.exited;
  running.delete(second);
  t.true(existsSync(socketPath));

  const third = await startDaemon(stateDir, socketPath);
  running.add(third);
  const inspect = await runNetctl([...host, 'network', 'inspect', '-f', '{{.Id}} {{(index .IPAM.Config 0).Subnet}}', 'nct-keep']);
  t.is(inspect.stdout, `${id} 10.91.0.0/24\n`);
  t.is((await runNetctl([...host, 'network', 'rm', 'nct-keep', 'nct-null'])).stdout, 'nct-keep\nnct-null\n');
  third.child.kill('SIGINT');
  t.is(await third.exited, 0);
  running.delete(third);
});

test('--store-compact-interval takes a duration and needs a cluster store, --bridge takes only none; bad ones are refused before anything starts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-daemon-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const daemon = (...args: string[]) =>
    runNetctl(['daemon', '--state-dir', join(dir, 'state'), '--socket', join(dir, 'netctl.sock'), '--dns', '127.0.0.1', ...args]);
  const bad = await daemon('--store', 'etcd://198.18.0.1:2379', '--store-compact-interval', '5 minutes');
  t.not(bad.code, 0);
  t.regex(bad.stderr, /invalid --store-compact-interval "5 minutes": a number with a unit \(ms, s, m, h\)/);
  const alone = await daemon('--store-compact-interval', '10m');
  t.not(alone.code, 0);
  t.regex(alone.stderr, /--store-compact-interval needs a cluster store \(--store\)/);
  const bridge = await daemon('--bridge', 'docker0');
  t.not(bridge.code, 0);
  t.regex(bridge.stderr, /invalid --bridge "docker0": only none \(no default bridge network\) is supported/);
  t.false(existsSync(join(dir, 'state', 'store.db')), 'no state was made');
});

test('durations: ms, s, m, h and 0', (t) => {
  t.is(parseDuration('x', '250ms'), 250);
  t.is(parseDuration('x', '30s'), 30_000);
  t.is(parseDuration('x', '1.5m'), 90_000);
  t.is(parseDuration('x', '2h'), 7_200_000);
  t.is(parseDuration('x', '0'), 0);
  for (const text of ['', '5', '-1s', '1d', 's']) t.throws(() => parseDuration('x', text), { message: /invalid --x/ });
});
