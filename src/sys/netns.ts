/**
 * Network namespaces: named ones under /var/run/netns (compatible with
 * `ip netns`), and entering a namespace briefly on the main thread to open
 * sockets there. A socket stays bound to the namespace it was created in,
 * so code can enter, open, and leave at once.
 */
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Conflict, InvalidArgument, NetctlError } from '../errors.js';
import { addon, isNativeErrnoError } from './addon.js';

export const NETNS_RUN_DIR = '/var/run/netns';

function validateName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || Buffer.byteLength(name) > 255) {
    throw new InvalidArgument(`invalid network namespace name "${name}"`);
  }
}

/**
 * Creates a network namespace pinned at /var/run/netns/NAME, as `ip netns add`
 * does (the run directory is made a shared mount point first). The calling
 * thread is back in its own namespace when this returns. Resolves to the path.
 */
export async function createNamedNetns(name: string): Promise<string> {
  validateName(name);
  const path = join(NETNS_RUN_DIR, name);
  try {
    addon().netnsCreate(NETNS_RUN_DIR, path);
  } catch (err) {
    if (isNativeErrnoError(err) && err.code === 'EEXIST') {
      throw new Conflict(`network namespace ${name} already exists`);
    }
    throw new NetctlError('Internal', `cannot create network namespace ${name}: ${String(err)}`, { cause: err });
  }
  return path;
}

/** Removes a named namespace like `ip netns del`; a missing one is not an error. */
export async function removeNamedNetns(name: string): Promise<void> {
  validateName(name);
  const path = join(NETNS_RUN_DIR, name);
  try {
    addon().netnsUnmount(path);
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new NetctlError('Internal', `cannot remove network namespace ${name}: ${String(err)}`, { cause: err });
  }
}

/**
 * Runs `fn` with the calling (main) thread inside the namespace at
 * `netnsPath` and always returns to the original namespace, also when `fn`
 * throws. `fn` must be synchronous: anything it leaves for later runs back
 * in the original namespace.
 */
export function withNetns<T>(netnsPath: string, fn: () => T): T {
  let saved: number;
  try {
    saved = addon().netnsEnter(netnsPath);
  } catch (err) {
    if (isNativeErrnoError(err) && err.code === 'ENOENT') {
      throw new InvalidArgument(`network namespace ${netnsPath} does not exist`, { cause: err });
    }
    if (isNativeErrnoError(err) && err.code === 'EINVAL') {
      throw new InvalidArgument(`${netnsPath} is not a network namespace`, { cause: err });
    }
    throw new NetctlError('Internal', `cannot enter network namespace ${netnsPath}: ${String(err)}`, { cause: err });
  }
  try {
    return fn();
  } finally {
    addon().netnsRestore(saved);
  }
}

/** socket(2) inside the namespace at `netnsPath`; the caller owns (and closes) the fd. */
export function openSocketInNetns(netnsPath: string, domain: number, type: number, protocol: number): number {
  return withNetns(netnsPath, () => addon().socket(domain, type, protocol));
}

/**
 * Path naming the main thread's network namespace: `/proc/self` is the
 * thread-group leader, which is the main thread, whichever thread resolves
 * it. (`/proc/thread-self` would name the libuv pool thread when an async
 * fs call resolves it.) Inside `withNetns` the main thread has moved, so the
 * path names the entered namespace there. Open it to keep a reference.
 */
export function currentNetnsPath(): string {
  return '/proc/self/ns/net';
}

/** True when `path` exists and is a network namespace file. */
export async function netnsExists(path: string): Promise<boolean> {
  return addon().netnsIsNet(path);
}

/** True when both paths name the same namespace (same nsfs device and inode). */
export async function sameNetns(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b)]);
  return sa.dev === sb.dev && sa.ino === sb.ino;
}

/** True when `path` is an nsfs file of a network namespace (checks `--netns PATH`). */
export function isNetnsPath(path: string): boolean {
  return addon().netnsIsNet(path);
}
