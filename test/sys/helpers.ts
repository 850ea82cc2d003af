/** Namespaces for kernel tests: unique names, removed by teardown even when the test fails. */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { createNamedNetns, removeNamedNetns } from '../../src/sys/netns.js';

export const run = promisify(execFile);

let counter = 0;

/** A unique short name: `nct-<pid base36><counter>`, fits a 15-byte link name too. */
export function uniqueName(tag = ''): string {
  counter += 1;
  return `nct-${process.pid.toString(36)}${tag}${counter}`.slice(0, 15);
}

const liveNetns = new Set<string>();

// A worker that dies of an uncaught exception skips teardowns; still leave no namespace behind.
process.on('exit', () => {
  for (const name of liveNetns) {
    try {
      execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

export async function tempNetns(t: ExecutionContext): Promise<{ name: string; path: string }> {
  const name = uniqueName('n');
  const path = await createNamedNetns(name);
  liveNetns.add(name);
  t.teardown(async () => {
    await removeNamedNetns(name);
    liveNetns.delete(name);
  });
  return { name, path };
}

/** Runs a command inside a namespace, the way the tests check results (never with src/ code). */
/**
 * Two namespaces joined by a veth pair (of `mtu`, default the kernel's),
 * `addressA`/24 on `ifA` in `a` and `addressB`/24 in `b`: an underlay
 * between two hosts.
 */
export async function vethUnderlay(t: ExecutionContext, addressA: string, addressB: string, mtu?: number) {
  const a = await tempNetns(t);
  const b = await tempNetns(t);
  const ifA = uniqueName('a');
  const ifB = uniqueName('b');
  await run('ip', ['-n', a.name, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  await run('ip', ['-n', a.name, 'addr', 'add', `${addressA}/24`, 'dev', ifA]);
  await run('ip', ['-n', b.name, 'addr', 'add', `${addressB}/24`, 'dev', ifB]);
  if (mtu !== undefined) {
    await run('ip', ['-n', a.name, 'link', 'set', ifA, 'mtu', String(mtu)]);
    await run('ip', ['-n', b.name, 'link', 'set', ifB, 'mtu', String(mtu)]);
  }
  await run('ip', ['-n', a.name, 'link', 'set', ifA, 'up']);
  await run('ip', ['-n', b.name, 'link', 'set', ifB, 'up']);
  return { a, b, ifA };
}

export function inNetns(path: string, command: string, args: readonly string[]) {
  return run('nsenter', [`--net=${path}`, command, ...args]);
}

export async function ipJson<T>(netnsName: string, args: readonly string[]): Promise<T> {
  const { stdout } = await run('ip', ['-n', netnsName, '-j', ...args]);
  return JSON.parse(stdout) as T;
}

export async function pingOk(fromPath: string, address: string, timeoutSeconds = 2): Promise<boolean> {
  try {
    await inNetns(fromPath, 'ping', ['-c', '1', '-W', String(timeoutSeconds), address]);
    return true;
  } catch {
    return false;
  }
}
