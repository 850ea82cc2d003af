import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { FileStore } from '../../src/store/file.js';
import { LockTimeout, lockFile } from '../../src/sys/fslock.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

async function usingDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-lock-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('lockFile excludes a second holder until release, then hands the lock over', async (t) => {
  const path = join(await usingDir(t), 'x.lock');
  const first = await lockFile(path);
  const started = Date.now();
  const err = await t.throwsAsync(lockFile(path, { timeoutMs: 150 }), { instanceOf: LockTimeout });
  t.true(Date.now() - started >= 150);
  t.true(err?.message.includes(path));

  const waiting = lockFile(path, { timeoutMs: 5000 });
  setTimeout(() => void first.release(), 50);
  const second = await waiting;
  await second.release();
  await second.release();
  t.pass();
});

test('a lock held by a process stops store writers and dies with the process', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir, { lockTimeoutMs: 300 });
  t.teardown(() => store.close());
  const holder = fileURLToPath(new URL('./helpers/hold-lock.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import=tsx', holder, join(dir, 'store.lock')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => resolve());
    child.on('exit', () => reject(new Error('hold-lock exited early')));
  });

  await t.throwsAsync(store.txn({ put: [{ key: 'a', value: '1' }] }), { instanceOf: LockTimeout });
  await t.throwsAsync(FileStore.open(dir, { lockTimeoutMs: 300 }), { instanceOf: LockTimeout });
  t.is(await store.get('a'), undefined);

  const exited = new Promise((resolve) => child.on('close', resolve));
  child.kill('SIGKILL');
  await exited;
  t.true((await store.txn({ put: [{ key: 'a', value: '1' }] })).succeeded);
  t.is((await store.get('a'))?.value, '1');
});
