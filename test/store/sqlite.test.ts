import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import Database from 'better-sqlite3';
import { FileStore } from '../../src/store/file.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { StoreClosed, StoreCorrupt } from '../../src/store/types.js';
import type { WatchEvent } from '../../src/store/types.js';
import { storeCompliance } from './compliance.js';
import { sharedDirectoryCompliance, usingDir } from './shared-directory.js';

async function opened(t: ExecutionContext, dir: string, options?: Parameters<typeof SqliteStore.open>[1]): Promise<SqliteStore> {
  const store = await SqliteStore.open(dir, options);
  t.teardown(() => store.close());
  return store;
}

sharedDirectoryCompliance('SqliteStore', 'sqlite', {
  open: (dir, options) => SqliteStore.open(dir, options),
  async afterCrash(t, dir) {
    const db = new Database(join(dir, 'store.db'), { readonly: true });
    try {
      t.is(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
  },
});

storeCompliance('SqliteStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-store-'));
  const store = await SqliteStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

test('SqliteStore: the database and its journal are readable by root only', async (t) => {
  const dir = await usingDir(t);
  const store = await opened(t, dir);
  await store.txn({ put: [{ key: 'a', value: '1' }] });
  for (const name of (await readdir(dir)).filter((n) => n.startsWith('store.db'))) {
    t.is((await stat(join(dir, name))).mode & 0o777, 0o600, name);
  }
  t.is((await stat(dir)).mode & 0o777, 0o700);
});

test('SqliteStore: a second close is harmless, and every other call after close rejects', async (t) => {
  const dir = await usingDir(t);
  const store = await SqliteStore.open(dir);
  await store.close();
  await t.notThrowsAsync(store.close());
  await t.throwsAsync(store.get('a'), { instanceOf: StoreClosed });
});

test('SqliteStore: watch from a past revision replays exactly the changes after it under its prefix', async (t) => {
  const dir = await usingDir(t);
  const store = await opened(t, dir);
  const first = await store.txn({ put: [{ key: 'n/a', value: '1' }, { key: 'x', value: '1' }] });
  await store.txn({ put: [{ key: 'n/a', value: '2' }] });
  const removed = await store.txn({ delete: ['n/a'] });
  await store.txn({ put: [{ key: 'x', value: '2' }] });
  const events: WatchEvent[] = [];
  await store.watch('n/', (event) => events.push(event), { fromRevision: first.revision });
  const later = await store.txn({ put: [{ key: 'n/b', value: '1' }] });
  t.deepEqual(events, [
    { type: 'put', kv: { key: 'n/a', value: '2', modRevision: first.revision + 1 } },
    { type: 'delete', key: 'n/a', modRevision: removed.revision },
    { type: 'put', kv: { key: 'n/b', value: '1', modRevision: later.revision } },
  ]);
});

test('SqliteStore: a file store state directory is migrated once, keeping revisions', async (t) => {
  const dir = await usingDir(t);
  const files = await FileStore.open(dir);
  await files.txn({ put: [{ key: 'networks/a', value: '{"n":1}' }, { key: 'gone', value: '1' }] });
  const kept = await files.txn({ put: [{ key: 'sandboxes/s', value: '{"s":1}' }] });
  const last = await files.txn({ delete: ['gone'] });
  await files.close();

  const store = await SqliteStore.open(dir);
  t.deepEqual(
    (await store.list('')).map((kv) => ({ ...kv })),
    [
      { key: 'networks/a', value: '{"n":1}', modRevision: kept.revision - 1 },
      { key: 'sandboxes/s', value: '{"s":1}', modRevision: kept.revision },
    ],
  );
  // A client that read before the upgrade still compares against the same modRevision.
  const next = await store.txn({ compare: [{ key: 'sandboxes/s', modRevision: kept.revision }], put: [{ key: 'sandboxes/s', value: '2' }] });
  t.true(next.succeeded);
  t.is(next.revision, last.revision + 1);
  await store.close();

  const names = await readdir(dir);
  t.true(names.includes('store.json.migrated'));
  t.false(names.includes('store.json'));
  const again = await opened(t, dir);
  t.is((await again.get('sandboxes/s'))?.value, '2', 'the old file is not imported again');
});

test('SqliteStore: a directory with both a database holding data and a file state is refused, both left as they were', async (t) => {
  const dir = await usingDir(t);
  const store = await SqliteStore.open(dir);
  await store.txn({ put: [{ key: 'a', value: 'db' }] });
  await store.close();
  const stateFile = '{"revision":1,"entries":[{"key":"a","value":"file","modRevision":1}],"log":[]}\n';
  await writeFile(join(dir, 'store.json'), stateFile);
  const err = await t.throwsAsync(SqliteStore.open(dir), { instanceOf: StoreCorrupt });
  t.regex(err?.message ?? '', /store\.db with data and an older store\.json/);
  t.is(await readFile(join(dir, 'store.json'), 'utf8'), stateFile);
  await rm(join(dir, 'store.json'));
  const reopened = await opened(t, dir);
  t.is((await reopened.get('a'))?.value, 'db');
});

test('SqliteStore: a damaged file state is reported as StoreCorrupt and not migrated', async (t) => {
  const dir = await usingDir(t);
  await writeFile(join(dir, 'store.json'), '{"revision":3,"entries":[{"key":"a","val');
  const err = await t.throwsAsync(SqliteStore.open(dir), { instanceOf: StoreCorrupt });
  t.true(err?.message.includes(join(dir, 'store.json')));
  t.true((await readdir(dir)).includes('store.json'));
});

test('SqliteStore: a file that is not a database is reported as StoreCorrupt naming it, and left alone', async (t) => {
  const dir = await usingDir(t);
  const content = 'this is not a database, just some text that is long enough to have a header';
  await writeFile(join(dir, 'store.db'), content);
  const err = await t.throwsAsync(SqliteStore.open(dir), { instanceOf: StoreCorrupt });
  t.true(err?.message.includes(join(dir, 'store.db')), err?.message);
  t.is(await readFile(join(dir, 'store.db'), 'utf8'), content);
});

test('SqliteStore: a database from a newer netctl is refused rather than misread', async (t) => {
  const dir = await usingDir(t);
  (await SqliteStore.open(dir)).close();
  const db = new Database(join(dir, 'store.db'));
  db.pragma('user_version = 99');
  db.close();
  const err = await t.throwsAsync(SqliteStore.open(dir), { instanceOf: StoreCorrupt });
  t.regex(err?.message ?? '', /schema version 99 is newer/);
});

test('SqliteStore: a process that opens a new database while another creates its tables waits and uses them', async (t) => {
  const dir = await usingDir(t);
  const child = spawn(process.execPath, ['--import=tsx', fileURLToPath(new URL('./helpers/create-after-lock.ts', import.meta.url)), dir, '300'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('locked\n')) resolve();
    });
    child.on('close', () => reject(new Error(`create-after-lock.ts ended early: ${stderr}`)));
  });
  // The schema version is read while the child holds the lock with no tables yet; the tables exist when the lock comes free.
  const store = await opened(t, dir);
  t.is(await closed, 0, stderr);
  t.true(stdout.includes('created\n'));
  t.is((await store.get('child'))?.value, 'opened');
  await store.txn({ put: [{ key: 'parent', value: 'opened' }] });
  t.is((await store.get('parent'))?.value, 'opened');
});
