/**
 * `net.*` sysctls of a given network namespace. The /proc/sys/net files seen
 * by a thread belong to that thread's namespace, so the file is opened, read
 * or written, and closed while inside it.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { InvalidArgument, NetctlError, NotFound } from '../errors.js';
import { withNetns } from './netns.js';

/** `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. Only `net.*` keys are per namespace. */
function procPath(key: string): string {
  const parts = key.split('.');
  if (parts[0] !== 'net' || parts.length < 2 || parts.some((part) => !/^[A-Za-z0-9_-]+$/.test(part))) {
    throw new InvalidArgument(`invalid sysctl key "${key}": expected net.*`);
  }
  return `/proc/sys/${parts.join('/')}`;
}

function sysctlError(err: unknown, what: string): NetctlError {
  if (err instanceof NetctlError) return err;
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new NotFound(`${what}: no such sysctl`);
  return new NetctlError('Internal', `${what}: ${String(err)}`, { cause: err });
}

export async function setSysctl(netnsPath: string, key: string, value: string): Promise<void> {
  const path = procPath(key);
  try {
    withNetns(netnsPath, () => {
      const fd = openSync(path, 'w');
      try {
        writeSync(fd, value);
      } finally {
        closeSync(fd);
      }
    });
  } catch (err) {
    throw sysctlError(err, `set ${key}=${value} in ${netnsPath}`);
  }
}

/** The value with its trailing newline removed. */
export async function getSysctl(netnsPath: string, key: string): Promise<string> {
  const path = procPath(key);
  try {
    return withNetns(netnsPath, () => {
      const fd = openSync(path, 'r');
      try {
        const buffer = Buffer.alloc(4096);
        const length = readSync(fd, buffer, 0, buffer.length, null);
        return buffer.subarray(0, length).toString('utf8').trimEnd();
      } finally {
        closeSync(fd);
      }
    });
  } catch (err) {
    throw sysctlError(err, `get ${key} in ${netnsPath}`);
  }
}
