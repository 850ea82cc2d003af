/**
 * The README's library example run as a runtime would: examples/attach-process.ts
 * in a host namespace of the test's own, attaching a process that runs in an
 * unnamed namespace (found as /proc/PID/ns/net) to a network, then letting go.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';

const example = fileURLToPath(new URL('../../examples/attach-process.ts', import.meta.url));

function output(child: ChildProcess): () => string {
  let text = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  return () => text;
}

test.serial("a runtime attaches a process's namespace to a network and lets it go", async (t) => {
  const hostNs = uniqueName('lib');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-library-'));
  // The job: a process in a namespace of its own, as a runtime starts one.
  const job = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  const runtime = spawn('nsenter', [`--net=${hostNsPath}`, process.execPath, '--import', 'tsx', example, String(job.pid), stateDir], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const printed = output(runtime);
  const runtimeExit = new Promise<number | null>((resolve) => runtime.on('close', resolve));
  t.teardown(async () => {
    runtime.kill('SIGKILL');
    job.kill('SIGKILL');
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const jobNs = `/proc/${job.pid}/ns/net`;
  await waitFor('the example to attach the job', () => (printed().includes('attached:') ? true : undefined), 60_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${printed()}`);
  });
  t.regex(printed(), /attached: eth0 10\.88\.0\.2\/24 resolv\.conf \S+/);
  const inJob = (command: string, ...args: string[]) => run('nsenter', [`--net=${jobNs}`, command, ...args]);
  t.regex((await inJob('ip', '-4', '-o', 'addr', 'show', 'eth0')).stdout, /inet 10\.88\.0\.2\/24/);
  t.is((await inJob('ping', '-c', '1', '-W', '2', '10.88.0.1')).code, 0, 'the job reaches its gateway');
  const resolvConf = /resolv\.conf (\S+)/.exec(printed())?.[1] ?? '';
  t.true(existsSync(resolvConf), 'the sandbox has a resolv.conf for the runtime to mount');

  runtime.stdin?.end();
  t.is(await runtimeExit, 0, printed());
  t.deepEqual(
    printed()
      .split('\n')
      .filter((line) => line.startsWith('event: ')),
    [
      'event: network create',
      'event: sandbox create',
      'event: endpoint create',
      'event: endpoint join',
      'event: endpoint leave',
      'event: endpoint remove',
      'event: sandbox remove',
      'event: network remove',
    ],
  );
  t.regex(printed(), /detached/);
  t.is((await inJob('ip', '-o', 'link', 'show')).stdout.trim().split('\n').length, 1, 'only lo is left in the job');
  t.true(existsSync(jobNs), "the job's namespace is the job's: netctl leaves it");
  t.false(existsSync(resolvConf), 'its resolv.conf is gone');
});
