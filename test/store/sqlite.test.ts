import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
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
import type { TxnRequest, TxnResult, WatchEvent } from '../../src/store/types.js';
import { collect, storeCompliance } from './compliance.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const helper = (name: string): string => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));
/** The helper processes open the SQLite store. */
const helperEnv = { ...process.env, NETCTL_TEST_STORE: 'sqlite' };

async function usingDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-sqlite-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function opened(t: ExecutionContext, dir: string, options?: Parameters<typeof SqliteStore.open>[1]): Promise<SqliteStore> {
  const store = await SqliteStore.open(dir, options);
  t.teardown(() => store.close());
  return store;
}

function startHelper(t: ExecutionContext, name: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import=tsx', helper(name), ...args], { cwd: root, env: helperEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function runHelper(t: ExecutionContext, name: string, args: string[]): Promise<string> {
  const child = startHelper(t, name, args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`${name} exited with ${code}: ${stderr}`);
  return stdout;
}

/** Runs txns in a child process while this event loop stands still, so watchers here notice them all at once. */
function txnsWhileBlocked(dir: string, requests: TxnRequest[]): TxnResult[] {
  const child = spawnSync(process.execPath, ['--import=tsx', helper('txn.ts'), dir, ...requests.map((r) => JSON.stringify(r))], {
    cwd: root,
    env: helperEnv,
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`txn.ts failed: ${child.stderr}`);
  return child.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as TxnResult);
}

storeCompliance('SqliteStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-sqlite-'));
  const store = await SqliteStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

test('SqliteStore: state and revision survive a reopen', async (t) => {
  const dir = await usingDir(t);
  const first = await SqliteStore.open(dir);
  await first.txn({ put: [{ key: 'a', value: '1' }] });
  const last = await first.txn({ put: [{ key: 'b', value: '2' }] });
  const deleted = await first.txn({ delete: ['a'] });
  await first.close();

  const second = await opened(t, dir);
  t.is(await second.get('a'), undefined);
  t.deepEqual({ ...(await second.get('b')) }, { key: 'b', value: '2', modRevision: last.revision });
  t.is((await second.txn({ put: [{ key: 'c', value: '3' }] })).revision, deleted.revision + 1);
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

test('SqliteStore: two instances on one directory see each other and their compares conflict', async (t) => {
  const dir = await usingDir(t);
  const a = await opened(t, dir);
  const b = await opened(t, dir);
  const created = await a.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'a' }] });
  t.true(created.succeeded);
  t.is((await b.get('k'))?.value, 'a');
  t.false((await b.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'b' }] })).succeeded);
  const updated = await b.txn({ compare: [{ key: 'k', modRevision: created.revision }], put: [{ key: 'k', value: 'b' }] });
  t.true(updated.succeeded);
  t.is(updated.revision, created.revision + 1);
  t.is((await a.get('k'))?.value, 'b');
});

test('SqliteStore: concurrent processes incrementing one counter lose no update', async (t) => {
  const dir = await usingDir(t);
  const processes = 4;
  const increments = 50;
  const retries = await Promise.all(
    Array.from({ length: processes }, () => runHelper(t, 'increment.ts', [dir, 'counter', String(increments)])),
  );
  const store = await opened(t, dir);
  const counter = await store.get('counter');
  t.is(counter?.value, String(processes * increments));
  t.is(counter?.modRevision, processes * increments);
  t.log(`compare-and-swap retries per process: ${retries.map((r) => r.trim()).join(', ')}`);
});

test('SqliteStore: kill -9 at random moments never loses an acknowledged write or damages the database', async (t) => {
  const dir = await usingDir(t);
  let previous = 0;
  for (let round = 0; round < 20; round++) {
    const child = startHelper(t, 'crash-writer.ts', [dir]);
    let output = '';
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        resolve();
      });
      child.on('exit', () => reject(new Error(`writer exited by itself: ${stderr}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
    child.kill('SIGKILL');
    await exited;

    const acknowledged = output
      .split('\n')
      .filter((line) => line !== '')
      .map(Number);
    const lastAcknowledged = acknowledged.at(-1) ?? 0;
    t.is(acknowledged[0], previous + 1, `round ${round} continues from the last stored value`);
    const store = await SqliteStore.open(dir);
    const counter = Number((await store.get('counter'))?.value);
    await store.close();
    // The child may have committed one more value than it managed to print.
    t.true(counter === lastAcknowledged || counter === lastAcknowledged + 1, `round ${round}: stored ${counter}, last acknowledged ${lastAcknowledged}`);
    previous = counter;
  }
  const db = new Database(join(dir, 'store.db'), { readonly: true });
  t.teardown(() => db.close());
  t.is(db.pragma('integrity_check', { simple: true }), 'ok');
});

test('SqliteStore: watch sees puts and deletes made by another process, once each', async (t) => {
  const dir = await usingDir(t);
  const store = await opened(t, dir, { pollIntervalMs: 50 });
  const events: WatchEvent[] = [];
  await store.watch('net/', (event) => events.push(event));
  const put = JSON.parse(
    await runHelper(t, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'net/a', value: 'x' }, { key: 'other', value: 'y' }] })]),
  ) as TxnResult;
  const deleted = JSON.parse(await runHelper(t, 'txn.ts', [dir, JSON.stringify({ delete: ['net/a'] })])) as TxnResult;
  t.deepEqual(await collect(events, 2), [
    { type: 'put', kv: { key: 'net/a', value: 'x', modRevision: put.revision } },
    { type: 'delete', key: 'net/a', modRevision: deleted.revision },
  ]);
  // Several polls later nothing is delivered twice.
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(events.length, 2);
});

test('SqliteStore: a watcher that notices several changes at once gets every revision in order', async (t) => {
  const dir = await usingDir(t);
  const store = await opened(t, dir, { pollIntervalMs: 50 });
  const events: WatchEvent[] = [];
  await store.watch('', (event) => events.push(event));
  const revisions = txnsWhileBlocked(dir, [
    { put: [{ key: 'k', value: '1' }] },
    { put: [{ key: 'k', value: '2' }] },
    { delete: ['k'] },
    { put: [{ key: 'k', value: '3' }] },
  ]).map((result) => result.revision);
  t.deepEqual(await collect(events, 4), [
    { type: 'put', kv: { key: 'k', value: '1', modRevision: revisions[0] } },
    { type: 'put', kv: { key: 'k', value: '2', modRevision: revisions[1] } },
    { type: 'delete', key: 'k', modRevision: revisions[2] },
    { type: 'put', kv: { key: 'k', value: '3', modRevision: revisions[3] } },
  ]);
});

test("SqliteStore: changes by another process come before this instance's own in its watch", async (t) => {
  const dir = await usingDir(t);
  const local = await opened(t, dir, { pollIntervalMs: 60_000 });
  const events: WatchEvent[] = [];
  await local.watch('', (event) => events.push(event));
  const remote = JSON.parse(await runHelper(t, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'r', value: '1' }] })])) as TxnResult;
  const own = await local.txn({ put: [{ key: 'l', value: '1' }] });
  t.is(own.revision, remote.revision + 1);
  t.deepEqual(
    events.map((event) => (event.type === 'put' ? [event.kv.key, event.kv.modRevision] : [])),
    [
      ['r', remote.revision],
      ['l', own.revision],
    ],
  );
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
