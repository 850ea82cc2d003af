import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { isOwnResolvConf, namedNetnsResolvConf, removeResolvConf, sweepResolvConfs, writeResolvConf } from '../../src/sys/resolvconf.js';

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-resolv-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const CONTENT = 'nameserver 127.0.0.11\n';

test('a file netctl did not write is never overwritten or removed', async (t) => {
  const etc = await tempDir(t);
  await mkdir(join(etc, 'user'));
  const path = join(etc, 'user', 'resolv.conf');
  await writeFile(path, 'nameserver 192.0.2.53\n');
  const target = { path, sandboxId: 'ab12', owner: '/var/lib/netctl', journalDir: join(etc, 'journal') };
  t.false(await writeResolvConf(target, CONTENT));
  await removeResolvConf(target);
  t.is(await readFile(path, 'utf8'), 'nameserver 192.0.2.53\n');
  t.false(await isOwnResolvConf(target));
});

test('netctl removes its own file, and the directory only when it made it', async (t) => {
  const etc = await tempDir(t);
  const journalDir = join(etc, 'journal');
  const made = { path: join(etc, 'made', 'resolv.conf'), sandboxId: 'aa', owner: '/d', journalDir };
  t.true(await writeResolvConf(made, CONTENT));
  t.true((await readFile(made.path, 'utf8')).endsWith(CONTENT));
  t.true(await writeResolvConf(made, CONTENT), 'rewriting its own file is allowed');
  await removeResolvConf(made);
  t.false(existsSync(join(etc, 'made')));

  await mkdir(join(etc, 'users'));
  const inUsersDir = { path: join(etc, 'users', 'resolv.conf'), sandboxId: 'bb', owner: '/d', journalDir };
  t.true(await writeResolvConf(inUsersDir, CONTENT));
  await removeResolvConf(inUsersDir);
  t.false(existsSync(inUsersDir.path));
  t.true(existsSync(join(etc, 'users')), 'the directory was there before netctl');
});

test('the sweep removes only this daemon\'s files of sandboxes that are gone', async (t) => {
  const etc = await tempDir(t);
  const own = await tempDir(t);
  const journalDir = join(own, '..', `${own.split('/').pop()}-journal`);
  t.teardown(() => rm(journalDir, { recursive: true, force: true }));
  const write = (path: string, sandboxId: string, owner: string) => writeResolvConf({ path, sandboxId, owner, journalDir }, CONTENT);
  await write(join(etc, 'kept', 'resolv.conf'), 'a1', '/me');
  await write(join(etc, 'gone', 'resolv.conf'), 'b2', '/me');
  await write(join(etc, 'other', 'resolv.conf'), 'c3', '/another-daemon');
  await write(join(own, 'd4.conf'), 'd4', '/me');
  await mkdir(join(etc, 'user'));
  await writeFile(join(etc, 'user', 'resolv.conf'), 'nameserver 192.0.2.1\n');
  // A crash between making a directory and writing the file into it leaves the directory alone.
  await mkdir(join(journalDir), { recursive: true });
  await mkdir(join(etc, 'empty'));
  await writeFile(join(journalDir, 'e5'), join(etc, 'empty'));
  const removed = await sweepResolvConfs('/me', new Set(['a1']), own, journalDir, etc);
  t.deepEqual(removed.sort(), [join(etc, 'gone', 'resolv.conf'), join(own, 'd4.conf')].sort());
  t.true(existsSync(join(etc, 'kept', 'resolv.conf')));
  t.true(existsSync(join(etc, 'other', 'resolv.conf')));
  t.true(existsSync(join(etc, 'user', 'resolv.conf')));
  t.false(existsSync(join(etc, 'gone')));
  t.false(existsSync(join(etc, 'empty')));
  t.true(existsSync(join(etc, 'other')), 'another daemon\'s directory stays');
});

test('a named namespace has its resolv.conf under /etc/netns; any other namespace path has none there', (t) => {
  t.is(namedNetnsResolvConf('/var/run/netns/web'), '/etc/netns/web/resolv.conf');
  t.is(namedNetnsResolvConf('/var/run/netns/a/b'), undefined);
  t.is(namedNetnsResolvConf('/proc/123/ns/net'), undefined);
});

test('kill -9 at any moment of writing or removing leaves only files netctl can claim, and the sweep leaves nothing', async (t) => {
  const helper = fileURLToPath(new URL('./helpers/resolv-churn.ts', import.meta.url));
  for (let round = 0; round < 20; round++) {
    const etc = await tempDir(t);
    const journalDir = join(etc, '.journal');
    const child = spawn(process.execPath, ['--import=tsx', helper, etc, journalDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('started') && resolve());
      child.on('close', () => reject(new Error('resolv-churn.ts ended before it started')));
    });
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
    child.kill('SIGKILL');
    await exited;

    for (const name of (await readdir(etc)).filter((n) => n.startsWith('ns'))) {
      const sandboxId = name.slice(2);
      const target = { path: join(etc, name, 'resolv.conf'), sandboxId, owner: '/me', journalDir };
      // A restarted daemon must be able to take its sandbox's file back, or it would fall back to the state directory.
      t.true(await writeResolvConf(target, CONTENT), `round ${round}: ${target.path} is still netctl's after the kill`);
    }
    await sweepResolvConfs('/me', new Set(), join(etc, '.own'), journalDir, etc);
    t.deepEqual((await readdir(etc)).filter((n) => n !== '.journal'), [], `round ${round}: the sweep left something under /etc/netns`);
  }
});
