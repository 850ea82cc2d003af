import { constants } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockHeld, LockTimeout } from '../errors.js';
import { addon } from './addon.js';

export { LockHeld, LockTimeout };

export interface FileLock {
  readonly path: string;
  /** Drops the lock and closes the file; later calls do nothing. */
  release(): Promise<void>;
}

export interface LockFileOptions {
  /** How long to wait for another holder; default 10 000 ms. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 20;

/**
 * Opens (creating it if needed) `path` and takes an exclusive flock(2) on it.
 * flock locks belong to the open file description, so two `lockFile` calls
 * exclude each other even inside one process, and the kernel drops the lock
 * when the holder dies. Waiting polls with LOCK_NB so the event loop keeps
 * running.
 */
export async function lockFile(path: string, options: LockFileOptions = {}): Promise<FileLock> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { flock } = addon();
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    const deadline = Date.now() + timeoutMs;
    let backoffMs = 1;
    while (!flock(handle.fd, true, true)) {
      if (Date.now() >= deadline) throw new LockTimeout(path, timeoutMs);
      // Jitter keeps several waiting processes from retrying in lockstep.
      await sleep(Math.min(backoffMs, Math.max(0, deadline - Date.now())) * (0.5 + Math.random() / 2));
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }
  } catch (err) {
    await handle.close();
    throw err;
  }
  return new HeldLock(path, handle);
}

/**
 * Takes `path`'s lock without waiting, for as long as the process keeps it,
 * and writes the process's PID into the file so that a refused second
 * process can say who holds it. The kernel drops the lock when the holder
 * dies, so a crash never leaves it taken.
 */
export async function lockForLife(path: string): Promise<FileLock> {
  let lock: FileLock;
  try {
    lock = await lockFile(path, { timeoutMs: 0 });
  } catch (err) {
    if (!(err instanceof LockTimeout)) throw err;
    const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    throw new LockHeld(path, Number.isSafeInteger(pid) && pid > 0 ? pid : undefined);
  }
  await writeFile(path, `${process.pid}\n`);
  return lock;
}

class HeldLock implements FileLock {
  #handle: FileHandle | undefined;

  constructor(readonly path: string, handle: FileHandle) {
    this.#handle = handle;
  }

  async release(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    try {
      addon().funlock(handle.fd);
    } finally {
      await handle.close();
    }
  }
}
